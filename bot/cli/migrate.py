"""`reviewbot migrate`: create or upgrade the database schema (Heroku: the release phase)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.config import ConfigError, load_settings, redact_url
from bot.storage import Storage, StorageError, migrate
from bot.storage.migrate import head_revisions

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the database schema",
                       description="Bring the database ([database] url / DATABASE_URL) to this version's schema.")
    p.add_argument("--config", metavar="PATH", help="config file (default: $REVIEWBOT_CONFIG, then ./config.toml)")
    p.add_argument("--check", action="store_true", help="only report; exit 1 when a migration is needed")
    p.set_defaults(func=run)


async def _check(url: str) -> bool:
    storage = Storage(url)
    try:
        await storage.ping()
        return await storage.schema_is_current()
    finally:
        await storage.close()


def run(args: argparse.Namespace) -> int:
    where = "the database"
    try:
        url = load_settings(args.config, require_gitlab=False).database_url
        where = redact_url(url)
        if args.check:
            current = asyncio.run(_check(url))
            print(f"{where}: {'up to date' if current else 'needs `reviewbot migrate`'}")
            return 0 if current else 1
        revisions = asyncio.run(migrate(url))
    except (ConfigError, StorageError) as exc:
        print(f"reviewbot migrate: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - e.g. the database refused the connection: say which
        print(f"reviewbot migrate: cannot migrate {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{where}: at revision {', '.join(sorted(revisions))} (head {', '.join(sorted(head_revisions()))})")
    return 0
