"""An event that kills its worker process (out of memory, a segfault): `reviewbot worker` processes restarted
after each crash. The events that ran beside it die with it once; reclaimed after their lease expired, each runs
alone, so the poison event is dead-lettered on its own attempts and the others are done."""
from __future__ import annotations

import asyncio
from pathlib import Path

from bot.storage import Storage
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


async def test_an_event_that_kills_its_worker_takes_the_events_beside_it_down_once(tmp_path: Path, database_url):
    """Claimed in one batch again after each crash, the poison event and its neighbour died together at each
    attempt, and both were dead-lettered at `max_attempts`."""
    marker = tmp_path / "marks"
    marker.mkdir()
    storage = Storage(database_url)
    try:
        poison = await store(storage, "poison", 1, {"poison": True})
        innocent = await store(storage, "innocent", 2, {})
        config = write_config(tmp_path, gitlab_url="http://127.0.0.1:9", token="t", database_url=database_url,
                              worker={"concurrency": 2, "lease_seconds": 2, "dispatch_timeout": 1.8,
                                      "poll_interval": 0.05, "max_attempts": MAX_ATTEMPTS})
        env = worker_env(SLOW_MARKER=str(marker), SLOW_SECONDS="0.8", POISON_WAIT="0.5")
        procs = WorkerProcs(config, tmp_path / "logs", dispatch="tests.worker_procs:poison_dispatch", env=env,
                            fork=True)
        try:
            restarts = await run_until_finished(procs, storage, [poison, innocent])
        finally:
            await procs.stop_all(10)
        dead, done = await storage.events.get(poison), await storage.events.get(innocent)
    finally:
        await storage.close()
    log = procs.log_text()
    assert (done.status, done.attempts) == ("done", 2), (done, log[-3000:])  # one run lost beside the poison
    assert (dead.status, dead.attempts) == ("dead", MAX_ATTEMPTS) and "lease expired" in dead.last_error
    assert restarts == MAX_ATTEMPTS
    starts = sorted(p.name for p in marker.iterdir())
    assert len([n for n in starts if n.startswith(f"started-{innocent}-")]) == 2, starts
    assert "event reclaimed after its lease expired: runs alone" in log
