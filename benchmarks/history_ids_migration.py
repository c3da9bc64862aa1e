"""How long revision 0013 takes on SQLite: the `history` table built again with AUTOINCREMENT, every row kept.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/history_ids_migration.py [--data /work/shared/data/u-boot.jsonl.gz]
        [--changes 40000] [--runs 3]

Each run: a fresh SQLite file migrated to 0012, the history file's first `--changes` changes stored as the bot
stores them (`HistoryStore.upsert`, one project), then `migrate` to head timed, the file's size before and the
rows checked unchanged after (ids included). Without the file, `graph.synthetic.synthetic_history` is stored.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.history_files import read_changes  # noqa: E402
from bot.storage import Storage, migrate  # noqa: E402
from bot.storage.tables import history  # noqa: E402
from graph.model import Change  # noqa: E402
from graph.synthetic import synthetic_history  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/u-boot.jsonl.gz")


def changes(data: Path, count: int) -> list[Change]:
    if data.is_file():
        return list(itertools.islice(read_changes(data), count))
    print(f"{data} not found: a synthetic history instead")
    return synthetic_history(count, count // 2, 300)


async def rows(url: str) -> list[tuple]:
    storage = Storage(url)
    try:
        async with storage.engine.connect() as conn:
            return [tuple(r) for r in (await conn.execute(sa.select(history).order_by(history.c.id))).all()]
    finally:
        await storage.close()


async def one_run(folder: Path, stored: list[Change]) -> float:
    path = folder / f"history-{time.monotonic_ns()}.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url, "0012")
    storage = Storage(url)
    try:
        await storage.history.upsert(1, stored)
    finally:
        await storage.close()
    before = await rows(url)
    started = time.perf_counter()
    after_revision = await migrate(url)
    seconds = time.perf_counter() - started
    kept = await rows(url) == before
    print(f"{len(before)} rows, {os.path.getsize(path) / 1e6:.1f} MB: 0012 -> {', '.join(after_revision)} in "
          f"{seconds:.2f} s; rows and ids kept: {kept}")
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a history file (.jsonl[.gz])")
    parser.add_argument("--changes", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stored = changes(args.data, args.changes)
    with tempfile.TemporaryDirectory() as folder:
        times = [await one_run(Path(folder), stored) for _ in range(args.runs)]
    print(f"migration seconds: min {min(times):.2f}, max {max(times):.2f}; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
