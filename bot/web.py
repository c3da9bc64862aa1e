"""The webhook web app: verify, store, answer within milliseconds; the workers do the rest later.

Why this shape (GitLab's "webhook receiver requirements"): GitLab waits at most 10 s, counts any 4xx or 5xx
and timeout as a failure and disables a hook after a few. So the request path makes no GitLab call and runs no
handler: it checks the secret token (401), the event header and JSON (400), that the body is not compressed
(415), the size (413), stores the event durably and answers 200. Events the bot does not handle get 200
"ignored". When the database cannot take the event (down, or no answer within `STORE_TIMEOUT`), the `serve`
app writes it to the local spool (bot.spool) and answers 202: GitLab does not re-send a failed delivery by
itself. A 5xx happens only when the event could be neither stored nor spooled (503, so GitLab shows the
failure and a user can press *Resend Request*); nothing is acknowledged that was not stored or spooled.

System hook deliveries (`X-Gitlab-Event: System Hook`) are ignored, with a 200 that says why (a 4xx
would count towards GitLab disabling the hook) and one warning in the log per process: a system hook
sends the merge requests of every project on the instance, so acting on it would import and comment
on every project the token can read, and it sends no comments or emoji, so `/reviewers` commands and
feedback would never arrive. Project or group webhooks are the way to choose the projects.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from aiohttp import web

from bot import dashboard, shutdown
from bot.arrival_order import ArrivalOrder
from bot.config import Settings
from bot.database_wait import WAIT_KEY, DatabaseWait, pending
from bot.deadline import within
from bot.logfmt import kv
from bot.metrics import CONTENT_TYPE_LATEST, Metrics
from bot.spool import MB, Drainer, Record, Spool, SpoolFull
from bot.storage import Storage, StorageError
from bot.storage.db import as_id
from bot.storage.events import HOOK_HEADER, dedupe_key_for

__all__ = [
    "make_app", "event_kind", "HANDLED_KINDS", "SETTINGS_KEY", "STORAGE_KEY", "METRICS_KEY", "ON_STORED_KEY",
    "SPOOL_KEY", "STARTED_KEY", "WAIT_KEY",
]

log = logging.getLogger("bot.web")

MAX_ACTION_LENGTH = 100  # bot.storage.tables.events.c.action
MAX_DEPTH = 64  # GitLab's webhook bodies nest about 4 levels deep
STORE_TIMEOUT = 7.0  # seconds to store an event before spooling it or answering 503 (GitLab gives up after 10)
PROBE_TIMEOUT = 3.0  # seconds /healthz and /metrics wait for the database (probes time out at 5-10 s)
# "Confidential Note Hook": internal notes, sent only when the hook's "Confidential comments" trigger is on
HANDLED_KINDS = frozenset({"Merge Request Hook", "Note Hook", "Confidential Note Hook", "Emoji Hook"})
SYSTEM_HOOK = "System Hook"  # an instance-wide hook's deliveries, whatever the event (see the module docstring)
SYSTEM_HOOK_REASON = (
    "system hook deliveries are ignored: a system hook sends the merge requests of every project on the instance "
    "(and no comments), so the bot would act on every project its token can read; add a project webhook "
    "(reviewbot install --project ...) or a group webhook for the projects the bot should review, and remove "
    "this system hook"
)
# Event names GitLab sends; anything else is counted as "other" (labels must not come from attackers).
KNOWN_KINDS = HANDLED_KINDS | {
    SYSTEM_HOOK, "Push Hook", "Tag Push Hook", "Issue Hook", "Confidential Issue Hook",
    "Pipeline Hook", "Job Hook", "Deployment Hook", "Wiki Page Hook", "Release Hook", "Member Hook",
    "Subgroup Hook", "Project Hook", "Milestone Hook", "Feature Flag Hook", "Resource Access Token Hook",
    "Vulnerability Hook",
}
KEPT_HEADERS = (
    "Content-Type", "User-Agent", "Idempotency-Key", "X-Gitlab-Event", "X-Gitlab-Event-UUID",
    HOOK_HEADER, "X-Gitlab-Instance",
)  # never X-Gitlab-Token

SETTINGS_KEY = web.AppKey("settings", Settings)
STORAGE_KEY = web.AppKey("storage", Storage)
METRICS_KEY = web.AppKey("metrics", Metrics)
ON_STORED_KEY = web.AppKey("on_stored", list)  # callables run after a new event is stored (wake workers)
WARNED_KEY = web.AppKey("warned", set)  # the notices logged once per process (a misconfigured hook)
SPOOL_KEY = web.AppKey("spool", Drainer)  # the `serve` app's spool and its drainer (absent: no spool, 503)
ORDER_KEY = web.AppKey("arrival_order", ArrivalOrder)  # with the spool: each MR's deliveries in arrival order
# set once the `serve` app's handlers have started (it listens before): /healthz answers 503 "starting" until then
STARTED_KEY = web.AppKey("started", asyncio.Event)


class Rejection(Exception):
    """A delivery refused with an HTTP status; the message names the cause and the fix."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the request path learns about a verified delivery before storing it."""

    kind: str
    data: dict[str, Any]
    project_id: int | None
    path: str | None
    action: str | None
    mr_iid: int | None


def _waiting(n: int) -> str:
    return "1 delivery waits" if n == 1 else f"{n} deliveries wait"


def _json(http_status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=http_status)


def _matches(token: bytes, secrets: list[bytes]) -> bool:
    """Constant-time comparison against every secret (no early exit that would leak which matched)."""
    found = False
    for secret in secrets:
        found |= hmac.compare_digest(token, secret)
    return found


def check_token(headers: Mapping[str, str], settings: Settings) -> bytes:
    """The X-Gitlab-Token if it matches some configured secret; else a 401 `Rejection`."""
    token = headers.get("X-Gitlab-Token")
    if token is None:
        raise Rejection(401, "missing_token", "missing X-Gitlab-Token header: set the webhook's Secret token "
                        "in GitLab to the bot's webhook secret (GITLAB_WEBHOOK_SECRET)")
    encoded = token.encode("utf-8", "surrogateescape")
    if not _matches(encoded, settings.all_secrets()):
        raise Rejection(401, "wrong_token", "X-Gitlab-Token does not match any configured webhook secret: "
                        "copy the secret from the bot's configuration into the webhook's Secret token")
    return encoded


async def read_body(request: web.Request, cap: int) -> bytes:
    """The request body, refusing (413) anything over `cap` bytes before reading it all."""
    too_large = Rejection(413, "too_large", f"body exceeds server.max_body_bytes ({cap} bytes)")
    if request.content_length is not None and request.content_length > cap:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


def _finite(text: str) -> float:
    """JSON has no NaN or infinity (PostgreSQL's JSONB refuses them): 1e400 is as invalid as NaN."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, else a 400 `Rejection` (also for nesting too deep to parse)."""
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejection(400, "bad_json", f"body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise Rejection(400, "bad_json", f"body must be a JSON object, got {type(data).__name__}")
    if _too_deep(data, MAX_DEPTH):
        raise Rejection(400, "bad_json", f"body nests deeper than {MAX_DEPTH} levels; GitLab's payloads never do")
    return data


def _too_deep(data: Any, limit: int) -> bool:
    """Whether objects/arrays nest deeper than `limit` (walked without recursion: storing it would recurse)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def event_kind(header: str, data: Mapping[str, Any]) -> str | None:
    """The event kind the handlers route on, or None for events the bot ignores (system hooks' too).

    >>> event_kind("Merge Request Hook", {"object_kind": "merge_request"})
    'Merge Request Hook'
    >>> event_kind("System Hook", {"object_kind": "merge_request"}) is None
    True
    """
    return header if header in HANDLED_KINDS else None


def _short(value: Any) -> str | None:
    """A string that fits the events table's `action` column (GitLab's actions are single words)."""
    return value if isinstance(value, str) and len(value) <= MAX_ACTION_LENGTH else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def describe(kind: str, data: dict[str, Any]) -> Delivery:
    """Pick the project, merge request and action out of a payload (tolerating odd shapes)."""
    project, attrs = _dict(data.get("project")), _dict(data.get("object_attributes"))
    project_id = as_id(project.get("id")) or as_id(data.get("project_id"))
    path = project.get("path_with_namespace") if isinstance(project.get("path_with_namespace"), str) else None
    if kind == "Merge Request Hook":
        mr_iid = as_id(attrs.get("iid"))
    else:
        mr_iid = as_id(_dict(data.get("merge_request")).get("iid"))
    return Delivery(kind, data, project_id, path, _short(attrs.get("action")), mr_iid)


def check_scope(token: bytes, delivery: Delivery, settings: Settings) -> None:
    """A secret scoped to a project or group is valid only for deliveries about it (else 401)."""
    if not _matches(token, settings.secrets_for(delivery.project_id, delivery.path)):
        raise Rejection(401, "token_scope", f"X-Gitlab-Token is not valid for project "
                        f"{delivery.path or delivery.project_id} (id {delivery.project_id}): use the secret "
                        "configured for it; a secret scoped by path stops matching once the project or its group "
                        "is renamed or moved (scope it by the project's id, or give the new path)")


async def _verify(request: web.Request, settings: Settings) -> tuple[bytes, Delivery | None]:
    """Every check of the request path, in the order that decides the status code."""
    token = check_token(request.headers, settings)
    header = request.headers.get("X-Gitlab-Event")
    if not header:
        raise Rejection(400, "no_event", "missing X-Gitlab-Event header: only GitLab webhooks are accepted here")
    if header == SYSTEM_HOOK:  # ignored whatever it holds: its body is not even read
        return b"", None
    if (request.headers.get("Content-Encoding") or "identity").strip().casefold() not in ("identity", ""):
        raise Rejection(415, "compressed", "Content-Encoding is not accepted: GitLab sends webhook bodies "
                        "uncompressed; a proxy in between must pass them on as they came")
    body = await read_body(request, settings.server.max_body_bytes)
    data = parse_json(body)  # on the loop: ~2 ms a MB, and `json.loads` holds the GIL, so a thread would not help
    kind = event_kind(header, data)
    if kind is None:
        return body, None
    delivery = describe(kind, data)
    check_scope(token, delivery, settings)
    return body, delivery


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in KEPT_HEADERS if name in headers}


def _record(request: web.Request, body: bytes, delivery: Delivery) -> Record:
    """The delivery as the queue stores it (and the spool keeps it): kept headers, parsed body, dedupe key."""
    return Record(
        dedupe_key=dedupe_key_for(request.headers, body, delivery.kind), kind=delivery.kind,
        action=delivery.action, project_id=delivery.project_id, mr_iid=delivery.mr_iid,
        headers=_kept_headers(request.headers), body=delivery.data,
        received_at=request.app[STORAGE_KEY].events.clock(),
    )


def _names(delivery: Delivery, record: Record) -> dict[str, Any]:
    """What identifies a delivery in the log: its project, MR and kind, and GitLab's ids to find it in the
    webhook's *Recent events*."""
    return dict(kind=delivery.kind, project=delivery.path, project_id=delivery.project_id, mr_iid=delivery.mr_iid,
                action=delivery.action, event_uuid=record.headers.get("X-Gitlab-Event-UUID", "")[:100] or None,
                idempotency_key=record.headers.get("Idempotency-Key", "")[:100] or None)


async def _take(request: web.Request, delivery: Delivery, record: Record) -> web.Response:
    """Store the event, or give up after `STORE_TIMEOUT` s (a locked table, a database failing over; GitLab
    waits 10 s and disables a hook that keeps timing out) and spool it. A write that commits after all is
    deduplicated when the spooled copy is moved. One merge request's events must reach the queue in arrival
    order: a delivery waits for the earlier ones of its MR this process is taking (`bot.arrival_order`; its write
    then has what is left of its `STORE_TIMEOUT`), and while deliveries wait in the spool, new ones join them."""
    app = request.app
    drainer = app.get(SPOOL_KEY)
    if drainer is None:
        return await _store(app, delivery, record, STORE_TIMEOUT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_TIMEOUT
    async with app[ORDER_KEY].turn(_merge_request(record)):
        if (waiting := pending(app)) is not None:
            return await _spool(app, delivery, record, waiting.state())
        if drainer.spool.count:
            return await _spool(app, delivery, record, "deliveries are waiting in the spool")
        return await _store(app, delivery, record, max(0.0, deadline - loop.time()))


def _merge_request(record: Record) -> tuple[int, int] | None:
    """What orders a delivery: its project and merge request (None: ordered with nothing)."""
    if record.project_id is None or record.mr_iid is None:
        return None
    return record.project_id, record.mr_iid


async def _store(app: web.Application, delivery: Delivery, record: Record, seconds: float) -> web.Response:
    """Store the event within `seconds` (200), else spool it (202) or answer 503."""
    try:
        storage = app[STORAGE_KEY]
        event_id, is_new = await within(record.store(storage.events), seconds, cancel=storage.cancellable)
    except Exception as exc:  # noqa: BLE001 - whatever stopped the write, the event is not stored
        return await _spool(app, delivery, record, _cause(exc))
    outcome = "queued" if is_new else "duplicate"
    app[METRICS_KEY].events_received.labels(kind=delivery.kind, outcome=outcome).inc()
    log.info(kv("webhook", status=outcome, event_id=event_id, kind=delivery.kind, action=delivery.action,
                project_id=delivery.project_id, mr_iid=delivery.mr_iid))
    if is_new:
        _wake(app)
    return _json(200, status=outcome, event_id=event_id)


async def _spool(app: web.Application, delivery: Delivery, record: Record, cause: str) -> web.Response:
    """Keep a delivery the database cannot take in the spool (202), else answer 503."""
    drainer, counter = app.get(SPOOL_KEY), app[METRICS_KEY].events_received
    if drainer is None:
        refused = "no spool ([server] spool_max_files = 0)"
    else:
        try:
            name = await drainer.spool.put(record)
        except (SpoolFull, OSError) as exc:
            refused = f"spool refused it: {type(exc).__name__}: {exc}"[:300]
        else:
            drainer.wake()
            counter.labels(kind=delivery.kind, outcome="spooled").inc()
            log.warning(kv("webhook spooled", **_names(delivery, record), file=name,
                           waiting=drainer.spool.count, cause=cause))
            return _json(202, status="spooled")
    counter.labels(kind=delivery.kind, outcome="unstored").inc()
    log.error(kv("webhook not stored: storage unavailable", **_names(delivery, record), cause=cause, spool=refused))
    return _json(503, error="storage unavailable: the event was not stored; once the bot's database is back, "
                 "press Resend Request on it in the webhook's Recent events")


def _wake(app: web.Application) -> None:
    """Tell in-process workers; a failing callback must not turn a stored event into a 5xx."""
    for callback in app[ON_STORED_KEY]:
        try:
            callback()
        except Exception as exc:  # noqa: BLE001
            log.error(kv("on_stored callback failed", cause=_cause(exc)))


def _warn_once(app: web.Application, key: str, message: str) -> None:
    """Log `message` as a warning the first time only: a misconfigured hook repeats with every delivery."""
    if key not in app[WARNED_KEY]:
        app[WARNED_KEY].add(key)
        log.warning(kv(message))


def _label(kind: str) -> str:
    return kind if kind in KNOWN_KINDS else "other"


async def webhook(request: web.Request) -> web.Response:
    """POST /webhook: verify, store, answer. See the module docstring for the status codes."""
    app, metrics = request.app, request.app[METRICS_KEY]
    header_kind = _label(request.headers.get("X-Gitlab-Event", ""))
    try:
        body, delivery = await _verify(request, app[SETTINGS_KEY])
    except Rejection as rej:
        metrics.events_received.labels(kind=header_kind, outcome="rejected").inc()
        log.warning(kv("webhook rejected", status=rej.status, reason=rej.reason, kind=header_kind or None,
                       remote=request.remote))
        return _json(rej.status, error=str(rej), reason=rej.reason)
    if delivery is None:
        metrics.events_received.labels(kind=header_kind, outcome="ignored").inc()
        log.info(kv("webhook ignored", kind=header_kind))
        if header_kind == SYSTEM_HOOK:
            _warn_once(app, SYSTEM_HOOK, SYSTEM_HOOK_REASON)
            return _json(200, status="ignored", reason=SYSTEM_HOOK_REASON)
        return _json(200, status="ignored")
    return await _take(request, delivery, _record(request, body, delivery))


def _cause(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}".splitlines()[0][:300]


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 when the database answers within `PROBE_TIMEOUT`, else 503 (the cause goes to the log
    only): a database that hangs (a partition, a stuck failover) must not hang the probe past its timeout. The
    `serve` app answers 503 "starting" until its handlers have started (`STARTED_KEY`), and 503 "spooling" while
    deliveries wait in the spool because the database does not take them: one that answers reads but no writes
    (a full disk, a table locked by another session) said "ok" while every webhook went to the spool; also 503
    "spooling", naming the database, while a `serve` started without its database waits for it (`WAIT_KEY`)."""
    database_up = request.app[METRICS_KEY].database_up
    if (waiting := pending(request.app)) is not None:  # before "starting": the handlers wait for it
        database_up.set(waiting.answers)
        return _json(503, status="spooling", error=f"{waiting.state()}: "
                     f"{_waiting(request.app[SPOOL_KEY].spool.count)} in the spool")
    started = request.app.get(STARTED_KEY)
    if started is not None and not started.is_set():  # webhooks are stored meanwhile, not run yet
        return _json(503, status="starting", error="the handlers are starting (the GitLab token is checked)")
    try:
        storage = request.app[STORAGE_KEY]
        await within(storage.ping(), PROBE_TIMEOUT, cancel=storage.cancellable)
    except (StorageError, TimeoutError) as exc:
        database_up.set(0)
        log.error(kv("healthz failed", cause=str(exc)))
        return _json(503, status="unavailable", error="database unreachable")
    database_up.set(1)
    drainer = request.app.get(SPOOL_KEY)
    if drainer is not None and drainer.waiting:
        return _json(503, status="spooling", error=f"the database takes no writes: "
                     f"{_waiting(drainer.spool.count)} in the spool")
    return _json(200, status="ok")


async def metrics_endpoint(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format; the queue depth is read from the database at scrape time (left out,
    and `reviewbot_database_up` 0, when the database does not answer within `PROBE_TIMEOUT`: the other metrics
    matter most then)."""
    metrics = request.app[METRICS_KEY]
    if (waiting := pending(request.app)) is not None:  # not queried before its checks pass
        metrics.set_queue_depth(None)
        metrics.database_up.set(waiting.answers)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
    try:
        storage = request.app[STORAGE_KEY]
        metrics.set_queue_depth(await within(storage.events.depth(), PROBE_TIMEOUT, cancel=storage.cancellable))
        metrics.database_up.set(1)
    except Exception as exc:  # noqa: BLE001 - metrics must render even when the database is down
        metrics.set_queue_depth(None)
        metrics.database_up.set(0)
        log.warning(kv("metrics: queue depth unavailable", cause=_cause(exc)))
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(
    settings: Settings, storage: Storage, metrics: Metrics | None = None,
    *, on_stored: Callable[[], None] | None = None, spool: bool = False, waiting: DatabaseWait | None = None,
) -> web.Application:
    """The aiohttp app: POST /webhook, GET /healthz, GET /metrics, and the dashboard when enabled (GET /...).

    `storage` is closed by its owner. `spool` (the `serve` app): deliveries the database cannot take are kept
    in `[server] spool_dir` and moved into the queue in the background; without it they are answered 503.
    `waiting` (with `spool`: `serve` started while its database could not be reached): every delivery is
    spooled, and nothing moved into the queue, until its `ready` is set (`bot.database_wait`).
    When the app starts shutting down, the shutdown deadline begins
    (`bot.shutdown`): what its cleanup does (stop a worker, close the storage) shares `[server] shutdown_timeout`.
    """
    # auto_decompress off: GitLab sends bodies uncompressed, and aiohttp inflated a gzip body before any check,
    # even to discard it after a 401 or 404 (half a megabyte from anyone cost a second of CPU); one is now a 415.
    app = web.Application(client_max_size=settings.server.max_body_bytes,
                          handler_args={"auto_decompress": False})

    async def begin_shutdown(_app: web.Application) -> None:
        shutdown.begin(settings.server.shutdown_timeout)

    app.on_shutdown.append(begin_shutdown)  # first: before the worker stops claiming, aiohttp waits for requests
    app[SETTINGS_KEY] = settings
    app[STORAGE_KEY] = storage
    app[METRICS_KEY] = metrics or Metrics()
    app[ON_STORED_KEY] = [on_stored] if on_stored else []
    app[WARNED_KEY] = set()
    if spool and settings.server.spool_max_files:
        if waiting is not None:
            app[WAIT_KEY] = waiting
        _add_spool(app, settings)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_endpoint)
    dashboard.setup(app, settings, storage)
    return app


def _add_spool(app: web.Application, settings: Settings) -> None:
    """The spool and its drainer, running from the app's start (files a previous run left) to its shutdown."""
    server = settings.server
    spool = Spool(server.spool_dir, max_files=server.spool_max_files, max_bytes=server.spool_max_mb * MB,
                  gauge=app[METRICS_KEY].spool_files)
    waiting = app.get(WAIT_KEY)
    drainer = app[SPOOL_KEY] = Drainer(spool, app[STORAGE_KEY], lambda: _wake(app), timeout=STORE_TIMEOUT,
                                       ready=waiting.ready if waiting is not None else None)
    app[ORDER_KEY] = ArrivalOrder()
    running: list[asyncio.Task[None]] = []

    async def start(_app: web.Application) -> None:
        running.append(asyncio.create_task(drainer.run(), name="reviewbot-spool"))

    async def stop(_app: web.Application) -> None:  # before the storage closes; the files wait for the next start
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
