"""How long one event's run has been waiting for the database to answer a statement.

Why: a database that stops answering without an error (a table locked by another session, PostgreSQL's default
`lock_timeout` being none; a server that hangs) makes the run end at the worker's `dispatch_timeout`, as a handler
slow of its own does, and the event paid an attempt for it: a lock held for an hour dead-lettered every event it
caught. The worker sets one `DatabaseWait` per event (`watching`, as `GitLabStall` for GitLab's calls); the engine's
statement hooks (`watch`, set on every engine `create_engine` makes) note each statement run in that context when
it starts and when it ends. A statement cut off by the timeout never ends: `waited` then says how long it had
waited, for the worker to tell the database's hang from the handler's slowness.
"""
from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["DatabaseWait", "watch"]

_WAIT: ContextVar["DatabaseWait | None"] = ContextVar("database_wait", default=None)


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


def watch(engine: AsyncEngine) -> None:
    """Note the statements `engine` runs in a `DatabaseWait`'s context (one context-variable read otherwise)."""
    sync = engine.sync_engine
    sa.event.listen(sync, "before_cursor_execute", _sent)
    sa.event.listen(sync, "after_cursor_execute", _answered)
    sa.event.listen(sync, "handle_error", _refused)
