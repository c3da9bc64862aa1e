"""Snapshot storage on SQLite and PostgreSQL: round trip, pruning to the most advanced, concurrent writers;
and the history reads the engine's high-water mark relies on."""
from __future__ import annotations

import asyncio

import pytest

from bot.storage import Storage
from bot.storage.snapshots import KEEP
from graph.model import Change


async def save(storage: Storage, count: int, blob: bytes = b"", project_id: int = 1, **kwargs) -> int:
    fields = dict(format="v1-abc", config="default:123", history_count=count, history_time=count * 10,
                  boundary=[count])
    fields.update(kwargs)
    return await storage.snapshots.save(project_id, blob or bytes([count % 256]) * 1000, **fields)


async def test_a_snapshot_round_trips_with_its_history_mark(storage, clock):
    blob = bytes(range(256)) * 4096  # a megabyte of every byte value
    sid = await save(storage, 5, blob, boundary=[41, 42])
    row = await storage.snapshots.latest(1)
    assert row is not None and row.id == sid and row.blob == blob and row.size == len(blob)
    assert (row.format, row.config, row.history_count, row.history_time, row.boundary) == \
        ("v1-abc", "default:123", 5, 50, (41, 42))
    assert row.created_at == clock.now
    assert await storage.snapshots.latest(2) is None


async def test_latest_is_the_most_advanced_of_the_format_and_config_asked_for(storage):
    await save(storage, 30, format="v0-old")
    await save(storage, 20, config="graph:999")
    assert (await storage.snapshots.latest(1)).history_count == 20
    await save(storage, 10)
    assert (await storage.snapshots.latest(1)).history_count == 10
    assert (await storage.snapshots.latest(1, format="v1-abc", config="default:123")).history_count == 10
    assert await storage.snapshots.latest(1, format="v0-old") is None
    assert await storage.snapshots.latest(1, config="graph:999") is None


async def test_a_write_drops_snapshots_of_other_formats_and_configs(storage):
    await save(storage, 30, format="v0-old")
    await save(storage, 25, config="graph:999")
    await save(storage, 10)
    assert [(s.format, s.config) for s in await storage.snapshots.list(1)] == [("v1-abc", "default:123")]


async def test_only_the_most_advanced_snapshots_are_kept_per_project(storage):
    for count in (10, 40, 20, 30):
        await save(storage, count)
    await save(storage, 5, project_id=2)
    listed = await storage.snapshots.list(1)
    assert [s.history_count for s in listed] == [40, 30] and len(listed) == KEEP
    assert all(s.blob is None and s.size == 1000 for s in listed)
    assert [s.history_count for s in await storage.snapshots.list(2)] == [5]
    assert await storage.snapshots.delete(1) == 2 and await storage.snapshots.list(1) == []


async def test_an_equal_mark_keeps_the_newest(storage):
    first = await save(storage, 10, b"first")
    second = await save(storage, 10, b"second")
    assert (await storage.snapshots.latest(1)).blob == b"second"
    assert {s.id for s in await storage.snapshots.list(1)} == {first, second}


async def test_concurrent_writers_from_two_processes_leave_whole_snapshots(database_url):
    stores = [Storage(database_url), Storage(database_url)]
    try:
        blobs = {count: bytes([count]) * 200_000 for count in range(1, 13)}
        await asyncio.gather(*(save(stores[count % 2], count, blob) for count, blob in blobs.items()))
        best = await stores[0].snapshots.latest(1)
        assert best is not None and best.history_count == 12 and best.blob == blobs[12]
        listed = await stores[1].snapshots.list(1)
        assert len(listed) == KEEP and [s.history_count for s in listed] == [12, 11]
    finally:
        for store in stores:
            await store.close()


async def test_keep_must_be_positive(storage):
    with pytest.raises(ValueError, match="keep must be at least 1"):
        await save(storage, 1, keep=0)


# --- the history reads behind the engine's high-water mark ---------------------------------------------------
def change(i: int, t: int) -> Change:
    return Change(f"!{i}", t, "ann", ("bob",), ("src/a.py",))


async def test_rows_since_gives_row_ids_and_the_total_of_the_same_moment(storage):
    assert await storage.history.rows_since(1) == ([], 0)
    await storage.history.upsert(1, [change(1, 100), change(2, 50), change(3, 100)])
    await storage.history.upsert(2, [change(1, 500)])
    rows, total = await storage.history.rows_since(1)
    assert total == 3 and [c.id for _, c in rows] == ["!2", "!1", "!3"]
    ids = {c.id: i for i, c in rows}
    recent, total = await storage.history.rows_since(1, 100)
    assert total == 3 and recent == [(ids["!1"], change(1, 100)), (ids["!3"], change(3, 100))]
    assert await storage.history.rows_since(1, 101) == ([], 3)
    await storage.history.upsert(1, [change(1, 100)])  # replaced: same row id, same count
    assert await storage.history.rows_since(1, 100) == (recent, 3)


async def test_history_writes_are_counted_per_project_in_this_process(storage):
    assert storage.history.writes(1) == 0
    await storage.history.upsert(1, [change(1, 0)])
    await storage.history.upsert(1, [change(2, 0)])
    assert (storage.history.writes(1), storage.history.writes(2)) == (2, 0)
