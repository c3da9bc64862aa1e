"""An event that kills its worker process (out of memory, a segfault): `reviewbot worker` processes restarted
after each crash. The events that ran beside it die with it once; reclaimed after their lease expired, each runs
alone, so the poison event is dead-lettered on its own attempts and the others are done. The crash they shared is
counted to none of them (any may have caused it); each crash alone is counted to the event that ran."""
from __future__ import annotations

import asyncio
from pathlib import Path

from bot.storage import EventRow, Storage
from tests.worker_procs import WorkerProcs, worker_env, write_config

MAX_ATTEMPTS = 3


async def store(storage: Storage, key: str, mr_iid: int, body: dict) -> int:
    event_id, _ = await storage.events.store_event(dedupe_key=key, kind="Note Hook", project_id=1, mr_iid=mr_iid,
                                                   headers={}, body=body)
    return event_id


async def run_until_finished(procs: WorkerProcs, storage: Storage, ids: list[int], timeout: float = 120) -> int:
    """Run worker 0, restarting it whenever it dies, until every event in `ids` is done or dead; the restarts."""
    loop = asyncio.get_running_loop()
    deadline, restarts = loop.time() + timeout, 0
    await procs.start(1)
    while True:
        rows = [await storage.events.get(i) for i in ids]
        if all(r.status in ("done", "dead") for r in rows):
            return restarts
        assert loop.time() < deadline, ([(r.id, r.status, r.attempts) for r in rows], procs.log_text()[-3000:])
        if procs.procs[0].returncode is not None:
            restarts += 1
            await procs.restart(0)
        await asyncio.sleep(0.05)


async def run_poisoned(tmp_path: Path, database_url: str, bodies: list[dict], max_attempts: int = MAX_ATTEMPTS
                       ) -> tuple[list[EventRow], int, list[str], str]:
    """Store one event per body (each of its own MR), run them through one worker process of concurrency
    len(bodies), restarted after each crash, until all are done or dead: (the rows, restarts, starts, log)."""
    marker = tmp_path / "marks"
    marker.mkdir()
    storage = Storage(database_url)
    try:
        ids = [await store(storage, f"event-{i}", i + 1, body) for i, body in enumerate(bodies)]
        config = write_config(tmp_path, gitlab_url="http://127.0.0.1:9", token="t", database_url=database_url,
                              worker={"concurrency": len(bodies), "lease_seconds": 2, "dispatch_timeout": 1.8,
                                      "poll_interval": 0.05, "max_attempts": max_attempts})
        env = worker_env(SLOW_MARKER=str(marker), SLOW_SECONDS="0.8", POISON_WAIT="0.5")
        procs = WorkerProcs(config, tmp_path / "logs", dispatch="tests.worker_procs:poison_dispatch", env=env,
                            fork=True)
        try:
            restarts = await run_until_finished(procs, storage, ids)
        finally:
            await procs.stop_all(10)
        rows = [await storage.events.get(i) for i in ids]
    finally:
        await storage.close()
    return rows, restarts, sorted(p.name for p in marker.iterdir()), procs.log_text()


def runs_of(event: EventRow, starts: list[str]) -> int:
    return len([n for n in starts if n.startswith(f"started-{event.id}-")])


async def test_an_event_that_kills_its_worker_costs_the_events_beside_it_no_attempt(tmp_path: Path, database_url):
    """Claimed in one batch again after each crash, the poison event and its neighbour died together at each
    attempt, and both were dead-lettered at `max_attempts`; run alone after the first crash, the neighbour was
    done, but with the attempt that crash took counted (dead-lettered, had it been its last)."""
    [dead, done], restarts, starts, log = await run_poisoned(tmp_path, database_url, [{"poison": True}, {}])
    assert (done.status, done.attempts) == ("done", 1), (done, log[-3000:])  # the shared crash not counted
    assert runs_of(done, starts) == 2, starts  # the run lost beside the poison, and the one done alone
    assert (dead.status, dead.attempts) == ("dead", MAX_ATTEMPTS) and "lease expired" in dead.last_error
    assert runs_of(dead, starts) == restarts == MAX_ATTEMPTS + 1  # the shared crash, then its own attempts alone
    assert "event reclaimed after its lease expired: runs alone" in log


async def test_two_poison_events_in_one_batch_are_each_dead_lettered_on_their_own_attempts(tmp_path: Path,
                                                                                          database_url):
    """Neither is charged for the crash they shared; each then kills its worker alone until its attempts are
    used up: the queue never loops on them, and the event beside them is done."""
    rows, restarts, starts, log = await run_poisoned(tmp_path, database_url, [{"poison": True}, {"poison": True}, {}],
                                                     max_attempts=2)
    *dead, done = rows
    assert (done.status, done.attempts) == ("done", 1), (done, log[-3000:])
    assert [(r.status, r.attempts) for r in dead] == [("dead", 2), ("dead", 2)], log[-3000:]
    assert restarts == 1 + 2 * 2
