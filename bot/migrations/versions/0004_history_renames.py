"""The files a merged change renamed: `history.renames`, ``[[old path, new path], ...]``.

Why: a renamed file's review history follows it (`graph.ownership.OwnershipGraph.move_history`), and the
graph is rebuilt from the stored history, so the renames are stored with it. Rows stored before this
revision keep NULL (no rename known) until `reviewbot backfill --project ID --restart` imports them again
(which deletes the project's snapshots; restart the bot then).

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("history", sa.Column("renames", Json, nullable=True))


def downgrade() -> None:
    op.drop_column("history", "renames")  # plain DROP COLUMN, as 0003's downgrade
