"""`reviewbot backfill --project ID`: import a project's merged MR history now, with progress.

The bot does this by itself on the first event from a project; run it by hand to prepare a project before
installing the webhook, or to finish a large import ahead of time. It resumes from where an earlier run (or
the bot) stopped; `--restart` reads everything again (rows are upserted, nothing is counted twice).

    reviewbot backfill --project acme/widgets
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Callable, TextIO

import aiohttp

from bot.cli.argtypes import whole
from bot.backfill import BackfillProgress, backfill_project
from bot.config import ConfigError, Settings, load_settings
from bot.gitlab.client import GitLabClient, RetryPolicy, project_ref
from bot.gitlab.errors import GitLabError
from bot.storage import Storage, StorageError

__all__ = ["register", "run", "backfill"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="import a project's merged merge requests into the review history",
                       description="Read every merged MR (files, author, reviewers, approvers) over the API; "
                                   "resumes where the last import stopped.")
    p.add_argument("--project", required=True, metavar="ID",
                   help="the project's numeric id or its path (group/project)")
    p.add_argument("--config", metavar="PATH", help="config file (default: $REVIEWBOT_CONFIG, then ./config.toml)")
    p.add_argument("--restart", action="store_true", help="ignore the saved cursor and read the whole history")
    p.add_argument("--concurrency", type=whole(1), default=4, metavar="N", help="MRs fetched at a time (default 4)")
    p.set_defaults(func=run)


def _printer(out: TextIO) -> Callable[[BackfillProgress], None]:
    def show(p: BackfillProgress) -> None:
        cursor = p.cursor.strftime("%Y-%m-%d %H:%M") if p.cursor else "-"
        state = "done" if p.done else f"page {p.pages}"
        print(f"project {p.project_id}: {state}, {p.imported} merged MRs imported"
              f"{f', {p.skipped} skipped' if p.skipped else ''} (up to {cursor})", file=out, flush=True)
    return show


async def backfill(settings: Settings, project: str, *, restart: bool = False, concurrency: int = 4,
                   retry: RetryPolicy | None = None, out: TextIO = sys.stderr) -> BackfillProgress:
    """Resolve the project, then import its history into the configured database."""
    token = settings.gitlab.token.get_secret_value() if settings.gitlab.token else ""
    if not token:
        raise ConfigError("GITLAB_TOKEN is not set: create a token with api (or read_api) scope and "
                          "export GITLAB_TOKEN=...")
    storage = await Storage.open(settings.database_url, echo=settings.database.echo)
    try:
        async with aiohttp.ClientSession() as session:
            client = GitLabClient(session, url=settings.gitlab.url, token=token, retry=retry)
            found = await client.get_project(project_ref(project))
            print(f"importing {found.path_with_namespace} (id {found.id}) from {settings.gitlab.url}", file=out)
            await storage.projects.named(found.id, found.path_with_namespace)
            await _not_imported_elsewhere(storage, found.id)
            bots = settings.project_settings(found.id, found.path_with_namespace).bots
            report = await backfill_project(client, storage, found.id, restart=restart, concurrency=concurrency,
                                            bots=bots, progress=_printer(out))
            if restart and await storage.snapshots.delete(found.id):
                print("stored snapshots of the project deleted: restart the bot to rank on the history read "
                      "again (rows replaced in place are not picked up by a running bot)", file=out)
            return report
    finally:
        await storage.close()


class ImportUnderWay(Exception):
    """A running bot process holds the project's import lease: importing beside it doubles GitLab's load."""


async def _not_imported_elsewhere(storage: Storage, project_id: int) -> None:
    """Refuse while a bot process imports the project (its lease is held and unexpired): both would page
    through the same history. It goes on from its cursor; this command can catch up once it is done."""
    row = await storage.projects.get(project_id)
    if row is not None and not row.backfill_done and not storage.projects.lease_free(row):
        until = row.import_until.strftime("%H:%M:%S UTC") if row.import_until else "?"
        raise ImportUnderWay(f"the bot process {row.import_owner} is importing this project (its lease runs to "
                             f"{until}, renewed while it works); wait for it to finish, then run this again")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, require_gitlab=False)
        asyncio.run(backfill(settings, args.project, restart=args.restart, concurrency=args.concurrency))
    except ConfigError as exc:
        print(f"reviewbot backfill: {exc}", file=sys.stderr)
        return 2
    except (GitLabError, StorageError, ImportUnderWay) as exc:
        print(f"reviewbot backfill: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what was imported is stored, and the cursor with it
        print("reviewbot backfill: interrupted; run the same command again to go on where it stopped",
              file=sys.stderr)
        return 130
    return 0
