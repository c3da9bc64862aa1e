"""Engine creation and the few dialect differences between SQLite and PostgreSQL.

Why here: every store module works on both databases through SQLAlchemy Core; the places where they
differ (connection pragmas, `INSERT ... ON CONFLICT`, timestamps without a time zone on SQLite) are
kept in this one module so the stores read the same for both.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.config import normalise_database_url, redact_url
from bot.storage import waits

__all__ = ["create_engine", "utcnow", "UTCDateTime", "insert_for", "is_sqlite", "StorageError", "as_id",
           "LARGEST_ID", "database_unavailable", "database_unreachable", "sqlite_file"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A write-ahead log that grew in a burst (a backfill, a retention run) is cut back to this at its next reset;
# without it the file stays at its high-water mark for good
SQLITE_WAL_LIMIT_BYTES = 8 * 1024 * 1024
# values per IN (...) list: SQLite and asyncpg take at most 32766 / 32767 parameters a statement
IN_CHUNK = 5000
LARGEST_ID = 2**63 - 1  # ids (projects, merge requests, events) are signed 64-bit columns


def as_id(value: Any) -> int | None:
    """`value` if it is an int the id columns can hold, else None (a bool is no id).

    >>> as_id(7), as_id(2**63), as_id("7"), as_id(True)
    (7, None, None, None)
    """
    if isinstance(value, int) and not isinstance(value, bool) and -LARGEST_ID - 1 <= value <= LARGEST_ID:
        return value
    return None


class StorageError(RuntimeError):
    """The database cannot be used (unreachable, not migrated, ...); the message names the fix."""


# PostgreSQL SQLSTATEs of a database that failed, not of the statement: connection lost (class 08), out of
# resources (53: too many connections, disk full), shut down or starting (57P01-57P03), a system or I/O error (58),
# a lock_timeout run out (55P03), a deadlock or serialization failure (40P01, 40001), a read-only standby (25006:
# a failover not finished)
PG_UNAVAILABLE_CLASSES = ("08", "53", "58")
PG_UNAVAILABLE = {"57P01", "57P02", "57P03", "55P03", "40P01", "40001", "25006"}
# SQLite primary result codes of the same: busy or locked past busy_timeout (another connection holds the write
# lock), an I/O error, a full disk, a file that cannot be opened
SQLITE_UNAVAILABLE = {5, 6, 10, 13, 14}


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database failed (unreachable, restarting, failing over, locked, full) rather than the
    statement: the event that hit it is retried as an outage, like GitLab's (`bot.worker`), and a statement that
    is wrong (a syntax error, a missing table, IntegrityError, DataError) stays the event's own failure.

    >>> locked = sqlite3.OperationalError("database is locked"); locked.sqlite_errorcode = 5  # SQLITE_BUSY
    >>> typo = sqlite3.OperationalError('near "SELEC": syntax error'); typo.sqlite_errorcode = 1  # SQLITE_ERROR
    >>> [database_unavailable(sa.exc.OperationalError("SELECT", {}, e)) for e in (locked, typo, ValueError())]
    [True, False, False]
    """
    if isinstance(exc, (sa.exc.TimeoutError, ConnectionError, socket.gaierror)):
        return True  # no pooled connection free in time; asyncpg's connect refused, or the host not found (unwrapped)
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:  # SQLAlchemy saw the connection lost (terminated, server gone)
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str):
        return state in PG_UNAVAILABLE or state[:2] in PG_UNAVAILABLE_CLASSES
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return isinstance(exc.orig, sqlite3.Error) and isinstance(code, int) and code & 0xFF in SQLITE_UNAVAILABLE


# What a connection that could not be made says when the server is not there yet (down, restarting, its network
# or name not up): waiting may fix these, unlike a refused login, a missing database or an old schema
NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                  errno.ENETDOWN, errno.ECONNRESET, errno.ECONNABORTED}
PG_NOT_YET = {"57P01", "57P02", "57P03", "53300"}  # shutting down, crashed, starting up, too many connections


def database_unreachable(exc: BaseException, url: str | sa.engine.URL) -> bool:
    """Whether connecting failed because the database server is not there yet, not because it is misconfigured:
    a connection refused, reset or timed out, a host name not resolved, a Unix socket not there yet (`?host=` a
    folder, or no host and `PGHOST` one: PostgreSQL creates its socket file there when it starts, and removes it
    when it stops), a server
    starting up, shutting down or out of connections. A refused login, a missing database, an out-of-date schema
    or a read-only database is False: waiting would never fix those. So is every SQLite failure: there is no
    server to wait for, and a database file whose folder is missing is far more often a mistyped `DATABASE_URL`
    than a volume mounted late (a `serve` that spooled on, or a worker that waited, hid the typo behind a running
    process).

    >>> database_unreachable(ConnectionRefusedError(111, "Connect call failed"), "postgresql://u@h/db")
    True
    >>> database_unreachable(FileNotFoundError(2, "No such file or directory"), "postgresql://u@/db?host=/run/pg")
    True
    >>> database_unreachable(FileNotFoundError(2, "No such file or directory"), "postgresql://u@db.example/db")
    False
    >>> database_unreachable(StorageError("the database schema is at 0010"), "postgresql://u@h/db")
    False
    """
    parsed = url if isinstance(url, sa.engine.URL) else sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return False
    via_socket = _through_unix_socket(parsed)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (ConnectionError, TimeoutError, socket.gaierror, sa.exc.TimeoutError)):
            return True
        if isinstance(cause, OSError) and cause.errno in NETWORK_ERRNOS:
            return True
        if via_socket and isinstance(cause, FileNotFoundError):
            return True
        state = getattr(cause, "sqlstate", None)
        if isinstance(state, str) and (state in PG_NOT_YET or state.startswith("08")):
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__
    return False


def _through_unix_socket(url: sa.engine.URL) -> bool:
    """Whether a PostgreSQL URL reaches its server through a Unix socket, where a socket file missing says the
    server is not up, as a refused connection does over TCP: its host is a socket's folder
    (`?host=/run/postgresql`, or the host itself), or it names no host at all (`postgresql://u@/db`: then
    `PGHOST`, often a folder, or the default socket folders before localhost).

    >>> [_through_unix_socket(sa.engine.make_url(u)) for u in ("postgresql://u@/db?host=/run/pg",
    ...  "postgresql://u@/db", "postgresql://u@db.example/db", "postgresql://u@h/db?host=db2.example")]
    [True, True, False, False]
    """
    hosts = url.query.get("host", url.host or "")
    return any(not host or host.startswith("/") for host in ([hosts] if isinstance(hosts, str) else hosts))


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only kind of time the stores accept)."""
    return datetime.now(timezone.utc)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware, on SQLite as on PostgreSQL.

    SQLite keeps no time zone; without this, values would come back naive and compare wrongly.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time (bot.storage.utcnow())")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run while a worker writes (`SQLITE_WAL_LIMIT_BYTES` keeps its file small);
    busy_timeout waits instead of failing at once."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def sqlite_file(url: str | sa.engine.URL) -> Path | None:
    """The file a SQLite database URL names, resolved; None for another database, an in-memory one or a `file:`
    URI (SQLite reads those itself).

    >>> sqlite_file("sqlite+aiosqlite:///:memory:"), sqlite_file("postgresql+asyncpg://u@h/db")
    (None, None)
    """
    parsed = url if isinstance(url, sa.engine.URL) else sa.engine.make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _sqlite_directory_exists(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> None:
    """Fail fast, and without starting aiosqlite's thread, when the database file's folder is missing.

    (A failed aiosqlite connect leaves a thread that later reports "Event loop is closed".)
    """
    database = str(cargs[0]) if cargs else str(cparams.get("database", ""))
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    folder = Path(database).expanduser().resolve().parent
    if not folder.is_dir():
        raise sqlite3.OperationalError(
            f"unable to open database file {database}: the folder {folder} does not exist "
            "(create it or fix database.url / DATABASE_URL)"
        )


def create_engine(url: str, *, echo: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine for a SQLite (aiosqlite) or PostgreSQL (asyncpg) URL, with sensible pool settings;
    `StorageError` for a URL SQLAlchemy cannot read (a port that is not a number, say)."""
    url = normalise_database_url(url)
    if echo:
        _echo_to_stderr()
    try:
        return _engine(url, kwargs)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise StorageError(f"database URL {redact_url(url)} cannot be used: {exc}; see config.example.toml "
                           "[database] url") from None


def _echo_to_stderr() -> None:
    """`[database] echo`: the SQL statements on stderr. SQLAlchemy's own `echo=True` prints them on stdout,
    into the output of `reviewbot events list --json`."""
    logger = logging.getLogger("sqlalchemy.engine.Engine")
    logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:  # serve and worker log to stderr already
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


class _SQLiteFile:
    """Keeps an engine on the file it first opened: one deleted, moved away or replaced (a backup moved over it)
    while the bot runs is written no more.

    Why: an open SQLite connection keeps writing to the file it opened, even once nothing names it. `serve`
    answered 200 for every webhook after the file was deleted and ran the events, and a restart found none of
    them. Opening the file now at the path instead is no fix: the replaced file's `-wal` and `-shm` are still
    there under the same names, and a process using both files was killed by SIGBUS. So nothing is opened or
    used while the path names another file, or none (a file gone is not created empty); the error names the fix,
    and `serve` spools webhooks meanwhile. A file put back (moved back) is used again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.first: tuple[int, int] | None = None  # (device, inode) of the file first opened

    def identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_dev, stat.st_ino

    def problem(self) -> str | None:
        """Why the file at the path must not be used, or None."""
        now = self.identity()
        if self.first is None or now == self.first:
            return None
        if now is None:
            return (f"the database file {self.path} is gone (deleted or moved while the bot ran): put it back, and "
                    "the bot carries on; webhooks wait in serve's spool meanwhile")
        return (f"the database file {self.path} was replaced while the bot ran (a backup moved over it?): restart "
                "the bot to use the new file; webhooks wait in serve's spool meanwhile")

    def connected(self, _dbapi_connection: Any, _record: Any) -> None:
        if self.first is None:
            self.first = self.identity()

    def before_connect(self, _dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        if (problem := self.problem()) is not None:
            raise sqlite3.OperationalError(problem)
        if self.first is None:
            _create_private(self.path)

    def checkout(self, _dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if (problem := self.problem()) is not None:  # the connection is closed: its file is written no more
            raise sa.exc.OperationalError(None, None, sqlite3.OperationalError(problem))


def _create_private(path: Path) -> None:
    """Create the database file, empty, readable and writable by its owner only, unless it exists (a file the
    operator made keeps the mode they chose). It holds every stored webhook (internal notes, private projects'
    merge requests); SQLite would create it by the umask, 0644 on most systems, and its `-wal` and `-shm` take
    the file's mode. An empty file is an empty database to SQLite. A failure is left to SQLite to report."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass


def _engine(url: str, kwargs: dict[str, Any]) -> AsyncEngine:
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_async_engine(url, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        sa.event.listen(engine.sync_engine, "do_connect", _sqlite_directory_exists)
        path = sqlite_file(engine.url)
        if path is not None:
            watch = _SQLiteFile(path)
            sa.event.listen(engine.sync_engine, "connect", watch.connected)
            sa.event.listen(engine.sync_engine, "do_connect", watch.before_connect)
            sa.event.listen(engine.sync_engine, "checkout", watch.checkout)
        waits.watch(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    url, typed = _typed_pg_params(url)
    if typed:
        kwargs["connect_args"] = {**typed, **kwargs.get("connect_args", {})}
    engine = create_async_engine(url, **kwargs)
    waits.watch(engine)
    return engine


PG_NUMBERS = ("timeout", "command_timeout", "statement_cache_size", "max_cached_statement_lifetime",
              "max_cacheable_statement_size")


def _typed_pg_params(url: str) -> tuple[sa.engine.URL, dict[str, Any]]:
    """The URL without the query parameters asyncpg wants typed, and those as `connect()` arguments: a URL
    gives strings, and asyncpg added `?timeout=10` to a float (TypeError); `application_name` is one of its
    `server_settings`. A value that is no number is `ValueError`, a URL that cannot be used."""
    parsed = sa.engine.make_url(url)
    typed: dict[str, Any] = {}
    for name in PG_NUMBERS:
        if name in parsed.query:
            value = parsed.query[name]
            try:
                typed[name] = float(value) if "timeout" in name else int(value)
            except (TypeError, ValueError):
                raise ValueError(f"?{name}= must be a number") from None
    if "application_name" in parsed.query:
        typed["server_settings"] = {"application_name": str(parsed.query["application_name"])}
    return parsed.difference_update_query([*PG_NUMBERS, "application_name"]), typed


def is_sqlite(conn: AsyncConnection | AsyncEngine) -> bool:
    """True on SQLite, where a few statements are spelled differently."""
    return conn.dialect.name == "sqlite"


def insert_for(conn: AsyncConnection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_nothing` / `on_conflict_do_update`."""
    return sqlite.insert(table) if is_sqlite(conn) else postgresql.insert(table)


# High halves of the per-project advisory lock keys on PostgreSQL, one per kind of write they serialise.
SNAPSHOT_LOCK = 0x736E6170  # "snap"
FEEDBACK_LOCK = 0x66656564  # "feed"
MODEL_LOCK = 0x6D6F646C     # "modl"
PRUNE_LOCK = 0x70726E65     # "prne": finished merge requests' rows, one pruning at a time (project id 0)


async def lock_project(conn: AsyncConnection, kind: int, project_id: int, *, shared: bool = False) -> None:
    """Serialise one kind of work on one project across processes on PostgreSQL: an advisory lock held until
    the transaction ends (`shared`: many holders, none beside an exclusive one). SQLite serialises writers
    itself: nothing to do."""
    if not is_sqlite(conn):
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await conn.execute(sa.text(f"SELECT {fn}(:key)"), {"key": (kind << 32) | (project_id & 0xFFFFFFFF)})
