"""`reviewbot forget --project ID [--yes]`: delete everything the bot stored about one project.

Without `--yes` it only counts what would go, so a mistyped id costs nothing. Running processes need no
restart: each drops the project from memory at its next look at the history (`bot.engine`), and what they were
still computing for it is not stored (`bot.storage.history.require_rows`). If its webhook still sends events,
the next ones import the history again, as a new project's (`bot.backfill.Backfills`): the command says to
remove the hook.
"""
from __future__ import annotations

import argparse
import asyncio
import sys

from bot.cli.database_errors import exits_for
from bot.cli.stored_history import no_new_sqlite_file, project_id_of
from bot.config import load_settings, redact_url
from bot.storage import Storage
from bot.storage.forget import forget_project, project_rows
from graph.words import count_of

__all__ = ["run", "WORDS"]

WORDS = {  # what one row of each table is, as the command says it (`count_of` makes it plural)
    "history": "merged change", "suggestions": "suggestion", "feedback": "feedback row",
    "feedback_times": "approval or reviewer time", "bot_comments": "comment record", "optouts": "opt-out",
    "models": "model version", "snapshots": "snapshot", "events": "event", "projects": "project row",
}


def run(args: argparse.Namespace) -> int:
    """Exit 0 when done (or, without --yes, when the count is shown), 1 for a project the database does not
    hold or a database failure, 2 for a wrong setting."""
    return exits_for("reviewbot forget", "forget", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    url = load_settings(args.config, require_gitlab=False, listens=False).database_url
    try:
        no_new_sqlite_file(url)
        found = asyncio.run(_forget(url, args.project, args.yes))
    except LookupError as exc:
        print(f"reviewbot forget: {exc}", file=sys.stderr)
        return 1
    pid, counts = found
    listed = ", ".join(count_of(n, WORDS[name]) for name, n in counts.items() if n) or "nothing"
    if not args.yes:
        print(f"project {pid}: would delete {listed}\nnothing deleted: run again with --yes to delete")
        return 0
    print(f"project {pid}: deleted {listed}\n"
          "Running bot processes drop it from memory at its next event. If the project's webhook still sends "
          "events, the next ones import the history again: remove the hook in GitLab (Settings > Webhooks).")
    return 0


async def _forget(url: str, ref: str, delete: bool) -> tuple[int, dict[str, int]]:
    async with Storage.opened(url) as storage:
        known = {row.id: row.path for row in await storage.projects.list()}
        pid = project_id_of(ref, known)
        if pid is None:  # a path: the bot stores it once it has read the project from GitLab
            raise LookupError(f"{redact_url(url)} holds no project with the path {ref} (a path is stored once "
                              "the bot has read the project from GitLab): give its numeric id, as GitLab shows it "
                              "on the project's page, and the bot's database: DATABASE_URL or [database] url")
        counts = await project_rows(storage.engine, pid)
        if not any(counts.values()):
            raise LookupError(f"{redact_url(url)} holds nothing of project {ref} (give the project's id or path "
                              "as GitLab shows it, and the bot's database: DATABASE_URL or [database] url)")
        if delete:
            counts = await forget_project(storage.engine, pid)
        return pid, {name: counts[name] for name in WORDS}
