"""The merge request a suggestion was for: its author and changed files (`suggestions.author`, `.files`).

Why: a feedback label names only the MR; the learned recommender needs its author and files to count a
review taken at once (`LearnedRecommender.learn`). Kept with the suggestion the label judges, they reach
every worker process alike, not only the one that suggested. Rows stored before this revision keep NULL.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("suggestions", sa.Column("author", sa.String(255), nullable=True))
    op.add_column("suggestions", sa.Column("files", Json, nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): a batch copy of the table would drop the old one,
    # and with foreign keys on that sets every feedback row's suggestion_id to NULL
    op.drop_column("suggestions", "files")
    op.drop_column("suggestions", "author")
