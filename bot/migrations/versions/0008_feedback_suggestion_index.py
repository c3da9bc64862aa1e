"""An index on `feedback.suggestion_id`, the column that points at the suggestion a label judges.

Why: deleting a suggestion sets the feedback rows that name it to NULL (the foreign key's `ON DELETE SET
NULL`), and without an index each deleted suggestion read the whole feedback table: the first `reviewbot
prune` of a year of one busy project (3,500 suggestions among 45,000, 135,000 feedback rows) took 53 s on
SQLite and 28 s on PostgreSQL, holding the database's write lock on SQLite; with the index 0.2 and 0.8 s.

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-08
"""
from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_feedback_suggestion_id", "feedback", ["suggestion_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_suggestion_id", table_name="feedback")
