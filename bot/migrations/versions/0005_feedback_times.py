"""The time of the newest event applied per person, merge request and aspect: `feedback_times`.

Why: GitLab delivers webhooks asynchronously, and an operator re-sending failed deliveries may send them newest
first. Approval and reviewer feedback followed the order the worker handled them: an `unapproval` handled
before its `approval` left "approved", a reviewer removal handled before the addition that preceded it left
"accepted". With the time of the newest event applied (the payload's `object_attributes.updated_at`), an
older one is dropped (`FeedbackStore.newer_applied`). Approvals and reviewer changes keep a time each
(`aspect`): one never undoes the other. Existing databases start empty: every event applies until a timed one
was.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_times",
        sa.Column("project_id", sa.BigInteger, autoincrement=False),
        sa.Column("mr_iid", sa.BigInteger, autoincrement=False),
        sa.Column("person", sa.String(255)),
        sa.Column("aspect", sa.String(16)),
        sa.Column("event_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "mr_iid", "person", "aspect", name="pk_feedback_times"),
    )


def downgrade() -> None:
    op.drop_table("feedback_times")
