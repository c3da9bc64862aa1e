"""`key=value` log lines (logfmt), so log search can filter on fields without a JSON pipeline.

Why a helper: every log line of the web app and workers names its event, project and cause the same
way; values with spaces are quoted. Never pass a token, secret or database URL with a password.
"""
from __future__ import annotations

__all__ = ["kv"]


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def kv(message: str, **fields: object) -> str:
    """`message key=value ...`, skipping fields that are None.

    >>> kv("webhook", status="queued", kind="Note Hook", event_id=3, cause=None)
    'webhook status=queued kind="Note Hook" event_id=3'
    """
    parts = [message] + [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
    return " ".join(parts)
