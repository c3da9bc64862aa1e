"""The discussion of the bot's suggestion comment: `bot_comments.discussion_id`.

Why: a suggested person's comment counts as their review, but a reply in the bot comment's own thread ("I'm
out until the 20th, can someone else take this?") answers the bot's request and is none; the bot learned its
own request back as a review. GitLab's Note Hooks name each note's discussion (`discussion_id`), the Notes API
does not: the bot keeps its comment's from the Note Hook of the comment itself. Existing rows start empty:
their discussion is asked of GitLab the first time a reply needs it, then kept.

Revision ID: 0009
Revises: 0008
Create Date: 2025-01-09
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("bot_comments", sa.Column("discussion_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("bot_comments", "discussion_id")  # plain DROP COLUMN, as 0003's downgrade
