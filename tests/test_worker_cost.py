"""What a plain MR comment costs the worker in database transactions, counted on the real engine.

Why pinned: the worker's CPU per plain comment grew 1.5-1.6x between `ae0f98f` and `1fcb1d7` with nobody
noticing, and its database transactions from 3.1 to 5.3 per event (`benchmarks/README.md`). A transaction
costs the worker about a millisecond of SQLAlchemy and asyncio: a change that adds one to every comment must
say so here.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from typing import Any, AsyncIterator

import pytest
import sqlalchemy as sa

from bot.handlers import make_dispatch
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.storage.events import HOOK_HEADER
from bot.worker import Worker
from tests.bot_harness import bot_settings, dispatch_outbox, event_row, imported_tiny, take_events
from tests.gitlab_fixtures import FAST_RETRY



class Transactions:
    """Counts the transactions begun on an engine, and the statements run, while `on`."""

    def __init__(self, storage: Storage) -> None:
        self.on = False
        self.begun = 0
        self.statements: Counter[str] = Counter()
        sa.event.listen(storage.engine.sync_engine, "begin", self._begin)
        sa.event.listen(storage.engine.sync_engine, "before_cursor_execute", self._statement)

    def _begin(self, _conn: Any) -> None:
        self.begun += self.on

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.on:
            self.statements[re.sub(r"\s+", " ", statement)[:90]] += 1


async def _wait(done: Any, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.01)


@pytest.fixture
async def world(simulator: Any, gitlab_client: Any, database_url: str) -> AsyncIterator[tuple[Any, ...]]:
    """The tiny project imported into `database_url`, an MR the bot suggested on, and the real dispatch."""
    state, url = simulator
    async with contextlib.AsyncExitStack() as stack:
        tiny, storage = await imported_tiny(state, gitlab_client, database_url, stack)
        settings = bot_settings(state, url, database_url)
        worker_cfg = settings.worker.model_copy(update={"concurrency": 1, "poll_interval": 60.0})
        settings = settings.model_copy(update={"worker": worker_cfg})
        async with make_dispatch(settings, storage, Metrics(), retry=FAST_RETRY) as dispatch:
            mr = state.open_mr(tiny.project, tiny.ann, ["src/core/m1.py"])
            await dispatch_outbox(state, dispatch)  # the MR's events, then the Note Hook of the bot's comment
            assert await storage.suggestions.latest(tiny.project.id, mr.iid) is not None
            yield state, tiny, mr, storage, settings, dispatch


async def _store_comments(state: Any, url: str, mr: Any, who: Any, n: int, start: int, headers: dict[str, str]
                          ) -> None:
    """`n` comments on `mr`, stored as the web app stores them (through an engine of its own: not counted)."""
    for i in range(start, start + n):
        state.add_note(mr, who, f"Looks fine to me ({i})")
    web = Storage(url)
    try:
        for event in take_events(state):
            row = event_row(event.event_name, event.body)
            await web.events.store_event(dedupe_key=event.event_uuid, kind=row.kind, action=row.action,
                                         project_id=row.project_id, mr_iid=row.mr_iid, headers=headers, body=row.body)
    finally:
        await web.close()


@pytest.mark.parametrize("hook_header", [False, True], ids=["without-hook-uuid", "with-hook-uuid"])
async def test_a_plain_comment_costs_the_worker_two_transactions(world, hook_header):
    """Per comment without a command, by someone not suggested: the claim that takes it (which also records
    the previous event's end) and the read of the MR's latest suggestion (a suggested person's comment is
    their review); with the `X-Gitlab-Webhook-UUID` of GitLab 16.2+, the read of the events another hook may
    have sent the same (`twin_done`). The project's row, settings, history check and the bot's identity are
    read once and kept; the end of the last event is recorded by the claim after it: 2 n + 1 for n comments
    (3 n + 1 with the header). At `1d1c9a6` each end was a transaction of its own: 20-21 for 6 comments."""
    state, tiny, mr, storage, settings, dispatch = world
    handled: list[int] = []

    async def counted(row: EventRow) -> None:
        await dispatch(row)
        handled.append(row.id)

    worker = Worker(storage, counted, settings, Metrics(), "w1", prune_every=3600.0)
    counts = Transactions(storage)
    headers = {HOOK_HEADER: "hook-1"} if hook_header else {}
    await _store_comments(state, storage.url, mr, tiny.rep, 1, 0, headers)  # the first warms the caches
    loop = asyncio.create_task(worker.run())
    try:
        await _wait(lambda: len(handled) == 1 and worker.in_flight == 0)
        n = 6
        counts.on = True  # before they are stored: whatever the worker does once they are is counted
        await _store_comments(state, storage.url, mr, tiny.rep, n, 1, headers)
        worker.notify()
        await _wait(lambda: len(handled) == 1 + n and worker.in_flight == 0)
        counts.on = False
    finally:
        await worker.stop(5.0)
        await loop
    assert (await storage.events.depth())["done"] == 1 + n
    statements = "\n".join(f"{k} x {s}" for s, k in counts.statements.most_common())
    per_comment = 3 if hook_header else 2
    assert counts.begun == per_comment * n + 1, f"{counts.begun} transactions for {n} plain comments; statements:\n{statements}"
