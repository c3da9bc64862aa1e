"""The worker loop against real storage: completion, retries, dead letters, timeouts, shutdown."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.config import Settings
from bot.metrics import Metrics
from bot.storage import EventRow, Storage, migrate
from bot.web import make_app
from bot.worker import Worker, retry_delay, run_in_app

SECRET = "worker-test-secret-0123"


def make_settings(**worker) -> Settings:
    options = {"concurrency": 2, "lease_seconds": 60, "dispatch_timeout": 5, "max_attempts": 3,
               "backoff": 10, "backoff_max": 100, "poll_interval": 0.05, **worker}
    return Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": SECRET}], worker=options)


async def put(storage: Storage, key: str, mr_iid: int | None = None) -> int:
    event_id, _ = await storage.events.store_event(
        dedupe_key=key, kind="Note Hook", action="create", project_id=1, mr_iid=mr_iid, headers={}, body={"k": key}
    )
    return event_id


class Recorder:
    """A dispatch that records what it was given and fails as told."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.seen: list[EventRow] = []
        self.error = error
        self.called = asyncio.Event()

    async def __call__(self, row: EventRow) -> None:
        self.seen.append(row)
        self.called.set()
        if self.error is not None:
            raise self.error


async def run_one(worker: Worker) -> int:
    started = await worker.run_once()
    await worker.drain()
    return started


async def test_a_handled_event_is_done(storage):
    event_id = await put(storage, "a")
    dispatch, metrics = Recorder(), Metrics()
    worker = Worker(storage, dispatch, make_settings(), metrics, "w1")
    assert await run_one(worker) == 1
    assert [r.id for r in dispatch.seen] == [event_id] and dispatch.seen[0].body == {"k": "a"}
    assert (await storage.events.get(event_id)).status == "done"
    assert metrics.events_processed.labels(kind="Note Hook")._value.get() == 1


async def test_a_failure_is_retried_with_exponential_backoff_then_dead_lettered(storage, clock):
    event_id = await put(storage, "a")
    worker = Worker(storage, Recorder(RuntimeError("GitLab said 502")), make_settings(), Metrics(), "w1")
    for attempt, delay in ((1, 10), (2, 20)):
        await run_one(worker)
        row = await storage.events.get(event_id)
        assert (row.status, row.attempts, row.last_error) == ("failed", attempt, "RuntimeError: GitLab said 502")
        assert row.next_attempt_at == clock() + timedelta(seconds=delay)
        assert await run_one(worker) == 0  # not due yet
        clock.advance(delay)
    await run_one(worker)
    assert (await storage.events.get(event_id)).status == "dead"


async def test_retry_after_on_the_exception_is_honoured(storage, clock):
    class RateLimited(Exception):
        retry_after = 42

    event_id = await put(storage, "a")
    await run_one(Worker(storage, Recorder(RateLimited("429")), make_settings(), Metrics(), "w1"))
    assert (await storage.events.get(event_id)).next_attempt_at == clock() + timedelta(seconds=42)


async def test_a_permanent_error_is_dead_lettered_at_once(storage):
    class Unfixable(Exception):
        permanent = True

    event_id = await put(storage, "a")
    metrics = Metrics()
    await run_one(Worker(storage, Recorder(Unfixable("no project")), make_settings(), metrics, "w1"))
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "Unfixable: no project")
    assert metrics.events_failed.labels(kind="Note Hook", result="dead")._value.get() == 1


async def test_a_dispatch_that_hangs_times_out_and_is_retried(storage):
    async def hang(row: EventRow) -> None:
        await asyncio.Event().wait()

    event_id = await put(storage, "a")
    await run_one(Worker(storage, hang, make_settings(dispatch_timeout=0.05), Metrics(), "w1"))
    row = await storage.events.get(event_id)
    assert row.status == "failed" and "timed out after 0.05 s" in row.last_error


async def test_an_error_quoting_a_nul_is_recorded_not_left_running(storage):
    """PostgreSQL refused the text, so the failure was never recorded: the event stayed `running` and ran again
    at the end of each lease, until buried as though its worker had crashed."""
    event_id = await put(storage, "a")
    await run_one(Worker(storage, Recorder(ValueError("title 'a\x00b'")), make_settings(), Metrics(), "w1"))
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, "ValueError: title 'a\ufffdb'")


def test_retry_delay():
    class Slow(Exception):
        retry_after = 7.5

    assert retry_delay(Slow(), 5, 10, 100) == 7.5
    assert [retry_delay(ValueError(), n, 10, 100) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]


async def test_concurrency_limits_events_in_flight(storage):
    for n in range(5):
        await put(storage, f"e{n}", mr_iid=n)
    gate = asyncio.Event()

    async def wait_for_gate(row: EventRow) -> None:
        await gate.wait()

    worker = Worker(storage, wait_for_gate, make_settings(concurrency=3), Metrics(), "w1")
    assert await worker.run_once() == 3
    assert await worker.run_once() == 0 and worker.in_flight == 3
    gate.set()
    await worker.drain()
    assert await run_one(worker) == 2
    assert (await storage.events.depth())["done"] == 5


async def test_stop_finishes_quick_events_and_hands_back_stuck_ones(storage):
    quick, stuck = await put(storage, "quick", mr_iid=1), await put(storage, "stuck", mr_iid=2)

    async def dispatch(row: EventRow) -> None:
        if row.id == stuck:
            await asyncio.Event().wait()

    worker = Worker(storage, dispatch, make_settings(), Metrics(), "w1")
    assert await worker.run_once() == 2
    assert await worker.stop(grace=2.0) == 1
    assert (await storage.events.get(quick)).status == "done"
    row = await storage.events.get(stuck)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)


async def test_the_loop_runs_events_as_they_arrive_and_stops_on_request(storage):
    dispatch = Recorder()
    worker = Worker(storage, dispatch, make_settings(poll_interval=30), Metrics(), "w1")
    loop_task = asyncio.create_task(worker.run())
    await asyncio.sleep(0)
    event_id = await put(storage, "late")
    worker.notify()  # without it the loop would sleep for the 30 s poll interval
    await asyncio.wait_for(dispatch.called.wait(), 60)
    await worker.stop(grace=5)
    await loop_task
    assert (await storage.events.get(event_id)).status == "done"


async def test_a_database_outage_does_not_kill_the_loop(tmp_path, caplog):
    down = Storage(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'db.sqlite3'}")
    worker = Worker(down, Recorder(), make_settings(), Metrics(), "w1")
    assert await worker.run_once() == 0
    assert "cannot claim events" in caplog.text
    assert await worker.stop(grace=1) == 0
    await down.close()


async def test_a_database_outage_is_logged_once_and_its_end_too(tmp_path, caplog):
    """A worker polls every `poll_interval` (2 s): an hour's outage logged an error at every poll (1,800
    lines). It is logged when it starts, again only every few minutes while it lasts, and when it ends."""
    caplog.set_level("INFO", logger="bot.worker")
    path = tmp_path / "gone" / "db.sqlite3"
    storage = Storage(f"sqlite+aiosqlite:///{path}")
    worker = Worker(storage, Recorder(), make_settings(), Metrics(), "w1")
    for _ in range(5):
        assert await worker.run_once() == 0
    assert caplog.text.count("cannot claim events") == 1
    path.parent.mkdir()
    await migrate(storage.url)
    assert await worker.run_once() == 0 and worker.claim_error is None
    assert caplog.text.count("can claim events again") == 1
    assert await worker.run_once() == 0
    assert caplog.text.count("can claim events again") == 1
    await worker.stop(grace=1)
    await storage.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_run_in_app_processes_webhooks_in_the_same_process(aiohttp_client, storage):
    settings = make_settings(poll_interval=30)
    app = make_app(settings, storage, Metrics())
    dispatch = Recorder()
    run_in_app(app, dispatch, worker_id="serve-1")
    client = await aiohttp_client(app)
    body = {"object_kind": "note", "project": {"id": 3, "path_with_namespace": "g/p"},
            "object_attributes": {"action": "create", "noteable_type": "MergeRequest"}, "merge_request": {"iid": 8}}
    resp = await client.post("/webhook", json=body, headers={"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": SECRET})
    event_id = (await resp.json())["event_id"]
    await asyncio.wait_for(dispatch.called.wait(), 60)
    await client.close()  # runs the app's shutdown and cleanup: the worker stops
    assert dispatch.seen[0].id == event_id and dispatch.seen[0].mr_iid == 8
    assert (await storage.events.get(event_id)).status == "done"


async def test_a_running_event_keeps_its_lease_so_no_other_worker_runs_it_twice(storage, clock):
    """A history import in a thread outlasts `dispatch_timeout` and would outlast its lease: the worker renews
    the lease while the event runs, so a second worker does not take it meanwhile."""
    import threading
    import time

    from bot.threads import to_the_end

    release = threading.Event()

    async def slow(row: EventRow) -> None:  # runs until the test has seen what it needs (not a set time)
        await to_the_end(asyncio.to_thread(release.wait, 120))

    event_id = await put(storage, "a")
    settings = make_settings(lease_seconds=0.3, dispatch_timeout=0.2)
    first = Worker(storage, slow, settings, Metrics(), "w1")
    second = Worker(storage, Recorder(), settings, Metrics(), "w2")
    assert await first.run_once() == 1
    try:
        renewed = clock.advance(0.25) + timedelta(seconds=0.3)
        deadline = time.monotonic() + 60  # a renewal, at the advanced time (polled: due every 0.1 s, later under load)
        while (await storage.events.get(event_id)).lease_expires_at < renewed:
            assert time.monotonic() < deadline, "the lease was not renewed"
            await asyncio.sleep(0.02)
        clock.advance(0.2)  # past the first lease, within the renewed one
        assert await second.run_once() == 0
        await asyncio.sleep(0.2)  # the dispatch timeout (set before the renewal) ran out first: timers run in order
    finally:
        release.set()
    await first.drain()
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts) == ("failed", 1) and "timed out" in row.last_error


class Outage(Exception):
    """What a handler raises while GitLab is out (`GitLabFailure` for no answer, a 5xx, a 429, a refused token)."""

    outage = True


async def fail_through(worker: Worker, storage: Storage, clock, event_id: int, times: int) -> list[float]:
    """Run the event `times` times, each failing, the clock moved past each retry delay; the delays."""
    delays = []
    for _ in range(times):
        assert await run_one(worker) == 1
        row = await storage.events.get(event_id)
        assert row.status == "failed", (row.status, row.last_error)
        delays.append((row.next_attempt_at - clock()).total_seconds())
        clock.advance(delays[-1])
    return delays


async def test_a_gitlab_outage_does_not_use_up_the_attempts_until_outage_hours(storage, clock):
    """Within `outage_hours` of its arrival an outage is retried however often; past them, each outage failure
    counts like any other: the event has the attempts it had left, still `backoff_max` apart."""
    event_id = await put(storage, "a")
    worker = Worker(storage, Recorder(Outage("GitLab 502")), make_settings(max_attempts=3, outage_hours=2),
                    Metrics(), "w1")
    assert await fail_through(worker, storage, clock, event_id, 6) == [10, 20, 40, 80, 100, 100]
    clock.advance(2 * 3600)
    assert await fail_through(worker, storage, clock, event_id, 2) == [100, 100]
    row = await storage.events.get(event_id)
    assert (row.attempts, row.outage_attempts) == (2, 6)
    await run_one(worker)
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("dead", 3, 6)


async def test_after_a_long_outage_an_event_still_has_all_its_attempts(storage, clock):
    """The outage's retries were counted as attempts, only allowed one more each time: once GitLab answered,
    the event's first failure of another kind (a timeout, a handler's error) dead-lettered it at once, where it
    has `max_attempts` of its own, with the backoff of its own failures."""
    event_id = await put(storage, "a")
    dispatch = Recorder(Outage("GitLab 502"))
    worker = Worker(storage, dispatch, make_settings(max_attempts=3), Metrics(), "w1")
    assert await fail_through(worker, storage, clock, event_id, 8) == [10, 20, 40, 80, 100, 100, 100, 100]
    dispatch.error = RuntimeError("a handler's error")
    assert await fail_through(worker, storage, clock, event_id, 2) == [10, 20]
    row = await storage.events.get(event_id)
    assert (row.attempts, row.outage_attempts, row.last_error) == (2, 8, "RuntimeError: a handler's error")
    await run_one(worker)
    assert (await storage.events.get(event_id)).status == "dead"


async def test_a_worker_killed_after_an_outage_leaves_the_event_its_attempts(storage, clock):
    """A lease that runs out (its worker SIGKILLed) dead-letters the event on its last attempt: after an outage
    every event was on it, and the first killed worker buried each event it held."""
    event_id = await put(storage, "a")
    worker = Worker(storage, Recorder(Outage("GitLab 502")), make_settings(max_attempts=3), Metrics(), "w1")
    await fail_through(worker, storage, clock, event_id, 5)
    assert [r.id for r in await storage.events.claim("killed", 60, 1, max_attempts=3)] == [event_id]
    clock.advance(61)  # its worker never comes back
    worker.dispatch = Recorder()
    assert await run_one(worker) == 1
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("done", 2, 5)


class Waiting(Exception):
    """What a handler raises for an event that must wait for something else (`bot.worker.park_seconds`)."""

    def __init__(self, park: float, wakes: asyncio.Future | None = None) -> None:
        super().__init__("waiting for the project's history import")
        self.park, self.wakes = park, wakes


async def test_an_event_that_must_wait_is_parked_and_its_slot_freed_until_woken(storage, clock):
    """No worker slot is held while the event waits; what it waits for ending makes it due at once (not after
    the whole delay), and its attempt was not counted."""
    event_id = await put(storage, "a", mr_iid=1)
    other = await put(storage, "b", mr_iid=2)
    imported = asyncio.get_running_loop().create_future()
    dispatch = Recorder(Waiting(30, imported))
    worker = Worker(storage, dispatch, make_settings(concurrency=1), Metrics(), "w1")
    assert await worker.run_once() == 1
    while worker.in_flight:
        await asyncio.sleep(0.01)
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("queued", 0, clock() + timedelta(seconds=30))
    dispatch.error = None
    assert await run_one_started(worker) == [other]  # the free slot runs another event meanwhile
    imported.set_result(None)
    await worker.drain()
    assert await run_one_started(worker) == [event_id]
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts) == ("done", 1)


async def run_one_started(worker: Worker) -> list[int]:
    """Run the events due now, without waiting for parked ones; the ids started."""
    before = len(worker.dispatch.seen)
    await worker.run_once()
    while worker.in_flight:
        await asyncio.sleep(0.01)
    return [r.id for r in worker.dispatch.seen[before:]]


async def test_a_parked_event_nobody_wakes_is_due_after_its_delay(storage, clock):
    event_id = await put(storage, "a")
    dispatch = Recorder(Waiting(20))
    worker = Worker(storage, dispatch, make_settings(), Metrics(), "w1")
    await run_one(worker)
    assert await worker.run_once() == 0
    dispatch.error = None
    clock.advance(20)
    assert await run_one(worker) == 1 and (await storage.events.get(event_id)).attempts == 1


async def test_an_event_whose_lease_expired_runs_alone(storage, clock):
    """Its worker died, perhaps of it (out of memory, a segfault): nothing is claimed beside it until it ends, so
    that it takes no other event down with it again."""
    crashed, other = await put(storage, "a", mr_iid=1), await put(storage, "b", mr_iid=2)
    await storage.events.claim("killed", 60, 1)
    clock.advance(61)
    gate = asyncio.Event()

    async def dispatch(row: EventRow) -> None:
        await gate.wait()

    worker = Worker(storage, dispatch, make_settings(concurrency=2), Metrics(), "w1")
    assert await worker.run_once() == 1 and worker.in_flight == 1
    assert await worker.run_once() == 0  # a slot is free, yet nothing runs beside it
    gate.set()
    await worker.drain()
    assert await run_one(worker) == 1
    assert [(await storage.events.get(i)).status for i in (crashed, other)] == ["done", "done"]


async def database_fails(storage: Storage) -> None:
    """What a handler meets when the database fails under it. PostgreSQL: its connection terminated (a restart,
    a failover; `pg_terminate_backend`). SQLite: the write lock held by another connection past the busy timeout
    (cut to 50 ms for the test: the bot's own is 30 s)."""
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    if storage.engine.dialect.name != "sqlite":
        async with storage.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return
    path = storage.engine.url.database
    holder = sqlite3.connect(path)
    impatient = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.05})
    try:
        holder.execute("BEGIN IMMEDIATE")
        async with impatient.begin() as conn:
            await conn.execute(sa.text("UPDATE events SET last_error = last_error WHERE id = 0"))
    finally:
        holder.rollback()
        holder.close()
        await impatient.dispose()


async def test_a_database_failing_under_a_handler_does_not_use_up_the_attempts(storage, clock):
    """A handler writes as it goes: each run that met the database's failover, restart or lock was counted as
    the event's own failure, and a failure longer than `max_attempts` retries dead-lettered the event."""
    event_id = await put(storage, "a")
    failures = 4

    async def dispatch(row: EventRow) -> None:
        if row.outage_attempts < failures:
            await database_fails(storage)
            raise AssertionError("the database did not fail")

    worker = Worker(storage, dispatch, make_settings(max_attempts=2), Metrics(), "w1")
    assert await fail_through(worker, storage, clock, event_id, failures) == [10, 20, 40, 80]
    row = await storage.events.get(event_id)
    assert (row.attempts, row.outage_attempts) == (0, failures), row.last_error
    assert await run_one(worker) == 1
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("done", 1, failures)


@pytest.mark.parametrize("statement", ["SELEC 1", "SELECT * FROM no_such_table", "INSERT INTO events (id) VALUES (1)"])
async def test_a_statement_the_database_refuses_is_the_events_own_failure(storage, clock, statement):
    """A syntax error, a missing table (an `OperationalError` on SQLite, as a lock is), a constraint broken: no
    retry changes them; they use up the attempts."""
    import sqlalchemy as sa

    event_id = await put(storage, "a")

    async def dispatch(row: EventRow) -> None:
        async with storage.engine.begin() as conn:
            await conn.execute(sa.text(statement))

    worker = Worker(storage, dispatch, make_settings(max_attempts=2), Metrics(), "w1")
    await fail_through(worker, storage, clock, event_id, 1)
    await run_one(worker)
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("dead", 2, 0), row.last_error


@pytest.mark.postgres
async def test_a_run_cut_off_while_the_database_does_not_answer_is_an_outage(postgres_url):
    """A table locked by another session (PostgreSQL waits for a lock forever by default) raises no error: the run
    ended at `dispatch_timeout` and paid an attempt, as a handler slow of its own does, so a lock held long enough
    dead-lettered every event it caught. Cut off inside a statement that waited most of the run, it is an outage;
    a handler slow of its own, its statements answered or waiting only the end of the run, still pays."""
    import sqlalchemy as sa

    storage, holder = Storage(postgres_url), Storage(postgres_url)
    try:
        async def dispatch(row: EventRow) -> None:
            if row.body["k"] == "late":
                await asyncio.sleep(0.6)
            async with storage.engine.connect() as conn:
                await conn.execute(sa.text("SELECT count(*) FROM projects"))
            if row.body["k"] == "slow":
                await asyncio.sleep(5)

        worker = Worker(storage, dispatch, make_settings(dispatch_timeout=0.8, max_attempts=1), Metrics(), "w1")
        hung = await put(storage, "hung")
        async with holder.engine.connect() as lock:
            await lock.execute(sa.text("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE"))
            assert await run_one(worker) == 1
        row = await storage.events.get(hung)
        assert (row.status, row.attempts, row.outage_attempts) == ("failed", 0, 1), row.last_error
        assert row.last_error.startswith("DatabaseNotAnswering: timed out after 0.8 s") and "lock" in row.last_error
        late = await put(storage, "late")
        async with holder.engine.connect() as lock:
            await lock.execute(sa.text("LOCK TABLE projects IN ACCESS EXCLUSIVE MODE"))
            assert await run_one(worker) == 1
        assert (await storage.events.get(late)).status == "dead"  # 0.6 s its own, 0.2 s the database's
        slow = await put(storage, "slow")
        assert await run_one(worker) == 1
        row = await storage.events.get(slow)
        assert (row.status, row.attempts, row.outage_attempts) == ("dead", 1, 0), row.last_error
        assert row.last_error == "timed out after 0.8 s (worker.dispatch_timeout)"
    finally:
        await holder.close()
        await storage.close()
