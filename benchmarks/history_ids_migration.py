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

With `--whole`, revision 0014 on a whole database as a u-boot-size project leaves it at 0013, built once through
the bot's own code: the history's first `--changes` changes stored, the engine's cold build and its snapshot
(`Engine.close`), the last `LATER` changes stored and a second snapshot from the warm start, a real model fitted
and stored (`learning.retrain_and_store`) kept under `MODELS_KEPT` + 1 versions, the prior (`learning.prior_model`),
then `--suggestions` suggestions (the MR's paths and three people each) with `--feedback` rows on them and
`--events` stored webhooks (defaults: a busy project's year of suggestions and feedback, as `mr_retention_days`
keeps them, and about a week of webhooks, as `retention_days` keeps the done ones). Each run migrates a copy of
it to head while another process stores a webhook every `WRITE_PAUSE` seconds as `serve` does
(`EventQueue.store_event`, retried once SQLite's busy timeout ran out), and prints the time, the longest any of
those writes waited, the file's size before, after and after `VACUUM`, and whether every row of the five tables
is kept (a digest of each, ids included). The runs' median and spread, and the machine's load, end the output.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import multiprocessing
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.load_webhook import deliveries  # noqa: E402
from bot import learning  # noqa: E402
from bot.backfill import BOT_PICK  # noqa: E402
from bot.config import ProjectSettings  # noqa: E402
from bot.engine import Engine  # noqa: E402
from bot.gitlab.sim_state import SimState  # noqa: E402
from bot.history_files import read_changes  # noqa: E402
from bot.storage import Storage, migrate, utcnow  # noqa: E402
from bot.storage.models import MODELS_KEPT  # noqa: E402
from bot.storage.tables import events, feedback, history, models, snapshots, suggestions  # noqa: E402
from graph.model import Change  # noqa: E402
from graph.synthetic import synthetic_history  # noqa: E402
from tests.bot_harness import seed_recent  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/u-boot.jsonl.gz")
DISTINCT_DELIVERIES = 2_000
CHUNK = 2_000  # rows a statement
PROJECT = 1
LATER = 2_000  # --whole: changes stored after the first snapshot (the engine's `snapshot_every`)
RECENT = 2_500  # --whole: the suggestions are made on the history's last changes (u-boot's last year: 2,460)
WEEK_OF_EVENTS = 5_000  # --whole: done webhooks `retention_days` (7) keeps of a year's suggestions and feedback
WRITE_PAUSE = 0.1  # --whole: seconds between the concurrent writer's webhooks
YEAR = 365 * 86_400
WHOLE = (feedback, events, suggestions, models, snapshots)  # the tables 0014 builds again
LABELS = ("suggested", "assigned", "approved", "reviewed", "commented", "thumbs_up", "final_reviewer")


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
    """How many rows `table` holds, and a digest of them all in id order (the concurrent writer's left out)."""
    storage, sha, n = Storage(url), hashlib.sha256(), 0
    stmt = sa.select(table).order_by(table.c.id)
    if table is events:
        stmt = stmt.where(~events.c.dedupe_key.startswith("writer-"))
    try:
        async with storage.engine.connect() as conn:
            async for row in await conn.stream(stmt):
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


async def store_events(url: str, rows: list[dict[str, Any]], table: sa.Table = events) -> None:
    storage = Storage(url)
    try:
        for i in range(0, len(rows), CHUNK):
            async with storage.engine.begin() as conn:
                await conn.execute(sa.insert(table), rows[i:i + CHUNK])
    finally:
        await storage.close()


# -- --whole: a u-boot-size project's database at 0013, built once ----------------------------------------------
async def engine_pass(storage: Storage, *, fit: bool) -> None:
    """The engine takes the project (cold, or warm from the stored snapshot) and writes its snapshot, as a
    worker does; with `fit`, a model is first fitted on that recommender and stored."""
    engine = Engine(storage, snapshot_every=1)
    async with engine.use(PROJECT, ProjectSettings()) as rec:
        pass
    await engine.wait_background()
    if fit:
        await fit_model(storage, rec)
    await engine.close(timeout=3600)


async def fit_model(storage: Storage, rec: Any) -> None:
    """A model fitted on `rec` and stored as the engine's retraining does, active, and kept under `MODELS_KEPT`
    + 1 versions (the active one and the newest others: what a project that retrains keeps)."""
    rows, total = await storage.history.rows_since(PROJECT)
    last = rows[-1][1].time
    seen = SimpleNamespace(count=total, last_time=last, boundary={i for i, c in rows if c.time == last})
    await learning.retrain_and_store(storage, PROJECT, rec, asyncio.Lock(), history=seen)
    stored = await storage.models.list(PROJECT)
    if not stored:
        raise SystemExit("no model was fitted on the history: see the log")
    await storage.models.activate(PROJECT, stored[0].version)  # stored inactive when the graph score ranks better
    for n in range(MODELS_KEPT):
        await storage.models.save(PROJECT, f"{stored[0].version}-{n}", stored[0].blob,
                                  backtest_score=stored[0].backtest_score, activate=False)


def suggestion_rows(stored: list[Change], count: int) -> list[dict[str, Any]]:
    """`count` suggestions as `store_suggestion` writes them, over the last year, two to a merge request, each on
    one of the history's last `RECENT` changes (its author and paths) and three of its reviewers."""
    now, recent, rows = utcnow(), stored[-RECENT:], []
    for i in range(count):
        change = recent[i % len(recent)]
        names = [*change.reviewers, *change.ackers, "p0000000001", "p0000000002", "p0000000003"][:3]
        people = [{"username": name, "score": round(0.9 / (k + 1), 6), "reasons": [f"reviewed {9 - k} of these files"]}
                  for k, name in enumerate(names)]
        at = now - timedelta(seconds=YEAR * (count - i) // count)
        rows.append(dict(project_id=PROJECT, mr_iid=i // 2 + 1, created_at=at, people=people, event_id=i + 1,
                         model_version="40000c-0123456789ab", author=change.author, files=list(change.files)))
    return rows


def feedback_rows(shown: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` labels on `shown` (ids 1, 2, ... in a fresh table), each on one of its people."""
    rows = []
    for i in range(count):
        at = i * len(shown) // count
        row, label = shown[at], LABELS[i % len(LABELS)]
        rows.append(dict(suggestion_id=at + 1, project_id=PROJECT, mr_iid=row["mr_iid"],
                         person=row["people"][i % 3]["username"], label=label,
                         value=BOT_PICK if label == "assigned" else None, created_at=row["created_at"],
                         source_event_id=i + 1))
    return rows


async def build_whole(path: Path, stored: list[Change], args: argparse.Namespace) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url, "0013")
    storage = Storage(url)
    try:
        await storage.history.upsert(PROJECT, stored[:-LATER])
        await engine_pass(storage, fit=False)
        await storage.history.upsert(PROJECT, stored[-LATER:])
        await engine_pass(storage, fit=True)
        await learning.prior_model(storage)  # fitted and stored under project 0, as a worker's first build does
        sizes = [r.size for r in await storage.snapshots.list(PROJECT)]
        blobs = [len(r.blob) for p in (learning.PRIOR_PROJECT, PROJECT) for r in await storage.models.list(p)]
    finally:
        await storage.close()
    shown = suggestion_rows(stored, args.suggestions)
    await store_events(url, shown, suggestions)
    await store_events(url, feedback_rows(shown, args.feedback), feedback)
    await store_events(url, webhooks(args.events or WEEK_OF_EVENTS))
    print(f"built: {len(stored)} history rows, snapshots of {', '.join(f'{s / 1e6:.1f}' for s in sizes)} MB, "
          f"{len(blobs)} models ({sum(blobs) / 1e6:.1f} MB), {args.suggestions} suggestions, {args.feedback} "
          f"feedback rows, {args.events or WEEK_OF_EVENTS} events: {os.path.getsize(path) / 1e6:.1f} MB")


# -- --whole: the runs ---------------------------------------------------------------------------------------------
def writer(url: str, sample: tuple[dict, dict], stop: Any, ready: Any, out: Any) -> None:
    """Another process, as `serve`: a webhook stored every `WRITE_PAUSE` s until `stop`; puts each one's wait."""
    out.put(asyncio.run(write_until(url, sample, stop, ready)))


async def write_until(url: str, sample: tuple[dict, dict], stop: Any, ready: Any) -> list[float]:
    storage, waits = Storage(url), []
    try:
        while not stop.is_set():
            waits.append(await store_one(storage, sample, len(waits)))
            ready.set()
            await asyncio.sleep(WRITE_PAUSE)
    finally:
        await storage.close()
    return waits


async def store_one(storage: Storage, sample: tuple[dict, dict], n: int) -> float:
    """Seconds until the webhook is stored, tried again each time the busy timeout runs out."""
    headers, body = sample
    started = time.perf_counter()
    while True:
        try:
            await storage.events.store_event(dedupe_key=f"writer-{n}", kind=headers["X-Gitlab-Event"],
                                             headers=headers, body=body, project_id=PROJECT)
            return time.perf_counter() - started
        except sa.exc.OperationalError:
            continue


async def with_writer(url: str, sample: tuple[dict, dict],
                      work: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """Seconds `work` took while `writer` stored webhooks, and their waits (from the one before `work` on)."""
    ctx = multiprocessing.get_context("spawn")
    stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
    process = ctx.Process(target=writer, args=(url, sample, stop, ready, out))
    process.start()
    try:
        if not await asyncio.to_thread(ready.wait, 120):
            raise SystemExit("the concurrent writer stored nothing in 120 s")
        started = time.perf_counter()
        await work()
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        waits = await asyncio.to_thread(out.get, True, 600)
        process.join()
    return seconds, waits


def vacuum(path: Path) -> float:
    conn = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        conn.execute("VACUUM")
        return time.perf_counter() - started
    finally:
        conn.close()


async def whole_run(base: Path, folder: Path, sample: tuple[dict, dict]) -> dict[str, float]:
    path = folder / f"run-{time.monotonic_ns()}.sqlite3"
    with sqlite3.connect(base) as source, sqlite3.connect(path) as copy:
        source.backup(copy)
    url, load = f"sqlite+aiosqlite:///{path}", os.getloadavg()[0]
    before = [await digest(url, t) for t in WHOLE]
    size = os.path.getsize(path)
    seconds, waits = await with_writer(url, sample, lambda: migrate(url))
    kept = [await digest(url, t) for t in WHOLE] == before
    grown, vacuumed = os.path.getsize(path), vacuum(path)
    figures = dict(seconds=seconds, wait=max(waits), size=size / 1e6, grown=grown / 1e6,
                   vacuumed=os.path.getsize(path) / 1e6, vacuum=vacuumed, load=load)
    print(f"0013 -> head in {seconds:.2f} s (load {load:.1f}); a concurrent webhook waited up to {max(waits):.2f} s "
          f"({len(waits)} stored); {size / 1e6:.1f} MB -> {grown / 1e6:.1f} MB, {figures['vacuumed']:.1f} MB after "
          f"VACUUM ({vacuumed:.1f} s); rows and ids kept: {kept}", flush=True)
    path.unlink()
    return figures


async def whole(args: argparse.Namespace) -> None:
    stored = changes(args.data, args.changes)
    sample = tuple(webhooks(1)[0][k] for k in ("headers", "body"))
    with tempfile.TemporaryDirectory() as folder:
        base, started = Path(folder) / "base.sqlite3", time.perf_counter()
        await build_whole(base, stored, args)
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)
        runs = [await whole_run(base, Path(folder), sample) for _ in range(args.runs)]
    for key in ("seconds", "wait", "vacuum", "load"):
        values = [r[key] for r in runs]
        print(f"{key}: median {statistics.median(values):.2f}, min {min(values):.2f}, max {max(values):.2f}")


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
    parser.add_argument("--events", type=int, default=0,
                        help="time 0014 on this many stored webhooks instead (with --whole: how many it holds)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--whole", action="store_true", help="time 0014 on a whole u-boot-size database instead")
    parser.add_argument("--suggestions", type=int, default=46_000, help="with --whole")
    parser.add_argument("--feedback", type=int, default=133_000, help="with --whole")
    args = parser.parse_args()
    if args.whole:
        return await whole(args)
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
