"""A database that stops answering (a network partition, a failover that hangs), not one that refuses: the
health probe, the metrics scrape and SIGTERM must not hang with it. PostgreSQL behind a TCP link that can be
frozen: bytes stop flowing both ways and new connections are never served. And one that drops its connections
for a moment (`CutLink`: a failover): the worker's outcome is written once it answers."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from bot.config import Settings
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.web import make_app
from tests.worker_procs import ROOT, worker_env, write_config

pytestmark = pytest.mark.postgres


class FrozenLink:
    """127.0.0.1:<port> → the database; after `freeze()` nothing more gets through."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.frozen, self.port = target, asyncio.Event(), 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Drop every connection (both ends) and stop listening."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        await asyncio.sleep(0)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._held()
                writer.write(data)
                await writer.drain()

    async def _held(self) -> None:
        if self.frozen.is_set():
            await asyncio.Event().wait()  # until `close` cancels it

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with contextlib.suppress(asyncio.CancelledError):
            await self._held()
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.append(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))


@pytest.fixture
async def link(postgres_url: str) -> AsyncIterator[tuple[FrozenLink, str]]:
    parts = urlsplit(postgres_url)
    frozen = FrozenLink((parts.hostname or "127.0.0.1", parts.port or 5432))
    await frozen.start()
    user = f"{parts.username}@" if parts.username else ""
    yield frozen, f"{parts.scheme}://{user}127.0.0.1:{frozen.port}{parts.path}"
    await frozen.close()


async def timed_get(http: aiohttp.ClientSession, url: str) -> tuple[int | str, float]:
    started = time.monotonic()
    try:
        async with http.get(url) as response:
            return response.status, time.monotonic() - started
    except asyncio.TimeoutError:
        return "no answer", time.monotonic() - started


async def test_health_and_metrics_answer_in_time_while_the_database_hangs(link):
    frozen, url = link
    settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 24}], database={"url": url})
    storage = Storage(url)
    app = make_app(settings, storage, Metrics())
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            assert (await timed_get(http, f"{base}/healthz"))[0] == 200
            frozen.frozen.set()
            metrics, health = await timed_get(http, f"{base}/metrics"), await timed_get(http, f"{base}/healthz")
        # within the documented 3 s (not 3 + the 2 s SQLAlchemy spends closing the cancelled query's connection)
        assert metrics[0] == 200 and metrics[1] < 4, metrics  # the other metrics matter most now
        assert health[0] == 503 and health[1] < 4, health
    finally:
        await runner.cleanup()
        await storage.close(timeout=1)


async def test_a_worker_stops_on_sigterm_while_the_database_hangs(link, tmp_path: Path):
    frozen, url = link
    config = write_config(tmp_path, gitlab_url="http://127.0.0.1:9", token="t", database_url=url,
                          worker={"poll_interval": 0.2}, server={"shutdown_timeout": 5})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "worker", "--config", str(config),
        "--dispatch", "tests.test_cli_serve:recording_factory", cwd=ROOT, env=worker_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        said = b""
        while b"worker started" not in said:
            said += await asyncio.wait_for(proc.stderr.readline(), 60)
        await asyncio.sleep(0.5)
        frozen.frozen.set()
        await asyncio.sleep(1.0)  # its claims now hang
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 25)
        assert proc.returncode is not None, f"still running {time.monotonic() - started:.0f} s after SIGTERM"
        assert time.monotonic() - started < 5 + 12  # the grace, the snapshot and connection waits at most
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class ThawingLink(FrozenLink):
    """A `FrozenLink` that `thaw()` opens again: what was held goes through, new connections are served."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.thawed = asyncio.Event()

    async def _held(self) -> None:
        if self.frozen.is_set():
            await self.thawed.wait()

    def thaw(self) -> None:
        self.frozen.clear()
        self.thawed.set()


class CutLink(FrozenLink):
    """A `FrozenLink` that `cut()` breaks instead: every connection dropped and new ones refused (a failover, a
    restart of the database), until `mend()`."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target)
        self.cut_off = False

    def cut(self) -> None:
        self.cut_off = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def mend(self) -> None:
        self.cut_off = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        await super()._serve(reader, writer)


async def test_an_outcome_the_database_refuses_for_a_while_is_recorded_once_it_answers(postgres_url):
    """A failover drops every connection for seconds: the outcome of an event that finished meanwhile was given
    up at once, so the event stayed `running` until its lease ran out and ran again, that attempt counted (a
    park or an outage's retry used one up; on its last attempt a handled event was dead-lettered as though its
    worker had crashed). The worker tries the write again while its lease holds."""
    from bot.worker import Worker

    parts = urlsplit(postgres_url)
    link = CutLink((parts.hostname or "127.0.0.1", parts.port or 5432))
    await link.start()
    url = f"{parts.scheme}://{parts.username + '@' if parts.username else ''}127.0.0.1:{link.port}{parts.path}"
    storage = Storage(url)
    settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 24}],
                        worker={"lease_seconds": 30, "dispatch_timeout": 10, "max_attempts": 1})

    async def dispatch(row: EventRow) -> None:  # handled; then the database goes away for a second
        link.cut()
        asyncio.get_running_loop().call_later(1.0, link.mend)

    try:
        event_id, _ = await storage.events.store_event(dedupe_key="cut", kind="Note Hook", project_id=1, headers={},
                                                       body={})
        worker = Worker(storage, dispatch, settings, Metrics(), "w1")
        assert await worker.run_once() == 1
        await asyncio.wait_for(worker.drain(), 20)
        while link.cut_off:  # (without the worker's tries, it gave up before this)
            await asyncio.sleep(0.05)
        row = await storage.events.get(event_id)
        assert (row.status, row.attempts, row.lease_owner) == ("done", 1, None)
    finally:
        await storage.close(timeout=1)
        await link.close()


async def test_deliveries_while_the_database_hangs_are_spooled_then_queued_once(postgres_url, tmp_path, monkeypatch):
    """The first delivery waits `STORE_TIMEOUT` for the write, is spooled (202) and the ones after it join it at
    once; its write, given up on, may still commit when the database answers: the move is then a duplicate."""
    from aiohttp import web

    from bot import spool, web as web_module
    from bot.web import make_app
    from tests.test_web import headers, mr_payload

    monkeypatch.setattr(web_module, "STORE_TIMEOUT", 0.5)
    monkeypatch.setattr(spool, "RETRY_SECONDS", 0.2)
    monkeypatch.setattr(spool, "PING_SECONDS", 0.5)
    parts = urlsplit(postgres_url)
    link = ThawingLink((parts.hostname or "127.0.0.1", parts.port or 5432))
    await link.start()
    url = f"{parts.scheme}://{parts.username + '@' if parts.username else ''}127.0.0.1:{link.port}{parts.path}"
    storage = Storage(url)
    settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 24}], database={"url": url},
                        server={"spool_dir": str(tmp_path / "spool")})
    runner = web.AppRunner(make_app(settings, storage, Metrics(), spool=True), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=9)) as http:
            await storage.events.depth()
            link.frozen.set()
            answers = []
            for n, action in enumerate(("update", "close", "reopen")):
                started = time.monotonic()
                async with http.post(f"{base}/webhook", json=mr_payload(iid=2, action=action),
                                     headers=headers(token="s" * 24, **{"Idempotency-Key": f"h{n}"})) as resp:
                    answers.append((resp.status, time.monotonic() - started))
            assert [status for status, _ in answers] == [202, 202, 202]
            assert 0.5 <= answers[0][1] < 1.5 and answers[1][1] < 0.3 and answers[2][1] < 0.3, answers
            link.thaw()
            deadline = time.monotonic() + 20
            while list((tmp_path / "spool").glob("*.json")) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        events = sorted(await storage.events.list_events(), key=lambda e: e.id)
        assert [(e.action, e.dedupe_key) for e in events] == [("update", "idem:h0"), ("close", "idem:h1"),
                                                              ("reopen", "idem:h2")]
    finally:
        await runner.cleanup()
        await storage.close(timeout=1)
        await link.close()


@contextlib.asynccontextmanager
async def pooled_hanging_factory(settings, storage, metrics):
    """A dispatch factory that opens a few pooled connections at start (as `serve` does), so that there are
    idle ones to close at exit, and whose events run until they are cancelled."""
    await asyncio.gather(*(storage.ping() for _ in range(3)))

    async def dispatch(row: EventRow) -> None:
        logging.getLogger("tests").info("dispatch started event_id=%s", row.id)
        await asyncio.Event().wait()

    yield dispatch


@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_shutdown_fits_in_the_grace_while_the_database_hangs(link, postgres_url, tmp_path: Path, command):
    """Every step after SIGTERM (the running event, handing it back, closing the connections) shares the
    grace: a database that stops answering cannot make them add up past it, and leaves one line, no traceback."""
    frozen, url = link
    grace = 2.0
    storage = Storage(postgres_url)
    try:
        event_id, _ = await storage.events.store_event(dedupe_key=f"hang-{command}", kind="Note Hook", project_id=1,
                                                       headers={}, body={"object_attributes": {}})
    finally:
        await storage.close()
    config = write_config(tmp_path, gitlab_url="http://127.0.0.1:9", token="t", database_url=url,
                          worker={"poll_interval": 0.2},
                          server={"shutdown_timeout": grace, "spool_dir": str(tmp_path / "spool")})
    where = ["--host", "127.0.0.1", "--port", "0"] if command == "serve" else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", command, "--config", str(config), *where,
        "--dispatch", "tests.test_database_hangs:pooled_hanging_factory", cwd=ROOT, env=worker_env(),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        said = b""
        while f"dispatch started event_id={event_id}".encode() not in said:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, said.decode()
            said += line
        frozen.frozen.set()
        await asyncio.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        said = await asyncio.wait_for(proc.stderr.read(), grace + 20)
        await proc.wait()
        took = time.monotonic() - started
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = said.decode()
    assert proc.returncode == 0, log
    assert took < grace + 1.5, f"exited {took:.1f} s after SIGTERM, grace {grace} s\n{log}"
    assert "Traceback" not in log, log
    assert "worker stopped without handing its events back" in log and f"events={event_id} " in log, log


DEFERRED = "reviewbot_test_deferred"  # a table whose unique key is checked at COMMIT


@pytest.mark.parametrize("hang", ["connect", "ping", "commit", "rollback"])
async def test_a_run_cut_off_while_connecting_or_ending_a_transaction_is_an_outage(link, postgres_url, hang):
    """Opening a connection, the pool's ping of a pooled one, COMMIT and ROLLBACK are no statements: a run cut off
    at `dispatch_timeout` in one paid an attempt, as a handler slow of its own does. The COMMIT waits on a lock (its
    deferred unique key checked against another session's row), the others on a link that stopped forwarding.
    (The ROLLBACK is an explicit one: the one closing a connection is not cut off at all, SQLAlchemy 2.1 running
    the close to completion whatever the cancellation.)"""
    import sqlalchemy as sa

    from bot.worker import Worker

    frozen, url = link
    storage, through_link = Storage(postgres_url), Storage(url)  # the queue answers; the handler's database hangs
    settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 24}],
                        worker={"dispatch_timeout": 0.8, "max_attempts": 1})

    async def dispatch(row: EventRow) -> None:
        if hang == "rollback":
            async with through_link.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
                frozen.frozen.set()  # answered; what ends the transaction is not
                await conn.rollback()
            return
        async with through_link.engine.begin() as conn:
            await conn.execute(sa.text(f"INSERT INTO {DEFERRED} VALUES (1)" if hang == "commit" else "SELECT 1"))

    holder = await storage.engine.connect()
    try:
        await holder.execute(sa.text(f"DROP TABLE IF EXISTS {DEFERRED}"))
        await holder.execute(sa.text(f"CREATE TABLE {DEFERRED} (k int UNIQUE DEFERRABLE INITIALLY DEFERRED)"))
        await holder.commit()
        event_id, _ = await storage.events.store_event(dedupe_key=hang, kind="Note Hook", project_id=1, headers={},
                                                       body={})
        if hang == "ping":
            await through_link.ping()  # a pooled connection, pinged before it is handed out
        if hang == "commit":
            await holder.execute(sa.text(f"INSERT INTO {DEFERRED} VALUES (1)"))  # not committed: COMMIT waits
        elif hang != "rollback":
            frozen.frozen.set()
        worker = Worker(storage, dispatch, settings, Metrics(), "w1")
        assert await worker.run_once() == 1
        await asyncio.wait_for(worker.drain(), 20)
        row = await storage.events.get(event_id)
        assert (row.status, row.attempts, row.outage_attempts) == ("failed", 0, 1), row.last_error
        assert row.last_error.startswith("DatabaseNotAnswering: timed out after 0.8 s"), row.last_error
    finally:
        await holder.rollback()
        await holder.execute(sa.text(f"DROP TABLE IF EXISTS {DEFERRED}"))
        await holder.commit()
        await holder.close()
        await through_link.close(timeout=1)
        await storage.close()
