"""`reviewbot prune`: delete now what is past its retention (every worker does the same each `prune_interval`).

    reviewbot prune [--events-days D] [--dead-days D] [--mr-days D]
"""
from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from bot.cli.argtypes import days
from bot.cli.database_errors import exits_for
from bot.config import MR_RETENTION_MIN_DAYS, WorkerSettings, load_settings
from bot.storage import Storage
from bot.storage.models import MODELS_KEPT
from bot.worker import retention

__all__ = ["register"]

LABELS = {  # what `Storage.prune` counts, as the command says it
    "done_events": "done events", "dead_events": "dead events", "models": "model versions",
    "suggestions": "suggestions", "feedback": "feedback rows", "feedback_times": "approval and reviewer times",
    "bot_comments": "comment records",
}

DESCRIPTION = f"""\
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="delete old events, finished merge requests' rows and old model versions",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH", help="config file (default: $REVIEWBOT_CONFIG, then ./config.toml)")
    p.add_argument("--events-days", type=days(), metavar="D",
                   help="done events finished more than D days ago (default: [worker] retention_days)")
    p.add_argument("--dead-days", type=days(), metavar="D",
                   help="dead events finished more than D days ago (default: [worker] dead_retention_days)")
    p.add_argument("--mr-days", type=days(least=MR_RETENTION_MIN_DAYS), metavar="D",
                   help="rows of merge requests merged or closed more than D days ago, with nothing newer "
                        f"(at least {MR_RETENTION_MIN_DAYS}; default: [worker] mr_retention_days)")
    p.set_defaults(func=run)


def ages(cfg: WorkerSettings, args: argparse.Namespace) -> dict[str, timedelta | None]:
    """`Storage.prune`'s ages: the command's options, else the settings (None: kept)."""
    out = retention(cfg)
    for key, given in (("done", args.events_days), ("dead", args.dead_days), ("finished_mrs", args.mr_days)):
        if given is not None:
            out[key] = timedelta(days=given)
    return out


async def _prune(url: str, ages: dict[str, timedelta | None], echo: bool) -> dict[str, int]:
    storage = await Storage.open(url, echo=echo)
    try:
        return await storage.prune(**ages)
    finally:
        await storage.close()


def run(args: argparse.Namespace) -> int:
    """Exit 2 for a wrong setting, 1 when the database fails (unreachable, unmigrated, refusing a write), as
    `events` does."""
    return exits_for("reviewbot prune", "prune", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, require_gitlab=False)
    wanted = ages(settings.worker, args)
    counts = asyncio.run(_prune(settings.database_url, wanted, settings.database.echo))
    print("deleted " + ", ".join(f"{n} {LABELS[k]}" for k, n in counts.items()))
    kept = [what for key, what in (("dead", "dead events"), ("finished_mrs", "finished merge requests' rows"))
            if wanted[key] is None]
    if kept:
        print(f"kept (retention 0 in [worker]): {', '.join(kept)}")
    return 0
