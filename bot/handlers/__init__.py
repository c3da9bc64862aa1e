"""The bot's handlers: one gidgetlab `Router` per GitLab event kind, composed once here.

`make_dispatch(settings, storage, metrics)` is what `reviewbot serve` / `reviewbot worker` load (see
`bot.worker.DispatchFactory`): an async context manager, entered inside the event loop, that owns the one
aiohttp `ClientSession`, the `GitLabClient` (its failed calls counted in `metrics.gitlab_api_errors`), the
per-project recommenders and the background backfills, and yields `dispatch(event_row)`.

`dispatch` asks GitLab for the event's project first and skips the events of projects the bot cannot act on
(archived, or not visible to its token: see `bot.handlers.projects`), records the project as seen, resolves its
settings (config file, then database overrides), asks GitLab for the project's members anew when the payload
names a user otherwise than the bot knew them (`bot.people`), makes sure its history is imported (parking the
first events of a new project in the queue for a bounded time, holding no worker: see `bot.backfill.Backfills`
and `AwaitingHistory`) and routes the event.
GitLab failures leave as `GitLabFailure` (with `retry_after` for rate limits, `permanent` for 404-like answers)
so the worker retries or dead-letters the event.

    async with make_dispatch(settings, storage, metrics) as dispatch:
        await dispatch(row)
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit

import aiohttp
from gidgetlab.routing import Router

from bot import shutdown
from bot.backfill import DONE_RECHECK, Backfills
from bot.config import ConfigError, Settings
from bot.engine import Engine
from bot.gitlab.client import GitLabClient, RetryPolicy
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import Project
from bot.handlers import emoji, merge_requests, notes
from bot.handlers.context import (
    AwaitingHistory, BotIdentity, EventContext, GitLabFailure, PermanentFailure, Services,
)
from bot.handlers.projects import PROJECT_TTL, gitlab_project, skip_reason
from bot.handlers.shape import shape_problem
from bot.logfmt import kv
from bot.lookups import Lookups
from bot.metrics import Metrics
from bot.people import payload_users
from bot.storage import EventRow, ProjectRow, Storage
from bot.worker import Dispatch

__all__ = ["make_dispatch", "dispatch_event", "router", "BACKFILL_WAIT", "BACKFILL_IMPORTS"]

log = logging.getLogger("bot.handlers")

router = Router(merge_requests.router, notes.router, emoji.router)
BACKFILL_WAIT = 20.0  # seconds the first events of a new project wait (parked) for its history import
BACKFILL_IMPORTS = 2  # history imports running at a time in one process; more new projects wait their turn
SNAPSHOT_TIMEOUT = 10.0  # seconds the final snapshots may take at exit, outside a shutdown's grace period


async def _project_row(services: Services, project_id: int, path: str | None) -> ProjectRow | None:
    """Record the project as seen and read its row, at most every `PROJECT_TTL` seconds per project."""
    async def fetch() -> ProjectRow | None:
        former = await services.storage.projects.seen(project_id, path)
        if former is not None and (warning := services.settings.moved_warning(project_id, former, path)):
            log.warning(kv(warning, project_id=project_id))
        return await services.storage.projects.get(project_id)
    return await services.engine.recent.get(("project", project_id, path), fetch, ttl=PROJECT_TTL)


async def _verified_path(services: Services, project_id: int, claimed: str | None, project: Project) -> str | None:
    """The project's path as GitLab knows it, when a webhook secret is scoped (else the payload's).

    A secret scoped to a group or a project path is checked on receipt against the path the payload
    claims; the project id is only the payload's word. GitLab's answer for that id must name the same
    path, or a secret for one group could make the bot act on any project its token reaches. A project
    renamed or moved since (a late event, or a cached answer from before) is no such case when every secret
    that may have signed the delivery covers its path now too: a rename within the secret's group goes on.
    """
    secrets = services.settings.webhook_secrets
    if not any(s.project is not None or s.group is not None for s in secrets):
        return claimed
    if claimed is None or claimed.casefold() == project.path_with_namespace.casefold():
        return project.path_with_namespace
    fresh = await gitlab_project(services, project_id, fresh=True)  # perhaps renamed since it was asked: ask again
    real = (fresh or project).path_with_namespace
    signers = [s for s in secrets if s.covers(project_id, claimed)]
    if claimed.casefold() != real.casefold() and not (signers and all(s.covers(project_id, real) for s in signers)):
        raise PermanentFailure(f"the payload names project {claimed!r} but GitLab's project {project_id} is "
                               f"{real!r}, which a webhook secret that may have signed it does not cover: refused "
                               "(a secret scoped to one project or group must not act on another)")
    return real


def _claimed_path(row: EventRow) -> str | None:
    """The project path the payload names (the payload's word only: see `_verified_path`)."""
    project = row.body.get("project") if isinstance(row.body.get("project"), dict) else {}
    return project.get("path_with_namespace") if isinstance(project.get("path_with_namespace"), str) else None


async def _actionable(services: Services, row: EventRow, *, fresh: bool = False) -> Project | None:
    """GitLab's project of the event (`fresh`: asked again), or None when the bot does not act on it (archived,
    or GitLab answers 404): the event is then noted as skipped and done, with no import and no further call."""
    assert row.project_id is not None
    path = _claimed_path(row)
    project = await gitlab_project(services, row.project_id, path, fresh=fresh)
    if (reason := skip_reason(row.project_id, path, project)) is None:
        return project
    await services.storage.events.mark_skipped(row.id, reason)
    log.info(kv("event skipped", event_id=row.id, kind=row.kind, project_id=row.project_id, reason=reason))
    return None


async def _context(services: Services, row: EventRow, project: Project) -> EventContext:
    """The event's project (recorded as seen), its effective settings and the bot user."""
    assert row.project_id is not None
    path = await _verified_path(services, row.project_id, _claimed_path(row), project)
    stored = await _project_row(services, row.project_id, path)
    try:
        settings = services.settings.project_settings(
            row.project_id, path or (stored.path if stored else None), overrides=stored.settings if stored else None)
    except ConfigError as exc:
        raise PermanentFailure(f"{exc}; fix the project's overrides, then `reviewbot events requeue`") from None
    bot = await services.identity.get()
    return EventContext(services, row.id, row.received_at, row.project_id, settings, bot)


async def dispatch_event(services: Services, row: EventRow) -> None:
    """Handle one stored event: context, history import, then every handler registered for it."""
    if row.project_id is None:
        log.info(kv("event without a project ignored", event_id=row.id, kind=row.kind))
        return
    if (twin := await services.storage.events.twin_done(row)) is not None:
        await services.storage.events.mark_copy(row.id, twin)
        log.info(kv("event skipped: another hook sent the same event, already handled", event_id=row.id,
                    kind=row.kind, handled_as=twin))
        return
    if (problem := shape_problem(row.kind, row.body)) is not None:
        raise PermanentFailure(f"{row.kind} payload not as GitLab sends it: {problem}")
    try:
        if (project := await _actionable(services, row)) is None:
            return
        ctx = await _context(services, row, project)
        _notice_renames(services, row)
        await _history(services, row, ctx)
        labels = services.storage.feedback.writes(row.project_id)
        await router.dispatch(row.as_event(), ctx)
    except GitLabError as exc:  # a rate limit waits as long as GitLab's last answer asked (else the longest)
        if await _gone_since(services, row, exc):
            return
        asked = exc.retry_after if exc.retry_after is not None else services.client.retry.max_retry_after
        raise GitLabFailure(exc, rate_limit_wait=max(services.settings.worker.backoff, asked)) from exc
    if services.storage.feedback.writes(row.project_id) != labels:
        await learn_labels(ctx)


async def _gone_since(services: Services, row: EventRow, exc: GitLabError) -> bool:
    """Whether a 404 (or a write's 403) met inside the handlers came from the project being deleted or archived
    since GitLab's answer for it was kept (`PROJECT_TTL`): the event is then skipped as on arrival, not
    dead-lettered with a traceback or retried for minutes. Why ask: the events queued before a deletion or an
    archiving are handled within those seconds. A 404 for a project that is there may be for its merge request,
    deleted since (`_mr_deleted`); any other 404 or 403 stays the handlers' failure."""
    if exc.status not in (403, 404) or exc.no_route or exc.no_scope:
        return False
    try:
        if await _actionable(services, row, fresh=True) is None:
            return True
        return exc.not_found and await _mr_deleted(services, row)
    except GitLabError:  # GitLab cannot say now: the event fails with the handlers' error, and is retried
        return False


async def _mr_deleted(services: Services, row: EventRow) -> bool:
    """Whether the event's merge request is gone from GitLab (deleted: GitLab sends no hook for that), which the
    event is then skipped for. Why: the events queued before the deletion (a `/reviewers` comment, an update)
    meet its 404 inside the handlers, and no retry or requeue can make them succeed."""
    if row.mr_iid is None or row.project_id is None:
        return False
    try:
        await services.client.get_mr(row.project_id, row.mr_iid)
        return False
    except GitLabError as exc:
        if not exc.not_found or exc.no_route:
            raise
    reason = f"skipped: merge request !{row.mr_iid} is not there any more (GitLab answers 404: it was deleted)"
    await services.storage.events.mark_skipped(row.id, reason)
    log.info(kv("event skipped", event_id=row.id, kind=row.kind, project_id=row.project_id, reason=reason))
    return True


def _notice_renames(services: Services, row: EventRow) -> None:
    """A user the payload names otherwise than this process knew them may have renamed themselves: the
    project's members list it keeps for a minute is read again, and the rename is learned from that answer
    (`bot.people`). The payload's ids and usernames are a hint, never recorded: the names a user id had
    serve every project, and a webhook secret scoped to one group would let whoever holds it plant any user's
    former name, handing someone's history to a member of a project outside that group."""
    assert row.project_id is not None
    if services.storage.people.renamed(payload_users(row.body)):
        Lookups(services.client, services.engine.recent).forget_members(row.project_id)


async def _history(services: Services, row: EventRow, ctx: EventContext) -> None:
    """Start the project's history import unless it is in, and park the event while the import may still end
    within its bounded wait (once: an event back from its wait goes on with the history there is)."""
    assert row.project_id is not None
    wait = await services.backfills.ensure(row.project_id, bots=ctx.project.bots)
    if wait > 0 and not AwaitingHistory.waited(row):
        raise AwaitingHistory(row.project_id, wait, services.backfills.task(row.project_id))


async def learn_labels(ctx: EventContext) -> None:
    """The feedback rows the handlers just stored reach the project's recommender (see `Engine.learn_new`).

    A failure here is only logged: the rows are stored, and the recommender reads them at its next use.
    """
    try:
        await ctx.engine.learn_new(ctx.project_id, ctx.project)
    except Exception as exc:  # noqa: BLE001 - learning later is fine; failing the handled event is not
        log.warning(kv("feedback not learned yet", project_id=ctx.project_id, error=f"{type(exc).__name__}: {exc}"))


def _counter(metrics: Metrics) -> Callable[[int], None]:
    """`GitLabClient(on_error=...)`: count each failed GitLab call by its HTTP status (0: no answer)."""
    def count(status: int) -> None:
        metrics.gitlab_api_errors.labels(status=str(status)).inc()
    return count


async def check_gitlab(session: aiohttp.ClientSession, settings: Settings) -> None:
    """Stop start-up, naming the fix, when GitLab refuses the token, the token lacks the api scope, or
    GITLAB_URL has no GitLab API.

    A GitLab that cannot be reached or is busy (5xx, 429) is only logged, naming the fix: an outage must
    not keep the webhook intake down (a restart during one would lose every delivery); events wait in the
    queue and are retried (`[worker] outage_hours`).
    """
    url = settings.gitlab.url
    if in_clear_text(url):
        log.warning(kv("GITLAB_URL is http://: GITLAB_TOKEN crosses the network in clear text, readable by anyone "
                       "on the way, and it can do whatever the bot user can (api scope); use GitLab's https:// "
                       "address unless the connection never leaves a network you trust", url=url))
    probe = GitLabClient(session, url=url, token=settings.gitlab.token.get_secret_value(),
                         retry=RetryPolicy(max_attempts=2, base_delay=0.5, timeout=10.0))
    try:
        await probe.current_user()
    except GitLabError as exc:
        _refuse_or_log(exc, settings.gitlab.address)  # gitlab.com refusing a token: "the default" says why
        return
    await _check_scopes(probe, settings.gitlab.address)


def in_clear_text(url: str) -> bool:
    """Whether calls to `url` cross a network unencrypted: http:// to a host other than this machine's loopback.

    >>> [in_clear_text(u) for u in ("http://gitlab.internal", "https://gitlab.internal", "http://[::1]:80")]
    [True, False, False]
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:  # a host name
        return True


def _refuse_or_log(exc: GitLabError, url: str) -> None:
    """GET /user failed: a refused token or no GitLab API raise `ConfigError`; an outage is logged. `url` is
    GitLab's address as said (`GitLabSettings.address`)."""
    if exc.status is None:
        log.error(kv(f"cannot reach GitLab at {url}: check GITLAB_URL (the instance's base URL, without "
                     "/api/v4) and that this machine can reach it; webhooks are stored and their events "
                     "retried meanwhile", cause=exc.message))
        return
    if 300 <= exc.status < 400:
        raise ConfigError(f"GitLab at {url} is not there: it was {exc.message}") from None
    if exc.status in (401, 403):
        raise ConfigError(f"GitLab at {url} refused GITLAB_TOKEN (HTTP {exc.status}): create a token with "
                          "the api scope and export GITLAB_TOKEN=...") from None
    if exc.status in (200, 404):  # no GitLab API there: GET /api/v4/user always exists
        raise ConfigError(f"no GitLab API at {url} ({exc.message}): GITLAB_URL must be the instance's base "
                          "URL, e.g. https://gitlab.example.com, without /api/v4") from None
    log.warning(kv("GitLab answered the start-up check with an error; events will be retried",
                   status=exc.status))


async def _check_scopes(probe: GitLabClient, url: str) -> None:
    """Refuse a token without the api scope: GET /user works with read_api, and then every comment and review
    request is refused (403 insufficient_scope). Where GitLab cannot say (before 15.5, an OAuth token, an
    error), start: the token passed GET /user."""
    try:
        scopes = await probe.token_scopes()
    except GitLabError as exc:
        log.warning(kv("could not read GITLAB_TOKEN's scopes; starting without checking them", status=exc.status))
        return
    if scopes is None:
        log.info(kv("GitLab does not tell this token's scopes (before GitLab 15.5, or not an access token); "
                    "make sure it has the api scope"))
    elif "api" not in scopes:
        raise ConfigError(f"GITLAB_TOKEN lacks the api scope (it has: {', '.join(scopes) or 'none'}): GitLab at "
                          f"{url} would refuse every comment and review request (403 insufficient_scope); "
                          "create a token with the api scope and export GITLAB_TOKEN=...")


def make_engine(settings: Settings, storage: Storage, max_projects: int | None = None) -> Engine:
    """The engine with the `[learning]` settings (0 turns a retraining trigger off), holding at most `[worker]
    max_projects` projects in memory unless told otherwise, each for `idle_hours` unused (0: until pushed out)."""
    learn = settings.learning
    return Engine(storage, max_projects=max_projects or settings.worker.max_projects, retrain_labels=learn.retrain_labels or None,
                  retrain_seconds=learn.retrain_hours * 3600 or None, holdout=learn.holdout, prior=learn.prior,
                  idle_seconds=settings.worker.idle_hours * 3600 or None)


@contextlib.asynccontextmanager
async def make_dispatch(
    settings: Settings, storage: Storage, metrics: Metrics, *, retry: RetryPolicy | None = None,
    backfill_wait: float = BACKFILL_WAIT, backfill_imports: int = BACKFILL_IMPORTS, max_projects: int | None = None,
    backfill_recheck: float = DONE_RECHECK,
) -> AsyncIterator[Dispatch]:
    """The handlers' dispatch, with one HTTP session for its whole life (closed, with backfills, on exit)."""
    if settings.gitlab.token is None or not settings.gitlab.token.get_secret_value():
        raise ConfigError("GITLAB_TOKEN is not set: the handlers need a token with api scope to call GitLab")
    async with aiohttp.ClientSession() as session:
        await check_gitlab(session, settings)
        client = GitLabClient(session, url=settings.gitlab.url, token=settings.gitlab.token.get_secret_value(),
                              retry=retry, on_error=_counter(metrics))
        backfills = Backfills(client, storage, wait=backfill_wait, imports=backfill_imports, recheck=backfill_recheck)
        services = Services(settings, storage, metrics, client, make_engine(settings, storage, max_projects),
                            backfills, BotIdentity(client, settings.gitlab.bot_username))
        services.engine.on_forgotten.append(backfills.forget)
        schedule = asyncio.create_task(_engine_schedule(services.engine), name="engine-schedule")
        try:
            yield functools.partial(dispatch_event, services)
        finally:
            schedule.cancel()
            await backfills.close()
            # snapshots of the history observed since the last ones, within what the shutdown's grace leaves
            await services.engine.close(shutdown.time_left(SNAPSHOT_TIMEOUT))


async def _engine_schedule(engine: Engine) -> None:
    """Every minute (or sooner, for a short `retrain_hours` or `idle_hours`): start the scheduled retrainings
    that are due, and drop the projects idle for `idle_hours` (`Engine.evict_idle`)."""
    periods = [seconds / 4 for seconds in (engine.retrain_seconds, engine.idle_seconds) if seconds is not None]
    if not periods:
        return
    while True:
        await asyncio.sleep(min(60.0, *periods))
        if engine.retrain_seconds is not None:
            engine.retrain_due()
        await engine.evict_idle()
