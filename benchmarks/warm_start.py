"""Warm start benchmark: how long a worker takes to have a large project's recommender ready, cold (replaying
the stored history) and warm (its latest snapshot plus the rows stored after it).

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/warm_start.py [--changes 200000] [--files 60000] [--people 4000]
        [--newer 300] [--postgres postgresql://postgres@127.0.0.1:5432/test] [--no-postgres] [--cold-each]

1. The synthetic history `graph.synthetic.synthetic_history(changes, files, people)` is generated; all but the
   last `--newer` changes are stored in a fresh SQLite file and in a fresh PostgreSQL database (created on the
   server of `--postgres`, dropped at the end; skipped when unreachable).
2. **cold**: a new `bot.engine.Engine` takes the project (`Engine.use`): every stored row is read and replayed
   into the bot's default recommender. The rows' read is also timed alone on each database. The replay does
   not depend on the database and takes long (the learned ranker computes features for every change), so by
   default it runs once, on SQLite, and the PostgreSQL cold figure is its row read plus that replay; with
   `--cold-each` the whole cold build also runs on PostgreSQL.
3. **snapshot**: the engine's background write after the cold build (waited for with `Engine.close`: it
   captures, encodes and stores the state), the snapshot's size, and `graph.snapshot.loads` of it then `dumps`
   of the restored recommender, timed alone once the cold one is dropped. The same snapshot is then stored in
   PostgreSQL with that database's own history mark.
4. The last `--newer` changes are stored, as if merged while the worker was down.
5. **warm**: a new `Storage` and `Engine` on each database take the project: read the latest snapshot, restore
   it, read and observe the newer rows. The bar is under 10 s; `cold / warm` is the ratio of the same run.
6. **suggestions**: 100 suggestions timed right after the warm start (while the edge blocks are built in the
   background) and 100 once they are built, with the CPU the ranking's thread spent on the latter.

The machine is shared: compare the ratio between runs rather than absolute times.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.bench_support import percentile  # noqa: E402
from bot.config import ProjectSettings  # noqa: E402
from bot.engine import Engine, config_key, recommender_settings  # noqa: E402
from bot.storage import Storage, migrate  # noqa: E402
from graph import snapshot  # noqa: E402
from graph.model import Change  # noqa: E402
from graph.recommend import GraphRecommender  # noqa: E402
from graph.synthetic import synthetic_history  # noqa: E402

PROJECT = 1
SETTINGS = ProjectSettings()
BAR_SECONDS = 10.0
ADMIN_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


@dataclass
class Figures:
    """What one database's run measured (seconds unless named otherwise)."""

    name: str
    store: float = 0.0
    read: float = 0.0
    cold: float | None = None
    cold_note: str = ""
    warm: float | None = None
    warm_changes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    first: list[float] = field(default_factory=list)  # suggestion ms right after the warm start
    later: list[float] = field(default_factory=list)  # ... once the background work is done
    later_cpu: list[float] = field(default_factory=list)  # ms of CPU the ranking's thread spent on each of those


async def timed(make: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await make()
    return time.perf_counter() - started, result


# -- databases -------------------------------------------------------------------------------------------------
async def _pg(url: str, *sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=3)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


async def postgres_database(admin: str | None) -> tuple[str, str] | None:
    """(admin URL, URL of a new migrated database), or None when no server answers."""
    for url in [admin] if admin else ADMIN_URLS:
        try:
            await _pg(url, "SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means "no usable server"
            print(f"PostgreSQL at {url.rsplit('@', 1)[-1]} unusable ({type(exc).__name__}): skipped")
            continue
        name = f"reviewbot_bench_{uuid.uuid4().hex[:10]}"
        await _pg(url, f'CREATE DATABASE "{name}"')
        db = url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
        await migrate(db)
        return url, db
    return None


async def drop_postgres(admin: str, db: str) -> None:
    await _pg(admin, f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[-1]}" WITH (FORCE)')


# -- the steps ----------------------------------------------------------------------------------------------------
async def store_rows(url: str, changes: list[Change], figures: Figures) -> None:
    storage = Storage(url)
    try:
        figures.store, _ = await timed(lambda: storage.history.upsert(PROJECT, changes))
        figures.read, _ = await timed(lambda: storage.history.rows_since(PROJECT))
    finally:
        await storage.close()


async def cold_build(url: str, figures: Figures, *, write_snapshot: bool) -> None:
    """The engine's cold build (and, when asked, its background snapshot write at `close`)."""
    storage = Storage(url)
    engine = Engine(storage, snapshot_every=1 if write_snapshot else None)
    try:
        async def take() -> GraphRecommender:
            async with engine.use(PROJECT, SETTINGS) as rec:
                return rec
        figures.cold, rec = await timed(take)
        del rec
        if write_snapshot:  # wait for the background write the cold build started (no shutdown time limit)
            figures.extra["snapshot write (engine, background)"], _ = await timed(lambda: engine.close(timeout=3600))
            if not await storage.snapshots.list(PROJECT):
                raise SystemExit("the engine wrote no snapshot: see its log (--log)")
    finally:
        await storage.close()


async def copy_snapshot(url: str, blob: bytes) -> None:
    """Store `blob` in another database, with that database's own mark of the history it covers."""
    storage = Storage(url)
    try:
        rows, total = await storage.history.rows_since(PROJECT)
        last = rows[-1][1].time
        await storage.snapshots.save(
            PROJECT, blob, format=snapshot.fingerprint(), config=config_key("default", recommender_settings(SETTINGS)),
            history_count=total, history_time=last, boundary=[i for i, c in rows if c.time == last])
    finally:
        await storage.close()


async def warm_start(url: str, newer: list[Change], figures: Figures) -> None:
    storage = Storage(url)
    try:
        await storage.history.upsert(PROJECT, newer)
        fresh = Storage(url)  # a restarted worker: its own connections, nothing in memory
        engine = Engine(fresh, snapshot_every=None)

        async def take() -> int:
            async with engine.use(PROJECT, SETTINGS) as rec:
                return rec.og.changes
        try:
            figures.warm, figures.warm_changes = await timed(take)
            queries = [Change(f"q{i}", c.time + 1, c.author, (), c.files) for i, c in enumerate(newer[:100])]
            figures.first, _ = await suggestion_times(engine, queries)  # while the blocks are built in steps
            await engine.wait_background()
            figures.later, figures.later_cpu = await suggestion_times(engine, queries)
        finally:
            await fresh.close()
    finally:
        await storage.close()


def _ranked_cpu(rec: GraphRecommender, q: Change) -> float:
    """Milliseconds of CPU this thread spends ranking `q`."""
    started = time.thread_time()
    rec.suggest(q, 3)
    return 1000 * (time.thread_time() - started)


async def suggestion_times(engine: Engine, queries: list[Change]) -> tuple[list[float], list[float]]:
    """Milliseconds of each suggestion as the bot makes it (the project's lock, then the ranking in a thread),
    and of CPU its ranking took: on a loaded machine, a tail the wall times have and the CPU times lack is time
    the thread waited for a core, not work of ours."""
    wall, cpu = [], []
    for q in queries:
        started = time.perf_counter()
        async with engine.use(PROJECT, SETTINGS) as rec:
            cpu.append(await asyncio.to_thread(_ranked_cpu, rec, q))
        wall.append(1000 * (time.perf_counter() - started))
    return wall, cpu


async def codec(url: str) -> tuple[bytes, dict[str, Any]]:
    """The snapshot the engine wrote, and the pure codec's figures: `loads` of it, then `dumps` of the restored
    recommender (what a worker that started warm does for its next snapshot)."""
    storage = Storage(url)
    try:
        row = await storage.snapshots.latest(PROJECT)
    finally:
        await storage.close()
    assert row is not None and row.blob is not None
    started = time.perf_counter()
    restored = snapshot.loads(row.blob)
    loads_s = time.perf_counter() - started
    started = time.perf_counter()
    snapshot.dumps(restored)
    dumps_s = time.perf_counter() - started
    G = restored.og.G
    figures = {"nodes": G.number_of_nodes(), "edges": G.number_of_edges(), "dumps": dumps_s, "loads": loads_s,
               "size MB": len(row.blob) / 2**20}
    return row.blob, figures


# -- the run ----------------------------------------------------------------------------------------------------
def report(figures: list[Figures], codec_figures: dict[str, Any], replay: float, args: argparse.Namespace) -> None:
    print(f"\nsynthetic history: {args.changes:,} changes, {args.files:,} files, {args.people:,} people; "
          f"{args.newer} stored after the snapshot")
    print(f"graph: {codec_figures['nodes']:,} nodes, {codec_figures['edges']:,} edges")
    print(f"snapshot: {codec_figures['size MB']:.1f} MB; loads {codec_figures['loads']:.2f} s, dumps of the "
          f"restored recommender {codec_figures['dumps']:.2f} s (graph.snapshot alone)")
    print(f"replay of {args.changes - args.newer:,} stored changes (cold build minus the row read, SQLite): "
          f"{replay:.1f} s")
    print(f"\n{'database':<12}{'store rows':>12}{'read rows':>11}{'cold':>10}{'warm':>9}{'cold/warm':>11}"
          f"{'bar < 10 s':>12}")
    for f in figures:
        ratio = f"{f.cold / f.warm:.0f}x" if f.cold and f.warm else "-"
        ok = "-" if f.warm is None else ("yes" if f.warm < BAR_SECONDS else "NO")
        cold = f"{f.cold:.1f} s{f.cold_note}" if f.cold is not None else "-"
        warm = f"{f.warm:.2f} s" if f.warm is not None else "-"
        print(f"{f.name:<12}{f.store:>10.1f} s{f.read:>9.2f} s{cold:>10}{warm:>9}{ratio:>11}{ok:>12}")
    for f in figures:
        for key, value in f.extra.items():
            print(f"{f.name}: {key}: {value:.2f} s")
        print(f"{f.name}: warm recommender has {f.warm_changes:,} changes")
        for label, ms in (("right after the warm start (edge blocks built meanwhile)", f.first),
                          ("once the blocks are built", f.later)):
            if ms:
                print(f"{f.name}: {len(ms)} suggestions {label}: p50 {percentile(ms, 0.5):.1f} ms, "
                      f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms")
        if f.later_cpu:
            print(f"{f.name}: CPU of those rankings once the blocks are built: p50 {percentile(f.later_cpu, 0.5):.1f}"
                  f" ms, p99 {percentile(f.later_cpu, 0.99):.1f} ms, max {max(f.later_cpu):.1f} ms")
    if any(f.cold_note for f in figures):
        print("* row read on this database + the SQLite replay (run with --cold-each to replay here too)")


async def run(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    history = list(synthetic_history(args.changes, args.files, args.people, seed=args.seed))
    print(f"generated {len(history):,} changes in {time.perf_counter() - started:.1f} s")
    stored, newer = history[:-args.newer], history[-args.newer:]
    tmp = tempfile.TemporaryDirectory()
    sqlite = Figures("SQLite")
    databases = [(sqlite, f"sqlite+aiosqlite:///{tmp.name}/bench.sqlite3")]
    await migrate(databases[0][1])
    pg = None if args.no_postgres else await postgres_database(args.postgres)
    if pg is not None:
        databases.append((Figures("PostgreSQL"), pg[1]))
    try:
        for figures, url in databases:
            await store_rows(url, stored, figures)
            print(f"{figures.name}: stored {len(stored):,} rows in {figures.store:.1f} s, read in {figures.read:.2f} s")
        print("cold build (SQLite)...", flush=True)
        await cold_build(databases[0][1], sqlite, write_snapshot=True)
        gc.collect()
        replay = (sqlite.cold or 0.0) - sqlite.read
        blob, codec_figures = await codec(databases[0][1])
        gc.collect()
        for figures, url in databases[1:]:
            if args.cold_each:
                print(f"cold build ({figures.name})...", flush=True)
                await cold_build(url, figures, write_snapshot=False)
                gc.collect()
            else:
                figures.cold, figures.cold_note = figures.read + replay, "*"
            await copy_snapshot(url, blob)
        for figures, url in databases:
            await warm_start(url, newer, figures)
            gc.collect()
        report([f for f, _ in databases], codec_figures, replay, args)
    finally:
        if pg is not None:
            await drop_postgres(*pg)
        tmp.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=60_000)
    parser.add_argument("--people", type=int, default=4_000)
    parser.add_argument("--newer", type=int, default=300, help="changes stored after the snapshot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server (trust auth)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--cold-each", action="store_true", help="also replay the history on PostgreSQL")
    parser.add_argument("--log", action="store_true", help="print the engine's log lines")
    args = parser.parse_args()
    if args.newer < 1 or args.newer >= args.changes:
        parser.error("--newer must be between 1 and --changes - 1")
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
