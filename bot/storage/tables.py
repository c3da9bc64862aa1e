"""The database tables, as SQLAlchemy Core `Table`s (the migrations in `bot/migrations` create them).

Why Core and not the ORM: the stores issue a handful of set-based statements (`INSERT ... ON
CONFLICT`, `UPDATE ... RETURNING`, `FOR UPDATE SKIP LOCKED`) and hand back frozen rows; there is no
object graph to track. When a column changes here, add a migration (`tests/test_storage.py` checks
that the migrated schema matches these definitions).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from bot.storage.db import UTCDateTime

__all__ = [
    "metadata", "events", "projects", "history", "bot_comments", "suggestions", "feedback", "feedback_times",
    "optouts", "people", "models", "snapshots", "dashboard_signouts", "EVENT_STATUSES",
]

EVENT_STATUSES = ("queued", "running", "done", "failed", "dead")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for a queue that grows.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")

events = sa.Table(
    "events", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String(255), nullable=False, unique=True),
    sa.Column("project_id", sa.BigInteger, nullable=True),
    sa.Column("mr_iid", sa.BigInteger, nullable=True),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("action", sa.String(100), nullable=True),
    sa.Column("headers", Json, nullable=False),
    sa.Column("body", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # counted toward max_attempts
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("outage_attempts", sa.Integer, nullable=False, server_default="0"),  # runs a GitLab outage failed (0011)
    sa.Column("ran_alone", sa.Boolean, nullable=False, server_default=sa.false()),  # last claim ran it alone (0012)
    sa.CheckConstraint(sa.column("status").in_(EVENT_STATUSES), name="status"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "project_id", "mr_iid", "status"),
    # ids never given twice, even after `reviewbot forget` deleted the newest rows (0014): workers claim, renew and
    # finish an event by its id, and feedback and suggestions name it; PostgreSQL's sequence never reuses
    sqlite_autoincrement=True,
)

projects = sa.Table(
    "projects", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("path", sa.String(512), nullable=True),
    sa.Column("backfill_cursor", sa.String(255), nullable=True),
    sa.Column("backfill_page", sa.Integer, nullable=True),
    sa.Column("backfill_done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("settings", Json, nullable=False),
    sa.Column("last_event_at", UTCDateTime, nullable=True),
    sa.Column("import_owner", sa.String(255), nullable=True),  # the process importing the history, if any
    sa.Column("import_until", UTCDateTime, nullable=True),     # ... until when, unless it renews the lease
)

history = sa.Table(
    "history", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("change_id", sa.String(255), nullable=False),
    sa.Column("time", sa.BigInteger, nullable=False),  # Unix seconds, as in graph.Change
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("reviewers", Json, nullable=False),
    sa.Column("ackers", Json, nullable=False),
    sa.Column("files", Json, nullable=False),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("committer", sa.String(255), nullable=False, server_default=""),
    sa.Column("bot_author", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("renames", Json, nullable=True),  # [[old path, new path], ...]; NULL in rows stored before 0004
    sa.UniqueConstraint("project_id", "change_id"),
    sa.Index(None, "project_id", "time"),
    # ids never given twice, even after `reviewbot forget` deleted the newest rows (0013): a model or snapshot is
    # stored only while the row ids it was built on are (`history.require_rows`); PostgreSQL's sequence never reuses
    sqlite_autoincrement=True,
)

bot_comments = sa.Table(
    "bot_comments", metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("mr_iid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("note_id", sa.BigInteger, nullable=True),  # NULL while a worker is posting it
    sa.Column("reserved_by", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("discussion_id", sa.String(64), nullable=True),  # the note's GitLab discussion; NULL until known
)

suggestions = sa.Table(
    "suggestions", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("mr_iid", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("people", Json, nullable=False),
    sa.Column("model_version", sa.String(100), nullable=False),
    sa.Column("event_id", sa.BigInteger, nullable=True),
    # the MR as it was suggested for (its author's username, its changed paths), so a label about it teaches
    # any process the same thing; NULL on rows stored before revision 0003
    sa.Column("author", sa.String(255), nullable=True),
    sa.Column("files", Json, nullable=True),
    sa.Index(None, "project_id", "mr_iid"),
    # ids never given twice (0014): `feedback.suggestion_id` names one
    sqlite_autoincrement=True,
)

feedback = sa.Table(
    "feedback", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("suggestion_id", sa.BigInteger, sa.ForeignKey("suggestions.id", ondelete="SET NULL"), nullable=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("mr_iid", sa.BigInteger, nullable=False),
    sa.Column("person", sa.String(255), nullable=False),
    sa.Column("label", sa.String(50), nullable=False),
    sa.Column("value", Json, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("source_event_id", sa.BigInteger, nullable=True),
    # A retried event records its feedback once; rows without a source event are never merged.
    sa.UniqueConstraint("source_event_id", "person", "label"),
    sa.Index(None, "project_id", "mr_iid"),
    sa.Index(None, "suggestion_id"),  # deleting a suggestion finds the rows to set NULL (`retention`)
    # ids never given twice, even after `reviewbot forget` deleted the newest rows (0014): a recommender learns the
    # rows above the last id it read (`learning.new_labels`); PostgreSQL's sequence never reuses
    sqlite_autoincrement=True,
)

# Per person and MR, GitLab's time of the newest event whose approval or reviewer feedback was applied: an older
# event delivered after it is not (`FeedbackStore.newer_applied`). `person` casefolded (usernames ignore case).
feedback_times = sa.Table(
    "feedback_times", metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("mr_iid", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("person", sa.String(255), primary_key=True),
    sa.Column("aspect", sa.String(16), primary_key=True),  # "approval" or "reviewer": each keeps its own time
    sa.Column("event_at", UTCDateTime, nullable=False),
)

optouts = sa.Table(
    "optouts", metadata,
    sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("username", sa.String(255), primary_key=True),
    sa.Column("until", UTCDateTime, nullable=True),  # NULL = until they opt back in
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# Every username each GitLab user id was seen with, and when last: the newest is their name now, the others
# are former names (GitLab lets users rename themselves; the id stays). See `bot.storage.people`.
people = sa.Table(
    "people", metadata,
    sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("username", sa.String(255), primary_key=True),
    # the username casefolded: GitLab's usernames ignore case, and who else held a name is looked up by it
    sa.Column("username_key", sa.String(255), nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Index(None, "username_key"),
)

models = sa.Table(
    "models", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Column("backtest_score", sa.Float, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("project_id", "version"),
    # ids never given twice (0014): the active model's id tells cached figures a model changed (`projects.marker`)
    sqlite_autoincrement=True,
)

snapshots = sa.Table(
    "snapshots", metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(100), nullable=False),   # graph.snapshot.fingerprint() of the writer
    sa.Column("config", sa.String(100), nullable=False),   # the recommender method and settings it was built with
    # the history it has seen: how many rows, the newest change time, the ids of the rows at that time
    sa.Column("history_count", sa.BigInteger, nullable=False),
    sa.Column("history_time", sa.BigInteger, nullable=True),
    sa.Column("boundary", Json, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("blob", sa.LargeBinary, nullable=False),
    sa.Index(None, "project_id", "history_count"),
    # ids never given twice (0014): the logs name a snapshot by its id
    sqlite_autoincrement=True,
)

# Dashboard sign-ins ended before their cookie expires (`bot.storage.signouts`): one row per signed-out cookie, by its
# SHA-256 (never the cookie itself), deleted once the cookie would have expired anyway; and the row "*": every
# cookie issued until its `ended_at` (`reviewbot signout-all`), kept.
dashboard_signouts = sa.Table(
    "dashboard_signouts", metadata,
    sa.Column("session", sa.String(64), primary_key=True),
    sa.Column("ended_at", UTCDateTime, nullable=False),
    sa.Column("until", UTCDateTime, nullable=True),  # NULL: kept ("*")
)
