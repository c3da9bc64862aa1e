"""Retention: the worker itself prunes done events, and with them their dedupe keys, once they are older than
`worker.retention_days` (never under 24 h, GitLab re-sends come late), dead ones after `dead_retention_days`,
and the rows of merge requests finished more than `mr_retention_days` ago; pending events are kept."""
from __future__ import annotations

import asyncio

import pytest

from bot.config import Settings
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.worker import Worker
from graph.model import Change

HOUR = 3600.0


def settings(**worker) -> Settings:
    return Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 20}],
                    worker={"poll_interval": 0.01, "backoff": 10, **worker})


async def store(storage: Storage, key: str) -> tuple[int, bool]:
    return await storage.events.store_event(dedupe_key=key, kind="Note Hook", project_id=1, headers={},
                                            body={"object_attributes": {}})


async def noop(row: EventRow) -> None:
    return None


async def until(predicate, timeout: float = 60.0) -> None:
    """Until the async `predicate()` holds (the worker loop runs in the background meanwhile)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("the worker did not get there in time")
        await asyncio.sleep(0.02)


async def test_the_worker_prunes_done_events_and_their_keys_periodically(storage, clock):
    first, _ = await store(storage, "delivery-1")
    worker = Worker(storage, noop, settings(retention_days=1, prune_interval=0.05), Metrics(), "w1")
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: _status(storage, first, "done"))
        clock.advance(23 * HOUR)
        second, _ = await store(storage, "delivery-2")
        await until(lambda: _status(storage, second, "done"))
        await asyncio.sleep(0.3)  # several prune rounds: a 23 h old key still deduplicates
        assert await store(storage, "delivery-1") == (first, False)
        clock.advance(2 * HOUR)
        await until(lambda: _gone(storage, first))
        again, is_new = await store(storage, "delivery-1")
        assert is_new and again > second  # the key was forgotten with its event; ids are never reused
        assert await storage.events.get(second) is not None
    finally:
        await worker.stop(1.0)
        await task


async def test_the_newest_event_is_kept_so_that_ids_are_never_reused(storage, clock):
    first, _ = await store(storage, "only")
    worker = Worker(storage, noop, settings(), Metrics(), "w1")
    await worker.run_once()
    await worker.drain()
    clock.advance(30 * 24 * HOUR)
    await worker._maybe_prune()
    assert await storage.events.get(first) is not None
    assert (await store(storage, "next"))[0] == first + 1


async def test_pending_and_dead_events_are_kept_and_retention_days_is_honoured(storage, clock):
    done, _ = await store(storage, "done")
    worker = Worker(storage, noop, settings(retention_days=7), Metrics(), "w1")
    assert await worker.run_once() == 1
    await worker.drain()
    dead, _ = await store(storage, "dead")
    [claimed] = await storage.events.claim("w1", 60)
    await storage.events.dead_letter(claimed.id, "broken", owner="w1")
    queued, _ = await store(storage, "queued")  # the newest
    clock.advance(3 * 24 * HOUR)
    await worker._maybe_prune()  # the first prune runs at once
    assert await storage.events.get(done) is not None
    clock.advance(5 * 24 * HOUR)
    worker._last_prune = None  # the next hourly round
    await worker._maybe_prune()
    assert await storage.events.get(done) is None
    assert [(await storage.events.get(i)).status for i in (dead, queued)] == ["dead", "queued"]


def test_retention_under_a_day_is_refused():
    with pytest.raises(ValueError, match="retention_days"):
        settings(retention_days=0.5)
    with pytest.raises(ValueError, match="dead_retention_days .0.5. must be 0 .keep dead events. or at least 1"):
        settings(dead_retention_days=0.5)
    with pytest.raises(ValueError, match="mr_retention_days .30. must be 0 .keep them. or at least 90"):
        settings(mr_retention_days=30)


async def test_the_worker_prunes_dead_events_and_finished_merge_requests_unless_told_to_keep_them(storage, clock):
    """Only done events were ever pruned: dead ones, and every suggestion and feedback row, grew forever."""
    await store(storage, "dead")
    [claimed] = await storage.events.claim("w1", 60)
    await storage.events.dead_letter(claimed.id, "broken", owner="w1")
    await storage.history.upsert(1, [Change("!1", int(clock().timestamp()), "ann", ("bob",), ("a.c",))])
    merged = await storage.suggestions.add(1, 1, [], "v")
    await storage.feedback.record(1, 1, "bob", "accepted", suggestion_id=merged)
    await storage.suggestions.add(1, 2, [], "v")  # open
    await storage.feedback.record(1, 2, "bob", "accepted")
    await store(storage, "newest")
    clock.advance(29 * 24 * HOUR)
    await Worker(storage, noop, settings(), Metrics(), "w1").prune()
    assert (await storage.events.get(claimed.id)).status == "dead"
    clock.advance(400 * 24 * HOUR)
    await Worker(storage, noop, settings(dead_retention_days=0, mr_retention_days=0), Metrics(), "w1").prune()
    assert await storage.events.get(claimed.id) is not None and len(await storage.suggestions.list(1)) == 2
    await Worker(storage, noop, settings(), Metrics(), "w1").prune()  # 30 and 365 days
    assert await storage.events.get(claimed.id) is None
    assert [(r.mr_iid, r.label) for r in await storage.feedback.list(1)] == [(2, "accepted")]
    assert [r.mr_iid for r in await storage.suggestions.list(1)] == [2]


async def _status(storage: Storage, event_id: int, status: str) -> bool:
    row = await storage.events.get(event_id)
    return row is not None and row.status == status


async def _gone(storage: Storage, event_id: int) -> bool:
    return await storage.events.get(event_id) is None
