"""What every handler receives: the long-lived services, and the facts of the event being handled.

Why a context object: gidgetlab's `Router.dispatch(event, *args)` passes the same extra arguments to every
callback; one `EventContext` keeps the handler signatures uniform (`async def on_x(event, ctx)`) and tests
can build one around the simulator without patching anything.

Errors a handler raises reach the worker: `RetryLater` and `GitLabFailure` carry `retry_after` (seconds)
and `permanent` (dead-letter at once), which `bot.worker.retry_delay` and the worker read; `AwaitingHistory`
carries `park` and `wakes`: no failure, the event goes back to the queue until its project's history is in.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from bot.backfill import Backfills
from bot.config import ProjectSettings, Settings
from bot.engine import Engine
from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import User
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.storage.events import HISTORY_MARK

__all__ = ["Services", "BotUser", "BotIdentity", "EventContext", "RetryLater", "GitLabFailure", "PermanentFailure",
           "AwaitingHistory", "PERMANENT_STATUSES"]

log = logging.getLogger("bot.handlers")
PERMANENT_STATUSES = frozenset({400, 404, 405, 410, 422})  # retrying the same request cannot help


class RetryLater(Exception):
    """A step cannot finish now (e.g. another worker is posting the MR's comment); retry in `retry_after` s."""

    permanent = False

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """An event no retry can help (e.g. the project's settings overrides are invalid); dead-lettered at once."""

    permanent = True


class AwaitingHistory(Exception):
    """A new project's history is being imported: the worker parks the event (not a failure, not an attempt)
    for at most `park` seconds, holding no worker slot, and wakes it as soon as the import (`wakes`) ends.

    The reason is kept on the event (`last_error`), so an event is parked once: when it comes back, whichever
    process takes it, it goes on with the history there is (`waited`), as the bounded wait promises.
    """

    MARK = HISTORY_MARK

    def __init__(self, project_id: int, seconds: float, wakes: asyncio.Future[Any] | None) -> None:
        super().__init__(f"{self.MARK} (project {project_id}, {seconds:.0f} s at most)")
        self.park = seconds
        self.wakes = wakes

    @classmethod
    def waited(cls, row: EventRow) -> bool:
        """Whether the event was parked for its project's history already."""
        return (row.last_error or "").startswith(cls.MARK)


class GitLabFailure(Exception):
    """A GitLab call failed after the client's own retries; the worker retries the event or dead-letters it.

    `retry_after` is set for a rate limit (429); `permanent` for answers no retry can change (400, 404, 422);
    `outage` when GitLab could not be reached, was overloaded or rate-limited us, refused the bot's token
    (401: expired or revoked, which GitLab tokens are on a schedule) or its scopes (403 insufficient_scope: a
    read_api token, which cannot comment): no fault of the event, so the worker retries it, `backoff_max` apart
    at the longest, for `[worker] outage_hours` whatever its attempts, and a new token finds it still queued.
    """

    def __init__(self, error: GitLabError, *, rate_limit_wait: float) -> None:
        super().__init__(str(error))
        self.status = error.status
        self.permanent = error.status in PERMANENT_STATUSES
        self.outage = error.status is None or error.status in (401, 429) or error.status >= 500 or error.no_scope
        self.retry_after: float | None = rate_limit_wait if error.status == 429 else None


@dataclass(frozen=True)
class BotUser:
    """The bot's own GitLab account: its notes, awards and reviewer changes are ignored."""

    id: int | None
    username: str

    def is_me(self, user: Mapping[str, Any] | User | None) -> bool:
        """Whether a webhook `user` object, or a REST `User`, is the bot: by id when both are known, else by
        username. Why the id decides: a configured `bot_username` may differ from the token's user (a project
        access token's is `project_7_bot_…`), and the person who has that name would be taken for the bot: their
        commands ignored, their note starting with the bot's marker adopted as its comment, or taken for its
        reply."""
        if not user:
            return False
        data = user if isinstance(user, Mapping) else {"id": user.id, "username": user.username}
        if self.id is not None and data.get("id") is not None:
            return data.get("id") == self.id
        return str(data.get("username") or "").casefold() == self.username.casefold()


class BotIdentity:
    """Who the bot is, asked from GitLab (GET /user) once and cached; a failure is retried with the event."""

    def __init__(self, client: GitLabClient, configured: str | None = None) -> None:
        self.client = client
        self.configured = configured
        self._user: BotUser | None = None

    async def get(self) -> BotUser:
        if self._user is None:
            me = await self.client.current_user()
            self._user = BotUser(me.id, self.configured or me.username)
        return self._user


@dataclass(frozen=True)
class Services:
    """The long-lived pieces, built once by `make_dispatch` and shared by every event."""

    settings: Settings
    storage: Storage
    metrics: Metrics
    client: GitLabClient
    engine: Engine
    backfills: Backfills
    identity: BotIdentity
    logged: set[str] = field(default_factory=set)  # the notices logged once per process (`EventContext.log_once`)


@dataclass(frozen=True)
class EventContext:
    """One event's context: the services, which event it is, the project and its settings, the bot user."""

    services: Services
    event_id: int
    received_at: datetime
    project_id: int
    project: ProjectSettings
    bot: BotUser

    @property
    def client(self) -> GitLabClient:
        return self.services.client

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def engine(self) -> Engine:
        return self.services.engine

    @property
    def metrics(self) -> Metrics:
        return self.services.metrics

    def log_once(self, key: str, message: str) -> None:
        """A warning about how GitLab is set up, logged the first time `key` comes up in this process: each event
        would repeat it."""
        if key not in self.services.logged:
            self.services.logged.add(key)
            log.warning(message)
