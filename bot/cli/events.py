"""`reviewbot events`: look at the event queue and act on failed events.

    reviewbot events list [--failed] [--status S] [--limit N] [--json]
    reviewbot events show ID
    reviewbot events requeue ID [ID ...]
    reviewbot events prune [--older-than-days D]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import timedelta
from typing import Any, Awaitable, Callable

from rich.console import Console
from rich.highlighter import JSONHighlighter
from rich.table import Table
from rich.text import Text

from bot.cli.database_errors import exits_for
from bot.config import load_settings
from bot.storage import EventRow, Storage
from bot.storage.events import HISTORY_MARK
from graph.words import count_of

__all__ = ["run"]


# A terminal acts on C0 controls (ESC), DEL and, where it takes 8-bit controls (xterm does in UTF-8), on C1 ones:
# U+009B is CSI as ESC [ is. The bidirectional overrides, embeddings and isolates turn the rest of the line.
_TURNING = "\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_TURNING}]")
_CONTROL_IN_JSON = re.compile(f"[\x7f-\x9f{_TURNING}]")  # json.dumps escapes the C0 ones itself


def _visible(text: str) -> str:
    r"""`text` with its control characters spelled out: a stored action or error holding an escape sequence must
    not drive the operator's terminal.

    >>> _visible("a\x1b[2Jb\x9b2J\u202e")
    'a\\x1b[2Jb\\x9b2J\\u202e'
    """
    return _CONTROL.sub(lambda m: _spelled(ord(m.group())), text)


def _spelled(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _print_json(out: Console, value: Any, *, indent: int | None = 2) -> None:
    """`value` as JSON, highlighted as rich's `print_json` prints it, with the characters `_visible` spells out as
    `\\u` escapes (rich dumps the text again unescaped): the JSON reads back to the same text."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    shown = JSONHighlighter()(Text(_CONTROL_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)))
    shown.no_wrap, shown.overflow = True, None
    out.print(shown, soft_wrap=True)


def _summary(row: EventRow) -> dict[str, Any]:
    return {
        "id": row.id, "status": row.status, "kind": row.kind, "action": row.action, "project_id": row.project_id,
        "mr_iid": row.mr_iid, "attempts": row.attempts, "outage_attempts": row.outage_attempts,
        "ran_alone": row.ran_alone, "received_at": row.received_at.isoformat(),
        "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": _last_error(row),
    }


def _last_error(row: EventRow) -> str | None:
    """The event's `last_error`; the wait for its project's history said in the past once the event is no
    longer queued (the handlers keep the words, to park it once), not as though it were still waiting."""
    text = row.last_error
    if text and row.status != "queued" and text.startswith(HISTORY_MARK):
        return "waited for" + text.removeprefix("waiting for")
    return text


async def _list(storage: Storage, args: argparse.Namespace, out: Console) -> int:
    rows = await storage.events.list_events(failed_only=args.failed, status=args.status, limit=args.limit + 1)
    cut, rows = len(rows) > args.limit, rows[:args.limit]  # one more read: whether --limit left some out
    if args.json:
        for row in rows:
            _print_json(out, _summary(row), indent=None)
        return 0
    table = Table()
    widest = max((len(str(row.id)) for row in rows), default=2)  # the id is what `show` and `requeue` need:
    table.add_column("id", no_wrap=True, min_width=widest)       # never squeezed out on a narrow terminal
    # tries: the attempts `max_attempts` limits; outage: the runs an outage (GitLab, the database) failed, not
    # counted in them; alone: its last run had no other event beside it in its worker (reclaimed after a crash,
    # or concurrency 1), so a crash under it is counted in tries
    for name in ("status", "kind", "action", "project", "MR", "tries", "outage", "alone", "received (UTC)"):
        table.add_column(name, no_wrap=True)
    table.add_column("last error")
    for row in rows:
        cells = (str(row.id), row.status, row.kind, row.action or "", str(row.project_id or ""),
                 str(row.mr_iid or ""), str(row.attempts), str(row.outage_attempts or ""),
                 "yes" if row.ran_alone else "",
                 f"{row.received_at:%Y-%m-%d %H:%M:%S}",
                 (_last_error(row) or "")[:80])
        table.add_row(*(Text(_visible(cell)) for cell in cells))  # stored text as it is: `[/]` is no markup
    out.print(table)
    if cut:
        shown = "the newest event only" if args.limit == 1 else f"the {args.limit} newest events"
        out.print(f"showing {shown} (--limit {args.limit}): give a larger --limit for more")
    out.print(" ".join(f"{k}={v}" for k, v in (await storage.events.depth()).items()))
    return 0


async def _show(storage: Storage, args: argparse.Namespace, out: Console) -> int:
    row = await storage.events.get(args.id)
    if row is None:
        print(f"reviewbot events: no event {args.id}: see `reviewbot events list`", file=sys.stderr)
        return 1
    _print_json(out, {**_summary(row), "dedupe_key": row.dedupe_key, "lease_owner": row.lease_owner,
                      "headers": row.headers, "body": row.body})
    return 0


async def _requeue(storage: Storage, args: argparse.Namespace, out: Console) -> int:
    missing = [i for i in args.ids if not await storage.events.requeue(i)]
    out.print(f"requeued {count_of(len(args.ids) - len(missing), 'event')}")
    for event_id in missing:
        print(f"reviewbot events: {_not_requeued(event_id, await storage.events.get(event_id))}", file=sys.stderr)
    return 1 if missing else 0


def _not_requeued(event_id: int, row: EventRow | None) -> str:
    """Why `requeue` left an event: it is not there, or a worker holds it now (until when, and who); or that
    worker finished it between the refusal and this reading, so it is no longer running."""
    if row is None:
        return f"no event {event_id}: see `reviewbot events list`"
    if row.status != "running" or row.lease_owner is None:
        return f"event {event_id} is {row.status} now (its worker finished it meanwhile): requeue it again to rerun it"
    until = row.lease_expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if row.lease_expires_at else "?"
    return (f"event {event_id} is running in {row.lease_owner}, its lease until {until}: if that worker is gone, "
            "the event runs again by itself then (or requeue it after that time)")


async def _prune(storage: Storage, args: argparse.Namespace, out: Console, days: float) -> int:
    out.print(f"deleted {count_of(await storage.events.prune(timedelta(days=days)), 'done event')}")
    return 0


async def _run(url: str, args: argparse.Namespace, retention_days: float, echo: bool = False) -> int:
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)  # piped: whole lines
    async with Storage.opened(url, echo=echo) as storage:
        actions: dict[str, Callable[[], Awaitable[int]]] = {
            "list": lambda: _list(storage, args, out),
            "show": lambda: _show(storage, args, out),
            "requeue": lambda: _requeue(storage, args, out),
            "prune": lambda: _prune(storage, args, out,
                                    retention_days if args.older_than_days is None else args.older_than_days),
        }
        return await actions[args.action]()


def run(args: argparse.Namespace) -> int:
    """Exit 2 for a wrong setting, 1 when the database fails (unreachable, unmigrated, refusing a write), as
    `serve` and `worker` do."""
    def work() -> int:
        settings = load_settings(args.config, require_gitlab=False, listens=False)
        return asyncio.run(_run(settings.database_url, args, settings.worker.retention_days, settings.database.echo))

    return exits_for("reviewbot events", args.action, work)
