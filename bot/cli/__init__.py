"""The `reviewbot` command line: `bot.cli.commands` holds every subcommand's arguments; each subcommand's module
(`bot.cli.serve`, `bot.cli.migrate`, ...) is imported only when that subcommand runs, so `--help` and a command
load only what they need."""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.cli.commands import COMMANDS


def release() -> str:
    """The installed release (pyproject's version), for `--version`, serve's first log line and bug reports;
    "unknown" when run from a tree never installed."""
    try:
        return version("reviewbot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reviewbot",
        description="Suggests the best reviewers for GitLab merge requests and learns from feedback.",
    )
    parser.add_argument("--version", action="version", version=f"reviewbot {release()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    run = args.func.resolve()  # the subcommand's module, and what it imports, from here on
    from bot.git_history import GitHistoryError
    from bot.history_files import HistoryFileError

    try:
        return int(run(args) or 0)
    except (HistoryFileError, GitHistoryError) as exc:  # a history to replay that cannot be read: say which
        print(f"reviewbot {args.command}: {exc}", file=sys.stderr)
        return 2
