"""Helpers shared by the handler, engine, backfill and end-to-end tests: settings, a small hand-made project,
stored events, the bot served over real HTTP next to the simulator, and waiting until everything settled.

Why one module: the handler tests and the end-to-end tests must drive the bot the same way (same settings,
same fast retries, same event rows); copies in each file would drift apart.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from bot.backfill import backfill_project
from bot.config import ProjectSettings, Settings
from bot.engine import Engine
from bot.gitlab.client import GitLabClient, RetryPolicy
from bot.gitlab.simulator import SeededProject, SimState, seed_project
from bot.gitlab.sim_model import HookEvent, SimMR, SimNote, SimProject, SimUser
from bot.handlers import make_dispatch
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.suggesting import SuggestionResult, suggest_for_mr
from bot.web import ON_STORED_KEY, make_app
from bot.worker import Dispatch, Worker
from tests.gitlab_fixtures import FAST_RETRY

__all__ = ["SECRET", "bot_settings", "seed_recent", "event_row", "take_events", "dispatching", "RunningBot",
           "running_bot", "settle", "bot_notes", "marker_notes", "Tiny", "tiny_project", "dispatch_outbox", "Env",
           "handler_env"]

SECRET = "harness-webhook-secret-0123456789"
FAST_WORKER = {"concurrency": 2, "backoff": 0.01, "backoff_max": 0.05, "poll_interval": 0.05, "max_attempts": 40,
               "lease_seconds": 60.0, "dispatch_timeout": 30.0}


def bot_settings(state: SimState, url: str, database_url: str, **defaults: Any) -> Settings:
    """Settings for a bot talking to the simulator at `url`, with fast worker retries."""
    return Settings(gitlab={"url": url, "token": state.token}, webhook_secrets=[{"secret": SECRET}],
                    database={"url": database_url}, worker=FAST_WORKER, defaults=defaults)


def seed_recent(state: SimState, *, n_people: int = 12, n_merged: int = 80, seed: int = 3) -> SeededProject:
    """A seeded project whose history ends a few days ago (so nobody counts as inactive)."""
    start = datetime.now(timezone.utc) - timedelta(days=125)
    return seed_project(state, n_people=n_people, n_merged=n_merged, n_open=0, seed=seed, start=start, days=120)


@dataclass
class Tiny:
    """A hand-made project with exact expectations: who owns what, who reviewed what."""

    project: SimProject
    ann: SimUser   # author of the MRs under test
    bob: SimUser   # reviews src/ most
    cy: SimUser    # reviews src/ sometimes
    dee: SimUser   # docs owner (CODEOWNERS, required section), no history
    rep: SimUser   # a Reporter with review history: never suggested


def tiny_project(state: SimState) -> Tiny:
    """Five people, twelve merged MRs under src/, CODEOWNERS with a required [Docs] section, and a default
    branch whose protection requires code owner approval (so GitLab asks for [Docs]' approval)."""
    project = state.add_project("acme/tiny")
    state.protect_branch(project, project.default_branch, code_owner_approval_required=True)
    ann, bob, cy, dee, rep = (state.add_user(n) for n in ("ann", "bob", "cy", "dee", "rep"))
    for user in (ann, bob, cy, dee):
        state.add_member(project, user, 30)
    state.add_member(project, rep, 20)
    now = datetime.now(timezone.utc)
    for i in range(12):
        reviewer = bob if i % 3 else cy
        state.add_merged_mr(project, ann, [f"src/core/m{i % 4}.py"], reviewers=[reviewer, rep] if i < 2 else
                            [reviewer], approvers=[reviewer], merged_at=now - timedelta(days=30 - i))
    state.add_file(project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @dee\n^[Src]\nsrc/ @bob @cy\n")
    return Tiny(project, ann, bob, cy, dee, rep)


@dataclass
class Team:
    """The tiny project (its history imported) with two more Developers who never reviewed: jo and kim."""

    state: SimState
    tiny: Tiny


async def tiny_team(state: SimState, gitlab_client: GitLabClient, storage: Storage, **jo: Any) -> Team:
    """`Team` on `storage`; `jo` are more fields of jo's account (`public_email=`: an address the bot can find)."""
    tiny = tiny_project(state)
    state.add_member(tiny.project, state.add_user("jo", **jo), 30)
    state.add_member(tiny.project, state.add_user("kim"), 30)
    await backfill_project(gitlab_client, storage, tiny.project.id)
    return Team(state, tiny)


async def suggest_on(team: Team, gitlab_client: GitLabClient, storage: Storage, mr: SimMR,
                     engine: Engine | None = None) -> SuggestionResult:
    """The suggestion for the team's merge request `mr` as GitLab lists it now, with the default settings."""
    fetched = await gitlab_client.get_mr(team.tiny.project.id, mr.iid)
    return await suggest_for_mr(gitlab_client, engine or Engine(storage), storage, team.tiny.project.id, fetched,
                                ProjectSettings(), bot_username="reviewbot")


def suggested(result: SuggestionResult) -> list[str]:
    """The people a suggestion names, in its order."""
    return [s.person for s in result.suggestions]


_ids = iter(range(1, 10**9))


def event_row(kind: str, body: dict[str, Any], *, event_id: int | None = None) -> EventRow:
    """A stored-event row as the worker hands it to `dispatch` (without going through the queue)."""
    now = datetime.now(timezone.utc)
    attrs = body.get("object_attributes") or {}
    mr = body.get("merge_request") or {}
    iid = attrs.get("iid") if kind == "Merge Request Hook" else mr.get("iid")
    return EventRow(
        id=event_id or next(_ids), dedupe_key=f"test:{now.timestamp()}",
        project_id=(body.get("project") or {}).get("id"),
        mr_iid=iid, kind=kind, action=attrs.get("action"), headers={}, body=body, status="running", attempts=1,
        next_attempt_at=now, lease_owner="test", lease_expires_at=now, last_error=None, received_at=now,
        finished_at=None,
    )


def take_events(state: SimState) -> list[HookEvent]:
    """Everything the simulator queued for webhooks, removing it (the handler tests dispatch by hand)."""
    events, state.outbox[:] = list(state.outbox), []
    return events


async def dispatch_outbox(state: SimState, dispatch: Dispatch, *, rounds: int = 3) -> int:
    """Dispatch every queued webhook event, including those the bot's own calls cause; returns how many."""
    done = 0
    for _ in range(rounds):
        events = take_events(state)
        for event in events:
            await dispatch(event_row(event.event_name, event.body))
        done += len(events)
    return done


@contextlib.asynccontextmanager
async def dispatching(settings: Settings, storage: Storage, **kwargs: Any) -> AsyncIterator[Dispatch]:
    """The real `make_dispatch` with fast GitLab retries."""
    kwargs.setdefault("retry", FAST_RETRY)
    async with make_dispatch(settings, storage, Metrics(), **kwargs) as dispatch:
        yield dispatch


@dataclass
class RunningBot:
    """The webhook app on a real port and a worker running the real handlers (`start()` it if not started)."""

    url: str
    worker: Worker
    metrics: Metrics
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.worker.run(), name="harness-worker")


@contextlib.asynccontextmanager
async def running_bot(settings: Settings, storage: Storage, *, backfill_wait: float = 10.0,
                      start_worker: bool = True, retry: RetryPolicy = FAST_RETRY) -> AsyncIterator[RunningBot]:
    """Serve POST /webhook on 127.0.0.1 and run a worker beside it (later, with `start_worker=False`)."""
    metrics = Metrics()
    app = make_app(settings, storage, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    factory = functools.partial(make_dispatch, retry=retry, backfill_wait=backfill_wait)
    try:
        async with factory(settings, storage, metrics) as dispatch:
            worker = Worker(storage, dispatch, settings, metrics, worker_id="harness-worker")
            app[ON_STORED_KEY].append(worker.notify)
            bot = RunningBot(f"http://{host}:{port}/webhook", worker, metrics)
            if start_worker:
                bot.start()
            try:
                yield bot
            finally:
                bot.start()  # so that stop() finds a loop to stop
                await worker.stop(5.0)
                assert bot.task is not None
                await bot.task
    finally:
        await runner.cleanup()


async def settle(state: SimState, storage: Storage, *, timeout: float = 40.0, quiet_rounds: int = 3) -> dict[str, int]:
    """Wait until no webhook is waiting and the queue has nothing pending, several checks in a row."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet = 0
    depth: dict[str, int] = {}
    while quiet < quiet_rounds:
        if loop.time() > deadline:
            raise AssertionError(f"the bot did not settle within {timeout} s: queue {depth}, "
                                 f"outbox {len(state.outbox)}")
        await state.flush_hooks()
        depth = await storage.events.depth()
        idle = not state.outbox and depth["queued"] + depth["running"] + depth["failed"] == 0
        quiet = quiet + 1 if idle else 0
        await asyncio.sleep(0.1)
    return depth


def bot_notes(state: SimState, mr: SimMR) -> list[SimNote]:
    """The notes the bot wrote on an MR."""
    return [n for n in mr.notes if n.author_id == state.bot.id]


def marker_notes(state: SimState, mr: SimMR) -> list[SimNote]:
    """The bot's suggestion comments on an MR (there must be at most one)."""
    from bot.comment import has_marker

    return [n for n in bot_notes(state, mr) if has_marker(n.body)]


# --- the handler tests' environment: the simulator, the tiny project imported, the real dispatch ------------
@dataclass
class Env:
    """The simulator with the tiny project (its history imported), storage and the real dispatch."""

    state: SimState
    url: str
    tiny: Tiny
    storage: Storage
    dispatch: Dispatch
    settings: Settings

    @property
    def pid(self) -> int:
        return self.tiny.project.id

    async def run(self) -> int:
        """Dispatch every queued webhook (and those the bot's own calls queue); returns how many."""
        return await dispatch_outbox(self.state, self.dispatch)

    async def send(self, event: HookEvent) -> None:
        await self.dispatch(event_row(event.event_name, event.body))


async def imported_tiny(state: SimState, gitlab_client: Any, database_url: str,
                        stack: contextlib.AsyncExitStack) -> tuple[Tiny, Storage]:
    """The tiny project, its hook set (events wait in `state.outbox`: tests dispatch them by hand) and its history
    imported into `database_url`; the storage is closed with `stack`."""
    tiny = tiny_project(state)
    state.auto_hooks = False
    state.add_hook(tiny.project, "http://127.0.0.1:9/not-delivered", token=SECRET)
    storage = Storage(database_url)
    stack.push_async_callback(storage.close)
    await backfill_project(gitlab_client, storage, tiny.project.id)
    return tiny, storage


@pytest.fixture
async def handler_env(simulator: tuple[SimState, str], sqlite_url: str,
                      gitlab_client: Any) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    """A factory: `env = await handler_env(assign="top1")` builds the environment with those [defaults]."""
    state, url = simulator
    stack = contextlib.AsyncExitStack()

    async def make(**defaults: Any) -> Env:
        tiny, storage = await imported_tiny(state, gitlab_client, sqlite_url, stack)
        settings = bot_settings(state, url, sqlite_url, **defaults)
        dispatch = await stack.enter_async_context(dispatching(settings, storage))
        return Env(state, url, tiny, storage, dispatch, settings)

    try:
        yield make
    finally:
        await stack.aclose()
