"""How long one event's run has been waiting for the database to answer a statement, a connect or a COMMIT.

Why: a database that stops answering without an error (a table locked by another session, PostgreSQL's default
`lock_timeout` being none; a server that hangs) makes the run end at the worker's `dispatch_timeout`, as a handler
slow of its own does, and the event paid an attempt for it: a lock held for an hour dead-lettered every event it
caught. The worker sets one `DatabaseWait` per event (`watching`, as `GitLabStall` for GitLab's calls); the engine's
statement hooks (`watch`, set on every engine `create_engine` makes) note each statement run in that context when
it starts and when it ends. A statement cut off by the timeout never ends: `waited` then says how long it had
waited, for the worker to tell the database's hang from the handler's slowness.

A server that hangs hangs the rest too: opening a connection, the pool's ping of a pooled one before handing it
out, a COMMIT (a synchronous standby gone, a deferred constraint waiting for another transaction) and a
ROLLBACK. None of these is a statement, and SQLAlchemy has events before a
connect and a commit but none once they are answered, nor any around the ping; so `watch` wraps the engine's own
dialect's `connect`, `do_ping`, `do_commit` and `do_rollback`, which the engine and its pool call for each.
"""
from __future__ import annotations

import contextlib
import functools
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DatabaseWait", "watch"]

_WAIT: ContextVar["DatabaseWait | None"] = ContextVar("database_wait", default=None)
T = TypeVar("T")
# what the engine and its pool ask the dialect for that the database answers, besides statements
DIALECT_CALLS = ("connect", "do_ping", "do_commit", "do_rollback")


class DatabaseWait:
    """The statements of one event's run that the database has not answered yet, with when each was sent."""

    def __init__(self) -> None:
        self._sent: dict[Any, float] = {}  # execution context -> monotonic time it was sent

    @contextlib.contextmanager
    def watching(self) -> Iterator[DatabaseWait]:
        """Statements run in this context, and in tasks and threads started from it, are noted here."""
        token = _WAIT.set(self)
        try:
            yield self
        finally:
            _WAIT.reset(token)

    def waited(self) -> float:
        """Seconds the oldest statement still unanswered has waited; 0.0 when every one was answered."""
        return time.monotonic() - min(self._sent.values()) if self._sent else 0.0


def _sent(_conn: Any, _cursor: Any, _statement: Any, _parameters: Any, context: Any, _many: Any) -> None:
    wait = _WAIT.get()
    if wait is not None:
        wait._sent[context] = time.monotonic()


def _answered(_conn: Any, _cursor: Any, _statement: Any, _parameters: Any, context: Any, _many: Any) -> None:
    wait = _WAIT.get()
    if wait is not None:
        wait._sent.pop(context, None)


def _refused(exc: sa.engine.ExceptionContext) -> None:
    """An error is an answer; a cancellation (the run's timeout) is not: that statement is still waiting."""
    wait = _WAIT.get()
    if wait is not None and isinstance(exc.original_exception, Exception):
        wait._sent.pop(exc.execution_context, None)


def _watched(call: Callable[..., T]) -> Callable[..., T]:
    """`call` noted in the running `DatabaseWait` as a statement is: an error is an answer, a cancellation is not."""
    @functools.wraps(call)
    def watched(*args: Any, **kwargs: Any) -> T:
        wait = _WAIT.get()
        if wait is None:
            return call(*args, **kwargs)
        key = object()
        wait._sent[key] = time.monotonic()
        try:
            result = call(*args, **kwargs)
        except Exception:
            wait._sent.pop(key, None)
            raise
        wait._sent.pop(key, None)
        return result

    return watched


def watch(engine: AsyncEngine) -> None:
    """Note what `engine` waits for the database to answer in a `DatabaseWait`'s context: its statements, and its
    connects, pings, commits and rollbacks (one context-variable read each otherwise)."""
    sync = engine.sync_engine
    sa.event.listen(sync, "before_cursor_execute", _sent)
    sa.event.listen(sync, "after_cursor_execute", _answered)
    sa.event.listen(sync, "handle_error", _refused)
    dialect = sync.dialect  # the engine's own instance: its pool calls this one too
    for name in DIALECT_CALLS:
        setattr(dialect, name, _watched(getattr(dialect, name)))
