"""Background retraining: how long it takes on a large project, and what it does to suggestion latency meanwhile.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/retrain_latency.py [--data /work/shared/data/u-boot.jsonl.gz]
        [--queries 100] [--rounds 3]

What it does, as the bot does it (`bot.learning.retrain_and_store`):

1. replays the whole history into the bot's default recommender (`LearnedRecommender`, `DEFAULT_SETTINGS`),
   as a worker's graph holds it after its history is loaded;
2. times `training_window` (the copy of the training rows taken under the project's lock: suggestions wait for
   it) and `retrain` (fit on all but the recent changes, compare with the current model on those, refit on the
   whole window: the part that runs in a background thread while suggestions go on);
3. times the bot's calls - `suggest(change, POOL, explain=False)`, then the evidence for the three people shown -
   on 5-file changes made from the history's last changes, alternately with no retraining running ("idle")
   and with `retrain` running in a background thread of the same process (as the bot does; also with that
   thread at a lower CPU priority), or in a subprocess, `--rounds` times each, so that both see the same
   machine load.
   The ratio during/idle of the p50 and p99 is the figure to compare (the machine is shared and noisy).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bot import learning  # noqa: E402
from bot.history_files import read_changes  # noqa: E402
from graph.model import Change  # noqa: E402
from graph.recommend import DEFAULT_SETTINGS, LearnedRecommender  # noqa: E402
from graph.retrain import retrain, training_window  # noqa: E402

DEFAULT_DATA = "/work/shared/data/u-boot.jsonl.gz"
POOL = 40  # as bot.suggesting.POOL: the ranked candidates the eligibility filter looks at
DAY = 86400


def load_avg() -> float:
    return round(os.getloadavg()[0], 1)


def queries(history: list[Change], n: int, seed: int = 0) -> list[Change]:
    """`n` 5-file changes by recent authors, a day after the history's last change."""
    rng = np.random.default_rng(seed)
    recent = history[-2000:]
    paths = sorted({p for c in recent for p in c.files})
    t = history[-1].time + DAY
    out = []
    for i in range(n):
        author = recent[int(rng.integers(len(recent)))].author
        files = tuple(paths[j] for j in rng.choice(len(paths), size=min(5, len(paths)), replace=False))
        out.append(Change(f"q{i}", t, author, (), files))
    return out


def timed_suggestions(rec: LearnedRecommender, changes: list[Change]) -> list[float]:
    """The bot's two calls (`bot.suggesting`): rank the pool, then explain the three people shown."""
    out = []
    for change in changes:
        t0 = time.perf_counter()
        pool = rec.suggest(change, POOL, explain=False)
        shown = {s.person for s in pool[:3]}
        rec.suggest(change, len(shown), allowed=shown.__contains__, explain=True)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


class Retrainer(threading.Thread):
    """Retrains over and over in the background until stopped: in this thread, or (with `pool`) in the
    subprocess of `pool`, this thread only waiting for it."""

    def __init__(self, window, pool: ProcessPoolExecutor | None = None, nice: int = 0, bots: bool = False) -> None:
        super().__init__(daemon=True)
        self.window, self.pool, self.nice, self.bots = window, pool, nice, bots
        self.stop, self.runs = threading.Event(), 0

    def run(self) -> None:
        switch = sys.getswitchinterval()
        if self.bots:
            learning.give_way()  # what the bot's retraining thread does first
        elif self.nice:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        try:
            while not self.stop.is_set():
                if self.pool is None:
                    retrain(self.window, holdout=200)
                else:
                    self.pool.submit(retrain, self.window, holdout=200).result()
                self.runs += 1
        finally:
            sys.setswitchinterval(switch)  # the next mode starts from Python's default again


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    history = list(read_changes(args.data))
    print(f"history {Path(args.data).name}: {len(history):,} changes; load {load_avg()}")

    rec = LearnedRecommender(settings=DEFAULT_SETTINGS)
    t0 = time.perf_counter()
    for change in history:
        rec.observe(change)
    print(f"replay into the default recommender: {time.perf_counter() - t0:.1f} s; load {load_avg()}")

    t0 = time.perf_counter()
    window = training_window(rec)
    copy_s = time.perf_counter() - t0
    assert window is not None
    changes = int(window.groups.max()) + 1
    print(f"training window: {len(window.y):,} rows over {changes:,} changes; "
          f"copy under the lock {copy_s * 1000:.0f} ms")
    fits = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = retrain(window, holdout=200)
        fits.append(time.perf_counter() - t0)
    print(f"retrain (fit, compare on {result.changes} held-out changes, refit): "
          f"median {statistics.median(fits):.1f} s, max {max(fits):.1f} s over 3 runs; load {load_avg()}")

    qs = queries(history, args.queries)
    timed_suggestions(rec, qs[:10])  # warm the caches
    pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
    pool.submit(int).result()  # started before timing
    modes = {"retraining in a thread": (None, 0, False), "retraining in a thread at nice 10": (None, 10, False),
             "the bot's retraining thread (nice 10, 1 ms switch)": (None, 10, True),
             "retraining in a subprocess": (pool, 0, False)}
    times: dict[str, list[float]] = {"idle": [], **{name: [] for name in modes}}
    runs = dict.fromkeys(times, 0)
    for _ in range(args.rounds):
        times["idle"] += timed_suggestions(rec, qs)
        for name, (where, nice, bots) in modes.items():
            worker = Retrainer(window, where, nice, bots)
            worker.start()
            time.sleep(1.0)  # let the fit get going
            times[name] += timed_suggestions(rec, qs)
            worker.stop.set()
            worker.join()
            runs[name] += worker.runs
    pool.shutdown()
    idle = times["idle"]
    print(f"suggestion (pool of {POOL}, 3 explained) on 5-file changes, {len(idle)} each, load {load_avg()}:")
    print("| phase | p50 ms | p99 ms | max ms | p50 / idle | p99 / idle | retrainings meanwhile |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, xs in times.items():
        print(f"| {name} | {pct(xs, 50):.1f} | {pct(xs, 99):.1f} | {max(xs):.1f} | "
              f"{pct(xs, 50) / pct(idle, 50):.2f} | {pct(xs, 99) / pct(idle, 99):.2f} | {runs[name]} |")


if __name__ == "__main__":
    main()
