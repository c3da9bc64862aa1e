"""`serve` started while its database could not be reached: it listens and spools, and this waits for the database.

Why: `serve` used to exit 1 when PostgreSQL was not there at its start, relying on a
supervisor to restart it, and meanwhile every GitLab delivery failed: GitLab does not re-send a failed delivery by
itself, and disables a hook after a few failures in a row. So `serve` listens anyway; every delivery goes to the
spool (`bot.spool`, answered 202), `/healthz` answers 503, and `DatabaseWait.run` tries the connection again with
backoff. Once the database answers it runs the checks `serve` runs at start (schema current, writable) and sets
`ready`: the spool drains into the queue, then the handlers and the in-process worker start.

Why a database that answers but fails those checks (a refused login, a missing database, a schema `reviewbot
migrate` has not brought up to date, a read-only replica) keeps `serve` spooling rather than stopping it: by then
the process has accepted deliveries into its spool. Exiting would refuse every later delivery (each counting
towards GitLab disabling the hook) and, where the disk does not outlive the process (a Heroku dyno), lose the
spooled ones; a supervisor restarting it would only find the same database. The fix is the operator's, made while
`serve` runs: the error is logged once with the fix, `/healthz` says the database cannot be used, and the checks
run again every `RETRY_MAX` seconds, so the bot carries on by itself once it is fixed. A database misconfigured at
start is still refused at start (exit 1): nothing has been accepted then, and the exit shows the message at once.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from aiohttp import web

from bot.deadline import within
from bot.logfmt import kv
from bot.storage import Storage, StorageError
from bot.storage.db import database_unreachable
from bot.storage.facade import cause_of

__all__ = ["DatabaseWait", "WAIT_KEY", "pending", "START_TIMEOUT", "RETRY_FIRST", "RETRY_MAX", "explain"]

log = logging.getLogger("bot.database")

START_TIMEOUT = 10.0  # seconds serve's first connection may take before it listens without the database
ATTEMPT_TIMEOUT = 30.0  # seconds each later try may take (asyncpg's own connect timeout is 60 s)
RETRY_FIRST = 1.0  # seconds before the first try again, doubled after each failure ...
RETRY_MAX = 30.0  # ... up to this


def explain(exc: BaseException) -> str:
    """What failed, in one line without a password (a `StorageError` names the redacted URL and the fix)."""
    return str(exc).splitlines()[0][:500] if isinstance(exc, StorageError) else cause_of(exc)[:300]


class DatabaseWait:
    """Tries `prepare` (the start-up checks) until it passes, then sets `ready`; `unusable` says why the last try
    failed when the database answered (None while it does not answer)."""

    def __init__(self, storage: Storage, prepare: Callable[[], Awaitable[None]]) -> None:
        self.storage, self.prepare = storage, prepare
        self.ready = asyncio.Event()
        self.unusable: str | None = None

    @property
    def answers(self) -> int:
        """1 when the database answered the last try (it failed the checks), 0 while it does not answer: the
        `database_up` gauge."""
        return int(self.unusable is not None)

    def state(self) -> str:
        """For `/healthz` (no URL, no cause: those are in the log)."""
        if self.unusable is not None:
            return "the database answers but fails serve's start-up checks (the log names the fix)"
        return "the database has not been reachable since serve started (retrying)"

    def notice(self) -> str:
        """For the dashboard's pages, which show nothing meanwhile: why, and that no delivery is lost."""
        return (f"The bot is waiting for its database: {self.state()}. Webhook deliveries are kept in serve's spool "
                "meanwhile, and queued once the database can be used; this page shows then.")

    async def run(self) -> None:
        """Until the checks pass (or the task is cancelled at shutdown)."""
        delay, said = RETRY_FIRST, "unreachable"
        while not self.ready.is_set():
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            try:
                await within(self.prepare(), ATTEMPT_TIMEOUT, cancel=self.storage.cancellable)
            except Exception as exc:  # noqa: BLE001 - unreachable or unusable, it is logged and tried again
                said = self._failed(exc, said)
                continue
            self.unusable = None
            log.info(kv("database reachable and checked: moving the spool into the queue, starting the handlers"))
            self.ready.set()

    def _failed(self, exc: Exception, said: str) -> str:
        """Log a failure when it differs from the last one logged (not at every try); what was logged."""
        if database_unreachable(exc, self.storage.url):
            self.unusable = None
            if said != "unreachable":
                log.warning(kv("database unreachable again: deliveries are still spooled", cause=explain(exc)))
            return "unreachable"
        cause = explain(exc)
        self.unusable = cause
        if said != cause:
            log.error(kv("database answers but cannot be used: deliveries stay in the spool until this is fixed",
                         cause=cause, retry_seconds=RETRY_MAX))
        return cause


# set on the `serve` app started without its database (`bot.web.make_app`): every delivery is spooled, and nothing
# reads the database, until its `ready` is set
WAIT_KEY = web.AppKey("database_wait", DatabaseWait)


def pending(app: web.Application) -> DatabaseWait | None:
    """The wait of a `serve` started without its database (`WAIT_KEY`), while it is not over; else None. Every
    handler that reads the database asks this first (the webhook, /healthz, /metrics, the dashboard): until the
    checks pass the database may not answer at all, or hold an older schema."""
    waiting = app.get(WAIT_KEY)
    return waiting if waiting is not None and not waiting.ready.is_set() else None
