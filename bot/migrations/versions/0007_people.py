"""The usernames each GitLab user id was seen with: `people`.

Why: the history, feedback, opt-outs and the graph name people by username, and GitLab lets a user rename
themselves (`alice` to `alice.w`; the numeric id stays). Without the pairs the bot saw, the history under the
old name belonged to someone who left, and their opt-out stopped applying. The table starts empty: names are
learned from GitLab's API answers (members lists, the merge requests and approvals of imports and merges) from
now on (a rename made before the bot saw the old name is not known; `reviewbot backfill --project ID --restart`
imports the history under today's names).

`username_key` is the username casefolded, indexed: GitLab's usernames ignore case (`Alice` freed by a rename
and taken as `alice` is one name), and every suggestion asks who else held its members' names: unindexed,
PostgreSQL read the whole table each time (26 to 60 ms for 500 members among 200,000 users; 3 to 8 through
the index).

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("user_id", sa.BigInteger, autoincrement=False),
        sa.Column("username", sa.String(255)),
        sa.Column("username_key", sa.String(255), nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "username", name="pk_people"),
    )
    op.create_index("ix_people_username_key", "people", ["username_key"])


def downgrade() -> None:
    op.drop_index("ix_people_username_key", table_name="people")
    op.drop_table("people")
