"""Webhooks that arrive while the database is unavailable: spooled on local disk, answered 202, moved into the
queue once the database is back (exactly once, in arrival order), also after a restart. The app over real HTTP
on real SQLite; the database goes away the way a server does: its connections are closed and new ones fail
(the file's folder is gone)."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from bot import deadline
from bot import spool as spool_module
from bot.arrival_order import ArrivalOrder
from bot.metrics import Metrics
from bot.spool import Record
from bot.storage import Storage, utcnow
from tests.test_web import SECRET, headers, make_settings, mr_payload


class Outage:
    """A SQLite database in a folder of its own, which `down()` takes away and `up()` brings back."""

    def __init__(self, template: Path, folder: Path) -> None:
        self.folder, self.away = folder, folder.with_name(folder.name + "-away")
        folder.mkdir()
        shutil.copyfile(template, folder / "reviewbot.sqlite3")
        self.storage = Storage(f"sqlite+aiosqlite:///{folder / 'reviewbot.sqlite3'}")

    async def down(self) -> None:
        await self.storage.engine.dispose()
        self.folder.rename(self.away)

    def up(self) -> None:
        self.away.rename(self.folder)


@pytest.fixture
async def outage(_sqlite_template: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 0.1)
    db = Outage(_sqlite_template, tmp_path / "db")
    yield db
    await db.storage.close()


def spool_settings(tmp_path: Path, **server):
    return make_settings(spool_dir=str(tmp_path / "spool"), **server)


def spooled(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "spool"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


async def eventually(check, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


def delivery(iid: int, action: str, key: str) -> tuple[dict, dict]:
    return mr_payload(iid=iid, action=action), headers(**{"Idempotency-Key": key, "X-Gitlab-Event-UUID": f"uuid-{key}"})


async def post(client, iid: int, action: str, key: str):
    body, hdrs = delivery(iid, action, key)
    return await client.post("/webhook", json=body, headers=hdrs)


def metric(text: str, line_start: str) -> str | None:
    return next((line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)), None)


async def close_after_given_up_calls(storage: Storage) -> None:
    """Close the storage once the database calls the spool gave up on (`deadline.within`) have ended, at most
    5 s: disposing the engine under one still winding down can leave it waiting for a connection thread
    that is gone, and the test's event loop then never finishes cancelling it (a run hung there once)."""
    await deadline.settle(5)
    await storage.close()


async def test_an_outage_is_spooled_answered_202_and_queued_once_in_arrival_order(
        aiohttp_client, outage, tmp_path, caplog):
    from bot.web import make_app

    caplog.set_level(logging.INFO)
    client = await aiohttp_client(make_app(spool_settings(tmp_path), outage.storage, Metrics(), spool=True))
    assert (await post(client, 4, "open", "k0")).status == 200
    await outage.down()
    arrivals = [(4, "update", "k1"), (5, "open", "k2"), (4, "close", "k3"), (4, "reopen", "k4")]
    answers = [await post(client, *a) for a in arrivals]
    assert [(r.status, (await r.json())["status"]) for r in answers] == [(202, "spooled")] * 4
    files = spooled(tmp_path)
    assert len(files) == 4 and all(SECRET not in f.read_text() for f in files)
    kept = json.loads(files[0].read_text())
    assert kept["dedupe_key"] == "idem:k1" and "X-Gitlab-Token" not in kept["headers"]
    assert kept["headers"]["X-Gitlab-Event-UUID"] == "uuid-k1" and kept["body"] == mr_payload(iid=4, action="update")
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook spooled"))
    for field in ('kind="Merge Request Hook"', "project=group/app", "mr_iid=4", "event_uuid=uuid-k1",
                  "idempotency_key=k1", "cause="):
        assert field in line, line
    text = await (await client.get("/metrics")).text()
    assert 'reviewbot_events_received_total{kind="Merge Request Hook",outcome="spooled"} 4.0' in text
    assert metric(text, "reviewbot_spool_files") == "4.0" and metric(text, "reviewbot_database_up") == "0.0"
    assert "reviewbot_queue_depth{" not in text  # the value read before the outage would pass for today's
    assert (await client.get("/healthz")).status == 503

    came_back = utcnow()
    outage.up()

    async def drained() -> bool:
        return not spooled(tmp_path) and (await outage.storage.events.depth())["queued"] == 5
    await eventually(drained)
    events = sorted(await outage.storage.events.list_events(), key=lambda e: e.id)
    assert [(e.mr_iid, e.action, e.dedupe_key) for e in events] == [(4, "open", "idem:k0")] + [
        (iid, action, f"idem:{key}") for iid, action, key in arrivals]
    assert all(e.received_at < came_back for e in events)  # when GitLab sent it, not when it was moved
    assert "X-Gitlab-Token" not in events[1].headers and events[1].headers["X-Gitlab-Event-UUID"] == "uuid-k1"
    resent = await post(client, 4, "update", "k1")  # "Resend Request" of a spooled one: a duplicate
    assert resent.status == 200 and (await resent.json())["status"] == "duplicate"
    text = await (await client.get("/metrics")).text()
    assert metric(text, "reviewbot_spool_files") == "0.0" and metric(text, "reviewbot_database_up") == "1.0"
    assert 'reviewbot_queue_depth{status="queued"} 5.0' in text


async def test_a_restart_replays_what_the_last_run_left_once(aiohttp_client, sqlite_url, tmp_path, monkeypatch):
    """The first run spooled two deliveries and stopped (the database never came back while it ran); the second
    had stored the first of them when it crashed, before deleting its file. The next start moves the rest."""
    from bot.web import make_app

    settings = spool_settings(tmp_path)
    gone = Storage(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'db.sqlite3'}")
    first = await aiohttp_client(make_app(settings, gone, Metrics(), spool=True))
    assert [(await post(first, 7, a, k)).status for a, k in (("open", "a"), ("update", "b"))] == [202, 202]
    await first.close()
    await gone.close()
    storage = Storage(sqlite_url)
    try:
        files = spooled(tmp_path)
        assert (await Record.from_json(files[0].read_bytes()).store(storage.events))[1]  # the crash's half move
        partial = tmp_path / "spool" / "99999999999999999999-1-000000000.tmp"  # a write cut short: never answered
        partial.write_text("{")
        os.utime(partial, (0, 0))
        second = await aiohttp_client(make_app(settings, storage, Metrics(), spool=True))

        async def drained() -> bool:
            return not list((tmp_path / "spool").iterdir())
        await eventually(drained)
        events = sorted(await storage.events.list_events(), key=lambda e: e.id)
        assert [(e.action, e.dedupe_key) for e in events] == [("open", "idem:a"), ("update", "idem:b")]
        assert metric(await (await second.get("/metrics")).text(), "reviewbot_spool_files") == "0.0"
    finally:
        await close_after_given_up_calls(storage)


async def test_a_full_spool_answers_503(aiohttp_client, outage, tmp_path, caplog):
    from bot.web import make_app

    client = await aiohttp_client(make_app(spool_settings(tmp_path, spool_max_files=2), outage.storage, Metrics(),
                                           spool=True))
    await outage.down()
    statuses = [(await post(client, 1, "update", f"k{n}")).status for n in range(3)]
    assert statuses == [202, 202, 503] and len(spooled(tmp_path)) == 2
    assert "spool_max_files = 2" in caplog.text and "event_uuid=uuid-k2" in caplog.text
    text = await (await client.get("/metrics")).text()
    assert 'outcome="unstored"} 1.0' in text and 'outcome="spooled"} 2.0' in text
    assert metric(text, "reviewbot_spool_files") == "2.0"


async def test_a_spool_bound_at_one_delivery_says_it_in_the_singular(tmp_path):
    spool = spool_module.Spool(tmp_path / "spool", max_files=1, max_bytes=10**9)
    record = Record(dedupe_key="idem:a", kind="Note Hook", action=None, project_id=1, mr_iid=1, headers={},
                    body={}, received_at=utcnow())
    await spool.put(record)
    with pytest.raises(spool_module.SpoolFull, match=r"the spool holds 1 delivery \(0\.0 MB\)"):
        await spool.put(record)


async def test_a_spool_that_cannot_be_written_answers_503(aiohttp_client, outage, tmp_path):
    from bot.web import make_app

    (tmp_path / "a-file").write_text("")
    settings = make_settings(spool_dir=str(tmp_path / "a-file" / "spool"))  # like a read-only or full disk
    client = await aiohttp_client(make_app(settings, outage.storage, Metrics(), spool=True))
    await outage.down()
    resp = await post(client, 1, "open", "k")
    assert resp.status == 503 and "not stored" in (await resp.json())["error"]
    assert 'outcome="unstored"} 1.0' in await (await client.get("/metrics")).text()


async def test_an_unreadable_spool_file_is_set_aside_and_the_rest_move_on(aiohttp_client, sqlite_url, tmp_path):
    from bot.web import make_app

    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "00000000000000000001-1-000000000.json").write_text("{not json")
    body, hdrs = delivery(3, "open", "ok")
    good = Record(dedupe_key="idem:ok", kind="Merge Request Hook", action="open", project_id=15, mr_iid=3,
                  headers={"X-Gitlab-Event": "Merge Request Hook"}, body=body, received_at=utcnow())
    (folder / "00000000000000000002-1-000000000.json").write_bytes(good.to_json())
    storage = Storage(sqlite_url)
    try:
        await aiohttp_client(make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))

        async def moved() -> bool:  # the file goes just after the row commits: a check between saw it still there
            return (await storage.events.depth())["queued"] == 1 and not spooled(tmp_path)
        await eventually(moved)
        assert [p.name for p in folder.iterdir()] == ["00000000000000000001-1-000000000.bad"]
    finally:
        await close_after_given_up_calls(storage)


async def test_a_locked_table_keeps_spooled_deliveries_waiting_not_refused(aiohttp_client, sqlite_url, tmp_path,
                                                                          monkeypatch):
    """Another writer holds SQLite's write lock (a long transaction) while reads go on: the delivery is spooled
    and its moves time out; a timeout says nothing against the row, so the file waits (it was set aside as
    refused after three tries though GitLab had its 202) and is queued once the lock is gone. The file is
    the bot's alone to read (0600): webhook bodies hold confidential notes too."""
    import sqlite3

    from bot import web as web_module

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 0.3)
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 0.1)
    storage = Storage(sqlite_url)
    locker = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        client = await aiohttp_client(web_module.make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 4, "open", "k-open")).status == 202
        [file] = spooled(tmp_path)
        assert file.stat().st_mode & 0o777 == 0o600 and (tmp_path / "spool").stat().st_mode & 0o777 == 0o700
        await asyncio.sleep(2.0)  # more than three moves' worth of timeouts
        assert [p.suffix for p in (tmp_path / "spool").iterdir()] == [".json"]
        locker.execute("COMMIT")

        async def queued() -> bool:  # the file goes just after the row commits: wait for both
            return (await storage.events.depth())["queued"] == 1 and not list((tmp_path / "spool").iterdir())

        await eventually(queued)
    finally:
        locker.close()
        await close_after_given_up_calls(storage)


async def test_healthz_says_spooling_while_the_database_answers_reads_but_takes_no_writes(
        aiohttp_client, sqlite_url, tmp_path, monkeypatch):
    """Another writer holds the lock (or the disk is full, or PostgreSQL's events table is locked): the database
    answers `SELECT 1`, so /healthz said "ok" while every delivery went to the spool and no event ran. It says
    503 "spooling" with the count until the spool has drained."""
    import sqlite3

    from bot import web as web_module

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 0.3)
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 1.0)  # each try waits for the lock: a few, not the pool
    storage = Storage(sqlite_url)
    locker = sqlite3.connect(sqlite_url.split("///", 1)[1], isolation_level=None)
    try:
        client = await aiohttp_client(web_module.make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await client.get("/healthz")).status == 200
        locker.execute("BEGIN IMMEDIATE")
        assert (await post(client, 4, "open", "k-open")).status == 202

        async def says(status: int) -> bool:
            response = await client.get("/healthz")
            return response.status == status

        await eventually(lambda: says(503), 10)
        assert await (await client.get("/healthz")).json() == {
            "status": "spooling", "error": "the database takes no writes: 1 delivery waits in the spool"}
        locker.execute("COMMIT")
        await eventually(lambda: says(200), 10)
        assert not spooled(tmp_path)
    finally:
        locker.close()
        await close_after_given_up_calls(storage)


# Another process holding SQLite's write lock until it reads a line (the sqlite3 shell's BEGIN IMMEDIATE)
HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""
# ... once it has read a first line: a test that must write before the lock is taken says when
LOCK_ON_CUE = "import sys\nsys.stdin.readline()\n" + HOLD_WRITE_LOCK


async def test_a_write_given_up_on_under_another_writers_lock_does_not_keep_the_lock(aiohttp_client, sqlite_url,
                                                                                   tmp_path, monkeypatch):
    """SQLite: the delivery's write, given up on after `STORE_TIMEOUT` while another process held the write lock,
    is left to finish, not cancelled. Cancelled, its statement went on in aiosqlite's thread and took the lock
    once the other writer was done, and its connection, closed with the statement unfinalized, kept it as long as
    the Python objects lived: `serve` freezes what it built to start (`gc.freeze`), its pool included, so for
    good. Every later write of `serve` waited 30 s and failed "database is locked" and the spool never drained
    (a 60 s `BEGIN IMMEDIATE` in the sqlite3 shell stopped a running bot until it was restarted)."""
    import gc
    import sqlite3

    from bot import web as web_module

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 0.3)
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 60.0)  # the spool's own tries, cancelled, freed it by chance
    path = sqlite_url.split("///", 1)[1]
    storage = Storage(sqlite_url)
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCK_ON_CUE, path,
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        client = await aiohttp_client(web_module.make_app(spool_settings(tmp_path), storage, Metrics(), spool=True))
        assert (await post(client, 3, "open", "k-before")).status == 200
        locker.stdin.write(b"lock\n")  # only now: started at once, the locker raced this first write (202, spooled)
        gc.freeze()  # as `serve` does once started: the pool's connection with the rest
        assert await locker.stdout.readline() == b"locked\n"
        assert (await post(client, 4, "open", "k-open")).status == 202
        await asyncio.sleep(0.5)
        locker.stdin.write(b"done\n")
        await locker.wait()
        await asyncio.sleep(0.5)  # the writes left waiting end: the webhook's commits (its move will be a duplicate)
        other = sqlite3.connect(path, isolation_level=None, timeout=5)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" after 5 s while the bot keeps the lock
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await storage.events.depth())["queued"] == 2
    finally:
        gc.unfreeze()
        if locker.returncode is None:
            locker.kill()
            await locker.wait()
        await close_after_given_up_calls(storage)


async def test_closing_a_sqlite_storage_waits_for_the_writes_given_up_on(sqlite_url):
    """A SQLite write given up on is left to finish (`within(cancel=False)`); closed under it, the storage let the
    event loop end first, and aiosqlite's thread then handed the result to a closed loop ("Event loop is closed",
    raised in a thread: it failed whichever test ran next in that process)."""
    storage = Storage(sqlite_url)
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD_WRITE_LOCK, sqlite_url.split("///", 1)[1],
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert await locker.stdout.readline() == b"locked\n"
        with pytest.raises(TimeoutError):
            await deadline.within(storage.events.store_event(dedupe_key="k", kind="Note Hook", headers={}, body={}),
                                  0.2, cancel=False)
        asyncio.get_running_loop().call_later(0.5, locker.stdin.write, b"done\n")
        await storage.close(timeout=10)
        assert deadline.left_running() == 0
    finally:
        if locker.returncode is None:
            locker.kill()
        await locker.wait()


async def test_a_worker_stopped_during_a_claim_on_sqlite_leaves_the_claim_to_finish(sqlite_url):
    """A worker stopped while its claim waits for another writer's lock stops waiting for it (a database that
    does not answer must not keep the process), but on SQLite the claim is left to finish, as the webhook's writes
    are (`deadline.let_go`): cancelled, its statement went on in aiosqlite's thread, could keep the write lock,
    and once the test's loop had closed, handed its result to it ("Event loop is closed" from a thread, which
    failed whichever test ran next in the process)."""
    from tests.test_worker_retention import noop, settings, store

    from bot.worker import Worker

    storage = Storage(sqlite_url)
    await store(storage, "waiting")
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLD_WRITE_LOCK, sqlite_url.split("///", 1)[1],
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert await locker.stdout.readline() == b"locked\n"
        worker = Worker(storage, noop, settings(), Metrics(), "w1")
        claiming = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.3)  # the claim waits for the lock
        worker._stopping.set()
        assert await claiming == 0 and deadline.left_running() == 1  # no longer waited for, left to finish
        locker.stdin.write(b"done\n")
        await storage.close(timeout=10)  # waits for it
        assert deadline.left_running() == 0
    finally:
        if locker.returncode is None:
            locker.kill()
        await locker.wait()


async def test_an_update_whose_write_began_before_its_open_was_spooled_follows_it(
        aiohttp_client, sqlite_url, tmp_path, monkeypatch):
    """A locked table: the open waits `STORE_TIMEOUT` (1 s) and is spooled; the update, which arrived at least
    0.5 s later and waits behind it, would have been stored directly once the lock went (as soon as the open was
    spooled, before the update's own 1 s were up), ahead of the open."""
    from bot import web as web_module

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 1.0)
    monkeypatch.setattr(spool_module, "RETRY_SECONDS", 0.1)
    storage = Storage(sqlite_url)
    lock_released, open_waits = asyncio.Event(), asyncio.Event()
    store_event = storage.events.store_event

    async def behind_the_lock(**kw):
        open_waits.set()
        await lock_released.wait()
        return await store_event(**kw)
    storage.events.store_event = behind_the_lock
    try:
        app = web_module.make_app(spool_settings(tmp_path), storage, Metrics(), spool=True)
        client = await aiohttp_client(app)
        first = asyncio.create_task(post(client, 4, "open", "k-open"))
        await asyncio.wait_for(open_waits.wait(), 60)  # the open holds its turn (on a loaded machine, not at once)
        await asyncio.sleep(0.5)
        second = asyncio.create_task(post(client, 4, "update", "k-update"))

        async def open_spooled() -> bool:
            return bool(spooled(tmp_path))
        await eventually(open_spooled)  # polled, not a fixed 1.3 s: a slow start must not see the lock go first
        lock_released.set()
        answers = [(r.status, (await r.json())["status"]) for r in await asyncio.gather(first, second)]
        assert answers == [(202, "spooled"), (202, "spooled")]

        async def drained() -> bool:
            return not spooled(tmp_path) and (await storage.events.depth())["queued"] == 2
        await eventually(drained)
        events = sorted(await storage.events.list_events(), key=lambda e: e.id)
        assert [e.action for e in events] == ["open", "update"]
        assert len(app[web_module.ORDER_KEY]) == 0
    finally:
        await close_after_given_up_calls(storage)


async def test_one_merge_requests_deliveries_take_turns_in_arrival_order():
    """Others (another MR, none) do not wait; one given up on while it waits (its request cancelled) lets the
    next go only once the one before it is done."""
    order, seen = ArrivalOrder(), []
    first_may_end = asyncio.Event()

    async def take(key, name: str, hold: asyncio.Event | None = None) -> None:
        async with order.turn(key):
            seen.append(f"{name} starts")
            if hold is not None:
                await hold.wait()
            seen.append(f"{name} ends")

    first = asyncio.create_task(take((15, 4), "open", first_may_end))
    await asyncio.sleep(0.01)
    given_up = asyncio.create_task(take((15, 4), "update"))
    others = [asyncio.create_task(take((15, 5), "other MR")), asyncio.create_task(take(None, "no MR"))]
    last = asyncio.create_task(take((15, 4), "close"))
    await asyncio.sleep(0.05)
    assert seen == ["open starts", "other MR starts", "other MR ends", "no MR starts", "no MR ends"]
    given_up.cancel()
    await asyncio.sleep(0.05)
    assert "close starts" not in seen
    first_may_end.set()
    await asyncio.gather(first, last, *others)
    assert seen[-3:] == ["open ends", "close starts", "close ends"] and "update starts" not in seen
    assert len(order) == 0
