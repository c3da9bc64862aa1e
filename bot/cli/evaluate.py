"""`reviewbot evaluate`: how accurate each method would have been on a real history, side by side."""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_METHODS = "default,graph,learned,revfinder,frequency,author,random"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="backtest the recommender on a review history",
                       description="Replay a history in time order and report Top-k accuracy and MRR per method.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="history files (.jsonl or .jsonl.gz)")
    p.add_argument("--git", action="append", default=[], metavar="REPO", help="a local git checkout to read")
    p.add_argument("--method", default="default,revfinder,frequency,author",
                   help=f"comma-separated methods (all: {DEFAULT_METHODS})")
    p.add_argument("--json", action="store_true", help="one JSON object per (file, method) line on stdout")
    p.add_argument("--allow-author", action="store_true",
                   help="let the author be proposed (the classic Gerrit benchmarks count self-approvals)")
    p.add_argument("--top", type=int, default=10, help="length of each ranked list (default 10)")
    p.add_argument("--jobs", type=int, default=2, help="replays run in parallel (default 2)")
    p.set_defaults(func=run)


def _load(source: str, is_git: bool):
    if is_git:
        from bot.git_history import read_git_changes
        return list(read_git_changes(source))
    from bot.history_files import read_changes
    return list(read_changes(source))


def make_method(method: str, allow_author: bool):
    """A fresh recommender for a method name (ours or a baseline)."""
    from graph.baselines import BASELINES
    from graph.recommend import make_recommender

    if method in BASELINES:
        rec = BASELINES[method](allow_author=allow_author)
        rec.name = method
        return rec
    return make_recommender(method, allow_author=allow_author)


def _replay(source: str, is_git: bool, method: str, allow_author: bool, top: int, counter) -> dict:
    """One (history, method) backtest; runs in a worker process with one thread for numeric code."""
    from threadpoolctl import threadpool_limits

    from graph.backtest import backtest

    changes = _load(source, is_git)
    seen = [0]

    def tick(n: int) -> None:
        seen[0] += n
        if seen[0] % 200 == 0:
            with counter.get_lock():
                counter.value += 200

    with threadpool_limits(limits=1):
        result = backtest(changes, make_method(method, allow_author), top=top,
                          allow_author=allow_author, progress=tick)
    with counter.get_lock():
        counter.value += seen[0] % 200
    return {"file": Path(source).name, **result.as_dict()}


def _check(args: argparse.Namespace) -> list[tuple[str, bool]]:
    from graph.baselines import BASELINES
    from graph.recommend import METHODS

    sources = [(p, False) for p in args.paths] + [(g, True) for g in args.git]
    if not sources:
        raise SystemExit("reviewbot evaluate: give at least one history file or --git REPO")
    known = {"default", *METHODS, *BASELINES}
    for m in args.methods:
        if m not in known:
            raise SystemExit(f"reviewbot evaluate: unknown method {m!r}; choose from {', '.join(sorted(known))}")
    for path, is_git in sources:
        if not Path(path).exists():
            raise SystemExit(f"reviewbot evaluate: {path}: no such {'repository' if is_git else 'file'}")
    return sources


def _count(sources) -> int:
    return sum(sum(1 for _ in _load(s, g)) for s, g in sources)


def run(args: argparse.Namespace) -> int:
    args.methods = [m.strip() for m in args.method.split(",") if m.strip()]
    sources = _check(args)
    jobs = [(s, g, m) for s, g in sources for m in args.methods]
    total = _count(sources) * len(args.methods)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # spawned replays: one thread each, no oversubscription
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    results: list[dict] = []
    err = Console(stderr=True)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx, initializer=_init,
                             initargs=(counter,)) as pool, \
            Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("replay", total=total)
        futures = [pool.submit(_replay_shared, s, g, m, args.allow_author, args.top) for s, g, m in jobs]
        while not all(f.done() for f in futures):
            bar.update(task, completed=counter.value)
            time.sleep(0.2)
        results = [f.result() for f in futures]
    _print(results, args.json)
    return 0


_COUNTER = None


def _init(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _replay_shared(source, is_git, method, allow_author, top) -> dict:
    return _replay(source, is_git, method, allow_author, top, _COUNTER)


def _print(results: list[dict], as_json: bool) -> None:
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    table = Table(title="Backtest (chronological; accuracies in %)")
    for col in ("file", "method", "records", "top1", "top3", "top5", "top10", "mrr", "gini sugg/act", "seconds"):
        table.add_column(col, justify="left" if col in ("file", "method") else "right")
    for r in results:
        table.add_row(r["file"], r["method"], str(r["records"]),
                      *(f"{100 * r[k]:.1f}" for k in ("top1", "top3", "top5", "top10")),
                      f"{r['mrr']:.3f}", f"{r['gini_suggested']:.2f}/{r['gini_actual']:.2f}", f"{r['seconds']:.1f}")
    out = Console()
    if not out.is_terminal:
        out = Console(width=140)  # piped into a file: do not squeeze the table to 80 columns
    out.print(table)
