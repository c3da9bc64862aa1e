"""`--project` and `--git` for `evaluate` and `simulate`: a project's review history as the bot stored it, and a
checkout's, each read once.

A team that installed the bot already has its history in the bot's database (imported on the project's first
event, or by `reviewbot backfill`): measuring on it needs no export by hand. Each project's changes are written
to a history file in a temporary directory, and replayed like any other file.
"""
from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable

from bot.config import ConfigError, load_settings, redact_url
from bot.storage import Storage, StorageError
from bot.storage.db import sqlite_file
from graph.model import record_of

__all__ = ["export_checkouts", "export_projects", "run_with_projects", "project_id_of", "no_new_sqlite_file"]


def run_with_projects(args: argparse.Namespace, command: str,
                      replay: Callable[[argparse.Namespace, list[str], dict[str, str]], int]) -> int:
    """`replay(args, paths, names)` over the files given, the checkouts (`--git`) and the stored projects
    (`--project`), these two written to a temporary directory first and named by their folder or path."""
    with tempfile.TemporaryDirectory(prefix="reviewbot-") as tmp:
        stored = export_projects(args.project, args.config, Path(tmp), command)
        read = export_checkouts(args.git, Path(tmp), command)
        return replay(argparse.Namespace(**{**vars(args), "git": []}), [*args.paths, *read, *stored],
                      {**read, **stored})


def export_checkouts(repos: list[str], into: Path, command: str) -> dict[str, str]:
    """Read each git checkout's history once and write it to a file in `into`; {file: the checkout's name}.
    Every method replays the same changes, and reading a large repository's log takes long (about 30 s for
    50k commits): each replay reading it again multiplied that by the number of methods."""
    from bot.cli.replay import load, names_of, sources_of
    from bot.git_history import is_shallow

    sources = sources_of([], repos, command) if repos else []
    out: dict[str, str] = {}
    for (repo, _), name in zip(sources, names_of(sources)):
        path = into / f"git-{len(out)}.jsonl.gz"
        changes = load(repo, True)
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:  # read back at once, then deleted
            f.writelines(json.dumps(record_of(c)) + "\n" for c in changes)
        if is_shallow(repo):
            last = "change is" if len(changes) == 1 else f"{len(changes)} changes are"
            print(f"reviewbot {command}: {repo} is a shallow clone: only its last {last} "
                  "replayed (the oldest commit it holds lacks its parent, so what it changed is not known); "
                  "`git fetch --unshallow` there reads the whole history", file=sys.stderr)
        out[str(path)] = name
    return out


def export_projects(refs: list[str], config: str | None, into: Path, command: str) -> dict[str, str]:
    """Write each project's stored history to a file in `into`; {file: the project's name for the results}
    (its path, or "project ID" for a project whose path is not known). Exits 2 for a wrong setting and
    1 when the database fails or holds no history for a project, with one line saying what to do."""
    if not refs:
        return {}
    try:
        url = load_settings(config, require_gitlab=False, listens=False).database_url
        return asyncio.run(_export(url, refs, into))
    except ConfigError as exc:
        print(f"reviewbot {command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except (StorageError, LookupError) as exc:
        print(f"reviewbot {command}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _export(url: str, refs: list[str], into: Path) -> dict[str, str]:
    no_new_sqlite_file(url)
    async with Storage.opened(url) as storage:
        known = {row.id: row.path for row in await storage.projects.list()}
        out: dict[str, str] = {}
        for ref in refs:
            pid = project_id_of(ref, known)
            if pid in out.values():
                continue
            changes = await storage.history.load(pid) if pid is not None else []
            if not changes:
                raise LookupError(f"{redact_url(url)} holds no history of project {ref}: import it with "
                                  f"`reviewbot backfill --project {ref}` (with the same configuration)")
            path = into / f"{len(out)}.jsonl.gz"
            with gzip.open(path, "wt", encoding="utf-8") as f:
                f.writelines(json.dumps(record_of(c)) + "\n" for c in changes)
            out[str(path)] = pid
        return {path: known.get(pid) or f"project {pid}" for path, pid in out.items()}


def no_new_sqlite_file(url: str) -> None:
    """Reading must not create: SQLite makes an empty file for a mistyped path (then asks for a migration)."""
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise LookupError(f"{redact_url(url)}: no such SQLite database file; give the bot's database "
                          "(DATABASE_URL or [database] url, as the bot runs with)")


def project_id_of(ref: str, known: dict[int, str | None]) -> int | None:
    """A project by its numeric id or its path (without case, as GitLab compares paths); a path two stored
    projects had (one renamed on GitLab since, another created under its old path) must be given as an id."""
    if re.fullmatch(r"[0-9]+", ref):  # not isdigit: "²" is a digit too, and no int
        return int(ref)
    folded = ref.strip("/").casefold()
    found = sorted(pid for pid, path in known.items() if path and path.casefold() == folded)
    if len(found) > 1:
        raise LookupError(f"projects {', '.join(map(str, found))} were each stored under the path {ref}: give "
                          "the id of the one meant")
    return found[0] if found else None
