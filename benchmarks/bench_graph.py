"""Recommender benchmark: ingest rate, suggestion latency and memory of the ownership graph.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/bench_graph.py [--data /work/shared/data/u-boot.jsonl.gz]
        [--synthetic 200000] [--queries 200] [--method graph|default]

For each history (a real one when the file exists, and a synthetic one the size of a very large GitLab project)
it measures, in a fresh process so that peak memory is that history's own:

1. ingest: `GraphRecommender.observe_history` (`OwnershipGraph.add_changes`, the bulk load) over every change;
   only the ingest is timed (the changes are read or generated first); with ``--method default``, also
   `OwnershipGraph.add_change` one change at a time (as a replay does) over all but the last changes;
2. suggestion latency: `GraphRecommender.suggest(change, k=5)` with reasons, for small (5 files) and large
   (500 files) changes made of paths of the history, by one of its authors, a day after its last change,
   once the paths' edge blocks are built (`OwnershipGraph.warm_blocks`, as the bot does after loading);
   with ``--method default`` also the bot's default, `LearnedRecommender` (see `_learned` for how it is fitted).
   The collector is frozen after the ingest, as a long-running bot should do once it has loaded its history;
3. memory: resident size added by the ingest, the process's peak, and the graph's node and edge counts;
4. a baseline in the same process: the same changes into plain dicts of `Counter`s (reviews and authorship per
   file and directory, reviewers per author: the counts the graph keeps, without decay, last times or
   NetworkX), and a query summing those counters. The bulk load is timed between two baseline ingests (their
   mean is the ratio's baseline); the one-at-a-time ingest and the baseline take the changes in alternate
   chunks; each query is followed by the baseline query. So both see about the same load. Machines are shared and noisy:
   the ratios to this baseline are what to compare between runs, not the absolute times.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.model import Change  # noqa: E402
from graph.ownership import DAY, ancestors  # noqa: E402

DEFAULT_DATA = "/work/shared/data/u-boot.jsonl.gz"
SIZES = (5, 500)
WARMUP = 5


# -- the same-run baseline ---------------------------------------------------------------------------------
class CounterIndex:
    """The counts the ownership graph keeps, in plain dicts of `Counter`s: the floor an ingest can hope for.

    >>> ix = CounterIndex(); ix.add(Change("1", 0, "ann", ("bob",), ("src/a.c",)))
    >>> ix.suggest(Change("2", 1, "cy", (), ("src/b.c",)), 5)
    ['bob', 'ann']
    """

    def __init__(self) -> None:
        self.reviews: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.authored: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.follows: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._dirs: dict[str, list[str]] = {}

    def paths(self, files: Sequence[str]) -> dict[str, None]:
        out: dict[str, None] = {}
        for f in files:
            out[f] = None
            dirs = self._dirs.get(f)
            if dirs is None:
                dirs = self._dirs[f] = ancestors(f)
            out.update(dict.fromkeys(dirs))
        return out

    def add(self, change: Change) -> None:
        truth = change.truth()
        self.follows[change.author].update(truth)
        for p in self.paths(change.files):
            self.reviews[p].update(truth)
            self.authored[p][change.author] += 1

    def add_all(self, changes: Sequence[Change]) -> None:
        for c in changes:
            self.add(c)

    def suggest(self, change: Change, k: int) -> list[str]:
        """Reviews of the change's files and directories, then of the author's changes, summed."""
        score: Counter[str] = Counter(self.follows.get(change.author, ()))
        for p in self.paths(change.files):
            score.update(self.reviews.get(p, ()))
            score.update(self.authored.get(p, ()))
        score.pop(change.author, None)
        return [person for person, _ in score.most_common(k)]


# -- measuring -------------------------------------------------------------------------------------------
def rss_mb() -> float:
    """Current resident size (Linux /proc; elsewhere the peak, which is all `resource` knows)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_mb()


def peak_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 2**20 if platform.system() == "Darwin" else kb / 2**10


def timed_ingest(adders: dict[str, Callable[[Change], None]], changes: Sequence[Change],
                 chunk: int = 5_000) -> dict[str, tuple[float, float]]:
    """(seconds, MB of resident size added) for each of `adders` to take every change.

    They take the changes a chunk at a time in turn, so that a burst of load from other users of the machine
    falls on all of them alike; the garbage collector stays on, as in use.
    """
    gc.collect()
    secs, mem = dict.fromkeys(adders, 0.0), dict.fromkeys(adders, 0.0)
    for start in range(0, len(changes), chunk):
        part = changes[start:start + chunk]
        for name, add in adders.items():
            before, t = rss_mb(), time.perf_counter()
            for c in part:
                add(c)
            secs[name] += time.perf_counter() - t
            mem[name] += rss_mb() - before
    return {name: (secs[name], mem[name]) for name in adders}


def bulk_ingest(rec, base: CounterIndex, changes: Sequence[Change]) -> tuple[float, float, float, float]:
    """(seconds, MB) of `GraphRecommender.observe_history` over the whole history (the bulk load a bot does
    when it builds a project's graph from stored history), and (seconds, MB) of the Counter baseline into
    `base`; the baseline's time is the mean of one ingest just before the graph's and one just after, so
    that both see about the same load. The garbage collector stays on, as in use."""
    gc.collect()
    before, t = rss_mb(), time.perf_counter()
    base.add_all(changes)
    first, base_mb = time.perf_counter() - t, rss_mb() - before
    before, t = rss_mb(), time.perf_counter()
    rec.observe_history(changes)
    seconds, mb = time.perf_counter() - t, rss_mb() - before
    t = time.perf_counter()
    CounterIndex().add_all(changes)
    return seconds, mb, (first + time.perf_counter() - t) / 2, base_mb


def paired_latencies(fn: Callable[[Change], object], base_fn: Callable[[Change], object],
                     queries: Sequence[Change]) -> tuple[np.ndarray, np.ndarray, float]:
    """Milliseconds of `fn` and of `base_fn` on each query after `WARMUP` untimed ones, the two timed back to
    back so that both see the same load; also `fn`'s very first call (cold caches)."""
    start = time.perf_counter()
    fn(queries[0])
    cold = (time.perf_counter() - start) * 1e3
    for q in queries[1:WARMUP]:
        fn(q)
        base_fn(q)
    ms, base_ms = [], []
    for q in queries[WARMUP:]:
        start = time.perf_counter()
        fn(q)
        middle = time.perf_counter()
        base_fn(q)
        ms.append(middle - start)
        base_ms.append(time.perf_counter() - middle)
    return np.array(ms) * 1e3, np.array(base_ms) * 1e3, cold


def make_queries(changes: Sequence[Change], n: int, size: int, seed: int) -> list[Change]:
    """`n` new changes of `size` distinct files drawn by how often the history touched them (busy code is
    where changes land), each by an author of a random past change, one day after the last change.

    Large changes draw from the whole tree, so they touch more directories than a real one: a pessimistic case.
    """
    rng = np.random.default_rng(seed)
    pool = [f for c in changes for f in c.files]
    size = min(size, len(set(pool)))  # a small history may have fewer distinct files
    humans = [c.author for c in changes if not c.bot_author]
    now = max(c.time for c in changes) + int(DAY)
    out = []
    for i in range(n):
        files: dict[str, None] = {}
        while len(files) < size:
            for j in rng.integers(0, len(pool), size).tolist():
                files.setdefault(pool[j], None)
                if len(files) == size:
                    break
        author = humans[int(rng.integers(0, len(humans)))]
        out.append(Change(f"bench-{size}-{i}", now, author, (), tuple(files)))
    return out


# -- one history -----------------------------------------------------------------------------------------
@dataclass
class Figures:
    """Everything measured on one history (times in seconds, memory in MB, latencies in ms)."""

    name: str
    changes: int = 0
    file_refs: int = 0
    ingest_s: float = 0.0
    base_ingest_s: float = 0.0
    graph_mb: float = 0.0
    base_mb: float = 0.0
    peak_mb: float = 0.0
    nodes: int = 0
    edges: int = 0
    loadavg: float = 0.0
    latency: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load(source: str, args: argparse.Namespace) -> list[Change]:
    if source == "synthetic":
        from graph.synthetic import synthetic_history

        return list(synthetic_history(args.synthetic, args.files, args.people, seed=args.seed))
    from bot.history_files import read_changes

    return list(read_changes(source))


def run_history(source: str, args: argparse.Namespace) -> Figures:
    """All the measurements on one history; runs in its own process."""
    from threadpoolctl import threadpool_limits

    from graph.recommend import GraphRecommender

    changes = load(source, args)
    name = "synthetic" if source == "synthetic" else Path(source).name.split(".")[0]
    fig = Figures(name, len(changes), sum(len(c.files) for c in changes), loadavg=os.getloadavg()[0])
    rec, base = GraphRecommender(), CounterIndex()
    fig.ingest_s, fig.graph_mb, fig.base_ingest_s, fig.base_mb = bulk_ingest(rec, base, changes)
    fig.nodes, fig.edges = rec.og.G.number_of_nodes(), rec.og.G.number_of_edges()
    _warm(fig, rec, "graph")
    queries = {size: make_queries(changes, args.queries + WARMUP, size, args.seed + size) for size in SIZES}
    gc.collect()
    gc.freeze()  # as a long-running bot should once its history is loaded (see the README)
    with threadpool_limits(1):
        for qs in queries.values():
            _time_queries(fig, "graph", lambda q, rec=rec: rec.suggest(q, k=5), base, qs)
        del rec
        if args.method == "default":
            _learned(fig, changes, queries, base, args)
    fig.peak_mb = peak_mb()
    return fig


def _time_queries(fig: Figures, method: str, fn: Callable, base: CounterIndex, queries: list[Change]) -> None:
    ms, base_ms, cold = paired_latencies(fn, lambda q: base.suggest(q, 5), queries)
    fig.latency.append({
        "method": method, "size": len(queries[0].files), "n": len(ms), "cold": cold,
        "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "max": float(ms.max()),
        "base_p50": float(np.percentile(base_ms, 50)),
    })


def _learned(fig: Figures, changes: list[Change], queries: dict[int, list[Change]], base: CounterIndex,
             args: argparse.Namespace) -> None:
    """The bot's default recommender, fitted quickly: the graph takes all but the last `--learn-last` changes
    by plain ingest (timed again: a second ingest figure), then the learned recommender observes the rest,
    which computes every change's candidates, keeps them as training rows and refits as the window grows."""
    from graph.recommend import make_recommender

    gc.unfreeze()
    gc.collect()
    rec = make_recommender("default")
    cut = max(0, len(changes) - args.learn_last)
    base2 = CounterIndex()
    done = timed_ingest({"graph": lambda c: rec.og.add_change(c, allow_author=rec.allow_author),
                         "base": base2.add}, changes[:cut])
    seconds, base_seconds = done["graph"][0], done["base"][0]
    del base2
    fig.notes.append(f"ingest one change at a time (`add_change`, as a replay does; {cut:,} changes, chunks taken "
                     f"in turn with the baseline): {cut / seconds:,.0f} changes/s, ratio {seconds / base_seconds:.1f}")
    seconds, _ = timed_ingest({"learned": rec.observe}, changes[cut:])["learned"]
    start = time.perf_counter()
    rec.refit()
    refit = time.perf_counter() - start
    fig.notes.append(f"learned: observe (features + training rows + refits) of the last {len(changes) - cut:,} "
                     f"changes: {(len(changes) - cut) / seconds:,.0f} changes/s; one refit {refit:.2f} s")
    if rec.model_ is None:
        fig.notes.append("learned: no model could be fitted (too few labelled changes); latency not measured")
        return
    _warm(fig, rec, "default")
    gc.collect()
    gc.freeze()
    for qs in queries.values():
        _time_queries(fig, "default", lambda q: rec.suggest(q, k=5), base, qs)


def _warm(fig: Figures, rec, method: str) -> None:
    """Build the paths' edge blocks after the load, as the bot's engine does (`OwnershipGraph.warm_blocks`)."""
    start = time.perf_counter()
    rows = rec.og.warm_blocks()
    fig.notes.append(f"{method}: edge blocks of the busiest paths built after the load, as the bot does: "
                     f"{rows:,} rows in {time.perf_counter() - start:.2f} s")


# -- output ----------------------------------------------------------------------------------------------
def print_figures(figs: list[Figures], args: argparse.Namespace) -> None:
    print("bulk ingest (ratio = time / time of a dict-of-Counters ingest of the same changes in the same process, "
          "mean of one just before and one just after)")
    print(f"{'history':<10} {'changes':>8} {'file refs':>10} {'changes/s':>10} {'base/s':>10} {'ratio':>6} "
          f"{'nodes':>9} {'edges':>10} {'graph MB':>9} {'base MB':>8} {'peak MB':>8} {'load':>5}")
    for f in figs:
        print(f"{f.name:<10} {f.changes:>8,} {f.file_refs:>10,} {f.changes / f.ingest_s:>10,.0f} "
              f"{f.changes / f.base_ingest_s:>10,.0f} {f.ingest_s / f.base_ingest_s:>6.1f} {f.nodes:>9,} "
              f"{f.edges:>10,} {f.graph_mb:>9,.0f} {f.base_mb:>8,.0f} {f.peak_mb:>8,.0f} {f.loadavg:>5.1f}")
    print(f"\nsuggest(change, k=5) latency, ms ({args.queries} queries after {WARMUP} warm-up; cold = first call; "
          "ratio = p50 / p50 of a Counter-sum query timed right after each one)")
    print(f"{'history':<10} {'method':<8} {'files':>5} {'cold':>7} {'p50':>7} {'p99':>7} {'max':>7} "
          f"{'base p50':>9} {'ratio':>6}")
    for f in figs:
        for r in f.latency:
            print(f"{f.name:<10} {r['method']:<8} {r['size']:>5} {r['cold']:>7.1f} {r['p50']:>7.2f} "
                  f"{r['p99']:>7.2f} {r['max']:>7.2f} {r['base_p50']:>9.3f} {r['p50'] / r['base_p50']:>6.1f}")
    for f in figs:
        for note in f.notes:
            print(f"{f.name}: {note}")
    print("\nThe machine is shared and noisy (load = 1-minute load average when the history was measured): "
          "compare the ratios between runs, not absolute times. Memory: resident size each structure added "
          "while ingesting, and the peak of the process that measured the history (it holds the changes too).")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA, help="a real history (.jsonl[.gz]); skipped when absent")
    p.add_argument("--synthetic", type=int, default=200_000, help="merged changes of the synthetic history (0: skip)")
    p.add_argument("--files", type=int, default=60_000, help="files of the synthetic history")
    p.add_argument("--people", type=int, default=4_000, help="people of the synthetic history")
    p.add_argument("--queries", type=int, default=200, help="timed suggestions per change size")
    p.add_argument("--method", choices=("graph", "default"), default="default",
                   help="graph: the graph score only; default: also the learned recommender the bot uses")
    p.add_argument("--learn-last", type=int, default=1_000, help="changes the learned recommender observes")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sources = []
    if Path(args.data).is_file():
        sources.append(args.data)
    else:
        print(f"{args.data}: not found, skipping the real history")
    if args.synthetic > 0:
        sources.append("synthetic")
        print(f"synthetic: {args.synthetic:,} changes, {args.files:,} files, {args.people:,} people, "
              f"seed {args.seed}")
    figs = []
    for source in sources:  # one fresh process each, so the peak memory is that history's own
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            figs.append(pool.submit(run_history, source, args).result())
    print()
    print_figures(figs, args)


if __name__ == "__main__":
    main()
