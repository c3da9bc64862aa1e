"""Initial schema: event queue, projects, history, bot comments, suggestions, feedback, opt-outs, models.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from bot.storage.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")
STATUSES = ("queued", "running", "done", "failed", "dead")


def _events() -> None:
    op.create_table(
        "events",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("dedupe_key", sa.String(255), nullable=False),
        sa.Column("project_id", sa.BigInteger, nullable=True),
        sa.Column("mr_iid", sa.BigInteger, nullable=True),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("action", sa.String(100), nullable=True),
        sa.Column("headers", Json, nullable=False),
        sa.Column("body", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.CheckConstraint(sa.column("status").in_(STATUSES), name="ck_events_status"),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("dedupe_key", name="uq_events_dedupe_key"),
    )
    op.create_index("ix_events_status_next_attempt_at", "events", ["status", "next_attempt_at"])
    op.create_index("ix_events_project_id_mr_iid_status", "events", ["project_id", "mr_iid", "status"])


def _projects() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.BigInteger, autoincrement=False),
        sa.Column("path", sa.String(512), nullable=True),
        sa.Column("backfill_cursor", sa.String(255), nullable=True),
        sa.Column("backfill_page", sa.Integer, nullable=True),
        sa.Column("backfill_done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("settings", Json, nullable=False),
        sa.Column("last_event_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
    )


def _history() -> None:
    op.create_table(
        "history",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("project_id", sa.BigInteger, nullable=False),
        sa.Column("change_id", sa.String(255), nullable=False),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("reviewers", Json, nullable=False),
        sa.Column("ackers", Json, nullable=False),
        sa.Column("files", Json, nullable=False),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("committer", sa.String(255), nullable=False, server_default=""),
        sa.Column("bot_author", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_history"),
        sa.UniqueConstraint("project_id", "change_id", name="uq_history_project_id_change_id"),
    )
    op.create_index("ix_history_project_id_time", "history", ["project_id", "time"])


def _comments() -> None:
    op.create_table(
        "bot_comments",
        sa.Column("project_id", sa.BigInteger, autoincrement=False),
        sa.Column("mr_iid", sa.BigInteger, autoincrement=False),
        sa.Column("note_id", sa.BigInteger, nullable=True),
        sa.Column("reserved_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "mr_iid", name="pk_bot_comments"),
    )


def _suggestions_and_feedback() -> None:
    op.create_table(
        "suggestions",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("project_id", sa.BigInteger, nullable=False),
        sa.Column("mr_iid", sa.BigInteger, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("people", Json, nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suggestions"),
    )
    op.create_index("ix_suggestions_project_id_mr_iid", "suggestions", ["project_id", "mr_iid"])
    op.create_table(
        "feedback",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("suggestion_id", sa.BigInteger, nullable=True),
        sa.Column("project_id", sa.BigInteger, nullable=False),
        sa.Column("mr_iid", sa.BigInteger, nullable=False),
        sa.Column("person", sa.String(255), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("value", Json, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("source_event_id", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["suggestion_id"], ["suggestions.id"], name="fk_feedback_suggestion_id_suggestions", ondelete="SET NULL"
        ),
        sa.UniqueConstraint(
            "source_event_id", "person", "label", name="uq_feedback_source_event_id_person_label"
        ),
    )
    op.create_index("ix_feedback_project_id_mr_iid", "feedback", ["project_id", "mr_iid"])


def _optouts_and_models() -> None:
    op.create_table(
        "optouts",
        sa.Column("project_id", sa.BigInteger, autoincrement=False),
        sa.Column("username", sa.String(255)),
        sa.Column("until", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "username", name="pk_optouts"),
    )
    op.create_table(
        "models",
        sa.Column("id", Id, autoincrement=True),
        sa.Column("project_id", sa.BigInteger, nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.Column("backtest_score", sa.Float, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("project_id", "version", name="uq_models_project_id_version"),
    )


def upgrade() -> None:
    _events()
    _projects()
    _history()
    _comments()
    _suggestions_and_feedback()
    _optouts_and_models()


def downgrade() -> None:
    for table in ("models", "optouts", "feedback", "suggestions", "bot_comments", "history", "projects", "events"):
        op.drop_table(table)
