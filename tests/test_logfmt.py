"""Log lines carry text from webhooks (paths, names) only as escaped fields: none can forge a line or a field."""
from __future__ import annotations

import logging

from bot.handlers import make_dispatch
from bot.logfmt import EventFields, event_fields, kv
from bot.metrics import Metrics
from tests.bot_harness import event_row, handler_env  # noqa: F401 - fixture
from tests.gitlab_fixtures import FAST_RETRY

FORGED = "acme/x\n2025-01-01 00:00:00,000 ERROR bot.web forged event_id=1"


async def test_a_payloads_path_cannot_forge_a_log_line(handler_env, caplog):
    """Whoever holds a webhook secret writes the payload's path; the warning about a project GitLab answers 404
    for named it inside its message, line breaks and all."""
    env = await handler_env()
    body = {"object_kind": "merge_request", "user": {"id": 1, "username": "ann"},
            "project": {"id": 987654, "path_with_namespace": FORGED},
            "object_attributes": {"id": 5, "iid": 3, "action": "open"}}
    caplog.set_level(logging.INFO, logger="bot.handlers")
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        await dispatch(event_row("Merge Request Hook", body))
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "GitLab answers 404" in warning and "\n" not in warning
    assert 'project="acme/x\\n2025-01-01' in warning


def test_a_field_named_inside_a_quoted_value_is_still_added():
    """`EventFields` adds the event's fields a line does not name itself; a value holding ` event_id=1` (a
    path from a payload) hid the real event id from the line."""
    record = logging.LogRecord("bot", logging.INFO, "", 0, kv("skipped", reason="x event_id=1"), (), None)
    with event_fields(event_id=42, project_id=7):
        EventFields().filter(record)
    assert record.getMessage() == 'skipped reason="x event_id=1" event_id=42 project_id=7'


def test_a_field_the_line_names_is_not_added_twice():
    record = logging.LogRecord("bot", logging.INFO, "", 0, kv("event done", event_id=3), (), None)
    with event_fields(event_id=3, project_id=7):
        EventFields().filter(record)
    assert record.getMessage() == "event done event_id=3 project_id=7"
