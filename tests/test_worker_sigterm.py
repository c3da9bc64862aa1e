"""SIGTERM to a `reviewbot worker` process: the event in flight finishes within the grace period, or is handed
back to the queue (its attempt not counted), and the process exits well within the 25 s Heroku allows."""
from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from bot.storage import Storage
from tests.worker_procs import ROOT, WorkerProcs, worker_env, write_config

SIGTERM_BAR = 25.0


async def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    """Until `path` exists (a worker process takes a few seconds to import and start)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():
        if loop.time() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        await asyncio.sleep(0.05)


async def store_one(database_url: str, key: str) -> int:
    """Queue one event (the slow dispatch ignores what it holds); returns its id."""
    storage = Storage(database_url)
    try:
        event_id, _ = await storage.events.store_event(dedupe_key=key, kind="Note Hook", project_id=1,
                                                       headers={}, body={"object_attributes": {}})
    finally:
        await storage.close()
    return event_id


def slow_config(tmp_path: Path, database_url: str, **server) -> Path:
    """A config whose worker claims fast and holds its lease long (the handing back is what is tested)."""
    return write_config(tmp_path, gitlab_url="http://127.0.0.1:9", token="t", database_url=database_url,
                        worker={"poll_interval": 0.1, "lease_seconds": 600, "dispatch_timeout": 300}, server=server)


async def signalled(tmp_path: Path, event_id: int, args: list[str], config: Path, *, signals: int = 1) -> str:
    """Run `python -m bot ARGS` with the slow dispatch (120 s an event) until it started `event_id`, SIGTERM it
    `signals` times, wait for its exit; returns its log, once it exited 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, "--config", str(config), "--dispatch", "tests.worker_procs:slow_dispatch",
        cwd=ROOT, env=worker_env(SLOW_MARKER=str(tmp_path), SLOW_SECONDS="120"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for_file(tmp_path / f"started-{event_id}")
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)  # the shutdown is under way, waiting for the event
        said = await asyncio.wait_for(proc.stderr.read(), SIGTERM_BAR)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, said.decode()
    return said.decode()


async def run_slow_event(tmp_path: Path, database_url: str, *, seconds: float, grace: float) -> tuple[int, int, str]:
    """Store one event, let a worker process start it, SIGTERM the worker; returns (event id, exit code, log)."""
    event_id = await store_one(database_url, "slow")
    config = slow_config(tmp_path, database_url, shutdown_timeout=grace)
    env = worker_env(SLOW_MARKER=str(tmp_path), SLOW_SECONDS=str(seconds))
    procs = WorkerProcs(config, tmp_path / "logs", dispatch="tests.worker_procs:slow_dispatch", env=env)
    await procs.start(1)
    try:
        await wait_for_file(tmp_path / f"started-{event_id}")
        code = await procs.terminate(0, timeout=SIGTERM_BAR)
    finally:
        await procs.stop_all(5)
    return event_id, code, procs.log_text()


async def stored_event(database_url: str, event_id: int):
    """The event's row as the worker process left it."""
    storage = Storage(database_url)
    try:
        return await storage.events.get(event_id)
    finally:
        await storage.close()


async def test_an_event_longer_than_the_grace_is_handed_back(tmp_path, database_url):
    """A 2 s grace: the running events get all but a fifth of it (at most 5 s), the hand-back what remains. With
    0.5 s that was about 75 ms for the hand-back's write on PostgreSQL, which a loaded machine once missed."""
    event_id, code, log = await run_slow_event(tmp_path, database_url, seconds=120, grace=2.0)
    assert code == 0, log
    row = await stored_event(database_url, event_id)
    assert (row.status, row.attempts, row.lease_owner, row.lease_expires_at) == ("queued", 0, None, None)
    assert "handed_back=1" in log and not (tmp_path / f"finished-{event_id}").exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_event_within_the_grace_finishes(tmp_path, database_url):
    event_id, code, log = await run_slow_event(tmp_path, database_url, seconds=1.0, grace=20)
    assert code == 0, log
    row = await stored_event(database_url, event_id)
    assert (row.status, row.attempts) == ("done", 1) and (tmp_path / f"finished-{event_id}").exists()
    assert "handed_back=0" in log


@pytest.mark.parametrize("signals", [1, 2])
async def test_serve_given_sigterm_once_or_twice_hands_its_event_back(tmp_path, sqlite_url, signals):
    """Heroku may send SIGTERM more than once: a second one must not cut the first one's shutdown short
    (aiohttp's own handler raised `GracefulExit` again mid-cleanup: exit 1, the running event not handed back)."""
    event_id = await store_one(sqlite_url, "twice")
    config = slow_config(tmp_path, sqlite_url, shutdown_timeout=3.0, spool_dir=str(tmp_path / "spool"))
    log = await signalled(tmp_path, event_id, ["serve", "--host", "127.0.0.1", "--port", "0"], config,
                          signals=signals)
    assert "Traceback" not in log, log
    row = await stored_event(sqlite_url, event_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None), log


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_worker_once_hands_its_event_back_on_sigterm(tmp_path, database_url):
    """`worker --once` (a scheduler's job) given SIGTERM: the event in flight is handed back within the grace
    and the process exits 0, as a long-running worker does (it was killed outright, the event left leased)."""
    event_id = await store_one(database_url, "once")
    log = await signalled(tmp_path, event_id, ["worker", "--once"], slow_config(tmp_path, database_url,
                                                                                  shutdown_timeout=1.0))
    row = await stored_event(database_url, event_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None), log
    assert "handed_back=1" in log, log
