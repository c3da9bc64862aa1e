"""How long revisions 0013 and 0014 take on SQLite: tables built again with AUTOINCREMENT, every row kept.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/history_ids_migration.py [--data /work/shared/data/u-boot.jsonl.gz]
        [--changes 40000] [--runs 3]
    .venv/bin/python benchmarks/history_ids_migration.py --events 200000 [--runs 3]

Each run: a fresh SQLite file migrated to 0012, the history file's first `--changes` changes stored as the bot
stores them (`HistoryStore.upsert`, one project), then `migrate` to head timed, the file's size before and the
rows checked unchanged after (ids included). Without the file, `graph.synthetic.synthetic_history` is stored.

With `--events N`, revision 0014 instead, on the table it takes longest over: a fresh file migrated to 0013, N
stored webhooks (the simulator's Note, Emoji and Merge Request Hooks as GitLab sends them, about 4 KB each with
their headers; 2,000 distinct deliveries over and over, each under its own key; nine in ten done), then
`migrate` to head timed and the events checked unchanged after (a digest of every row, ids included).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_webhook import deliveries  # noqa: E402
from bot.gitlab.sim_state import SimState  # noqa: E402
from bot.history_files import read_changes  # noqa: E402
from bot.storage import Storage, migrate, utcnow  # noqa: E402
from bot.storage.tables import events, history  # noqa: E402
from graph.model import Change  # noqa: E402
from graph.synthetic import synthetic_history  # noqa: E402
from tests.bot_harness import seed_recent  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/u-boot.jsonl.gz")
DISTINCT_DELIVERIES = 2_000
CHUNK = 2_000  # rows a statement


def changes(data: Path, count: int) -> list[Change]:
    if data.is_file():
        return list(itertools.islice(read_changes(data), count))
    print(f"{data} not found: a synthetic history instead")
    return synthetic_history(count, count // 2, 300)


def webhooks(count: int) -> list[dict[str, Any]]:
    """`count` events rows as `EventQueue.store_event` writes them, over the simulator's deliveries."""
    state = SimState(token="sim-token", seed=1)
    sent = [(headers, json.loads(raw)) for headers, raw in
            deliveries(state, seed_recent(state, n_people=12, n_merged=40), DISTINCT_DELIVERIES)]
    now, rows = utcnow(), []
    for i in range(count):
        headers, body = sent[i % len(sent)]  # shared: the rows only hold them
        mr = body.get("merge_request") or body.get("object_attributes") or {}
        done = i % 10 != 0
        rows.append(dict(
            dedupe_key=f"delivery-{i}", kind=headers["X-Gitlab-Event"], action=mr.get("action"),
            project_id=body["project"]["id"], mr_iid=mr.get("iid"), headers=headers, body=body,
            status="done" if done else "queued", attempts=int(done), next_attempt_at=now,
            received_at=now - timedelta(seconds=count - i), finished_at=now if done else None))
    return rows


async def digest(url: str, table: sa.Table) -> tuple[int, str]:
    """How many rows `table` holds, and a digest of them all in id order."""
    storage, sha, n = Storage(url), hashlib.sha256(), 0
    try:
        async with storage.engine.connect() as conn:
            async for row in await conn.stream(sa.select(table).order_by(table.c.id)):
                sha.update(repr(tuple(row)).encode())
                n += 1
    finally:
        await storage.close()
    return n, sha.hexdigest()


async def store_history(url: str, stored: list[Change]) -> None:
    storage = Storage(url)
    try:
        await storage.history.upsert(1, stored)
    finally:
        await storage.close()


async def store_events(url: str, rows: list[dict[str, Any]]) -> None:
    storage = Storage(url)
    try:
        for i in range(0, len(rows), CHUNK):
            async with storage.engine.begin() as conn:
                await conn.execute(sa.insert(events), rows[i:i + CHUNK])
    finally:
        await storage.close()


async def one_run(folder: Path, base: str, table: sa.Table, fill: Callable[[str], Awaitable[None]]) -> float:
    path = folder / f"{table.name}-{time.monotonic_ns()}.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url, base)
    await fill(url)
    before, size = await digest(url, table), os.path.getsize(path)
    started = time.perf_counter()
    after_revision = await migrate(url)
    seconds = time.perf_counter() - started
    kept = await digest(url, table) == before
    print(f"{before[0]} {table.name} rows, {size / 1e6:.1f} MB: {base} -> "
          f"{', '.join(after_revision)} in {seconds:.2f} s; rows and ids kept: {kept}")
    path.unlink()
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a history file (.jsonl[.gz])")
    parser.add_argument("--changes", type=int, default=40_000)
    parser.add_argument("--events", type=int, default=0, help="time 0014 on this many stored webhooks instead")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.events:
        rows = webhooks(args.events)
        base, table, fill = "0013", events, lambda url: store_events(url, rows)
    else:
        stored = changes(args.data, args.changes)
        base, table, fill = "0012", history, lambda url: store_history(url, stored)
    with tempfile.TemporaryDirectory() as folder:
        times = [await one_run(Path(folder), base, table, fill) for _ in range(args.runs)]
    print(f"migration seconds: min {min(times):.2f}, max {max(times):.2f}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
