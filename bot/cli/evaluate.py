"""`reviewbot evaluate`: how accurate each method would have been on a real history, side by side."""
from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table

from bot.cli import stored_history
from bot.cli.argtypes import whole
from bot.cli.replay import load, names_of, run_jobs, sources_of, stdout_console, tick_factory, unscored

DEFAULT_METHODS = "default,graph,learned,revfinder,frequency,author,most-frequent,random"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="backtest the recommender on a review history",
                       description="Replay a history in time order and report Top-k accuracy and MRR per method.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="history files (.jsonl or .jsonl.gz)")
    p.add_argument("--git", action="append", default=[], metavar="REPO", help="a local git checkout to read")
    stored_history.add_arguments(p)
    p.add_argument("--method", default="default,revfinder,frequency,author",
                   help=f"comma-separated methods (all: {DEFAULT_METHODS})")
    p.add_argument("--json", action="store_true", help="one JSON object per (file, method) line on stdout")
    p.add_argument("--allow-author", action="store_true",
                   help="let the author be proposed (the classic Gerrit benchmarks count self-approvals)")
    p.add_argument("--top", type=whole(1), default=10, help="length of each ranked list (default 10)")
    p.add_argument("--jobs", type=whole(1), default=2, help="replays run in parallel (default 2)")
    p.set_defaults(func=run)


def make_method(method: str, allow_author: bool):
    """A fresh recommender for a method name (ours or a baseline)."""
    from graph.baselines import BASELINES
    from graph.recommend import make_recommender

    if method in BASELINES:
        rec = BASELINES[method](allow_author=allow_author)
        rec.name = method
        return rec
    return make_recommender(method, allow_author=allow_author)


def _replay(source: str, is_git: bool, name: str, method: str, allow_author: bool, top: int) -> dict:
    """One (history, method) backtest, in a worker process."""
    from threadpoolctl import threadpool_limits

    from graph.backtest import backtest

    changes = load(source, is_git)
    with threadpool_limits(limits=1):
        result = backtest(changes, make_method(method, allow_author), top=top,
                          allow_author=allow_author, progress=tick_factory())
    return {"file": name, **result.as_dict()}


def _check_methods(methods: list[str]) -> None:
    from graph.baselines import BASELINES
    from graph.recommend import METHODS

    known = {"default", *METHODS, *BASELINES}
    if not methods:
        raise SystemExit(f"reviewbot evaluate: --method names no method; choose from {', '.join(sorted(known))}")
    for m in methods:
        if m not in known:
            raise SystemExit(f"reviewbot evaluate: unknown method {m!r}; choose from {', '.join(sorted(known))}")


def run(args: argparse.Namespace) -> int:
    """Replay the files, checkouts and stored projects given."""
    return stored_history.run_with_projects(args, "evaluate", _run)


def _run(args: argparse.Namespace, paths: list[str], named: dict[str, str]) -> int:
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    _check_methods(methods)
    sources = sources_of(paths, args.git, "evaluate")
    jobs = [(s, g, name, m, args.allow_author, args.top)
            for (s, g), name in zip(sources, names_of(sources, named)) for m in methods]
    total = sum(len(load(s, g)) for s, g in sources) * len(methods)
    results = run_jobs(_replay, jobs, total, workers=args.jobs, label="evaluating")
    _print(results, args.json)
    return unscored(results, "evaluate")


def _print(results: list[dict], as_json: bool) -> None:
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    table = Table(title="Backtest (chronological; accuracies in %)")
    for col in ("file", "method", "records", "evaluated", "top1", "top3", "top5", "top10", "mrr", "gini sugg/act",
                "seconds"):
        table.add_column(col, justify="left" if col in ("file", "method") else "right")
    for r in results:  # Top-k and MRR are over the evaluated records: those with a reviewer to find
        table.add_row(r["file"], r["method"], str(r["records"]), str(r["evaluated"]),
                      *(f"{100 * r[k]:.1f}" for k in ("top1", "top3", "top5", "top10")),
                      f"{r['mrr']:.3f}", f"{r['gini_suggested']:.2f}/{r['gini_actual']:.2f}", f"{r['seconds']:.1f}")
    stdout_console().print(table)
