"""`reviewbot backfill --project ID`: import a project's merged MR history now, with progress.

The bot does this by itself on the first event from a project; run it by hand to prepare a project before
installing the webhook, or to finish a large import ahead of time. It resumes from where an earlier run (or
the bot) stopped; `--restart` reads everything again (rows are upserted, nothing is counted twice). It holds
the project's import lease as a bot process does: bot processes wait for it, and it refuses while one imports.

    reviewbot backfill --project acme/widgets
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timezone
from typing import Callable, TextIO

import aiohttp

from bot.backfill import IMPORT_LEASE, BackfillProgress, backfill_project, process_name, under_lease
from bot.config import ConfigError, Settings, load_settings
from bot.gitlab.client import GitLabClient, RetryPolicy, project_ref
from bot.gitlab.errors import GitLabError
from bot.storage import Storage, StorageError
from graph.words import count_of

__all__ = ["run", "backfill"]


def _printer(out: TextIO) -> Callable[[BackfillProgress], None]:
    def show(p: BackfillProgress) -> None:
        cursor = p.cursor.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if p.cursor else "-"
        state = "done" if p.done else f"page {p.pages}"
        print(f"project {p.project_id}: {state}, {count_of(p.imported, 'merged MR')} imported"
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
            print(f"importing {found.path_with_namespace} (id {found.id}) from {settings.gitlab.address}", file=out)
            former = await storage.projects.named(found.id, found.path_with_namespace)
            if former is not None and (warning := settings.moved_warning(found.id, former,
                                                                         found.path_with_namespace)):
                print(f"reviewbot backfill: warning: {warning}", file=out)
            owner = await _claim_import(storage, found.id)
            bots = settings.project_settings(found.id, found.path_with_namespace).bots
            report = await under_lease(storage, found.id, owner, IMPORT_LEASE, backfill_project(
                client, storage, found.id, restart=restart, concurrency=concurrency, bots=bots,
                progress=_printer(out)))
            if report is None:
                raise ImportUnderWay("a bot process took the import over while this one stalled past its lease; "
                                     "it goes on from where this one stopped")
            if restart and await storage.snapshots.delete(found.id):
                print("stored snapshots of the project deleted: restart the bot to rank on the history read "
                      "again (rows replaced in place are not picked up by a running bot)", file=out)
            return report
    finally:
        await storage.close()


class ImportUnderWay(Exception):
    """Another process holds the project's import lease: importing beside it doubles GitLab's load."""


async def _claim_import(storage: Storage, project_id: int) -> str:
    """Take the project's import lease, as a bot process does, so that no bot process starts importing the
    project beside this command (its events wait for the history instead); refuse while another holds it."""
    owner = f"reviewbot-backfill:{process_name()}"
    if await storage.projects.claim_import(project_id, owner, IMPORT_LEASE, done_too=True):
        return owner
    row = await storage.projects.get(project_id)
    holder = row.import_owner if row is not None else "?"
    until = row.import_until.strftime("%H:%M:%S UTC") if row is not None and row.import_until else "?"
    raise ImportUnderWay(f"the process {holder} is importing this project (its lease runs to {until}, "
                         "renewed while it works); wait for it to finish, then run this again (if that "
                         f"process was killed, run this again after {until}: it goes on from where that one "
                         "stopped)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, require_gitlab=False, listens=False)
        asyncio.run(backfill(settings, args.project, restart=args.restart, concurrency=args.concurrency))
    except ConfigError as exc:
        print(f"reviewbot backfill: {exc}", file=sys.stderr)
        return 2
    except GitLabError as exc:  # which GitLab said it: gitlab.com, the default, refuses a self-hosted token
        print(f"reviewbot backfill: {exc} (GitLab at {settings.gitlab.address})", file=sys.stderr)
        return 1
    except (StorageError, ImportUnderWay) as exc:
        print(f"reviewbot backfill: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # what was imported is stored, and the cursor with it
        print("reviewbot backfill: interrupted; run the same command again to go on where it stopped",
              file=sys.stderr)
        return 130
    return 0
