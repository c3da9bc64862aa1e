"""`reviewbot serve` started while its database cannot be reached: it listens, spools every delivery (202),
`/healthz` and the dashboard answer 503 naming the database, and once the database answers (a TCP proxy that starts
forwarding to PostgreSQL, or its Unix socket appearing) it runs its start-up checks, moves the spool into the queue
once each and starts the handlers. A database that answers but is misconfigured (or a SQLite file, which has no
server to wait for) still stops it at start, and one that fails the checks when it comes keeps it spooling until
fixed."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from bot import database_wait
from bot.cli import serve
from bot.config import Settings
from bot.storage import Storage, StorageError, migrate
from tests.test_cli_startup_checks import _port_said
from tests.test_spool import eventually
from tests.test_web import SECRET, headers, mr_payload
from tests.worker_procs import ROOT

PASSWORD = "pw-never-logged-7Qz"
DASHBOARD_TOKEN = "dashboard-token-0123456789abcdef"
DELIVERIES = [(4, "open", "k1"), (5, "open", "k2"), (4, "update", "k3")]
# `serve` as a process, trying the database again every 0.2 s instead of backing off to 30 s
SERVE = ("import sys, bot.database_wait as w; w.RETRY_FIRST = w.RETRY_MAX = 0.2; from bot.cli import main; "
         "sys.exit(main())")


@contextlib.asynccontextmanager
async def done_dispatch(settings, storage, metrics):
    """Handlers that do nothing: each event the worker runs ends done."""
    async def dispatch(row) -> None:
        return None

    yield dispatch


class LateProxy:
    """A local port that refuses connections (bound, not listening) until `open()` makes it forward to PostgreSQL:
    the database server coming up, as seen from the bot."""

    refused = "ConnectionRefusedError"

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def url(self, database_url: str) -> str:
        """`database_url` through this port, with a password (trust authentication ignores it)."""
        parsed = sa.engine.make_url(database_url).set(host="127.0.0.1", port=self.port, password=PASSWORD)
        return parsed.render_as_string(hide_password=False)

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._forward, sock=self.sock)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)

    async def close(self) -> None:
        if self.server is None:
            self.sock.close()
            return
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


class LateSocket:
    """A folder where PostgreSQL's Unix socket is missing until `open()` links the server's own socket into it: a
    server (or a volume holding its socket) that comes up after the bot, as `?host=/run/postgresql` sees it."""

    refused = "FileNotFoundError"

    def __init__(self, folder: Path, socket_file: Path, *, via_pghost: bool = False) -> None:
        self.folder, self.socket_file, self.via_pghost = folder, socket_file, via_pghost

    @classmethod
    async def beside(cls, database_url: str, folder: Path, *, via_pghost: bool = False) -> "LateSocket":
        """Linking to the socket of `database_url`'s server (skips a server that has none on this machine).
        `via_pghost`: the URL names no host, and `PGHOST` names the folder (`env`)."""
        storage = Storage(database_url)
        try:
            async with storage.engine.connect() as conn:
                folders = (await conn.execute(sa.text("SHOW unix_socket_directories"))).scalar_one()
                port = (await conn.execute(sa.text("SHOW port"))).scalar_one()
        finally:
            await storage.close()
        found = [Path(f.strip()) / f".s.PGSQL.{port}" for f in folders.split(",") if f.strip()]
        found = [path for path in found if path.is_socket()]
        if not found:
            pytest.skip("the test PostgreSQL server has no Unix socket on this machine")
        return cls(folder, found[0], via_pghost=via_pghost)

    def url(self, database_url: str) -> str:
        # (`set` keeps a field given None: `_replace` clears the host and port)
        parsed = sa.engine.make_url(database_url).set(password=PASSWORD)._replace(host=None, port=None)
        port = sa.engine.make_url(database_url).port or 5432
        if not self.via_pghost:
            parsed = parsed.update_query_dict({"host": str(self.folder), "port": str(port)})
        return parsed.render_as_string(hide_password=False)

    def env(self, database_url: str) -> dict[str, str]:
        """What the bot's process needs besides the URL: `PGHOST` (and `PGPORT`) for a URL that names no host."""
        if not self.via_pghost:
            return {}
        return {"PGHOST": str(self.folder), "PGPORT": str(sa.engine.make_url(database_url).port or 5432)}

    async def open(self) -> None:
        self.folder.mkdir(exist_ok=True)
        (self.folder / self.socket_file.name).symlink_to(self.socket_file)

    async def close(self) -> None:
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def post_all(session, base: str) -> list[tuple[int, str]]:
    answers = []
    for iid, action, key in DELIVERIES:
        async with session.post(f"{base}/webhook", json=mr_payload(iid=iid, action=action),
                                headers=headers(**{"Idempotency-Key": key})) as resp:
            answers.append((resp.status, (await resp.json())["status"]))
    return answers


async def health(session, base: str) -> tuple[int, dict]:
    async with session.get(f"{base}/healthz") as resp:
        return resp.status, await resp.json()


async def dashboard(session, base: str, path: str) -> tuple[int, str]:
    async with session.get(f"{base}{path}", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"}) as resp:
        return resp.status, await resp.text()


async def queued_once(url: str) -> list[tuple[str, str]]:
    """(dedupe key, status) of every stored event, oldest first."""
    storage = Storage(url)
    try:
        return [(e.dedupe_key, e.status) for e in sorted(await storage.events.list_events(), key=lambda e: e.id)]
    finally:
        await storage.close()


def spooled(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


async def _start(database_url: str, cwd: Path, *command: str,
                 extra_env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """`reviewbot <command>` as a process on `database_url`, running `done_dispatch`; its stderr piped."""
    env = {k: v for k, v in os.environ.items() if k != "REVIEWBOT_CONFIG"}
    env.update(GITLAB_URL="http://127.0.0.1:9", GITLAB_TOKEN="t", GITLAB_WEBHOOK_SECRET=SECRET,
               DATABASE_URL=database_url, PYTHONPATH=str(ROOT), REVIEWBOT_DASHBOARD_TOKEN=DASHBOARD_TOKEN,
               **(extra_env or {}))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, *command, "--dispatch", "tests.test_serve_without_database:done_dispatch",
        env=env, cwd=cwd, stderr=asyncio.subprocess.PIPE)


@pytest.mark.postgres
@pytest.mark.parametrize("late", ["tcp", "unix socket", "PGHOST socket"])
async def test_serve_started_before_postgresql_spools_and_carries_on_once_it_answers(postgres_url, tmp_path, late):
    """Over TCP the connection is refused; through a Unix socket the socket file is missing (FileNotFoundError,
    which stopped serve at start), whether the URL names its folder or names no host and `PGHOST` does: all are
    a server not up yet."""
    import aiohttp

    proxy = LateProxy() if late == "tcp" else await LateSocket.beside(postgres_url, tmp_path / "run",
                                                                      via_pghost=late == "PGHOST socket")
    proc = await _start(proxy.url(postgres_url), tmp_path, "serve", "--host", "127.0.0.1", "--port", "0",
                        extra_env=proxy.env(postgres_url) if isinstance(proxy, LateSocket) else None)
    try:
        said, port = await _port_said(proc, "serve starting", r"port=(\d+)")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async def listening() -> bool:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    return (await health(session, base))[0] == 503
                return False
            await eventually(listening)
            assert await post_all(session, base) == [(202, "spooled")] * 3
            assert len(spooled(tmp_path / "reviewbot-spool")) == 3
            status, body = await health(session, base)
            assert (status, body["status"]) == (503, "spooling") and "the database" in body["error"], body
            assert "3 deliveries wait" in body["error"]
            status, page = await dashboard(session, base, "/")  # not queried: it says why instead
            assert status == 503 and "waiting for its database" in page and "has not been reachable" in page, page
            assert "Webhook deliveries are kept in serve&#x27;s spool" in page, page
            status, page = await dashboard(session, base, "/api/projects/1/stats")
            assert status == 503 and "waiting for its database" in page, page
            await asyncio.sleep(1)  # several tries fail meanwhile: logged once
            assert await queued_once(postgres_url) == []

            await proxy.open()

            async def healthy() -> bool:
                return (await health(session, base))[0] == 200
            await eventually(healthy)
            async def all_run() -> bool:
                return [s for _, s in await queued_once(postgres_url)] == ["done"] * 3
            await eventually(all_run)
            assert (await dashboard(session, base, "/"))[0] == 200
            assert [k for k, _ in await queued_once(postgres_url)] == [f"idem:{k}" for _, _, k in DELIVERIES]
            assert spooled(tmp_path / "reviewbot-spool") == []
            async with session.post(f"{base}/webhook", json=mr_payload(iid=4, action="update"),
                                    headers=headers(**{"Idempotency-Key": "k3"})) as resp:
                assert (resp.status, (await resp.json())["status"]) == (200, "duplicate")
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        await proxy.close()
    log = said + err.decode()
    assert proc.returncode == 0, log
    assert log.count("database unreachable at start") == 1 and proxy.refused in log, log
    assert f"spool={tmp_path / 'reviewbot-spool'}" in log, log  # where to look, not a path relative to somewhere
    assert log.count("database reachable and checked") == 1, log
    assert PASSWORD not in log and "dashboard database error" not in log


def sqlite_settings(url: str, tmp_path: Path) -> Settings:
    return Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": SECRET}], database={"url": url},
                    server={"spool_dir": str(tmp_path / "spool")}, worker={"poll_interval": 0.2})


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(database_wait, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(database_wait, "RETRY_MAX", 0.1)


async def test_serve_refuses_a_sqlite_file_whose_folder_is_missing_even_with_the_spool_on(tmp_path):
    """SQLite has no server to wait for: a missing folder is far more often a mistyped DATABASE_URL than a
    volume mounted late, and a serve that spooled on hid the typo behind a running process."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'reviewbot.sqlite3'}"
    with pytest.raises(StorageError, match="does not exist"):
        await serve.build_app(sqlite_settings(url, tmp_path), done_dispatch)
    assert not (tmp_path / "spool").exists() or spooled(tmp_path / "spool") == []


@pytest.mark.postgres
async def test_a_database_that_answers_unmigrated_keeps_serve_spooling_until_it_is_migrated(
        aiohttp_client, blank_database_url, tmp_path, fast_retries, caplog):
    """The choice when the checks fail once the database answers: keep spooling (logged once, with the fix, and
    said by /healthz), try again, and carry on by itself after `reviewbot migrate`."""
    if not blank_database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL server that comes up")
    caplog.set_level(logging.INFO)
    proxy = LateProxy()
    try:
        settings = sqlite_settings(proxy.url(blank_database_url), tmp_path)
        settings = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(update={
            "enabled": True, "token": SecretStr(DASHBOARD_TOKEN)})})
        client = await aiohttp_client(await serve.build_app(settings, done_dispatch))
        await proxy.open()

        async def refused() -> bool:
            return any("cannot be used" in r.getMessage() for r in caplog.records)
        await eventually(refused)
        resp = await client.post("/webhook", json=mr_payload(iid=1), headers=headers(**{"Idempotency-Key": "m1"}))
        assert (resp.status, (await resp.json())["status"]) == (202, "spooled")
        resp = await client.get("/healthz")
        assert resp.status == 503 and "fails serve's start-up checks" in (await resp.json())["error"]
        resp = await client.get("/", headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
        assert resp.status == 503 and "fails serve&#x27;s start-up checks" in await resp.text()  # no such table
        await asyncio.sleep(0.5)  # tried again several times: logged once
        lines = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(lines) == 1 and "reviewbot migrate" in lines[0] and PASSWORD not in lines[0], lines

        await migrate(blank_database_url)

        async def run() -> bool:
            return await queued_once(blank_database_url) == [("idem:m1", "done")]
        await eventually(run)
        assert (await client.get("/healthz")).status == 200
        await client.close()  # before the database goes away again
    finally:
        await proxy.close()


@pytest.mark.postgres
@pytest.mark.parametrize("change, said", [
    ({"database": "reviewbot_no_such_database"}, "does not exist on its server: create it"),
    ({"username": "reviewbot_no_such_role"}, 'role "reviewbot_no_such_role" does not exist'),
])
def test_serve_still_refuses_a_postgresql_database_it_cannot_log_in_to_or_that_is_missing(
        postgres_url, tmp_path, change, said):
    """Waiting would never fix these: exit 1 at once with the message, as before (with trust authentication a
    role that does not exist is the refused login the test server can show)."""
    import subprocess

    url = sa.engine.make_url(postgres_url).set(password=PASSWORD, **change).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k != "REVIEWBOT_CONFIG"}
    env.update(GITLAB_URL="http://127.0.0.1:9", GITLAB_TOKEN="t", GITLAB_WEBHOOK_SECRET=SECRET, DATABASE_URL=url)
    done = subprocess.run([sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert said in done.stderr and PASSWORD not in done.stderr + done.stdout
    assert not (tmp_path / "reviewbot-spool").exists()


async def test_serve_still_refuses_an_unmigrated_database_and_one_with_the_spool_off(blank_database_url, tmp_path):
    with pytest.raises(StorageError, match="reviewbot migrate"):
        await serve.build_app(sqlite_settings(blank_database_url, tmp_path), done_dispatch)
    off = sqlite_settings(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite3'}", tmp_path)
    off = off.model_copy(update={"server": off.server.model_copy(update={"spool_max_files": 0})})
    with pytest.raises(StorageError, match="does not exist"):  # nothing to keep the deliveries in: as before
        await serve.build_app(off, done_dispatch)


@pytest.mark.postgres
async def test_a_worker_started_before_postgresql_waits_for_it_and_runs_the_queue(postgres_url, tmp_path):
    """A worker has nothing to do without its database: it tries again (logged once) instead of exiting 1."""
    from bot.storage import utcnow

    proxy = LateProxy()
    proc = await _start(proxy.url(postgres_url), tmp_path, "worker")
    storage = Storage(postgres_url)
    try:
        said = ""
        while "database unreachable at start" not in said:
            line = (await asyncio.wait_for(proc.stderr.readline(), 90)).decode()
            assert line, said
            said += line
        await asyncio.sleep(1)  # tried again meanwhile
        assert proc.returncode is None
        event_id, _ = await storage.events.store_event(dedupe_key="w1", kind="Note Hook", headers={}, body={},
                                                       received_at=utcnow())
        await proxy.open()

        async def done() -> bool:
            return [e.status for e in await storage.events.list_events()] == ["done"]
        await eventually(done)
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        await storage.close()
        await proxy.close()
    log = said + err.decode()
    assert proc.returncode == 0, log
    assert log.count("database unreachable at start") == 1 and PASSWORD not in log, log


def test_worker_once_still_exits_1_on_an_unreachable_database(tmp_path):
    """For cron: the run failed, and the next one is the retry."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "REVIEWBOT_CONFIG"}
    env.update(GITLAB_URL="http://127.0.0.1:9", GITLAB_TOKEN="t", GITLAB_WEBHOOK_SECRET=SECRET,
               DATABASE_URL=f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test")
    done = subprocess.run([sys.executable, "-m", "bot", "worker", "--once"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "is unreachable" in done.stderr and PASSWORD not in done.stderr, done.stderr
