"""`reviewbot signout-all`: end every dashboard sign-in, in every process, at once.

    reviewbot signout-all

Every cookie issued until now, the token's and GitLab sign-ins' alike, is refused from the next request on
(`bot.storage.signouts`); people sign in again. The token itself still works: change it to end that.
"""
from __future__ import annotations

import argparse
import asyncio

from bot.cli.database_errors import exits_for
from bot.config import load_settings
from bot.storage import Storage

__all__ = ["run"]

DONE = ("every dashboard sign-in made until now is ended, in every process: people sign in again. The dashboard "
        "token itself still works (Authorization: Bearer, or to sign in again): to end it, change [dashboard] token "
        "(REVIEWBOT_DASHBOARD_TOKEN) and restart.")


async def _end_all(url: str, echo: bool) -> None:
    async with Storage.opened(url, echo=echo) as storage:
        await storage.signouts.end_all()


def run(args: argparse.Namespace) -> int:
    """Exit 2 for a wrong setting, 1 when the database fails (unreachable, unmigrated, refusing a write), as
    `prune` does."""
    return exits_for("reviewbot signout-all", "signout-all", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, require_gitlab=False, listens=False)
    asyncio.run(_end_all(settings.database_url, settings.database.echo))
    print(DONE)
    return 0
