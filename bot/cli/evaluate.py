"""`reviewbot evaluate`: how accurate each method would have been on a real history, side by side."""
from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table

from bot.cli import stored_history
from bot.cli.commands import ALL_METHODS
from bot.cli.replay import (
    load, names_of, run_jobs, scored, sources_of, stdout_console, tick_factory, unscored, usage_error,
)

SIMPLE_RULES = ("revfinder", "frequency", "author", "most-frequent", "random")  # the baselines
LEGEND = (  # under the table: what each column means, for a reader new to reviewer-recommendation papers
    "top1 / top3 / top5 / top10: % of the evaluated changes with a real reviewer among the first 1 / 3 / 5 / 10",
    "mrr: 1 / the rank of the first real reviewer, averaged (1.000: always first; 0.500: second on average)",
    "gini sugg/act: how concentrated first places (suggested) and real reviews (actual) are: 0 even, 1 one person",
    "evaluated: changes that name a reviewer to find; default: the bot; revfinder, frequency, author, "
    "most-frequent, random: simple rules to compare with",
)


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
        raise usage_error("evaluate", f"--method names no method; choose from {', '.join(sorted(known))}, or all")
    for m in methods:
        if m not in known:
            raise usage_error("evaluate", f"unknown method {m!r}; choose from {', '.join(sorted(known))}, or all")


def run(args: argparse.Namespace) -> int:
    """Replay the files, checkouts and stored projects given."""
    return stored_history.run_with_projects(args, "evaluate", _run)


def methods_of(text: str) -> list[str]:
    """The methods `--method` names, `all` standing for every one (once each, in the order given).

    >>> methods_of("default, frequency"), methods_of("all") == ALL_METHODS.split(",")
    (['default', 'frequency'], True)
    """
    named = [m.strip() for m in text.split(",") if m.strip()]
    return list(dict.fromkeys(x for m in named for x in (ALL_METHODS.split(",") if m == "all" else [m])))


def _run(args: argparse.Namespace, paths: list[str], named: dict[str, str]) -> int:
    methods = methods_of(args.method)
    _check_methods(methods)
    sources = sources_of(paths, args.git, "evaluate")
    jobs = [(s, g, name, m, args.allow_author, args.top)
            for (s, g), name in zip(sources, names_of(sources, named)) for m in methods]
    total = sum(len(load(s, g)) for s, g in sources) * len(methods)
    results = run_jobs(_replay, jobs, total, workers=args.jobs, label="evaluating")
    _print(results, args.json)
    return unscored(results, "evaluate")


def _print(results: list[dict], as_json: bool) -> None:
    results = scored(results)
    if as_json:
        for r in results:
            sys.stdout.write(json.dumps(r) + "\n")
        return
    if not results:
        return
    table = Table(title="Backtest (chronological; accuracies in %)")
    for col in ("file", "method", "records", "evaluated", "top1", "top3", "top5", "top10", "mrr", "gini sugg/act",
                "seconds"):
        table.add_column(col, justify="left" if col in ("file", "method") else "right")
    for r in results:  # Top-k and MRR are over the evaluated records: those with a reviewer to find
        table.add_row(r["file"], r["method"], str(r["records"]), str(r["evaluated"]),
                      *(f"{100 * r[k]:.1f}" for k in ("top1", "top3", "top5", "top10")),
                      f"{r['mrr']:.3f}", f"{r['gini_suggested']:.2f}/{r['gini_actual']:.2f}", f"{r['seconds']:.1f}")
    console = stdout_console()
    console.print(table)
    for line in LEGEND:
        console.print(line, highlight=False, soft_wrap=True)
    for line in summary_lines(results):
        console.print(line, highlight=False, soft_wrap=True)


def summary_lines(results: list[dict]) -> list[str]:
    """Per history where `default` ran, in plain words: how often the bot's first name was a real reviewer,
    and the best simple rule's figure beside it.

    >>> rows = [{"file": "h", "method": "default", "top1": 0.661, "top3": 0.831},
    ...         {"file": "h", "method": "frequency", "top1": 0.483}, {"file": "h", "method": "author", "top1": 0.464}]
    >>> print(summary_lines(rows)[0].replace("; ", ";\\n"))
    h: the bot's first name was a real reviewer on 66% of changes (one of its first three on 83%);
    best simple rule 48% (frequency)
    """
    by_file: dict[str, dict[str, dict]] = {}
    for r in results:
        by_file.setdefault(r["file"], {})[r["method"]] = r
    out = []
    for name, rows in by_file.items():
        bot = rows.get("default")
        if bot is None:
            continue
        line = (f"{name}: the bot's first name was a real reviewer on {100 * bot['top1']:.0f}% of changes "
                f"(one of its first three on {100 * bot['top3']:.0f}%)")
        rules = [rows[m] for m in SIMPLE_RULES if m in rows]
        if rules:
            best = max(rules, key=lambda r: r["top1"])
            line += f"; best simple rule {100 * best['top1']:.0f}% ({best['method']})"
        out.append(line)
    return out
