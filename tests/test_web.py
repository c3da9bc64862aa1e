"""The webhook app over real HTTP (pytest-aiohttp) with real storage on SQLite and PostgreSQL."""
from __future__ import annotations

import gzip
import io
import json
import logging
import zlib

import pytest

from bot.config import Settings
from bot.metrics import Metrics
from bot.storage import Storage
from bot.web import event_kind, make_app
from tests.shared_samples import GITLAB_WEBHOOKS

SECRET = "global-secret-0123456789"
PROJECT_SECRET = "project-secret-abcdef"
SAMPLES = GITLAB_WEBHOOKS
HEADER_FOR_KIND = {"merge_request": "Merge Request Hook", "note": "Note Hook", "emoji": "Emoji Hook"}


def make_settings(**server) -> Settings:
    return Settings(
        gitlab={"token": "glpat-test"},
        server={"max_body_bytes": 4096, **server},
        webhook_secrets=[{"secret": SECRET}, {"secret": PROJECT_SECRET, "project": "group/app"}],
    )


def mr_payload(*, project_id: int = 15, path: str = "group/app", iid: int = 1, action: str = "open") -> dict:
    """A Merge Request Hook body with the fields GitLab documents (trimmed to what the app reads)."""
    return {
        "object_kind": "merge_request", "event_type": "merge_request",
        "user": {"id": 1, "username": "root"},
        "project": {"id": project_id, "path_with_namespace": path},
        "object_attributes": {"id": 99, "iid": iid, "action": action, "state": "opened"},
        "changes": {},
    }


def headers(kind: str = "Merge Request Hook", token: str | None = SECRET, **extra: str) -> dict[str, str]:
    result = {"Content-Type": "application/json", "X-Gitlab-Event": kind, **extra}
    if token is not None:
        result["X-Gitlab-Token"] = token
    return result


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def client(aiohttp_client, settings, storage):
    return await aiohttp_client(make_app(settings, storage, Metrics()))


async def nothing_stored(storage: Storage) -> bool:
    return sum((await storage.events.depth()).values()) == 0


async def test_a_handled_event_is_stored_and_queued(client, storage):
    resp = await client.post("/webhook", json=mr_payload(iid=4), headers=headers(**{"Idempotency-Key": "k1"}))
    assert resp.status == 200
    answer = await resp.json()
    assert answer["status"] == "queued"
    row = await storage.events.get(answer["event_id"])
    assert (row.kind, row.action, row.project_id, row.mr_iid) == ("Merge Request Hook", "open", 15, 4)
    assert row.body == mr_payload(iid=4) and row.dedupe_key == "idem:k1"
    assert "X-Gitlab-Token" not in row.headers and row.headers["X-Gitlab-Event"] == "Merge Request Hook"


@pytest.mark.parametrize("action", ["op\x00en", "op\ud800en"])
async def test_an_action_holding_nul_or_a_lone_surrogate_is_stored_as_the_body_is(client, storage, action):
    """The `action` column got the payload's action as sent: PostgreSQL refuses a NUL and neither database takes a
    lone surrogate, so the delivery was answered 503 (GitLab counts it towards disabling the hook), or spooled
    only to be refused there. It is stored with U+FFFD in their place, as the body is."""
    resp = await client.post("/webhook", json=mr_payload(action=action), headers=headers())
    assert resp.status == 200
    row = await storage.events.get((await resp.json())["event_id"])
    assert row.action == row.body["object_attributes"]["action"] == "op\ufffden"


@pytest.mark.parametrize(
    ("token", "reason"), [(None, "missing_token"), ("wrong", "wrong_token"), (SECRET + "x", "wrong_token")]
)
async def test_a_missing_or_wrong_token_is_401_and_nothing_is_stored(client, storage, token, reason):
    resp = await client.post("/webhook", json=mr_payload(), headers=headers(token=token))
    assert resp.status == 401
    answer = await resp.json()
    assert answer["reason"] == reason and "X-Gitlab-Token" in answer["error"]
    assert await nothing_stored(storage)


async def test_a_project_scoped_secret_is_valid_only_for_its_project(client, storage):
    ok = await client.post("/webhook", json=mr_payload(path="group/app"), headers=headers(token=PROJECT_SECRET))
    other = await client.post("/webhook", json=mr_payload(path="group/other"), headers=headers(token=PROJECT_SECRET))
    assert (ok.status, other.status) == (200, 401)
    answer = await other.json()
    assert answer["reason"] == "token_scope" and "(id 15)" in answer["error"]
    assert "renamed or moved (scope it by the project's id" in answer["error"]  # the likely cause, after a rename
    assert (await storage.events.depth())["queued"] == 1


@pytest.mark.parametrize(
    ("body", "hdrs", "reason"),
    [
        (b"{not json", headers(), "bad_json"),
        (b"[1, 2]", headers(), "bad_json"),
        (b"\xff\xfe", headers(), "bad_json"),
        (json.dumps(mr_payload()).encode(), {"X-Gitlab-Token": SECRET}, "no_event"),
    ],
)
async def test_a_malformed_delivery_is_400(client, storage, body, hdrs, reason):
    resp = await client.post("/webhook", data=body, headers=hdrs)
    assert resp.status == 400 and (await resp.json())["reason"] == reason
    assert await nothing_stored(storage)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("Push Hook", {"object_kind": "push"}),
        ("Confidential Issue Hook", {"object_kind": "issue"}),
        ("Pipeline Hook", mr_payload()),
    ],
)
async def test_events_the_bot_does_not_handle_are_ignored_with_200(client, storage, kind, body):
    resp = await client.post("/webhook", json=body, headers=headers(kind))
    assert resp.status == 200 and await resp.json() == {"status": "ignored"}
    assert await nothing_stored(storage)


async def test_a_system_hook_is_ignored_with_a_200_saying_why_and_one_warning(client, storage, caplog):
    """A system hook sends the merge requests of every project on the instance: they were stored and acted on,
    so one admin's hook made the bot import and comment on every project its token could read."""
    caplog.set_level(logging.INFO, logger="bot.web")
    for body in (mr_payload(), mr_payload(iid=2), {"event_name": "user_create"}):
        resp = await client.post("/webhook", json=body, headers=headers("System Hook"))
        answer = await resp.json()
        assert resp.status == 200 and answer["status"] == "ignored"
        assert "system hook" in answer["reason"] and "project webhook" in answer["reason"]
    assert await nothing_stored(storage)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "group webhook" in warnings[0].getMessage()


async def test_a_re_sent_delivery_is_stored_once(client, storage):
    hdrs = headers(**{"Idempotency-Key": "3a427872-00df-429c-9bc9-a9475de2efe4"})
    first = await (await client.post("/webhook", json=mr_payload(), headers=hdrs)).json()
    second = await (await client.post("/webhook", json=mr_payload(), headers=hdrs)).json()
    assert (first["status"], second["status"]) == ("queued", "duplicate")
    assert first["event_id"] == second["event_id"]
    assert (await storage.events.depth())["queued"] == 1


async def test_without_idempotency_key_the_body_deduplicates(client, storage):
    """Before GitLab 17.4 a "Resend Request" draws a new event UUID: only the body says it is the same."""
    first = {"X-Gitlab-Event-UUID": "e-1", "X-Gitlab-Webhook-UUID": "w-1"}
    resent = {"X-Gitlab-Event-UUID": "e-2", "X-Gitlab-Webhook-UUID": "w-1"}
    a = await (await client.post("/webhook", json=mr_payload(), headers=headers(**first))).json()
    b = await (await client.post("/webhook", json=mr_payload(), headers=headers(**resent))).json()
    c = await (await client.post("/webhook", json=mr_payload(iid=2), headers=headers(**first))).json()
    d = await (await client.post("/webhook", json=mr_payload(iid=3), headers=headers())).json()
    e = await (await client.post("/webhook", json=mr_payload(iid=3), headers=headers())).json()
    assert [x["status"] for x in (a, b, c, d, e)] == ["queued", "duplicate", "queued", "queued", "duplicate"]


async def test_a_body_over_the_cap_is_413(client, storage):
    big = mr_payload()
    big["object_attributes"]["description"] = "x" * 5000
    resp = await client.post("/webhook", json=big, headers=headers())
    assert resp.status == 413 and (await resp.json())["reason"] == "too_large"

    async def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(10):
            yield b" " * 1000

    resp = await client.post("/webhook", data=chunks(), headers=headers())
    assert resp.status == 413
    assert await nothing_stored(storage)


async def test_the_default_cap_takes_what_gitlab_may_send(aiohttp_client, storage):
    """An update of a 1,000,000-character description in 4-byte characters is ~8 MB with its previous version;
    GitLab sends up to 25 MB, and each refusal counts toward disabling the hook (the default cap was 5 MB)."""
    settings = Settings(gitlab={"token": "glpat-test"}, webhook_secrets=[{"secret": SECRET}])
    client = await aiohttp_client(make_app(settings, storage, Metrics()))
    big = mr_payload(action="update")
    text = "\U0001F600" * 1_000_000
    big["object_attributes"]["description"] = text
    big["changes"] = {"description": {"previous": text[:-1], "current": text}}
    body = json.dumps(big, ensure_ascii=False).encode()
    assert 8_000_000 < len(body) < settings.server.max_body_bytes == 25 * 1024 * 1024
    resp = await client.post("/webhook", data=io.BytesIO(body), headers=headers())
    assert resp.status == 200 and (await resp.json())["status"] == "queued"


def gzip_bomb(megabytes: int) -> bytes:
    """Zeros compressed about a thousand to one: a small upload that inflates to `megabytes` MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1 << 20)
    return b"".join(packer.compress(chunk) for _ in range(megabytes)) + packer.flush()


async def test_a_compressed_body_is_refused_not_inflated(client, storage):
    """GitLab sends webhooks uncompressed. aiohttp inflated any `Content-Encoding: gzip` body before the app saw
    it, also to throw away the body of a request refused with 401 or 404: half a megabyte from anyone on the
    internet cost the server about a second of CPU on the event loop (a thousand to one)."""
    resp = await client.post("/webhook", data=gzip.compress(json.dumps(mr_payload()).encode()),
                             headers=headers(**{"Content-Encoding": "gzip"}))
    assert resp.status == 415 and (await resp.json())["reason"] == "compressed"
    assert await nothing_stored(storage)
    for path, hdrs in (("/webhook", headers(token="wrong")), ("/no-such-page", {})):
        resp = await client.post(path, data=gzip_bomb(5), headers={**hdrs, "Content-Encoding": "gzip"})
        assert resp.status in (401, 404)


async def test_an_empty_content_encoding_is_no_encoding(client, storage):
    resp = await client.post("/webhook", json=mr_payload(), headers=headers(**{"Content-Encoding": ""}))
    assert resp.status == 200


@pytest.fixture(params=["sqlite-missing-folder", "postgresql-closed-port"])
async def down_storage(request, tmp_path):
    url = {
        "sqlite-missing-folder": f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'db.sqlite3'}",
        "postgresql-closed-port": "postgresql+asyncpg://postgres@127.0.0.1:1/test",
    }[request.param]
    storage = Storage(url)
    yield storage
    await storage.close()


async def test_when_the_database_is_down_the_webhook_is_503_and_healthz_fails(
    aiohttp_client, settings, down_storage, caplog
):
    client = await aiohttp_client(make_app(settings, down_storage))
    resp = await client.post("/webhook", json=mr_payload(), headers=headers())
    assert resp.status == 503 and "not stored" in (await resp.json())["error"]
    assert "storage unavailable" in caplog.text and "cause=" in caplog.text
    assert (await client.get("/healthz")).status == 503
    assert (await client.get("/metrics")).status == 200


async def test_a_write_that_hangs_is_503_in_time_not_a_gitlab_timeout(aiohttp_client, settings, postgres_url,
                                                                         monkeypatch):
    """The events table locked by another session (a migration, a failover): answered 503 within
    `STORE_TIMEOUT`, well inside GitLab's 10 s, instead of hanging until GitLab disables the hook."""
    import asyncio

    import asyncpg

    from bot import web as web_module

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 0.5)
    storage = Storage(postgres_url)
    await storage.events.depth()  # the schema exists
    locker = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await locker.execute("BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        client = await aiohttp_client(make_app(settings, storage))
        # a guard against a hang (the lock is held until the test ends), not a measure of speed
        resp = await asyncio.wait_for(client.post("/webhook", json=mr_payload(), headers=headers()), 30)
        assert resp.status == 503
    finally:
        await locker.execute("ROLLBACK")
        await locker.close()
        await storage.close()


async def test_healthz_and_metrics(client):
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    await client.post("/webhook", json=mr_payload(), headers=headers())
    await client.post("/webhook", json={"object_kind": "push"}, headers=headers("Push Hook"))
    await client.post("/webhook", json=mr_payload(), headers=headers(token="bad"))
    text = await (await client.get("/metrics")).text()
    assert 'reviewbot_events_received_total{kind="Merge Request Hook",outcome="queued"} 1.0' in text
    assert 'reviewbot_events_received_total{kind="Push Hook",outcome="ignored"} 1.0' in text
    assert 'outcome="rejected"} 1.0' in text
    assert 'reviewbot_queue_depth{status="queued"} 1.0' in text


async def test_metrics_include_the_process_and_python_series(client):
    """The standard `process_*` and `python_*` series (memory, CPU, garbage collection) that dashboards expect,
    on the app's own registry."""
    text = await (await client.get("/metrics")).text()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "python_info", "python_gc_collections_total"):
        assert f"\n{name}" in text, name


async def test_unknown_event_names_do_not_become_metric_labels(client):
    await client.post("/webhook", json={}, headers=headers("Random Hook 12345", token="bad"))
    text = await (await client.get("/metrics")).text()
    assert "Random Hook" not in text and 'kind="other",outcome="rejected"} 1.0' in text


async def test_new_events_wake_the_workers(aiohttp_client, settings, storage):
    woken: list[int] = []
    client = await aiohttp_client(make_app(settings, storage, on_stored=lambda: woken.append(1)))
    hdrs = headers(**{"Idempotency-Key": "once"})
    await client.post("/webhook", json=mr_payload(), headers=hdrs)
    await client.post("/webhook", json=mr_payload(), headers=hdrs)
    assert woken == [1]


async def test_secrets_never_reach_the_log(client, caplog):
    caplog.set_level(logging.DEBUG)
    await client.post("/webhook", json=mr_payload(), headers=headers())
    await client.post("/webhook", json=mr_payload(), headers=headers(token=PROJECT_SECRET + "nope"))
    assert caplog.text and SECRET not in caplog.text and PROJECT_SECRET not in caplog.text


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("Note Hook", {}, "Note Hook"),
        ("Emoji Hook", {}, "Emoji Hook"),
        ("Merge Request Hook", {"object_kind": "merge_request"}, "Merge Request Hook"),
        ("System Hook", {"object_kind": "merge_request"}, None),
        ("System Hook", {"object_kind": "note"}, None),
        ("Issue Hook", {}, None),
    ],
)
def test_event_kind(header, body, expected):
    assert event_kind(header, body) == expected


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="GitLab webhook samples (../shared/gitlab) not present")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_documented_gitlab_payload_is_queued(aiohttp_client, storage):
    client = await aiohttp_client(make_app(make_settings(max_body_bytes=1_000_000), storage))
    files = sorted(SAMPLES.glob("*.json")) + sorted(SAMPLES.glob("derived/*.json"))
    for n, path in enumerate(files):
        body = path.read_bytes()
        kind = HEADER_FOR_KIND[json.loads(body)["object_kind"]]
        resp = await client.post("/webhook", data=body, headers=headers(kind, **{"Idempotency-Key": f"k{n}"}))
        assert resp.status == 200, path.name
        row = await storage.events.get((await resp.json())["event_id"])
        assert row.project_id is not None, path.name
        if kind != "Emoji Hook":  # the documented emoji sample is an award on an issue's note
            assert row.mr_iid is not None and row.action, path.name
