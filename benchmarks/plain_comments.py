"""What plain MR comments cost one in-process worker: transactions, statements and CPU per event.

Prints figures; it is not a test (`tests/test_worker_cost.py` pins the transactions). Run from the repository root:

    .venv/bin/python benchmarks/plain_comments.py [--database sqlite|postgresql] [--events 1000] [--statements]

The workload is `scale_out.py`'s (Note Hook deliveries without a command, round-robin over 250 merge requests,
the real handlers and queue), run by one `Worker` in this process, so that every transaction and statement it
causes is counted on the engine (SQLAlchemy events) rather than read from `pg_stat_database`, which also counts
the pool's ping at each checkout (`pool_pre_ping`: a transaction of its own to PostgreSQL). The first 250 events
warm the per-project caches and are not counted. CPU per event is this process's CPU time over the counted
events (the simulator is idle: a plain comment makes no GitLab call); the queue is watched through an engine of
its own, not counted.
"""
from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from benchmarks.bench_support import machine, temporary_database  # noqa: E402
from benchmarks.scale_out import note_rows  # noqa: E402
from bot.handlers import make_dispatch  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.storage import Storage  # noqa: E402
from bot.storage.events import HOOK_HEADER  # noqa: E402
from bot.storage.tables import events  # noqa: E402
from bot.worker import Worker  # noqa: E402
from tests.bot_harness import bot_settings  # noqa: E402
from tests.replay import world  # noqa: E402

WARM = 250


class Counts:
    """Transactions, pool checkouts and statements on an engine, while `on`."""

    def __init__(self, storage: Storage) -> None:
        self.on = False
        self.counts: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        engine = storage.engine.sync_engine
        for name in ("begin", "commit", "rollback"):
            sa.event.listen(engine, name, lambda _conn, name=name: self._add(name))
        sa.event.listen(engine.pool, "checkout", lambda *_: self._add("checkout"))
        sa.event.listen(engine, "before_cursor_execute", self._statement)

    def _add(self, what: str) -> None:
        if self.on:
            self.counts[what] += 1

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.on:
            self.counts["statements"] += 1
            self.statements[re.sub(r"\s+", " ", statement).strip()[:160]] += 1


async def run(storage: Storage, watcher: Storage, rows: list[dict[str, Any]]) -> float:
    """Queue `rows` and wait until all are done; the CPU seconds this process spent meanwhile."""
    async with storage.engine.begin() as conn:
        await conn.execute(sa.delete(events))
        await conn.execute(sa.insert(events), rows)
    started = time.process_time()
    while (await watcher.events.depth())["done"] < len(rows):
        await asyncio.sleep(0.2)
    return time.process_time() - started


async def main(args: argparse.Namespace) -> None:
    print(f"plain comments: {args.events} Note Hook events without a command, one worker in this process "
          f"(concurrency {args.concurrency}), {args.database}; {machine()}")
    async with temporary_database(args.database) as url:
        storage, watcher = Storage(url), Storage(url)
        try:
            async with world(storage, n_merged=40) as (state, gitlab_url, seeded):
                rows = note_rows(state, seeded, WARM + args.events)
                if args.hook_header:  # as GitLab 16.2+ sends them: each is then checked for another hook's copy
                    for row in rows:
                        row["headers"] = {**row["headers"], HOOK_HEADER: "4f1c7e0a-hook"}
                settings = bot_settings(state, gitlab_url, url)
                worker_cfg = settings.worker.model_copy(update={"concurrency": args.concurrency,
                                                                "poll_interval": 0.05})
                settings = settings.model_copy(update={"worker": worker_cfg})
                counts = Counts(storage)
                async with make_dispatch(settings, storage, Metrics()) as dispatch:
                    worker = Worker(storage, dispatch, settings, Metrics(), "bench", prune_every=10**9)
                    loop = asyncio.create_task(worker.run())
                    await run(storage, watcher, rows[:WARM])
                    counts.on = True
                    cpu = await run(storage, watcher, rows[WARM:])
                    counts.on = False
                    await worker.stop(5.0)
                    await loop
        finally:
            await storage.close()
            await watcher.close()
    n = args.events
    print(f"CPU per event {1000 * cpu / n:.2f} ms; per event: "
          + ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.counts.items())))
    if args.statements:
        for statement, k in counts.statements.most_common():
            print(f"{k / n:6.2f}  {statement}")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=4, help="[worker] concurrency")
    p.add_argument("--statements", action="store_true", help="print each statement's count per event")
    p.add_argument("--hook-header", action="store_true",
                   help=f"give the deliveries {HOOK_HEADER}, as GitLab 16.2+ does (`scale_out.py`'s have none)")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_args()))
