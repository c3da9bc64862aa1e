"""`bot.engine.Engine` across processes, on SQLite and PostgreSQL: a warm start from a snapshot equals a cold
build, history stored by another process reaches a running engine, unusable snapshots mean a rebuild."""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import AsyncIterator

import pytest

from bot.config import ProjectSettings
from bot.engine import Engine, config_key, recommender_settings
from bot.storage import Storage
from graph import snapshot
from graph.model import Change
from graph.recommend import GraphRecommender, make_recommender
from graph.synthetic import synthetic_history

SETTINGS = ProjectSettings()
HISTORY = list(synthetic_history(420, 150, 40, seed=11))
FIRST, EVERY = 300, 100  # rows stored before the first engine starts; snapshot_every


class Clock:
    """The engine's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[list[Storage]]:
    """Two `Storage`s on one database, as two worker processes would have."""
    made = [Storage(database_url), Storage(database_url)]
    yield made
    for store in made:
        await store.close()


def queries() -> list[Change]:
    later = HISTORY[-1].time + 3600
    return [Change(f"q{i}", later, c.author, (), c.files) for i, c in enumerate(HISTORY[::37])]


async def cold(store: Storage, project_id: int = 1) -> GraphRecommender:
    """The reference: every stored row replayed into a fresh recommender."""
    rows, _ = await store.history.rows_since(project_id)
    rec = make_recommender("default", settings=recommender_settings(SETTINGS))
    for _, change in rows:
        rec.observe(change)
    return rec


def assert_ranks_alike(a: GraphRecommender, b: GraphRecommender) -> None:
    assert a.og.changes == b.og.changes
    assert list(a.og.G.edges(data=True)) == list(b.og.G.edges(data=True))
    for query in queries():
        assert a.suggest(query, 10) == b.suggest(query, 10)


async def test_a_warm_start_from_a_snapshot_equals_a_cold_build(stores, caplog):
    first, second = stores
    await first.history.upsert(1, HISTORY[:FIRST])
    writer = Engine(first, snapshot_every=EVERY)
    async with writer.use(1, SETTINGS):
        pass
    await writer.close()  # the snapshot written after the cold build is done
    [saved] = await first.snapshots.list(1)
    assert saved.history_count == FIRST and saved.format == snapshot.fingerprint()
    await first.history.upsert(1, HISTORY[FIRST:])  # newer rows, stored after the snapshot

    caplog.set_level(logging.INFO, logger="bot.engine")
    reader = Engine(second, snapshot_every=None)
    async with reader.use(1, SETTINGS) as warm:
        assert_ranks_alike(warm, await cold(second))
    assert "recommender loaded" in caplog.text and "recommender built" not in caplog.text
    assert reader.changes_seen(1) == len(HISTORY)
    await reader.wait_background()  # the loaded graph's edge blocks, built in steps after the load
    async with reader.use(1, SETTINGS) as warm:
        og = warm.og
        paths = [p for p, d in og.G.nodes(data=True) if d.get("kind") == "path"]
        assert og.block_rows > 0 and all(p in og._derived.blocks for p in paths)
        assert_ranks_alike(warm, await cold(second))


async def test_history_stored_by_another_process_reaches_the_engine_within_refresh_seconds(stores):
    first, second = stores
    await first.history.upsert(1, HISTORY[:FIRST])
    clock = Clock()
    engine = Engine(first, refresh_seconds=3.0, clock=clock)
    async with engine.use(1, SETTINGS) as rec:
        pass
    other = Engine(second)
    for change in HISTORY[FIRST:FIRST + 5]:
        await other.add_merged(1, change, SETTINGS)
    async with engine.use(1, SETTINGS) as again:
        assert again.og.changes == FIRST  # not looked yet: the history was checked a moment ago
    clock.now += 3.0
    async with engine.use(1, SETTINGS) as again:
        assert again is rec and again.og.changes == FIRST + 5  # caught up, not rebuilt
    assert_ranks_alike(again, await cold(first))


async def test_this_process_writes_are_seen_at_once(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:10])
    engine = Engine(store, refresh_seconds=3600, clock=Clock())
    async with engine.use(1, SETTINGS):
        pass
    await store.history.upsert(1, HISTORY[10:12])
    async with engine.use(1, SETTINGS) as rec:
        assert rec.og.changes == 12


async def test_rows_at_the_snapshot_time_are_told_apart_by_row_id(stores):
    store = stores[0]
    t = HISTORY[FIRST].time
    same_time = [Change(f"same{i}", t, "ann", ("bob",), (f"src/s{i}.py",)) for i in range(4)]
    await store.history.upsert(1, HISTORY[:FIRST] + same_time[:2])
    writer = Engine(store, snapshot_every=EVERY)
    async with writer.use(1, SETTINGS):
        pass
    await writer.close()
    await store.history.upsert(1, same_time[2:])  # same time as the snapshot's newest rows
    async with Engine(store).use(1, SETTINGS) as warm:
        assert warm.og.changes == FIRST + 4
        assert_ranks_alike(warm, await cold(store))


async def bad_snapshot(store: Storage, blob: bytes, **kwargs) -> None:
    fields = dict(format=snapshot.fingerprint(), config=config_key("default", recommender_settings(SETTINGS)),
                  history_count=FIRST, history_time=HISTORY[FIRST - 1].time, boundary=[])
    fields.update(kwargs)
    await store.snapshots.save(1, blob, **fields)


@pytest.mark.parametrize("kind", ["old version in the bytes", "old format", "other settings", "behind"])
async def test_an_unusable_snapshot_means_a_cold_rebuild(stores, caplog, kind):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:FIRST])
    rec = await cold(store)
    blob = snapshot.dumps(rec)
    if kind == "old version in the bytes":
        await bad_snapshot(store, blob[:6] + struct.pack(">H", snapshot.FORMAT_VERSION - 1) + blob[8:])
    elif kind == "old format":
        await bad_snapshot(store, blob, format="v0-0123456789abcdef")
    elif kind == "other settings":
        await bad_snapshot(store, blob, config="default:0000")
    else:  # claims to have seen more rows than there are
        await bad_snapshot(store, blob, history_count=FIRST + 50)
    caplog.set_level(logging.INFO, logger="bot.engine")
    async with Engine(store).use(1, SETTINGS) as rebuilt:
        assert_ranks_alike(rebuilt, rec)
    assert "recommender built" in caplog.text and "recommender loaded" not in caplog.text


async def test_older_rows_after_a_snapshot_mean_a_cold_rebuild(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[1:FIRST])
    writer = Engine(store, snapshot_every=EVERY)
    async with writer.use(1, SETTINGS):
        pass
    await writer.close()
    await store.history.upsert(1, HISTORY[:1])  # a backfill filling in the past
    async with Engine(store).use(1, SETTINGS) as rec:
        assert_ranks_alike(rec, await cold(store))


async def test_snapshots_follow_the_history_and_close_writes_the_rest(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:FIRST])
    engine = Engine(store, snapshot_every=EVERY)
    async with engine.use(1, SETTINGS):
        pass
    await engine.close()  # waits for the snapshot of the cold build
    await engine.add_merged(1, HISTORY[FIRST], SETTINGS)  # 1 unsaved row: not enough for a new one...
    assert len(await store.snapshots.list(1)) == 1
    await engine.close()  # ... until shutdown
    assert [s.history_count for s in await store.snapshots.list(1)] == [FIRST + 1, FIRST]
    await store.history.upsert(1, HISTORY[FIRST + 1:FIRST + 1 + EVERY])
    async with engine.use(1, SETTINGS):
        pass
    await engine.close()  # waits for the background write the catch-up started
    assert [s.history_count for s in await store.snapshots.list(1)] == [FIRST + 1 + EVERY, FIRST + 1]


async def test_small_projects_get_no_snapshot(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:EVERY - 1])
    engine = Engine(store, snapshot_every=EVERY)
    async with engine.use(1, SETTINGS):
        pass
    await engine.close()
    assert await store.snapshots.list(1) == []


def test_snapshot_every_must_be_positive_or_none():
    with pytest.raises(ValueError, match="snapshot_every"):
        Engine(None, snapshot_every=0)  # type: ignore[arg-type]


HOUR = 3600.0


async def test_a_project_idle_past_idle_seconds_is_snapshotted_dropped_and_loaded_again(stores, caplog):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:FIRST])
    clock = Clock()
    engine = Engine(store, snapshot_every=EVERY, idle_seconds=24 * HOUR, clock=clock)
    async with engine.use(1, SETTINGS):
        pass
    await engine.wait_background()  # the snapshot of the cold build
    await engine.add_merged(1, HISTORY[FIRST], SETTINGS)  # 1 row unsaved: below snapshot_every
    clock.now += 24 * HOUR - 1
    await engine.evict_idle()
    assert 1 in engine and len(await store.snapshots.list(1)) == 1  # not idle long enough yet

    caplog.set_level(logging.INFO, logger="bot.engine")
    clock.now += 1
    await engine.evict_idle()
    assert 1 not in engine
    assert [s.history_count for s in await store.snapshots.list(1)] == [FIRST + 1, FIRST]  # written before
    assert "idle recommender dropped project_id=1 changes=301 unsaved=0 idle_hours=24.0" in caplog.text
    caplog.clear()
    async with engine.use(1, SETTINGS) as warm:  # the next event loads that snapshot: nothing to catch up
        assert_ranks_alike(warm, await cold(store))
    assert "recommender loaded project_id=1" in caplog.text and "new=0 " in caplog.text
    assert "recommender built" not in caplog.text


async def test_a_used_locked_or_saving_project_is_not_dropped(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:FIRST])
    clock = Clock()
    engine = Engine(store, snapshot_every=EVERY, idle_seconds=HOUR, clock=clock)
    async with engine.use(1, SETTINGS):
        clock.now += 2 * HOUR  # a long use holds the lock
        await asyncio.wait_for(engine.evict_idle(), 10)  # (a snapshot started now would wait for this block)
        assert 1 in engine
    clock.now += 2 * HOUR  # its cold build's snapshot is being written (started as the use ended)
    await engine.evict_idle()
    assert 1 in engine
    await engine.wait_background()
    clock.now += HOUR / 2
    async with engine.use(1, SETTINGS):
        pass
    clock.now += HOUR / 2  # used half an hour ago
    await engine.evict_idle()
    assert 1 in engine
    clock.now += HOUR / 2
    await engine.evict_idle()
    assert 1 not in engine


async def test_without_idle_seconds_an_unused_project_stays(stores):
    store = stores[0]
    await store.history.upsert(1, HISTORY[:10])
    clock = Clock()
    engine = Engine(store, clock=clock)
    async with engine.use(1, SETTINGS):
        pass
    clock.now += 100 * 365 * 24 * HOUR
    await engine.evict_idle()
    assert 1 in engine
    with pytest.raises(ValueError, match="idle_seconds"):
        Engine(store, idle_seconds=0)


async def test_the_dispatch_timer_drops_idle_projects(stores):
    from bot.handlers import _engine_schedule

    store = stores[0]
    await store.history.upsert(1, HISTORY[:10])
    engine = Engine(store, idle_seconds=0.2)  # swept every 0.05 s
    async with engine.use(1, SETTINGS):
        pass
    timer = asyncio.create_task(_engine_schedule(engine))
    try:
        for _ in range(100):
            if 1 not in engine:
                break
            await asyncio.sleep(0.05)
        assert 1 not in engine
    finally:
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)
