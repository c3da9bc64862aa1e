"""`reviewbot serve` / `reviewbot worker`: the app wires storage, handlers and worker together."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime, timedelta, timezone

import pytest

from bot.cli import build_parser
from bot.cli import serve
from bot.config import ConfigError, ServerSettings, Settings
from bot.logfmt import kv
from bot.storage import EventRow
from tests.storage_fixtures import run_in_thread

SECRET = "serve-test-secret-0123"
SEEN: list[int] = []


@contextlib.asynccontextmanager
async def recording_factory(settings, storage, metrics):
    """A dispatch factory like the handlers' one: resources opened on entry, closed on exit."""
    async def dispatch(row: EventRow) -> None:
        SEEN.append(row.id)

    yield dispatch


def settings_for(url: str) -> Settings:
    return Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": SECRET}], database={"url": url},
                    worker={"poll_interval": 30})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_serve_stores_and_runs_a_webhook(aiohttp_client, database_url):
    SEEN.clear()
    app = await serve.build_app(settings_for(database_url), recording_factory)
    client = await aiohttp_client(app)
    body = {"object_kind": "merge_request", "project": {"id": 1, "path_with_namespace": "g/p"},
            "object_attributes": {"iid": 3, "action": "open"}}
    resp = await client.post("/webhook", json=body,
                             headers={"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET})
    event_id = (await resp.json())["event_id"]
    deadline = time.monotonic() + 60  # polled: as long as a loaded machine may need, no longer than the worker
    while not SEEN and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert SEEN == [event_id]
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_serve_keeps_a_spool_unless_it_is_turned_off(database_url, tmp_path):
    from bot.web import SPOOL_KEY, STORAGE_KEY

    for max_files, has_spool in ((10, True), (0, False)):
        settings = settings_for(database_url).model_copy(update={"server": ServerSettings(
            spool_dir=str(tmp_path / "spool"), spool_max_files=max_files)})
        app = await serve.build_app(settings, recording_factory)
        assert (SPOOL_KEY in app) is has_spool
        if has_spool:
            assert app[SPOOL_KEY].spool.directory == tmp_path / "spool" and app[SPOOL_KEY].spool.max_files == 10
        await app[STORAGE_KEY].close()


async def test_serve_refuses_an_unmigrated_database(tmp_path):
    with pytest.raises(Exception, match="reviewbot migrate"):
        await serve.build_app(settings_for(f"sqlite:///{tmp_path / 'new.sqlite3'}"), recording_factory)


@pytest.mark.postgres
async def test_serve_and_worker_refuse_a_postgresql_database_that_takes_no_writes(postgres_url):
    """A read-only session (a replica; here `default_transaction_read_only`) passed every check at start, and the
    processes ran without storing a webhook or running an event."""
    import asyncpg
    import sqlalchemy as sa

    from bot.storage import Storage, StorageError

    name = sa.engine.make_url(postgres_url).database
    admin = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        with pytest.raises(StorageError, match="takes no writes .*point DATABASE_URL at the primary"):
            await serve.build_app(settings_for(postgres_url), recording_factory)
        with pytest.raises(StorageError, match="takes no writes"):
            await Storage.open(postgres_url, writable=True)
        await (await Storage.open(postgres_url)).close()  # reading commands (`reviewbot events`) still work
    finally:
        await conn.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        await conn.close()


# `reviewbot serve`'s start-up storage checks, run by a user whom file modes stop (root is not stopped by them)
OPEN_WRITABLE = """
import asyncio, sys
from bot.cli import serve
from bot.config import Settings
settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": "s" * 24}], database={"url": sys.argv[1]})
try:
    asyncio.run(serve.build_app(settings, None, with_worker=False))
except Exception as exc:
    print(exc)
"""


def test_serve_refuses_a_sqlite_file_it_may_not_write(sqlite_url):
    """A database file the bot's user may read but not write passed every check at start, and `serve` and
    `worker` ran on, every claim and store failing with "attempt to write a readonly database"."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.worker_procs import ROOT, worker_env

    folder = Path(tempfile.mkdtemp(prefix="reviewbot-ro-"))  # pytest's own folders are root's alone (0700)
    try:
        shutil.copyfile(sqlite_url.split("///", 1)[1], folder / "reviewbot.sqlite3")
        (folder / "reviewbot.sqlite3").chmod(0o444)
        as_user: list[str] = []
        if os.geteuid() == 0:
            as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            folder.chmod(0o755)
            shutil.chown(folder, 65534, 65534)
            if subprocess.run([*as_user, sys.executable, "-c", "import bot.cli.serve"], cwd=ROOT,
                              capture_output=True).returncode:
                pytest.skip("root, and the user nobody cannot import the bot from this checkout")
        said = subprocess.run([*as_user, sys.executable, "-c", OPEN_WRITABLE,
                               f"sqlite+aiosqlite:///{folder / 'reviewbot.sqlite3'}"], cwd=ROOT, env=worker_env(),
                              capture_output=True, text=True, timeout=120).stdout
        assert "reviewbot.sqlite3 is not writable by this user" in said and "fix the owner or mode" in said, said
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_missing_dispatch_factory_names_the_fix():
    with pytest.raises(ConfigError, match="cannot load the dispatch factory 'no_such_module:make'"):
        serve.load_dispatch_factory("no_such_module:make")


def worker_once_on_one_event(sqlite_url: str, tmp_path, monkeypatch, factory: str, **fields) -> int:
    """Store one event (with `fields`), then run `reviewbot worker --once --dispatch tests.test_cli_serve:<factory>`."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GITLAB_TOKEN", "t")
    monkeypatch.setenv("GITLAB_WEBHOOK_SECRET", SECRET)
    SEEN.clear()

    async def seed() -> None:
        from bot.storage import Storage

        storage = Storage(sqlite_url)
        await storage.events.store_event(dedupe_key="k", kind="Note Hook", headers={}, body={}, **fields)
        await storage.close()

    run_in_thread(seed)
    args = build_parser().parse_args(["worker", "--once", "--dispatch", f"tests.test_cli_serve:{factory}"])
    return args.func(args)


def test_worker_once_runs_the_due_events(sqlite_url, tmp_path, monkeypatch):
    assert worker_once_on_one_event(sqlite_url, tmp_path, monkeypatch, "recording_factory") == 0
    assert SEEN == [1]
    json.dumps(SEEN)


@contextlib.asynccontextmanager
async def logging_factory(settings, storage, metrics):
    """A dispatch that logs as a handler does, naming none of the event's fields."""
    async def dispatch(row: EventRow) -> None:
        logging.getLogger("bot.handlers.publish").info(kv("suggestion shown", note_id=5, people="alice"))

    yield dispatch


def test_every_line_logged_while_an_event_runs_names_its_event_project_and_mr(sqlite_url, tmp_path, monkeypatch,
                                                                              caplog):
    caplog.set_level(logging.INFO)
    assert worker_once_on_one_event(sqlite_url, tmp_path, monkeypatch, "logging_factory", project_id=7,
                                    mr_iid=3) == 0
    said = [r.getMessage() for r in caplog.records if r.name.startswith("bot.")]

    def line(start: str) -> str:
        return next(message for message in said if message.startswith(start))

    for event_line in (line("suggestion shown "), line("event done ")):
        assert {"event_id=1", "project_id=7", "mr_iid=3"} <= set(event_line.split(" ")), event_line
        assert event_line.count("event_id=") == 1, event_line
    assert "event_id=" not in line("worker stopped ")  # after the event: its fields are gone


class Waiting(Exception):
    def __init__(self, wakes: asyncio.Future) -> None:
        super().__init__("waiting for the project's history import")
        self.park, self.wakes = 600.0, wakes


@contextlib.asynccontextmanager
async def parking_factory(settings, storage, metrics):
    """A dispatch that parks each event once, until something it started in the background is done."""
    async def dispatch(row: EventRow) -> None:
        SEEN.append(row.id)
        if SEEN.count(row.id) == 1:
            imported = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.1, imported.set_result, None)
            raise Waiting(imported)

    yield dispatch


def test_worker_once_runs_a_parked_event_when_it_is_woken_before_exiting(sqlite_url, tmp_path, monkeypatch):
    """A new project's first event is parked while its history is imported in the background: `worker --once`
    (from cron) waits for it to be woken and runs it, rather than exit and stop the import half-way."""
    async def status() -> str:
        from bot.storage import Storage

        storage = Storage(sqlite_url)
        try:
            return (await storage.events.get(1)).status
        finally:
            await storage.close()

    assert worker_once_on_one_event(sqlite_url, tmp_path, monkeypatch, "parking_factory") == 0
    assert SEEN == [1, 1] and run_in_thread(status) == "done"


def test_worker_once_applies_the_retention(sqlite_url, tmp_path, monkeypatch):
    """Run from cron, `worker --once` is the only worker: done events past `retention_days` must go (with their
    bodies) as a long-running worker's start deletes them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GITLAB_TOKEN", "t")
    monkeypatch.setenv("GITLAB_WEBHOOK_SECRET", SECRET)

    async def seed_and_count(seed: bool) -> int:
        import sqlalchemy as sa

        from bot.storage import Storage
        from bot.storage.tables import events

        storage = Storage(sqlite_url)
        try:
            if seed:
                for key in ("old-1", "old-2", "new"):
                    await storage.events.store_event(dedupe_key=key, kind="Note Hook", headers={}, body={})
                old = datetime.now(timezone.utc) - timedelta(days=30)
                async with storage.engine.begin() as conn:
                    await conn.execute(sa.update(events).where(events.c.dedupe_key.like("old-%"))
                                       .values(status="done", finished_at=old, received_at=old))
            return len(await storage.events.list_events(limit=100))
        finally:
            await storage.close()

    assert run_in_thread(lambda: seed_and_count(True)) == 3
    args = build_parser().parse_args(["worker", "--once", "--dispatch", "tests.test_cli_serve:recording_factory"])
    assert args.func(args) == 0
    assert run_in_thread(lambda: seed_and_count(False)) == 1


@contextlib.asynccontextmanager
async def queue_gone_factory(settings, storage, metrics):
    """A dispatch whose start takes the event queue away (a database that fails after start-up)."""
    async with storage.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE events RENAME TO events_elsewhere")
    yield None


def test_worker_once_exits_1_when_it_cannot_read_the_queue(sqlite_url, tmp_path, monkeypatch, capsys):
    """Run from cron, `worker --once` must not report success when no event could be claimed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GITLAB_TOKEN", "t")
    monkeypatch.setenv("GITLAB_WEBHOOK_SECRET", SECRET)
    args = build_parser().parse_args(["worker", "--once", "--dispatch", "tests.test_cli_serve:queue_gone_factory"])
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert "cannot read the event queue" in err and "DATABASE_URL" in err


def test_serve_on_a_port_in_use_says_so_in_one_line(sqlite_url, tmp_path, monkeypatch, capsys):
    import socket

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("GITLAB_TOKEN", "t")
    monkeypatch.setenv("GITLAB_WEBHOOK_SECRET", SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = build_parser().parse_args(["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)])
        assert args.func(args) == 1
    err = capsys.readouterr().err
    assert f"reviewbot serve: cannot listen on 127.0.0.1:{port}:" in err and "Traceback" not in err


def test_the_procfile_runs_a_whole_bot_on_one_web_dyno_and_the_readme_shows_it():
    """Heroku runs only `web` until workers are scaled: its `serve` must run a worker; the README shows the file
    as it is, and the line to use once worker dynos take the events."""
    from pathlib import Path

    from bot.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    procfile = (root / "Procfile").read_text()
    lines = dict(line.split(": ", 1) for line in procfile.splitlines())
    assert set(lines) == {"release", "web", "worker"}
    web = build_parser().parse_args(lines["web"].replace("$PORT", "5000").split()[1:])
    assert (web.func.resolve(), web.no_worker, web.port) == (serve.run_serve, False, 5000)
    readme = (root / "README.md").read_text()
    assert f"```\n{procfile}```" in readme
    assert "`reviewbot serve --no-worker --host 0.0.0.0 --port $PORT`" in readme


def test_an_empty_host_listens_on_every_interface():
    """`[server] host = ""` is every interface to asyncio (and so to serve before it bound its own sockets);
    `getaddrinfo("")` fails, and serve stopped with "cannot listen on :8080: Name or service not known"."""
    sockets = serve.bind("", 0)
    try:
        assert sockets and {sock.getsockname()[0] for sock in sockets} <= {"0.0.0.0", "::"}
    finally:
        for sock in sockets:
            sock.close()


LEFT_AT_EXIT: list[float] = []


@contextlib.asynccontextmanager
async def sigterm_factory(settings, storage, metrics):
    """A dispatch that sends its own process SIGTERM and runs until cancelled; its exit notes the time the
    shutdown leaves it (`shutdown.time_left`), as the handlers' final snapshots read it."""
    import os
    import signal

    from bot import shutdown

    async def dispatch(row):
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.Event().wait()

    try:
        yield dispatch
    finally:
        LEFT_AT_EXIT.append(shutdown.time_left(100.0))


def test_worker_once_given_sigterm_keeps_its_exit_within_the_grace(sqlite_url):
    """The deadline SIGTERM begins bounds what follows the events too (the handlers' final snapshots, closing
    the storage): begun in the signal's callback, it was not the exit's, which took its own 10 s and 5 s after
    the events had the grace (past Heroku's 30 s)."""
    from bot.config import Settings
    from bot.storage import Storage

    settings = Settings(gitlab={"token": "t"}, webhook_secrets=[{"secret": SECRET}], database={"url": sqlite_url},
                        server={"shutdown_timeout": 2.0}, worker={"poll_interval": 0.05})

    async def main() -> int:
        storage = Storage(sqlite_url)
        try:
            event_id, _ = await storage.events.store_event(dedupe_key="k", kind="Note Hook", project_id=1, headers={},
                                                           body={"object_attributes": {}})
        finally:
            await storage.close()
        ran = await serve._work(settings, sigterm_factory, once=True)
        storage = Storage(sqlite_url)
        try:
            assert (await storage.events.get(event_id)).status == "queued"  # handed back
        finally:
            await storage.close()
        return ran

    LEFT_AT_EXIT.clear()
    assert asyncio.run(main()) == 1
    assert LEFT_AT_EXIT and LEFT_AT_EXIT[0] <= 2.0, LEFT_AT_EXIT


@contextlib.asynccontextmanager
async def openmp_factory(settings, storage, metrics):
    """A dispatch that prints how many OpenMP threads scikit-learn uses in this process (the learned ranker's
    fits and predictions), loaded as the handlers load it: after the command has started."""
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    async def dispatch(row: EventRow) -> None:
        print(f"openmp threads {_openmp_effective_n_threads()}", flush=True)

    yield dispatch


@pytest.mark.parametrize("given, expected", [(None, "1"), ("3", "3")])
def test_the_worker_fits_and_ranks_on_one_openmp_thread_unless_told_otherwise(sqlite_url, tmp_path, given,
                                                                               expected):
    """OpenMP's default is a thread per CPU: beside suggestions and other processes on a small machine they
    spin against each other (retraining a 40k-change project took 19-39 s instead of 8-11 s, a suggestion's
    p99 623 ms instead of 33-54 ms). An operator's OMP_NUM_THREADS is kept. `serve` starts the same way (`_setup`)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    async def seed() -> None:
        from bot.storage import Storage

        storage = Storage(sqlite_url)
        await storage.events.store_event(dedupe_key="k", kind="Note Hook", headers={}, body={})
        await storage.close()

    run_in_thread(seed)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "REVIEWBOT_CONFIG", "PORT")}
    env.update(DATABASE_URL=sqlite_url, GITLAB_TOKEN="t", GITLAB_WEBHOOK_SECRET=SECRET,
               PYTHONPATH=str(Path(__file__).resolve().parents[1]), **({"OMP_NUM_THREADS": given} if given else {}))
    done = subprocess.run([sys.executable, "-m", "bot", "worker", "--once", "--dispatch",
                           "tests.test_cli_serve:openmp_factory"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"openmp threads {expected}" in done.stdout.splitlines(), (done.stdout, done.stderr)
