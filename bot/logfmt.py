"""`key=value` log lines (logfmt), so log search can filter on fields without a JSON pipeline.

Why a helper: every log line of the web app and workers names its event, project and cause the same
way; values with spaces are quoted. Never pass a token, secret or database URL with a password.

Why a context: one event's handling logs from many modules (the worker, the handlers, the GitLab client, a
library), most of which do not know the event. The worker sets `event_fields(event_id=..., project_id=...,
mr_iid=...)` around each event, and `EventFields`, a filter on the process's log handlers, adds them to every
line logged meanwhile (in that task and the tasks it starts), so one search finds all of an event's lines.
"""
from __future__ import annotations

import contextlib
import logging
import re
import sys
from contextvars import ContextVar
from typing import Iterator

__all__ = ["kv", "event_fields", "EventFields", "setup_logging"]

_FIELDS: ContextVar[dict[str, object]] = ContextVar("reviewbot_log_fields", default={})
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')  # a value `_value` quoted, escapes included


def _value(value: object) -> str:
    r"""The value, quoted when it has spaces, quotes or characters a terminal or log shipper would act on
    (escapes, line breaks, other unprintables: a webhook's text must not forge or hide log lines).

    >>> _value("a b"), _value("o\x1b[2J"), _value("x\u2028y")
    ('"a b"', '"o\\x1b[2J"', '"x\\u2028y"')
    """
    text = str(value)
    if text == "" or any(c in ' ="\\' or not c.isprintable() for c in text):
        return '"' + "".join(_escaped(c) for c in text) + '"'
    return text


def _escaped(c: str) -> str:
    if c in '"\\':
        return "\\" + c
    if c == "\n":
        return "\\n"
    if c.isprintable():
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def kv(message: str, **fields: object) -> str:
    """`message key=value ...`, skipping fields that are None.

    >>> kv("webhook", status="queued", kind="Note Hook", event_id=3, cause=None)
    'webhook status=queued kind="Note Hook" event_id=3'
    """
    parts = [message] + [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)


@contextlib.contextmanager
def event_fields(**fields: object) -> Iterator[None]:
    """Within this block, every log line (through a handler with `EventFields`) carries these fields."""
    token = _FIELDS.set({**_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _FIELDS.reset(token)


class EventFields(logging.Filter):
    """Appends the fields of `event_fields` to each record's message, but for keys the line names already.

    >>> record = logging.LogRecord("bot", logging.INFO, "", 0, "event done event_id=%s", (3,), None)
    >>> with event_fields(event_id=3, project_id=7, mr_iid=None):
    ...     _ = EventFields().filter(record)
    >>> record.getMessage()
    'event done event_id=3 project_id=7'
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _FIELDS.get()
        if fields:  # (a second handler finds the keys named already)
            message = record.getMessage()
            named = _QUOTED.sub('""', f" {message}")  # a quoted value (a payload's path) names no key
            extra = {k: v for k, v in fields.items() if f" {k}=" not in named}
            if extra:
                record.msg, record.args = kv(message, **extra), ()
        return True


def setup_logging(level: str) -> None:
    """Log to stderr (the platform collects it), each line with the fields of the event being handled."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, EventFields) for f in handler.filters):
            handler.addFilter(EventFields())
