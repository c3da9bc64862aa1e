"""Every subcommand's arguments, and the function that runs it, named `module:function` and imported only when
that subcommand runs.

Why apart from the commands' modules: those import what their work needs (aiohttp, SQLAlchemy, scikit-learn
through the recommender), which took 5-6 s on a 2-core machine, so `reviewbot --help` and every subcommand's
`--help` took that long, and `serve` did not listen meanwhile. This module imports only `argparse` and
`bot.cli.argtypes`; `tests/test_cli_imports.py` checks that parsing imports nothing more.
"""
from __future__ import annotations

import argparse
from typing import Callable

from bot.cli.argtypes import days, whole

__all__ = ["COMMANDS", "Entry", "DEFAULT_DISPATCH", "ALL_METHODS", "DEFAULT_METHODS", "MR_RETENTION_MIN_DAYS",
           "MODELS_KEPT"]

DEFAULT_DISPATCH = "bot.handlers:make_dispatch"
ALL_METHODS = "default,graph,learned,revfinder,frequency,author,most-frequent,random"
DEFAULT_METHODS = "default,revfinder,frequency,author"
# As bot.config and bot.storage.models define them (importing those costs SQLAlchemy and pydantic);
# tests/test_cli_imports.py checks that they agree.
MR_RETENTION_MIN_DAYS = 90
MODELS_KEPT = 5
CONFIG_HELP = "config file (default: $REVIEWBOT_CONFIG, then ./config.toml)"


class Entry:
    """A subcommand's function, `module:function`, imported when it is called (`args.func(args)`)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def resolve(self) -> Callable[[argparse.Namespace], int | None]:
        import importlib

        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, args: argparse.Namespace) -> int | None:
        return self.resolve()(args)

    def __repr__(self) -> str:
        return f"Entry({self.target!r})"


def _serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the webhook server (and a worker, unless --no-worker)",
                       description="Answer GitLab webhooks on POST /webhook; GET /healthz and /metrics.")
    _dispatch_and_logs(p)
    p.add_argument("--host", help="listen address (default [server] host)")
    p.add_argument("--port", type=whole(0, 65535),
                   help="listen port, 0 for any free one (default $PORT or [server] port)")
    p.add_argument("--no-worker", action="store_true", help="only receive webhooks; run `reviewbot worker` apart")
    p.set_defaults(func=Entry("bot.cli.serve:run_serve"))
    w = sub.add_parser("worker", help="run stored events through the handlers (no web server)",
                       description="Claim events from the database queue and run them until SIGTERM.")
    _dispatch_and_logs(w)
    w.add_argument("--once", action="store_true", help="run the events due now, then exit")
    w.add_argument("--metrics-port", type=whole(0, 65535), metavar="PORT",
                   help="serve this worker's Prometheus metrics (events processed and failed, dispatch time, "
                        "GitLab errors, suggestion latency) at http://0.0.0.0:PORT/metrics (0: any free port, "
                        "logged)")
    w.set_defaults(func=Entry("bot.cli.serve:run_worker"))


def _dispatch_and_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--dispatch", default=DEFAULT_DISPATCH, metavar="MODULE:NAME",
                   help=f"the handlers' dispatch factory (default {DEFAULT_DISPATCH})")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _migrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema",
                       description="Bring the database ([database] url / DATABASE_URL) to this version's schema.")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--check", action="store_true", help="only report; exit 1 when a migration is needed")
    p.set_defaults(func=Entry("bot.cli.migrate:run"))


def _events(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("events", help="inspect the event queue, requeue or prune events",
                       description="The stored webhook events: list them, see why one failed, run it again.")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION")  # none: list
    # `--config` after the action too ("events list --config X"), as with every other command
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    ls = actions.add_parser("list", help="newest events first, with the queue's counts", parents=[after])
    ls.add_argument("--failed", action="store_true", help="only failed and dead events")
    ls.add_argument("--status", choices=["queued", "running", "done", "failed", "dead"])
    ls.add_argument("--limit", type=whole(1), default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one event with its headers, body and last error", parents=[after])
    show.add_argument("id", type=whole(1))
    rq = actions.add_parser("requeue", help="run failed, dead or done events again", parents=[after])
    rq.add_argument("ids", type=whole(1), nargs="+", metavar="ID")
    pr = actions.add_parser("prune", help="delete done events (keeps at least one day for deduplication)",
                            description="Delete done events finished more than D days ago. `reviewbot prune` "
                            "does it with dead events, finished merge requests' rows and old model versions.",
                            parents=[after])
    pr.add_argument("--older-than-days", type=days(), default=None, help="default [worker] retention_days")
    p.set_defaults(func=Entry("bot.cli.events:run"), action="list", failed=False, status=None, limit=50, json=False)


PRUNE_DESCRIPTION = f"""\
Delete what the bot no longer needs, now; every worker does the same at start and every
[worker] prune_interval seconds, with the same [worker] settings as defaults. What is kept:
- done events for [worker] retention_days (7), dead events for dead_retention_days (30: time to
  read and requeue them; 0 keeps them). Failed events are never deleted: they are still retried,
  until done or dead. At least a day of either stays: their keys recognise re-sent deliveries.
- suggestions, feedback, approval and reviewer times and the bot's comment record of each merge
  request until it has been merged or closed, with nothing new on it, for mr_retention_days (365;
  0 keeps them). The learning reads a year-old label at under 2 % of its weight (a 60-day half-life),
  the dashboard shows 12 weeks: at least {MR_RETENTION_MIN_DAYS} days are kept.
- the active model of each project and its {MODELS_KEPT} newest versions (saving a model prunes its project).
"""


def _prune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="delete old events, finished merge requests' rows and old model versions",
                       description=PRUNE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--events-days", type=days(), metavar="D",
                   help="done events finished more than D days ago (default: [worker] retention_days)")
    p.add_argument("--dead-days", type=days(), metavar="D",
                   help="dead events finished more than D days ago (default: [worker] dead_retention_days)")
    p.add_argument("--mr-days", type=days(least=MR_RETENTION_MIN_DAYS), metavar="D",
                   help="rows of merge requests merged or closed more than D days ago, with nothing newer "
                        f"(at least {MR_RETENTION_MIN_DAYS}; default: [worker] mr_retention_days)")
    p.set_defaults(func=Entry("bot.cli.prune:run"))


def _forget(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("forget", help="delete everything stored about a project (history, feedback, events...)",
                       description="Delete a project's history, suggestions, feedback, comment records, opt-outs, "
                                   "models, snapshots, events and its row, in one transaction. Without --yes, "
                                   "only say what would go. Remove the project's webhook first: while its "
                                   "events still come, running processes import its history again.")
    p.add_argument("--project", required=True, metavar="ID", help="the project's numeric id or group/project path")
    p.add_argument("--yes", action="store_true", help="delete (without it, nothing is deleted)")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.set_defaults(func=Entry("bot.cli.forget:run"))


def _signout_all(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("signout-all", help="end every dashboard sign-in at once (everyone signs in again)",
                       description="Refuse every dashboard cookie issued until now, the token's and GitLab "
                                   "sign-ins', in every process on the database. The token itself still works: "
                                   "change [dashboard] token to end that.")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.set_defaults(func=Entry("bot.cli.signout:run"))


def _backfill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="import a project's merged merge requests into the review history",
                       description="Read every merged MR (files, author, reviewers, approvers) over the API; "
                                   "resumes where the last import stopped.")
    p.add_argument("--project", required=True, metavar="ID",
                   help="the project's numeric id or its path (group/project)")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--restart", action="store_true", help="ignore the saved cursor and read the whole history")
    p.add_argument("--concurrency", type=whole(1), default=4, metavar="N", help="MRs fetched at a time (default 4)")
    p.set_defaults(func=Entry("bot.cli.backfill:run"))


def _histories(p: argparse.ArgumentParser) -> None:
    """Where `evaluate` and `simulate` read histories: files, checkouts (`--git`), stored projects (`--project`)."""
    p.add_argument("paths", nargs="*", metavar="PATH", help="history files (.jsonl or .jsonl.gz), or folders of them")
    p.add_argument("--git", action="append", default=[], metavar="REPO", help="a local git checkout to read")
    p.add_argument("--project", action="append", default=[], metavar="ID",
                   help="a project's history as the bot stored it (numeric id or group/path), read from the "
                        "configured database; import it first with `reviewbot backfill --project ID`")
    p.add_argument("--config", metavar="PATH",
                   help="config file naming the database, for --project (default: $REVIEWBOT_CONFIG, then "
                        "./config.toml)")


def _evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="backtest the recommender on a review history",
                       description="Replay a history in time order: for each change, each method ranks people "
                                   "using only the changes before it. Reports per method how often a real "
                                   "reviewer is among its first 1, 3, 5 and 10 names (Top-k accuracy) and the "
                                   "mean reciprocal rank of the first one (MRR), with a legend and one line "
                                   "per history comparing the bot with the best simple rule.")
    _histories(p)
    p.add_argument("--method", default=DEFAULT_METHODS,
                   help=f"comma-separated methods, or `all` for every one ({ALL_METHODS}); "
                        f"default: {DEFAULT_METHODS}")
    p.add_argument("--json", action="store_true", help="one JSON object per (file, method) line on stdout")
    p.add_argument("--allow-author", action="store_true",
                   help="let the author be proposed (the classic Gerrit benchmarks count self-approvals)")
    p.add_argument("--top", type=whole(1), default=10, help="length of each ranked list (default 10)")
    p.add_argument("--jobs", type=whole(1), default=2, help="replays run in parallel (default 2)")
    p.set_defaults(func=Entry("bot.cli.evaluate:run"))


def _simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="replay a history with a simulated team, learning on and off",
                       description="At each change the bot suggests; a simulated team keeps who really "
                                   "reviewed, removes the others and assigns the missing reviewers; the "
                                   "labels flow back with learning on. One frequent reviewer leaves halfway.")
    _histories(p)
    p.add_argument("--json", action="store_true", help="one JSON object per (file, learning) line on stdout")
    p.add_argument("--top", type=whole(1), default=3, help="people suggested per change (default 3)")
    p.add_argument("--leaver-rank", type=whole(0), default=1,
                   help="which reviewer leaves halfway: 1 = the most frequent in the first half (0: none)")
    p.add_argument("--open-days", type=days(180), default=2.0,
                   help="days each merge request stays open before its merge (default 2, at most 180: people "
                        "idle for a year are no candidates): the team's labels come at the open, the history "
                        "learns the change at the merge")
    p.add_argument("--jobs", type=whole(1), default=2, help="replays run in parallel (default 2)")
    p.set_defaults(func=Entry("bot.cli.simulate:run"))


def _install(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("install", help="register the project webhook that sends events to the bot",
                       description="Create (or update) the webhook on a GitLab project: merge request, comment "
                                   "and emoji events, SSL verification on, a secret token printed once.")
    p.add_argument("--project", required=True, help="the project's numeric id or group/project path")
    p.add_argument("--url", required=True, metavar="PUBLIC_URL",
                   help="the bot's public address, e.g. https://reviewbot.example.com (/webhook is appended)")
    p.add_argument("--secret", help="use this webhook secret instead of generating one")
    p.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    p.add_argument("--gitlab-url", help="GitLab's address (default: GITLAB_URL or [gitlab] url)")
    p.add_argument("--token-env", metavar="VAR",
                   help="read a Maintainer's token from this environment variable (default: GITLAB_TOKEN)")
    p.set_defaults(func=Entry("bot.cli.install:run"))


def _demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="see the bot suggest reviewers on a simulated GitLab (no setup needed)",
                       description="Start a simulated GitLab with a year of history and the bot, open a merge "
                                   "request and print the bot's comment. Needs no token, config or database.")
    p.add_argument("--serve", action="store_true", help="keep the simulator and the bot running (Ctrl-C stops)")
    p.add_argument("--port", type=whole(0, 65535), default=0, help="the bot's port (default: any free port)")
    p.add_argument("--gitlab-port", type=whole(0, 65535), default=0,
                   help="the simulator's port (default: any free port)")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated project history")
    p.add_argument("--plain", action="store_true", help="print the comment as raw Markdown")
    p.add_argument("--dispatch", default=DEFAULT_DISPATCH, metavar="MODULE:NAME", help=argparse.SUPPRESS)
    p.set_defaults(func=Entry("bot.cli.demo:run"))


# In the order of `reviewbot --help`.
COMMANDS = (_serve, _migrate, _events, _prune, _forget, _signout_all, _backfill, _evaluate, _simulate, _install, _demo)
