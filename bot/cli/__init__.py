"""The `reviewbot` command line: one module per subcommand, each exposing `register(subparsers)`."""
from __future__ import annotations

import argparse
import importlib
import sys

# Each module registers its own subcommand; the order is the order of `reviewbot --help`.
SUBCOMMANDS = (
    "bot.cli.serve",      # serve, worker
    "bot.cli.migrate",
    "bot.cli.events",
    "bot.cli.prune",
    "bot.cli.backfill",
    "bot.cli.evaluate",
    "bot.cli.simulate",
    "bot.cli.install",
    "bot.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reviewbot",
        description="Suggests the best reviewers for GitLab merge requests and learns from feedback.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from bot.git_history import GitHistoryError
    from bot.history_files import HistoryFileError

    try:
        return int(args.func(args) or 0)
    except (HistoryFileError, GitHistoryError) as exc:  # a history to replay that cannot be read: say which
        print(f"reviewbot {args.command}: {exc}", file=sys.stderr)
        return 2
