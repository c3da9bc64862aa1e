"""The two runs of the crash-safety bar: a calm in-process reference, and worker processes killed with SIGKILL.

Both runs go in two phases: the prepared deliveries (opens, pushes, merges, commands, comments, re-sends), then,
once every MR has the bot's comment, a thumb up or down on each comment; in the crash run the kills go on
through both phases, so the feedback those thumbs (and the merges, approvals and commands) leave is checked too.

Shared by `tests/test_worker_crash.py` (40 deliveries) and `benchmarks/crash_safety.py` (1,000). Each run gets
its own simulator (same seeds, so the same deliveries) and its own database; `tests.replay.Outcome` compares them.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.storage import Storage
from bot.storage.tables import events
from tests.bot_harness import SECRET, bot_settings, running_bot, settle
from tests.replay import Outcome, Scenario, outcome, play, send, thumbs_on_bot_comments, webhook_app, world
from tests.worker_procs import WorkerProcs, Zygote, write_config

__all__ = ["CRASH_WORKER", "CrashStats", "reference_run", "crash_run"]

# Short leases so that a killed worker's events come back within seconds; quick retries.
CRASH_WORKER = {"concurrency": 2, "lease_seconds": 3.0, "dispatch_timeout": 2.5, "backoff": 0.05,
                "backoff_max": 0.5, "poll_interval": 0.1, "max_attempts": 30}
DEFAULTS = {"assign": "top1"}  # the reviewer PUT is one more side effect a crash could double


@dataclass
class CrashStats:
    """What the crash run went through."""

    kills: int = 0
    kills_mid_event: int = 0
    seconds: float = 0.0
    events: int = 0
    retried_events: int = 0          # events claimed more than once (their worker was killed, or they failed)
    max_attempts: int = 0
    worker_exits: list[int] = field(default_factory=list)  # exit codes of workers that stopped on their own
    tracebacks: int = 0


async def reference_run(database_url: str, deliveries: int, *, timeout: float = 120.0) -> tuple[Scenario, Outcome]:
    """The expectation: the same deliveries through an in-process worker that is never interrupted."""
    storage = Storage(database_url)
    try:
        async with world(storage) as (state, url, seeded):
            settings = bot_settings(state, url, database_url, **DEFAULTS)
            async with running_bot(settings, storage, start_worker=False) as bot:
                state.auto_hooks = False
                state.add_hook(seeded.project, bot.url, token=SECRET)
                scenario = play(state, seeded, deliveries)
                await send(state, scenario)
                state.auto_hooks = True
                bot.start()
                await thumbs_on_bot_comments(state, seeded, scenario, timeout=timeout)
                await settle(state, storage, timeout=timeout)
            return scenario, await outcome(state, storage, seeded.project.id, scenario)
    finally:
        await storage.close()


async def _leaseholders(storage: Storage) -> set[int]:
    """The pids of worker processes that hold a live lease right now (lease owners are host:pid:random)."""
    async with storage.engine.connect() as conn:
        owners = (await conn.execute(sa.select(events.c.lease_owner).where(events.c.status == "running"))).scalars()
        return {int(owner.split(":")[1]) for owner in owners if owner and owner.count(":") == 2}


async def _busy_workers(procs: WorkerProcs, storage: Storage, patience: float) -> list[int]:
    """Workers holding a lease, polled for up to `patience` s (a restarted worker needs seconds to start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        holders = await _leaseholders(storage)
        busy = [i for i, p in procs.procs.items() if p.pid in holders and p.returncode is None]
        if busy or loop.time() > deadline:
            return busy
        await asyncio.sleep(0.02)


async def _work_left(storage: Storage, patience: float) -> tuple[int, int]:
    """(events done, events not yet done), waiting up to `patience` s for work to arrive (thumbs come late)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        depth = await storage.events.depth()
        left = depth["queued"] + depth["running"] + depth["failed"]
        if left or loop.time() > deadline:
            return depth["done"], left
        await asyncio.sleep(0.02)


async def _until_done(storage: Storage, target: int) -> None:
    """Wait until `target` events are done (or nothing is left to do)."""
    while True:
        done, left = await _work_left(storage, patience=0)
        if done >= target or not left:
            return
        await asyncio.sleep(0.02)


async def kill_at_random(procs: WorkerProcs, storage: Storage, rng: random.Random, kills: int,
                         stats: CrashStats) -> None:
    """SIGKILL a worker in the middle of an event `kills` times, spread over the work still to do.

    Each kill comes after a random share of the events left (at most 1/(kills left + 1) of them), not after a
    pause: on a fast machine a timed pause let the queue drain before the second kill.
    """
    for remaining in range(kills, 0, -1):
        done, left = await _work_left(storage, patience=2.0)
        if not left:
            return
        await _until_done(storage, done + rng.randint(1, max(1, left // (remaining + 1))))
        busy = await _busy_workers(procs, storage, patience=10.0)
        victim = rng.choice(busy or list(procs.procs))
        procs.kill(victim)
        stats.kills += 1
        stats.kills_mid_event += bool(busy)
        await procs.restart(victim)


async def _finish(stats: CrashStats, procs: WorkerProcs, storage: Storage, started: float) -> None:
    stats.seconds = time.monotonic() - started
    stats.worker_exits = [procs.procs[i].returncode for i in procs.crashed()]
    stats.tracebacks = procs.log_text().count("Traceback")
    rows = await storage.events.list_events(limit=10**7)
    stats.events = len(rows)
    runs = [r.attempts + r.outage_attempts for r in rows]  # a run a GitLab outage failed is counted apart
    stats.retried_events = sum(1 for n in runs if n > 1)
    stats.max_attempts = max(runs, default=0)


async def crash_run(database_url: str, folder: Path, deliveries: int, *, workers: int = 2, kills: int = 4,
                    seed: int = 5, timeout: float = 180.0,
                    worker: dict[str, Any] | None = None, zygote: Zygote | None = None,
                    ) -> tuple[Scenario, Outcome, CrashStats]:
    """The deliveries through `workers` processes of `reviewbot worker`, killed `kills` times with SIGKILL."""
    storage, stats = Storage(database_url), CrashStats()
    try:
        async with world(storage) as (state, url, seeded):
            settings = bot_settings(state, url, database_url, **DEFAULTS)
            async with webhook_app(settings, storage) as hook_url:
                state.auto_hooks = False
                state.add_hook(seeded.project, hook_url, token=SECRET)
                scenario = play(state, seeded, deliveries)
                await send(state, scenario)
                state.auto_hooks = True
                config = write_config(folder, gitlab_url=url, token=state.token, database_url=database_url,
                                      secret=SECRET, worker=worker or CRASH_WORKER, defaults=DEFAULTS)
                procs = WorkerProcs(config, folder / "logs", fork=True, zygote=zygote)
                started = time.monotonic()
                await procs.start(workers)
                try:
                    rng, later = random.Random(seed), min(kills, max(1, kills // 4))
                    await kill_at_random(procs, storage, rng, kills - later, stats)
                    await thumbs_on_bot_comments(state, seeded, scenario, timeout=timeout)
                    await kill_at_random(procs, storage, rng, later, stats)  # while the thumbs are run
                    await settle(state, storage, timeout=timeout)
                    await _finish(stats, procs, storage, started)
                finally:
                    await procs.stop_all()
            return scenario, await outcome(state, storage, seeded.project.id, scenario), stats
    finally:
        await storage.close()
