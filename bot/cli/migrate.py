"""`reviewbot migrate`: create or upgrade the database schema (Heroku: the release phase)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import ConfigError, load_settings, normalise_database_url, redact_url
from bot.storage import Storage, StorageError
from bot.storage.db import sqlite_file
from bot.storage.facade import cause_of
from bot.storage.migrate import Upgraded, current_revisions, head_revisions, newer_schema, upgrade

__all__ = ["run"]


async def _check(url: str) -> bool:
    storage = Storage(url)
    try:
        await storage.ping()
        return await storage.schema_is_current()
    finally:
        await storage.close()


def _no_sqlite_file(url: str) -> bool:
    """Whether `url` names a SQLite file that does not exist: `--check` says so without connecting, which
    would create the file (a check that left an empty database behind)."""
    path = sqlite_file(normalise_database_url(url))
    return path is not None and not path.exists()


def _announce(where: str, current: set[str]) -> None:
    """One line before an upgrade: on a large SQLite file one runs for tens of seconds (0014 builds five tables
    again: about 20 s with 200,000 stored webhooks) while the bot's writes wait, and silent it looked hung. Not
    for a new database (quick), nor one already current or migrated by a later release (`upgrade` says so)."""
    heads = head_revisions()
    if current and current != heads and newer_schema(current) is None:
        print(f"{where}: upgrading from {', '.join(sorted(current))} to {', '.join(sorted(heads))}...", flush=True)


async def _migrate(url: str, where: str) -> Upgraded:
    """What bringing the database to the head did (`StorageError` when unreachable)."""
    storage = Storage(url)
    try:
        await storage.ping()
        _announce(where, await current_revisions(storage.engine))
    finally:
        await storage.close()
    return await upgrade(url)


def run(args: argparse.Namespace) -> int:
    """Exit 2 for a wrong setting, 1 when the database fails (unreachable, refusing the change), as
    `serve`, `worker` and `events` do; each cause in one line."""
    where = "the database"
    try:
        url = load_settings(args.config, require_gitlab=False, listens=False).database_url
        where = redact_url(url)
        if args.check and _no_sqlite_file(url):
            print(f"{where}: no such file yet: run `reviewbot migrate` to create it")
            return 1
        if args.check:
            current = asyncio.run(_check(url))
            print(f"{where}: {'up to date' if current else 'needs `reviewbot migrate`'}")
            return 0 if current else 1
        before, after, notes = asyncio.run(_migrate(url, where))
    except ConfigError as exc:
        print(f"reviewbot migrate: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"reviewbot migrate: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - e.g. the database refused the change: say which, in one line
        print(f"reviewbot migrate: cannot migrate {where}: {cause_of(exc)}", file=sys.stderr)
        return 1
    now = ", ".join(sorted(after))
    done = f"upgraded from {', '.join(sorted(before))} to {now}" if before else f"created at revision {now}"
    print(f"{where}: {done if before != after else f'already at revision {now}, nothing to do'} "
          f"(head {', '.join(sorted(head_revisions()))})")
    for note in notes:
        print(f"{where}: {note}")
    return 0
