"""Schema migrations, run programmatically (no alembic.ini): `migrate(url)` and the start-up check.

Why programmatic: the migrations ship inside the package (`bot/migrations`), so `reviewbot migrate`
works from an installed wheel and from Heroku's release phase without any file next to it. The web
and worker processes never migrate; they refuse to start on an old schema (`check_schema`).
"""
from __future__ import annotations

import asyncio
import sqlite3
import sys
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage import db
from bot.storage.db import StorageError, create_engine

__all__ = [
    "alembic_config", "migrate", "upgrade", "schema_is_current", "current_revisions", "head_revisions",
    "check_schema", "SchemaOutOfDate", "known_revisions", "newer_schema", "Upgraded", "NOTES",
]

SCRIPT_LOCATION = "bot:migrations"
PG_MIGRATION_LOCK = 0x72657669  # any constant; serialises concurrent `reviewbot migrate` runs
# PostgreSQL: how long one try waits for a table's lock (`lock_timeout`), and how many tries `upgrade` makes
PG_LOCK_WAIT = 5.0
PG_LOCK_TRIES = 6
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that ran out
NOTES = "notes"  # the Config attribute a migration appends what the operator must know to (`Upgraded.notes`)


class Upgraded(NamedTuple):
    """What `upgrade` did: the revisions before and after, and what the migrations said for the operator."""

    before: set[str]
    after: set[str]
    notes: list[str]


class SchemaOutOfDate(StorageError):
    """The database's schema is not the one this code needs."""


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration, built in code so no alembic.ini is needed."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revisions() -> set[str]:
    """The revisions the code expects (normally one)."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revisions() -> set[str]:
    """Every revision this code's migrations know."""
    return {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def newer_schema(current: set[str]) -> SchemaOutOfDate | None:
    """The error for a database migrated by a later reviewbot (a revision this code does not know), or None:
    `reviewbot migrate` cannot help there, a newer reviewbot can."""
    unknown = current - known_revisions()
    if not unknown:
        return None
    return SchemaOutOfDate(
        f"the database schema is at {', '.join(sorted(unknown))}, which this version of reviewbot does not know "
        f"(it needs {', '.join(sorted(head_revisions()))}): a later reviewbot migrated it; run that version "
        "(after a rollback, deploy the release that migrated the database again)")


def _current(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at (empty for a new database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def _known_revisions(engine: AsyncEngine) -> set[str]:
    """`current_revisions`, refused (`newer_schema`) when a later reviewbot migrated the database."""
    current = await current_revisions(engine)
    if (newer := newer_schema(current)) is not None:
        raise newer
    return current


async def schema_is_current(engine: AsyncEngine) -> bool:
    """True when the database is migrated to exactly the code's head revision (`SchemaOutOfDate` when a later
    reviewbot migrated it: no `reviewbot migrate` can help)."""
    return await _known_revisions(engine) == head_revisions()


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to run on a database that is not migrated to this code's schema."""
    current, heads = await _known_revisions(engine), head_revisions()
    if current != heads:
        at = f"schema is at {', '.join(sorted(current))}," if current else "was never migrated:"
        raise SchemaOutOfDate(
            f"the database {at} this version of reviewbot needs "
            f"{', '.join(sorted(heads))}: run `reviewbot migrate` (Heroku: in the release phase), then this command "
            "again"
        )


def _lock(connection: Connection, lock_wait: float) -> None:
    """Take the database's migration lock for the caller's transaction.

    PostgreSQL: an advisory lock, then `lock_timeout` for the tables the migrations alter. An ALTER waiting
    for a table that another transaction holds (a session left open, a long read) makes every later query of
    that table queue behind it: without a bound the bot still running on the database stalled as long as
    that transaction lasted. SQLite: `BEGIN IMMEDIATE`, the write lock, which also opens the transaction
    for real: Python's sqlite3 begins one only before INSERT/UPDATE/DELETE, so each DDL statement before
    alembic's first version update was committed on its own, and a run that failed half-way (a lock timeout,
    a killed release phase) left columns whose revision was never recorded: every later run then failed
    ("duplicate column name"). SQLite's DDL is transactional once inside a transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, round(lock_wait * 1000))}")
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: Connection, cfg: Config, revision: str, lock_wait: float) -> set[str]:
    """Upgrade in the caller's transaction, all or nothing; the revisions before, read under the lock (of two
    processes migrating at once, the second sees what the first did). The migrations' notes go to
    `cfg.attributes[NOTES]`."""
    _lock(connection, lock_wait)
    before = _current(connection)
    cfg.attributes["connection"] = connection
    cfg.attributes[NOTES] = []
    command.upgrade(cfg, revision)
    return before


def _lock_ran_out(exc: sa.exc.DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _sqlite_locked(exc: sa.exc.DBAPIError) -> StorageError | None:
    """The error for a SQLite write lock that another connection kept past busy_timeout, or None."""
    if not isinstance(exc.orig, sqlite3.OperationalError) or "database is locked" not in str(exc.orig):
        return None
    return StorageError(
        f"another process kept the database's write lock for {db.SQLITE_BUSY_TIMEOUT_MS / 1000:g} s (a long write, "
        "or a `sqlite3` shell left in a transaction); nothing was changed: run `reviewbot migrate` again once it "
        "is done")


async def upgrade(url: str, revision: str = "head", *, lock_wait: float = PG_LOCK_WAIT, tries: int = PG_LOCK_TRIES,
                  **engine_kwargs: Any) -> Upgraded:
    """Bring the database at `url` up to `revision` (default: the newest); its revisions before and after, and
    the migrations' notes.

    On PostgreSQL a try that waits `lock_wait` seconds for a table gives way (rolled back whole) and, after a
    pause that lets the queries queued behind it run, tries again, `tries` times in all."""
    engine = create_engine(url, **engine_kwargs)
    try:
        await _known_revisions(engine)
        for attempt in range(1, tries + 1):
            try:
                cfg = alembic_config()
                async with engine.begin() as conn:
                    before = await conn.run_sync(_upgrade, cfg, revision, lock_wait)
                break
            except sa.exc.DBAPIError as exc:
                if (locked := _sqlite_locked(exc)) is not None:
                    raise locked from exc
                if not _lock_ran_out(exc):
                    raise
                if attempt == tries:
                    raise StorageError(
                        f"another session kept a lock on a table this migration changes ({tries} tries of "
                        f"{lock_wait:g} s; an open transaction or a long query: see pg_stat_activity); nothing was "
                        "changed: end that session, or run `reviewbot migrate` again once it is done") from exc
                await asyncio.sleep(min(lock_wait, 1.0))
        return Upgraded(before, await current_revisions(engine), cfg.attributes[NOTES])
    finally:
        await engine.dispose()


async def migrate(url: str, revision: str = "head", **kwargs: Any) -> set[str]:
    """`upgrade`, returning the revisions after."""
    return (await upgrade(url, revision, **kwargs)).after


def _revision_cli(argv: list[str]) -> None:
    """Developer helper: `python -m bot.storage.migrate revision -m "msg"` writes an empty revision."""
    if len(argv) < 3 or argv[0] != "revision" or argv[1] != "-m":
        raise SystemExit('usage: python -m bot.storage.migrate revision -m "what changed"')
    command.revision(alembic_config(), message=argv[2])


if __name__ == "__main__":
    _revision_cli(sys.argv[1:])
