"""Generated webhook deliveries against the real app over real HTTP, with real storage (SQLite and PostgreSQL).

Whatever the body (arbitrary JSON, GitLab-shaped JSON with wrong types, truncated JSON, binary, huge, deeply
nested, NUL, lone surrogates) and whatever the headers (missing, wrong or right token, odd X-Gitlab-Event,
repeated Idempotency-Key): never a 5xx, never an error or traceback in the log, never a stored event from a
request whose token is not a configured secret, and exactly one stored event per new dedupe key.

The suite runs 200 examples; `HYPOTHESIS_EXAMPLES=10000 pytest tests/test_web_fuzz.py` runs the
issue's 10,000.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from bot.config import Settings
from bot.metrics import Metrics
from bot.storage import dedupe_key_for
from bot.web import KNOWN_KINDS, make_app

SECRET = "fuzz-global-secret-0123456789"
PROJECT_SECRET = "fuzz-project-secret-abcdef"
CAP = 2048  # server.max_body_bytes, small so that "too large" is cheap to reach
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))

# --- bodies ---------------------------------------------------------------------------------------------------
lone_surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.one_of(st.text(max_size=30), st.text(st.sampled_from("\x00\u202e\ufeffé€😀a/ \\\""), max_size=10),
                  lone_surrogates, st.sampled_from(["open", "update", "merge", "MergeRequest", "Note", "/reviewers"]))
ints = st.one_of(st.integers(-5, 10**6), st.integers(-(2**70), 2**70),
                 st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1]))
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(allow_nan=True, allow_infinity=True), texts)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(texts, kids, max_size=4),
                           max_leaves=12)
wrong_or = lambda strategy: st.one_of(strategy, json_values)  # noqa: E731

gitlab_shaped = st.fixed_dictionaries({}, optional={
    "object_kind": wrong_or(st.sampled_from(["merge_request", "note", "emoji", "push", "pipeline"])),
    "project": wrong_or(st.fixed_dictionaries({}, optional={
        "id": wrong_or(ints), "path_with_namespace": wrong_or(st.sampled_from(["group/app", "other/x", "group"]))})),
    "project_id": wrong_or(ints),
    "object_attributes": wrong_or(st.fixed_dictionaries({}, optional={
        "iid": wrong_or(ints), "id": wrong_or(ints), "action": wrong_or(texts), "note": wrong_or(texts),
        "noteable_type": wrong_or(st.sampled_from(["MergeRequest", "Issue"])), "name": wrong_or(texts)})),
    "merge_request": wrong_or(st.fixed_dictionaries({}, optional={"iid": wrong_or(ints)})),
    "user": json_values, "changes": json_values,
})


def dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


encoded = st.builds(dumps, st.one_of(gitlab_shaped, json_values), st.booleans())
truncated = st.builds(lambda raw, cut: raw[:cut], encoded, st.integers(0, 200))
huge = st.builds(lambda n, kind: dumps({"object_kind": kind, "project": {"id": 1}, "pad": "x" * n}, True),
                 st.integers(CAP - 200, CAP * 3), st.sampled_from(["merge_request", "note"]))
nested = st.builds(lambda n, close: ("[" * n + "]" * (n if close else 0)).encode(), st.integers(1, 5000), st.booleans())
bodies = st.one_of(encoded, encoded, truncated, st.binary(max_size=300), huge, nested)

# --- headers --------------------------------------------------------------------------------------------------
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"), max_size=40)
tokens = st.one_of(st.none(), st.sampled_from([SECRET, PROJECT_SECRET, "", "wrong", SECRET[:-1], SECRET + " "]),
                   header_text)
event_names = st.one_of(st.none(), st.sampled_from(sorted(KNOWN_KINDS)), header_text)
keys = st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]), header_text)
content_types = st.sampled_from(["application/json", "text/plain", "application/octet-stream", "multipart/form-data"])


def request_headers(token: str | None, event: str | None, key: str | None, content_type: str) -> dict[str, str]:
    out = {"Content-Type": content_type}
    for name, value in (("X-Gitlab-Token", token), ("X-Gitlab-Event", event), ("Idempotency-Key", key)):
        if value is not None:
            out[name] = value
    return out


NOTE = {"object_kind": "note", "project": {"id": 1, "path_with_namespace": "group/app"},
        "object_attributes": {"noteable_type": "MergeRequest", "id": 1}, "merge_request": {"iid": 1}}
MR = {"object_kind": "merge_request", "project": {"id": 1, "path_with_namespace": "group/app"}}
RIGHT = {"token": SECRET, "event": "Note Hook", "key": None, "content_type": "application/json"}
RIGHT_MR = {**RIGHT, "event": "Merge Request Hook"}


def test_a_key_postgresql_cannot_store_is_hashed():
    assert dedupe_key_for({"Idempotency-Key": "a\udcff"}, b"{}", "Note Hook").startswith("sha256:")
    assert dedupe_key_for({"Idempotency-Key": "abc"}, b"{}", "Note Hook") == "idem:abc"


# --- the app ----------------------------------------------------------------------------------------------------
class Trouble(logging.Handler):
    """Collects log records at ERROR or above, and any record carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture
def trouble() -> Iterator[Trouble]:
    handler, root = Trouble(), logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
async def client(aiohttp_client, storage):
    settings = Settings(gitlab={"token": "glpat-test"}, server={"max_body_bytes": CAP},
                        webhook_secrets=[{"secret": SECRET}, {"secret": PROJECT_SECRET, "project": "group/app"}])
    return await aiohttp_client(make_app(settings, storage, Metrics()))


async def stored(storage) -> int:
    return sum((await storage.events.depth()).values())


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(body=bodies, token=tokens, event=event_names, key=keys, content_type=content_types)
@example(body=dumps(NOTE | {"object_attributes": {"note": "\ud800 \x00"}}, True), **RIGHT)  # JSONB refuses both
@example(body=dumps(NOTE | {"project": {"id": 2**64}}, True), **RIGHT)  # no BIGINT holds it
@example(body=dumps(MR | {"object_attributes": {"iid": 1, "action": "x" * 101}}, True), **RIGHT_MR)  # VARCHAR(100)
@example(body=b'{"a": NaN, "project": {"id": 1}}', **RIGHT)
@example(body=b'{"a": 1e400, "project": {"id": 1}}', **RIGHT)
@example(body=b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}", **RIGHT)  # parses, but would recurse when stored
@example(body=b"[" * 100_000, **RIGHT)  # RecursionError in the parser
async def test_any_delivery_is_answered_without_a_5xx(client, storage, trouble, body, token, event, key,
                                                      content_type):
    before = await stored(storage)
    resp = await client.post("/webhook", data=body, headers=request_headers(token, event, key, content_type))
    answer = await resp.read()
    after = await stored(storage)
    assert resp.status < 500, answer
    assert not trouble.records, [r.getMessage() for r in trouble.records]
    if (token or "").strip(" \t") not in (SECRET, PROJECT_SECRET):  # HTTP trims header values
        assert resp.status == 401 and after == before
    if resp.status != 200:
        assert after == before, (resp.status, answer)
        return
    status = json.loads(answer)["status"]
    assert status in ("queued", "duplicate", "ignored")
    assert after == before + (status == "queued")
