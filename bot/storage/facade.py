"""`Storage`: one object that owns the database engine and exposes every store.

Why a facade: the web app, the workers, the handlers and the CLI all need "the database"; they get
one `Storage` (built once from the settings) instead of engines and sessions, and tests swap the
URL to run the same code on SQLite and PostgreSQL.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import weakref
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import redact_url
from bot.deadline import settle
from bot.logfmt import kv
from bot.storage.comments import CommentStore
from bot.storage.db import StorageError, create_engine, sqlite_file, utcnow
from bot.storage.events import EventQueue
from bot.storage.history import HistoryStore
from bot.storage.migrate import SchemaOutOfDate, check_schema, schema_is_current
from bot.storage.models import MODELS_KEPT, ModelStore
from bot.storage.optouts import OptOutStore
from bot.storage.people import PeopleStore
from bot.storage.projects import ProjectStore
from bot.storage.retention import MergeRequestRetention
from bot.storage.signouts import SignOutStore
from bot.storage.snapshots import SnapshotStore
from bot.storage.suggestions import FeedbackStore, SuggestionStore

log = logging.getLogger("bot.storage")

__all__ = ["Storage"]

DROP_WAIT = 0.5  # seconds for the close to end once the connections are dropped


class Storage:
    """The database, with one attribute per store: `events`, `projects`, `history`, `comments`,
    `suggestions`, `feedback`, `optouts`, `people`, `models`, `snapshots`, `signouts` (the dashboard's), and
    `retention` (deleting finished merge requests' rows); `prune` applies every retention at once.

    >>> storage = Storage("sqlite+aiosqlite:///reviewbot.sqlite3")   # doctest: +SKIP
    >>> await storage.check_schema(); ...; await storage.close()      # doctest: +SKIP
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] = utcnow, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine: AsyncEngine = create_engine(url, **engine_kwargs)
        self.events = EventQueue(self.engine, clock)
        self.projects = ProjectStore(self.engine, clock)
        self.history = HistoryStore(self.engine)
        self.comments = CommentStore(self.engine, clock)
        self.suggestions = SuggestionStore(self.engine, clock)
        self.feedback = FeedbackStore(self.engine, clock)
        self.optouts = OptOutStore(self.engine, clock)
        self.people = PeopleStore(self.engine, clock)
        self.models = ModelStore(self.engine, clock)
        self.snapshots = SnapshotStore(self.engine, clock)
        self.retention = MergeRequestRetention(self.engine, clock)
        self.signouts = SignOutStore(self.engine, clock)
        self._drivers: weakref.WeakSet[Any] = weakref.WeakSet()  # the driver's connections, to drop at close
        sa.event.listen(self.engine.sync_engine, "connect", self._opened)

    def _opened(self, dbapi_connection: Any, _record: Any) -> None:
        with contextlib.suppress(TypeError):  # a driver connection that cannot be referenced weakly
            self._drivers.add(dbapi_connection.driver_connection)

    def __repr__(self) -> str:
        return f"Storage({redact_url(self.url)!r})"

    @classmethod
    async def open(cls, url: str, *, check: bool = True, writable: bool = False, **kwargs: Any) -> Storage:
        """Connect and (by default) refuse an out-of-date schema, naming `reviewbot migrate`; `writable` (`serve`,
        `worker`): also a database the bot could not write (`check_writable`)."""
        storage = cls(url, **kwargs)
        try:
            await storage.check_usable(check=check, writable=writable)
        except BaseException:
            await storage.close()
            raise
        return storage

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, url: str, **kwargs: Any) -> AsyncIterator[Storage]:
        """`open`, closed when the block ends: what a command that reads or writes and exits uses."""
        storage = await cls.open(url, **kwargs)
        try:
            yield storage
        finally:
            await storage.close()

    async def check_usable(self, *, check: bool = True, writable: bool = False) -> None:
        """`open`'s checks on a storage already made: it answers, (`check`) its schema is current, (`writable`)
        the bot may write it; `StorageError` naming the fix otherwise (`serve` runs them again and again while
        it waits for a database that could not be reached at its start)."""
        if check:
            self._refuse_a_missing_sqlite_file()
        await self.ping()
        if check:
            await self.check_schema()
        if writable:
            await self.check_writable()

    def _refuse_a_missing_sqlite_file(self) -> None:
        """A SQLite file that is not there holds no schema: say so before connecting, which would create it empty.
        A command run in another directory than the bot's (the default path is relative) left an empty file there
        and asked for a migration as if it were the bot's database. A missing folder is `ping`'s to name."""
        path = sqlite_file(self.engine.url)
        if path is not None and path.parent.is_dir() and not path.exists():
            raise SchemaOutOfDate(f"no SQLite database file at {path} (a relative path in DATABASE_URL or [database] "
                                  "url is read from the working directory): run `reviewbot migrate` to create it "
                                  "there, or run this where the bot's database is, or fix the path")

    @property
    def cancellable(self) -> bool:
        """Whether a call given up on may be cancelled mid-statement (`bot.deadline.within`): not on SQLite, where
        the cancelled statement's connection kept the write lock until a garbage collection."""
        return self.engine.dialect.name != "sqlite"

    async def ping(self) -> None:
        """Run a trivial query; raise `StorageError` naming the cause when the database is unusable."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (sa.exc.SQLAlchemyError, OSError, TypeError, ValueError) as exc:  # Type/Value: the URL's options
            if _no_such_database(exc):
                name = sa.engine.make_url(self.url).database
                raise StorageError(f"database {redact_url(self.url)} does not exist on its server: create it "
                                   f"(createdb {name}, or CREATE DATABASE {name}) and run `reviewbot migrate`") from exc
            if (refusal := _login_refused(exc)) is not None:
                raise StorageError(f"database {redact_url(self.url)} refused the login: {refusal}: check the user and "
                                   "password in DATABASE_URL (or [database] url), and that this role may connect to "
                                   "that database") from exc
            raise StorageError(f"database {redact_url(self.url)} is unreachable: {cause_of(exc)}"
                               f"{_connect_fix(self.url)}") from exc

    async def check_writable(self) -> None:
        """Raise `StorageError` when the bot could read but not write: a SQLite file (or its folder, where SQLite
        keeps its `-wal` and `-shm`) this user may not write, or a PostgreSQL session that is read-only (a
        replica, `default_transaction_read_only`). Such a database passed every check, and `serve` and `worker`
        ran without storing a webhook or running an event ("attempt to write a readonly database" every poll)."""
        if self.engine.dialect.name == "sqlite":
            path = sqlite_file(self.engine.url)
            if path is not None:
                for place, what in ((path, f"database file {path}"), (path.parent, f"folder {path.parent}")):
                    if not os.access(place, os.W_OK):
                        raise StorageError(f"the {what} is not writable by this user (uid {os.getuid()}): the bot "
                                           "writes the database, and SQLite its -wal and -shm files beside it; fix "
                                           "the owner or mode, or the read-only mount")
            return
        async with self.engine.connect() as conn:
            read_only = (await conn.execute(sa.text("SHOW transaction_read_only"))).scalar()
        if read_only == "on":
            raise StorageError(f"database {redact_url(self.url)} takes no writes (transaction_read_only is on: a "
                               "read-only replica, or default_transaction_read_only set): point DATABASE_URL at the "
                               "primary, or add target_session_attrs=read-write to it")

    async def check_schema(self) -> None:
        """Raise `SchemaOutOfDate` unless the database is migrated to this code's schema."""
        await check_schema(self.engine)

    async def schema_is_current(self) -> bool:
        """True when `reviewbot migrate` has nothing to do."""
        return await schema_is_current(self.engine)

    async def prune(self, *, done: timedelta, dead: timedelta | None, finished_mrs: timedelta | None,
                    models_kept: int = MODELS_KEPT) -> dict[str, int]:
        """Delete what is past its retention, table by table (each in a transaction of its own); returns the
        rows deleted of each kind. `done` / `dead`: events finished that long ago (at least a day: dedupe keys);
        `finished_mrs`: the rows of merge requests finished that long ago (at least `MIN_MR_RETENTION`);
        None keeps them. Model versions: all but the active one and the `models_kept` newest of each project
        (saving a model prunes its own project; this catches up on the others)."""
        counts = {"done_events": await self.events.prune(done)}
        if dead is not None:
            counts["dead_events"] = await self.events.prune(dead, status="dead")
        counts["models"] = await self.models.prune(models_kept)
        if finished_mrs is not None:
            counts.update(await self.retention.prune(finished_mrs))
        return counts

    async def close(self, timeout: float = 5.0) -> None:
        """Close every pooled connection (call once, at shutdown). A database that does not answer within
        `timeout` s has them dropped instead (a shutdown must not wait for it; the server ends their sessions
        when it sees the connections gone): cancelling the close instead logged a traceback per connection.
        On SQLite the calls given up on, left to finish, are waited for first, within the same `timeout`
        (`bot.deadline.settle`)."""
        if not self.cancellable:
            loop = asyncio.get_running_loop()
            until = loop.time() + timeout
            await settle(timeout)
            timeout = max(0.0, until - loop.time())
        disposing = asyncio.ensure_future(self.engine.dispose())
        await asyncio.wait({disposing}, timeout=timeout)
        if disposing.done():
            disposing.result()
            return
        for driver in list(self._drivers):
            if callable(getattr(driver, "terminate", None)):  # asyncpg's: also ends a close that is under way
                driver.terminate()
        await asyncio.wait({disposing}, timeout=DROP_WAIT)  # the close, its sockets gone, ends at once
        if not disposing.done():
            disposing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await disposing
        log.warning(kv("database connections dropped, not closed: the database does not answer",
                       waited=round(timeout, 1)))


def _no_such_database(exc: BaseException) -> bool:
    """PostgreSQL answered, and said the database is not there (asyncpg's InvalidCatalogNameError, 3D000)."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    return getattr(orig, "sqlstate", None) == "3D000" or type(orig).__name__ == "InvalidCatalogNameError"


def _connect_fix(url: str) -> str:
    """What to check when a PostgreSQL server cannot be reached or refuses the bot (a SQLite file's causes name
    their own fix: a missing folder, a read-only file).

    >>> _connect_fix("postgresql+asyncpg://u@db/x")[:40], _connect_fix("sqlite+aiosqlite:///x.sqlite3")
    (': check the host, port, user and passwor', '')
    """
    if sa.engine.make_url(url).get_backend_name() != "postgresql":
        return ""
    return (": check the host, port, user and password in DATABASE_URL (or [database] url) and that PostgreSQL "
            "runs there")


def _login_refused(exc: BaseException) -> str | None:
    """The server's words when it answered and refused the login (SQLSTATE class 28: no such role, a wrong
    password, no pg_hba.conf entry), else None: "is unreachable" sent people to check the host and the network
    when PostgreSQL had answered.

    >>> class Refused(Exception): sqlstate = "28P01"
    >>> _login_refused(sa.exc.DBAPIError("connect", {}, Refused('password authentication failed for user "u"')))
    'password authentication failed for user "u"'
    """
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return str(orig).splitlines()[0] if isinstance(state, str) and state.startswith("28") else None


def cause_of(exc: BaseException) -> str:
    """The driver's error under SQLAlchemy's wrapping, in one line (without SQLAlchemy's "Background on this
    error" link)."""
    orig = getattr(exc, "orig", None) or exc.__cause__ or exc
    return f"{type(orig).__name__}: {orig}".splitlines()[0]
