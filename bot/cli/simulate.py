"""`reviewbot simulate`: the measured lift of learning from feedback, on a real history."""
from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table

from bot.cli import stored_history
from bot.cli.replay import load, names_of, run_jobs, scored, sources_of, stdout_console, tick_factory, unscored


def _simulate(source: str, is_git: bool, name: str, learning: bool, top: int, leaver_rank: int,
              open_days: float) -> dict:
    """One (history, learning) replay, in a worker process."""
    from threadpoolctl import threadpool_limits

    from graph.recommend import make_recommender
    from graph.simulate import frequent_reviewer, simulate

    changes = load(source, is_git)
    half = len(changes) // 2
    leaver = frequent_reviewer(changes, half, leaver_rank) if leaver_rank > 0 else None
    with threadpool_limits(limits=1):
        result = simulate(changes, lambda: make_recommender("default"), learning=learning, k=top,
                          leaver=leaver, leave_at=half, open_days=open_days, progress=tick_factory())
    return {"file": name, "open_days": open_days, **result.as_dict()}


def run(args: argparse.Namespace) -> int:
    """Replay the files, checkouts and stored projects given."""
    return stored_history.run_with_projects(args, "simulate", _run)


def _run(args: argparse.Namespace, paths: list[str], named: dict[str, str]) -> int:
    sources = sources_of(paths, args.git, "simulate")
    jobs = [(s, g, name, learning, args.top, args.leaver_rank, args.open_days)
            for (s, g), name in zip(sources, names_of(sources, named)) for learning in (True, False)]
    total = sum(len(load(s, g)) for s, g in sources) * 2
    results = run_jobs(_simulate, jobs, total, workers=args.jobs, label="simulating")
    shown = scored(results)
    if args.json:
        for r in shown:
            sys.stdout.write(json.dumps(r) + "\n")
    elif shown:
        _print(shown, args.top)
    return unscored(results, "simulate")


def _print(results: list[dict], top: int) -> None:
    table = Table(title="Simulated team (accuracies in %)")
    for col in ("file", "learning", "records", "evaluated", "top1", "top3", "acceptance", "last third",
                "top1 by tenth", "leaver dropped after"):
        table.add_column(col, justify="left" if col in ("file", "learning") else "right")
    for r in results:
        table.add_row(r["file"], r["learning"], str(r["records"]), str(r["evaluated"]), f"{100 * r['top1']:.1f}",
                      f"{100 * r['top3']:.1f}", f"{100 * r['acceptance']:.1f}",
                      f"{100 * r['acceptance_last_third']:.1f}",
                      " ".join("-" if x is None else f"{100 * x:.0f}" for x in r["top1_over_time"]),
                      _dropped_cell(r))
    console = stdout_console()
    console.print(table)
    for line in lift_lines(results, top=top):
        console.print(line, highlight=False, soft_wrap=True)


def _late_lift(on: list[float | None], off: list[float | None]) -> str:
    """The lift over the last tenth of the history, or over the last tenth with a change to score when the
    last has none (a project whose review moved elsewhere: its late commits carry no reviewer).

    >>> _late_lift([0.5, 0.7], [0.5, 0.6]), _late_lift([0.5, None], [0.4, None]), _late_lift([None], [None])
    (' (+10.0 over the last tenth)', ' (+10.0 over tenth 1, the last with a reviewed change)', '')
    """
    scored = [i for i, (a, b) in enumerate(zip(on, off)) if a is not None and b is not None]
    if not scored:
        return ""
    i = scored[-1]
    where = "the last tenth" if i == len(on) - 1 else f"tenth {i + 1}, the last with a reviewed change"
    return f" ({100 * (on[i] - off[i]):+.1f} over {where})"


def never_dropped(r: dict) -> bool:
    """Whether the leaver was still in the top k on the last of their former changes: then
    `leaver_changes_until_dropped` equals `leaver_former_changes`, and they never dropped out for good."""
    return r["leaver_former_changes"] > 0 and r["leaver_changes_until_dropped"] == r["leaver_former_changes"]


def _dropped_cell(r: dict) -> str:
    dropped, former = r["leaver_changes_until_dropped"], r["leaver_former_changes"]
    if dropped is None or not former:
        return "-"
    return f"never ({former})" if never_dropped(r) else f"{dropped} of {former}"


def lift_lines(results: list[dict], *, top: int = 3) -> list[str]:
    """Per history, what learning changed: Top-1 overall and over the last tenth, the acceptance rate over
    the last third, how soon the leaver dropped.

    >>> on = {"file": "h", "learning": "on", "top1": 0.6, "top1_over_time": [0.7], "acceptance_last_third": 0.4,
    ...       "leaver_changes_until_dropped": 2, "leaver_former_changes": 9}
    >>> off = {**on, "learning": "off", "top1": 0.5, "top1_over_time": [0.5], "acceptance_last_third": 0.3,
    ...        "leaver_changes_until_dropped": 9}
    >>> print(lift_lines([on, off])[0].replace("; ", ";\\n"))
    h: learning lifts Top-1 by +10.0 points (+20.0 over the last tenth);
    acceptance over the last third 30.0% → 40.0%;
    the leaver dropped out of the top 3 after 2 of their 9 changes (off: never)
    >>> print(lift_lines([{**on, "leaver_changes_until_dropped": 9}, off])[0].split("; ")[-1])
    the leaver never dropped out of the top 3 (9 changes, off: never)
    >>> print(lift_lines([{**on, "top1": 0.45}, off])[0].split(" (")[0])
    h: learning lowers Top-1 by -5.0 points
    """
    pairs: dict[str, dict[str, dict]] = {}
    for r in results:
        pairs.setdefault(r["file"], {})[r["learning"]] = r
    out = []
    for name, pair in pairs.items():
        on, off = pair.get("on"), pair.get("off")
        if on is None or off is None:
            continue
        lift = 100 * (on['top1'] - off['top1'])
        line = (f"{name}: learning {'lifts' if lift >= 0 else 'lowers'} Top-1 by {lift:+.1f} points"
                f"{_late_lift(on['top1_over_time'], off['top1_over_time'])}; "
                f"acceptance over the last third {100 * off['acceptance_last_third']:.1f}% → "
                f"{100 * on['acceptance_last_third']:.1f}%")
        if on["leaver_changes_until_dropped"] is not None and on["leaver_former_changes"]:
            line += f"; {_leaver_words(on, off, top)}"
        out.append(line)
    return out


def _leaver_words(on: dict, off: dict, top: int) -> str:
    """How soon the leaver dropped out of the top `top` with learning on, and off in brackets."""
    former = on["leaver_former_changes"]
    off_words = "never" if never_dropped(off) else str(off["leaver_changes_until_dropped"])
    if never_dropped(on):
        return f"the leaver never dropped out of the top {top} ({former} changes, off: {off_words})"
    return (f"the leaver dropped out of the top {top} after {on['leaver_changes_until_dropped']} of their "
            f"{former} changes (off: {off_words})")
