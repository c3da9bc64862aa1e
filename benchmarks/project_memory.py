"""Memory per project: the resident memory a bot process holds for one project's recommender.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/project_memory.py [--data /work/shared/data]
        [--files gitlab-runner.jsonl.gz xorg-xserver.jsonl.gz golang-tools.jsonl.gz u-boot.jsonl.gz]
        [--queries 100]

An operator sizing a worker for many projects needs what each one costs. A process keeps at most 32 projects'
recommenders (`bot.engine.Engine`, least recently used dropped), each the ownership graph (NetworkX), its edge
blocks (numpy, at most `OwnershipGraph.BLOCK_ROWS` rows), the learned ranker's training window and model.
Per history (files that are absent are skipped), in fresh processes so that each figure is that history's own:

1. **cold** (process 1): the history is stored in a fresh SQLite database and let go (the bot does not keep
   it); `base` is the resident size then, after a full collection and `malloc_trim`. The engine then takes the
   project as a worker with no snapshot does (`Engine.use`: every row replayed into the bot's default
   recommender, edge blocks built, the collector frozen from 20,000 rows); `held` is the resident size added,
   `peak` the most it added meanwhile (VmHWM, reset before each step). Then the snapshot the engine writes
   in the background (`peak` while it is captured, encoded and stored; its size), `--queries` suggestions (5
   and 50 files of the history, as the bot makes them), which fill more edge blocks (`after use`), and last
   the recommender dropped (evicted): what the process keeps of it (freed memory the allocator holds on to).
2. **warm** (process 2, the same database): a restarted worker takes the project from that snapshot, and its
   edge blocks are built in the background; the same `held` and `peak`.

Baseline, same run: the history as plain Python objects (`graph.model.Change`, as `bot.history_files` reads
them; traced by `tracemalloc`), so `held / history` says how many times its own history a project costs.
Memory does not depend on the machine's load the way times do, but on Python, NetworkX and numpy versions.
"""
from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `serve` and `worker` run the learned ranker

from benchmarks.bench_support import machine  # noqa: E402

# beside the repository (../shared/data, as the README says), else where the development machine keeps it
DEFAULT_DATA = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data"))
                     if p.is_dir()), Path("/work/shared/data"))
DEFAULT_FILES = ("gitlab-runner.jsonl.gz", "xorg-xserver.jsonl.gz", "golang-tools.jsonl.gz", "u-boot.jsonl.gz")
PROJECT = 1
MB = 2**20


# -- resident memory (Linux /proc) ------------------------------------------------------------------------------
def _status(field: str) -> float:
    """A size from /proc/self/status, in MB (`VmRSS`: resident now; `VmHWM`: the most since the last reset)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    raise SystemExit(f"/proc/self/status has no {field}: this benchmark needs Linux")


def settle() -> float:
    """Resident MB once garbage is collected and the allocator has handed back what it can."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figure keeps what the allocator holds
        pass
    return _status("VmRSS")


def reset_peak() -> None:
    """Start a new high-water mark (`VmHWM`), so the next peak is the next step's own."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


# -- the two processes ----------------------------------------------------------------------------------------------
def _history(path: str) -> tuple[list[Any], float]:
    """The file's changes, and the MB they take as Python objects (the same-run baseline)."""
    from bot.history_files import read_changes

    tracemalloc.start()
    changes = list(read_changes(path))
    size = tracemalloc.get_traced_memory()[0] / MB
    tracemalloc.stop()
    return changes, size


def _queries(changes: list[Any], count: int) -> list[Any]:
    """5- and 50-file changes made of the history's paths, by its authors, after its last change."""
    import random

    from graph.model import Change

    rng = random.Random(0)
    paths = sorted({f for c in changes for f in c.files})
    last = changes[-1].time
    return [Change(f"q{i}", last + 86400, rng.choice(changes).author, (),
                   tuple(rng.sample(paths, min(len(paths), 5 if i % 2 else 50)))) for i in range(count)]


async def _cold(path: str, url: str, queries: int) -> dict[str, Any]:
    from bot.config import ProjectSettings
    from bot.engine import Engine
    from bot.storage import Storage, migrate

    await migrate(url)
    changes, history_mb = _history(path)
    storage = Storage(url)
    await storage.history.upsert(PROJECT, changes)
    asks = _queries(changes, queries)
    out: dict[str, Any] = {"changes": len(changes), "history": history_mb}
    del changes
    settings = ProjectSettings()
    engine = Engine(storage, snapshot_every=1)  # a snapshot as soon as it is built, as a large project gets
    out["base"] = base = settle()
    reset_peak()
    started = time.perf_counter()
    async with engine.use(PROJECT, settings) as rec:
        out["seconds"] = time.perf_counter() - started
        out["nodes"], out["edges"] = rec.og.G.number_of_nodes(), rec.og.G.number_of_edges()
    out["peak"] = _status("VmHWM") - base
    out["held"] = settle() - base  # before any await: the background snapshot `use` started has not run yet
    reset_peak()
    before = _status("VmRSS")
    await engine.close(timeout=3600)  # waits for that snapshot (captured, encoded, stored)
    out["snapshot peak"] = _status("VmHWM") - before
    for q in asks:  # as the bot suggests: the project's lock, the ranking in a thread
        async with engine.use(PROJECT, settings) as rec:
            await asyncio.to_thread(rec.suggest, q, 3)
    out["after use"] = settle() - base
    row = await storage.snapshots.latest(PROJECT)
    out["snapshot MB"] = len(row.blob) / MB if row is not None and row.blob is not None else float("nan")
    del rec, engine, row
    gc.unfreeze()  # the engine froze the graph's objects out of the collector's reach
    out["kept after drop"] = settle() - base
    out["process peak"] = _status("VmHWM")
    await storage.close()
    return out


async def _warm(url: str) -> dict[str, Any]:
    from bot.config import ProjectSettings
    from bot.engine import Engine
    from bot.storage import Storage

    storage = Storage(url)
    engine = Engine(storage, snapshot_every=None)
    await storage.history.count(PROJECT)  # the connection and its caches, as a worker has them already
    out: dict[str, Any] = {"base": settle()}
    reset_peak()
    started = time.perf_counter()
    async with engine.use(PROJECT, ProjectSettings()):
        out["seconds"] = time.perf_counter() - started
    await engine.wait_background()  # the edge blocks, built in steps after a snapshot load
    out["peak"] = _status("VmHWM") - out["base"]
    out["held"] = settle() - out["base"]
    await storage.close()
    return out


def cold_process(path: str, url: str, queries: int) -> dict[str, Any]:
    return asyncio.run(_cold(path, url, queries))


def warm_process(url: str) -> dict[str, Any]:
    return asyncio.run(_warm(url))


def in_fresh_process(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- the run --------------------------------------------------------------------------------------------------------
def measure(path: Path, queries: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="reviewbot-memory-") as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'memory.sqlite3'}"
        cold = in_fresh_process(cold_process, str(path), url, queries)
        warm = in_fresh_process(warm_process, url)
    return cold, warm


def report(name: str, cold: dict[str, Any], warm: dict[str, Any]) -> None:
    ratio = cold["held"] / cold["history"] if cold["history"] else float("nan")
    print(f"{name:<24}{cold['changes']:>8,}{cold['nodes']:>8,}{cold['edges']:>9,}{cold['history']:>9.1f}"
          f"{cold['base']:>7.0f}{cold['held']:>7.0f}{ratio:>7.1f}{cold['peak']:>7.0f}{cold['after use']:>7.0f}"
          f"{cold['snapshot MB']:>7.1f}{cold['snapshot peak']:>7.0f}{cold['kept after drop']:>7.0f}"
          f"{warm['held']:>7.0f}{warm['peak']:>7.0f}{cold['seconds']:>7.1f}{warm['seconds']:>6.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the history files")
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="paths under --data")
    parser.add_argument("--queries", type=int, default=100, help="suggestions after the cold build")
    args = parser.parse_args()
    present = [f for f in args.files if (args.data / f).is_file()]
    for f in args.files:
        if f not in present:
            print(f"{args.data / f}: absent, skipped")
    if not present:
        raise SystemExit(f"no history file found under {args.data}: give --data and --files")
    print(f"memory per project, MB resident (VmRSS; 1 MB = 2^20 bytes); {machine()}")
    print("history: the changes as Python objects (baseline); base: process before the project; held: added by "
          "the project; x: held / history;\npeak: most added while building; used: held after the suggestions; "
          "snap: snapshot size, speak: added while writing it;\nkept: left resident once dropped; warm: held and "
          "peak after a warm start from the snapshot; s: cold and warm build seconds\n")
    print(f"{'history':<24}{'changes':>8}{'nodes':>8}{'edges':>9}{'history':>9}{'base':>7}{'held':>7}{'x':>7}"
          f"{'peak':>7}{'used':>7}{'snap':>7}{'speak':>7}{'kept':>7}{'warm':>7}{'wpeak':>7}{'cold s':>7}"
          f"{'w s':>6}")
    for f in present:
        report(Path(f).name.removesuffix(".jsonl.gz"), *measure(args.data / f, args.queries))
    print(f"\nend: {machine()}")


if __name__ == "__main__":
    main()
