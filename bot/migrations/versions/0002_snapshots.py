"""Recommender snapshots per project, for warm starts (`bot.storage.snapshots`).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from bot.storage.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("project_id", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(100), nullable=False),
        sa.Column("config", sa.String(100), nullable=False),
        sa.Column("history_count", sa.BigInteger, nullable=False),
        sa.Column("history_time", sa.BigInteger, nullable=True),
        sa.Column("boundary", Json, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
    )
    op.create_index("ix_snapshots_project_id_history_count", "snapshots", ["project_id", "history_count"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_project_id_history_count", table_name="snapshots")
    op.drop_table("snapshots")
