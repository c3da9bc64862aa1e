"""`key=value` log lines (logfmt), so log search can filter on fields without a JSON pipeline.

Why a helper: every log line of the web app and workers names its event, project and cause the same
way; values with spaces are quoted. Never pass a token, secret or database URL with a password.
"""
from __future__ import annotations

__all__ = ["kv"]


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
