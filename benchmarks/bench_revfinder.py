"""Baseline figures: the chronological backtest of every baseline of `graph.baselines` on review histories.

Prints Top-1/3/5/10 %, MRR and seconds per (history, method); it is not a test and asserts nothing. Compare the
output with the figures published beside the data (its README). Run from the repository root:

    .venv/bin/python benchmarks/bench_revfinder.py [--data /work/shared/data] [--methods revfinder frequency]
        [--files u-boot.jsonl.gz bench/gerrit.jsonl.gz] [--allow-author]

RevFinder on U-Boot's 40,269 changes takes about a minute; the other baselines seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.history_files import read_changes  # noqa: E402
from graph.backtest import KS, backtest  # noqa: E402
from graph.baselines import BASELINES  # noqa: E402

# beside the repository (../shared/data), else where the development machine keeps it (a clone elsewhere)
DEFAULT_DATA = next((p for p in (Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data"))
                     if p.is_dir()), Path("/work/shared/data"))
DEFAULT_FILES = (
    "u-boot.jsonl.gz",
    "golang-tools.jsonl.gz",
    "xorg-xserver.jsonl.gz",
    "gitlab-runner.jsonl.gz",
    "bench/gerrit.jsonl.gz",
    "bench/go.jsonl.gz",
    "bench/scikit-learn.jsonl.gz",
    "bench/react.jsonl.gz",
    "bench/spring-boot.jsonl.gz",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the history files")
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="paths under --data")
    parser.add_argument("--methods", nargs="+", default=list(BASELINES), choices=sorted(BASELINES))
    parser.add_argument("--allow-author", action="store_true", help="count self-reviews (classic Gerrit sets)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header = " ".join(f"top{k:<3d}" for k in KS)
    print(f"{'history':28s} {'method':14s} {header}   mrr  records  seconds")
    for name in args.files:
        path = args.data / name
        if not path.is_file():
            print(f"{name}: not found under {args.data} (pass --data)", file=sys.stderr)
            continue
        changes = list(read_changes(path))
        for method in args.methods:
            recommender = BASELINES[method](allow_author=args.allow_author)
            result = backtest(changes, recommender, allow_author=args.allow_author)
            tops = " ".join(f"{100 * result.top(k):6.1f}" for k in KS)
            print(f"{name:28s} {method:14s} {tops}  {result.mrr:.3f} {result.evaluated:8d} {result.seconds:8.1f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
