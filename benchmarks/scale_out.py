"""Scale-out: 1, 2 and 4 `reviewbot worker` processes sharing one PostgreSQL queue of 5,000 events.

Prints figures; it is not a test. Run from the repository root (PostgreSQL at 127.0.0.1:5432):

    .venv/bin/python benchmarks/scale_out.py [--events 5000] [--workers 1 2 4] [--concurrency 4]

The workload: Note Hook deliveries on merge requests, shaped by the GitLab simulator exactly as GitLab sends
them, spread round-robin over 250 MRs (events of one MR run one at a time, so this is the parallelism a busy
instance offers). Each runs through the real handlers (`bot.handlers:make_dispatch`: project row, settings,
history check, router, the notes handler's command parser) and the real queue (claim with
`FOR UPDATE SKIP LOCKED`, lease, complete). Comments without a command make no GitLab call, so the figure is
the queue and worker overhead per event, not the simulator's speed (one Python process here, which would
otherwise be the bottleneck) nor GitLab's.

Per worker count: the workers are started and idle first; the 5,000 events are inserted in one statement; the
clock runs from that commit until every event is done. CPU per event is the workers' CPU time (after start-up)
plus that of the PostgreSQL backends serving them, over the events: what bounds the rate on a small machine.
"No event handled twice" is counted two ways: every process logs each event id it hands to the handlers
(duplicates across all logs), and the database's `attempts` column (each claim adds one; a run a GitLab outage
failed moves to `outage_attempts`) must sum, with `outage_attempts`, to 5,000.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, AsyncIterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from benchmarks.bench_support import machine, temporary_database  # noqa: E402
from benchmarks.load_webhook import cpu_seconds  # noqa: E402
from bot.handlers import make_dispatch  # noqa: E402
from bot.storage import EventRow, Storage, dedupe_key_for, utcnow  # noqa: E402
from bot.storage.tables import events  # noqa: E402
from bot.web import describe  # noqa: E402
from tests.replay import world  # noqa: E402
from tests.worker_procs import WorkerProcs, worker_env, write_config  # noqa: E402

HANDLED_LOG = "SCALE_OUT_HANDLED_DIR"


@contextlib.asynccontextmanager
async def counting_dispatch(settings: Any, storage: Storage, metrics: Any) -> AsyncIterator[Any]:
    """The real handlers, logging each event id handed to them to $SCALE_OUT_HANDLED_DIR/<pid>.log."""
    path = Path(os.environ[HANDLED_LOG]) / f"{os.getpid()}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        async with make_dispatch(settings, storage, metrics) as dispatch:
            async def counted(row: EventRow) -> None:
                os.write(fd, f"{row.id}\n".encode())
                await dispatch(row)

            yield counted
    finally:
        os.close(fd)


def note_rows(state: Any, seeded: Any, n: int, n_mrs: int = 250) -> list[dict[str, Any]]:
    """`n` Note Hook events as the web app would store them, on `n_mrs` MRs in turn."""
    people = [p for p in seeded.people if p.id != seeded.blocked.id]
    state.add_hook(seeded.project, "http://127.0.0.1:9/unused", token="unused")
    mrs = [state.open_mr(seeded.project, people[i % len(people)], [f"src/f{i}.py"]) for i in range(n_mrs)]
    state.outbox.clear()
    for i in range(n):
        state.add_note(mrs[i % n_mrs], people[(i + 1) % len(people)], f"Looks good ({i})")
    now, rows = utcnow(), []
    for event in state.outbox:
        d = describe(event.event_name, event.body)
        headers = {"Idempotency-Key": event.event_uuid, "X-Gitlab-Event": event.event_name}
        rows.append(dict(dedupe_key=dedupe_key_for(headers, b"", d.kind), kind=d.kind, action=d.action,
                         project_id=d.project_id, mr_iid=d.mr_iid, headers=headers, body=event.body,
                         status="queued", attempts=0, next_attempt_at=now, received_at=now))
    state.outbox.clear()
    return rows


async def _wait_started(procs: WorkerProcs, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while procs.log_text().count("worker started") < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"workers did not start within {timeout} s:\n{procs.log_text()[-3000:]}")
        await asyncio.sleep(0.1)


async def _backends_cpu(storage: Storage) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving this database (the workers' connections)."""
    async with storage.engine.connect() as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        pids = (await conn.execute(sa.text(query))).scalars().all()
    return sum(cpu_seconds(pid) for pid in pids)


async def _database_work(storage: Storage) -> tuple[int, int]:
    """(transactions committed, rows read) in this database so far (`pg_stat_database`, flushed within a second)."""
    async with storage.engine.connect() as conn:
        query = ("SELECT xact_commit + xact_rollback, tup_returned + tup_fetched FROM pg_stat_database "
                 "WHERE datname = current_database()")
        xacts, rows = (await conn.execute(sa.text(query))).one()
    return int(xacts), int(rows)


async def _wait_done(storage: Storage, n: int) -> None:
    """Until `n` events are done, looking twice a second (counting rows costs the database too)."""
    while (await storage.events.depth())["done"] < n:
        await asyncio.sleep(0.5)


async def one_round(storage: Storage, rows: list[dict[str, Any]], config: Path, folder: Path,
                    workers: int) -> dict[str, Any]:
    """Run the events through `workers` processes; returns the figures of this round."""
    async with storage.engine.begin() as conn:
        await conn.execute(sa.delete(events))
    handled = folder / f"handled-{workers}"
    handled.mkdir()
    procs = WorkerProcs(config, folder / f"logs-{workers}", dispatch="benchmarks.scale_out:counting_dispatch",
                        env=worker_env(**{HANDLED_LOG: str(handled)}))
    await procs.start(workers)
    try:
        await _wait_started(procs, workers)
        idle_cpu = sum(cpu_seconds(p.pid) for p in procs.procs.values())  # the start-up's share
        work = await _database_work(storage)
        started = time.monotonic()
        async with storage.engine.begin() as conn:
            await conn.execute(sa.insert(events), rows)
        await _wait_done(storage, len(rows))
        seconds = time.monotonic() - started
        worker_cpu = sum(cpu_seconds(p.pid) for p in procs.procs.values()) - idle_cpu
        database_cpu = await _backends_cpu(storage)
    finally:
        await procs.stop_all()
    await asyncio.sleep(1.5)  # the backends' statistics reach pg_stat_database within a second of going idle
    work = tuple(after - before for after, before in zip(await _database_work(storage), work))
    ids = Counter(line for p in handled.glob("*.log") for line in p.read_text().split())
    async with storage.engine.connect() as conn:
        runs = sa.func.sum(events.c.attempts + events.c.outage_attempts)  # an outage's runs are counted apart
        attempts = (await conn.execute(sa.select(runs))).scalar()
    return {"workers": workers, "seconds": seconds, "load": os.getloadavg()[0], "rate": len(rows) / seconds,
            "handled": sum(ids.values()), "cpu_ms": 1000 * (worker_cpu + database_cpu) / len(rows),
            "worker_ms": 1000 * worker_cpu / len(rows),
            "xacts": work[0] / len(rows), "rows_read": work[1] / len(rows),
            "twice": sum(1 for c in ids.values() if c > 1), "attempts": attempts,
            "errors": procs.log_text().count("event failed") + procs.log_text().count("Traceback")}


async def main(args: argparse.Namespace) -> int:
    print(f"scale-out: {args.events} Note Hook events over 250 MRs, real handlers, worker concurrency "
          f"{args.concurrency}, PostgreSQL; {machine()}")
    async with temporary_database("postgresql") as url:
        storage = Storage(url)
        try:
            async with world(storage, n_merged=40) as (state, gitlab_url, seeded):
                rows = note_rows(state, seeded, args.events)
                with tempfile.TemporaryDirectory(prefix="reviewbot-scale-") as tmp:
                    folder = Path(tmp)
                    config = write_config(folder, gitlab_url=gitlab_url, token=state.token, database_url=url,
                                          worker={"concurrency": args.concurrency, "poll_interval": 0.05})
                    results = [await one_round(storage, rows, config, folder, n) for n in args.workers]
        finally:
            await storage.close()
    return report(results, args.events)


def report(results: list[dict[str, Any]], n: int) -> int:
    base = results[0]["rate"]
    ok = True
    for r in results:
        ok &= r["handled"] == n and r["twice"] == 0 and r["attempts"] == n
        print(f"{r['workers']} worker(s): {r['rate']:7.1f} events/s ({r['rate'] / base:.2f}x of "
              f"{results[0]['workers']}), {r['seconds']:.1f} s; handled {r['handled']}, twice {r['twice']}, "
              f"attempts {r['attempts']}, errors {r['errors']}, load average (1 min) {r['load']:.1f}; CPU per event "
              f"{r['cpu_ms']:.1f} ms (workers {r['worker_ms']:.1f}, PostgreSQL {r['cpu_ms'] - r['worker_ms']:.1f}); "
              f"database transactions per event {r['xacts']:.1f}, rows read per event {r['rows_read']:.0f}")
    print("RESULT: " + ("PASS, no event handled twice" if ok else "FAIL, see the counts above"))
    return 0 if ok else 1


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--concurrency", type=int, default=4, help="[worker] concurrency of each process")
    return p.parse_args()


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(_args())))
