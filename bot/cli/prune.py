"""`reviewbot prune`: delete now what is past its retention (every worker does the same each `prune_interval`).

    reviewbot prune [--events-days D] [--dead-days D] [--mr-days D]
"""
from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from bot.cli.database_errors import exits_for
from bot.config import WorkerSettings, load_settings
from bot.storage import Storage
from bot.worker import retention
from graph.words import count_of

__all__ = ["run"]

LABELS = {  # one of what `Storage.prune` counts, as the command says it (`count_of` makes it plural)
    "done_events": "done event", "dead_events": "dead event", "models": "model version",
    "suggestions": "suggestion", "feedback": "feedback row", "feedback_times": "approval or reviewer time",
    "bot_comments": "comment record",
}


def ages(cfg: WorkerSettings, args: argparse.Namespace) -> dict[str, timedelta | None]:
    """`Storage.prune`'s ages: the command's options, else the settings (None: kept)."""
    out = retention(cfg)
    for key, given in (("done", args.events_days), ("dead", args.dead_days), ("finished_mrs", args.mr_days)):
        if given is not None:
            out[key] = timedelta(days=given)
    return out


async def _prune(url: str, ages: dict[str, timedelta | None], echo: bool) -> dict[str, int]:
    async with Storage.opened(url, echo=echo) as storage:
        return await storage.prune(**ages)


def run(args: argparse.Namespace) -> int:
    """Exit 2 for a wrong setting, 1 when the database fails (unreachable, unmigrated, refusing a write), as
    `events` does."""
    return exits_for("reviewbot prune", "prune", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, require_gitlab=False, listens=False)
    wanted = ages(settings.worker, args)
    counts = asyncio.run(_prune(settings.database_url, wanted, settings.database.echo))
    print("deleted " + ", ".join(count_of(n, LABELS[k]) for k, n in counts.items()))
    kept = [what for key, what in (("dead", "dead events"), ("finished_mrs", "finished merge requests' rows"))
            if wanted[key] is None]
    if kept:
        print(f"kept (retention 0 in [worker]): {', '.join(kept)}")
    return 0
