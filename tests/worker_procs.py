"""`reviewbot worker` as real subprocesses, for the crash, shutdown and scale-out tests and benchmarks.

Why subprocesses: SIGKILL and SIGTERM only mean something for a process; a worker killed in the middle of an
event must leave the database (its lease, its half-posted comment) as a real crash would. Each worker gets a
config file written here (the simulator's URL and token, the database URL, short leases), an environment
without the bot's variables (which would override the file), and a log file per process generation.

With `fork=True` the workers are forked from a parent that imported the bot once (`tests/worker_zygote.py`):
a restart takes milliseconds instead of the seconds an import takes, which is what lets the crash test kill
and restart workers many times; they are still separate processes running the real entry point.

The callers run in an event loop that also serves the GitLab simulator, so every wait here is async.

    procs = WorkerProcs(write_config(tmp, gitlab_url=url, token=state.token, database_url=db), tmp / "logs")
    await procs.start(2); procs.kill(0); await procs.restart(0); await procs.stop_all()
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Mapping

from bot.storage import EventRow

__all__ = ["write_config", "worker_env", "WorkerProcs", "slow_dispatch", "poison_dispatch", "ROOT",
           "BOT_VARIABLES"]

ROOT = Path(__file__).resolve().parents[1]
BOT_VARIABLES = ("GITLAB_URL", "GITLAB_TOKEN", "DATABASE_URL", "GITLAB_WEBHOOK_SECRET", "REVIEWBOT_CONFIG", "PORT")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_config(folder: Path, *, gitlab_url: str, token: str, database_url: str, secret: str = "s" * 24,
                 worker: Mapping[str, Any] | None = None, server: Mapping[str, Any] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> Path:
    """A config.toml for a worker process; returns its path."""
    sections = {"gitlab": {"url": gitlab_url, "token": token}, "database": {"url": database_url},
                "worker": dict(worker or {}), "server": dict(server or {}), "defaults": dict(defaults or {})}
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    lines += ["[[webhook_secrets]]", f"secret = {_toml_value(secret)}"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def worker_env(**extra: str) -> dict[str, str]:
    """This environment without the bot's own variables, one OpenMP thread, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if k not in BOT_VARIABLES}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


class Forked:
    """A worker forked by the zygote, with the parts of `asyncio.subprocess.Process` the callers use."""

    def __init__(self, pid: int) -> None:
        self.pid: int = pid
        self.returncode: int | None = None  # set by the zygote's reader thread

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    async def wait(self) -> int:
        while self.returncode is None:
            await asyncio.sleep(0.02)
        return self.returncode


class Zygote:
    """`tests/worker_zygote.py` as a subprocess: forks pre-imported workers in milliseconds instead of seconds.

    Not tied to an event loop (a thread reads its reports), so one zygote can serve several tests: create it
    early and its import overlaps other work.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.worker_zygote"], cwd=ROOT,
                                     env=dict(env) if env is not None else worker_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.children: dict[int, Forked] = {}
        self._pids: queue.Queue[int] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="zygote-reader", daemon=True)
        self._reader.start()

    async def start(self, argv: list[str], log: Path) -> Forked:
        """Fork a worker running `reviewbot <argv>` with its output in `log`."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}).encode() + b"\n")
        self.proc.stdin.flush()
        pid = await asyncio.to_thread(self._pids.get, True, 180)
        return self.children[pid]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            message = json.loads(line)
            if "pid" in message:
                self.children[message["pid"]] = Forked(message["pid"])
                self._pids.put(message["pid"])
            else:
                self.children[message["exit"]].returncode = message["code"]
        for child in list(self.children.values()):  # the zygote is gone: so are the reports
            if child.returncode is None:
                child.returncode = -signal.SIGKILL

    def close(self) -> None:
        """End of requests: the zygote exits once every child has (stop the children first)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(60)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class WorkerProcs:
    """Numbered `python -m bot worker` processes that can be killed, restarted and stopped."""

    def __init__(self, config: Path, logs: Path, *, dispatch: str | None = None, log_level: str = "INFO",
                 env: Mapping[str, str] | None = None, fork: bool = False, zygote: Zygote | None = None) -> None:
        self.config, self.logs, self.fork = config, logs, fork or zygote is not None
        self.zygote, self.own_zygote = zygote, zygote is None
        self.dispatch, self.log_level = dispatch, log_level
        self.env = dict(env) if env is not None else worker_env()
        self.procs: dict[int, Any] = {}  # asyncio.subprocess.Process or Forked: pid, returncode, wait()
        self.generation: dict[int, int] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def _argv(self) -> list[str]:
        argv = ["worker", "--config", str(self.config), "--log-level", self.log_level]
        return argv + (["--dispatch", self.dispatch] if self.dispatch else [])

    async def start_one(self, i: int) -> Any:
        """Start worker `i` (a new generation, with its own log file)."""
        gen = self.generation[i] = self.generation.get(i, -1) + 1
        log_path = self.logs / f"worker-{i}-{gen}.log"
        if self.fork:
            self.procs[i] = await self._zygote().start(self._argv(), log_path)
            return self.procs[i]
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *self._argv(), cwd=ROOT,
                                                        env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
                                                        stdin=asyncio.subprocess.DEVNULL)
        self.procs[i] = proc
        return proc

    def _zygote(self) -> Zygote:
        if self.zygote is None:
            self.zygote = Zygote(self.env)
        return self.zygote

    async def start(self, n: int) -> None:
        for i in range(n):
            await self.start_one(i)

    def kill(self, i: int) -> None:
        """SIGKILL worker `i`: no handler runs, nothing is released, its leases must expire."""
        with contextlib.suppress(ProcessLookupError):
            self.procs[i].send_signal(signal.SIGKILL)

    async def restart(self, i: int) -> None:
        await self.procs[i].wait()
        await self.start_one(i)

    async def terminate(self, i: int, timeout: float = 30.0) -> int:
        """SIGTERM worker `i` and wait for it to exit; returns its exit code (TimeoutError if it did not)."""
        proc = self.procs[i]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(proc.wait(), timeout)

    def crashed(self) -> list[int]:
        """Workers that exited on their own (not killed by us: they should never exit)."""
        return [i for i, p in self.procs.items() if p.returncode is not None and p.returncode != -signal.SIGKILL]

    async def stop_all(self, timeout: float = 30.0) -> dict[int, int]:
        """SIGTERM every live worker and wait; any still alive after `timeout` is killed."""
        codes = {}
        for i in list(self.procs):
            try:
                codes[i] = await self.terminate(i, timeout)
            except TimeoutError:
                self.kill(i)
                codes[i] = await self.procs[i].wait()
        if self.zygote is not None and self.own_zygote:
            self.zygote.close()
        return codes

    def log_text(self) -> str:
        """Every generation's log, concatenated (for assertions and failure messages)."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("worker-*.log")))


@contextlib.asynccontextmanager
async def slow_dispatch(settings: Any, storage: Any, metrics: Any) -> AsyncIterator[Any]:
    """A dispatch factory for shutdown tests: touches $SLOW_MARKER/<id> on start, then sleeps $SLOW_SECONDS."""
    marker, seconds = Path(os.environ["SLOW_MARKER"]), float(os.environ.get("SLOW_SECONDS", "60"))

    async def dispatch(row: EventRow) -> None:
        (marker / f"started-{row.id}").touch()
        await asyncio.sleep(seconds)
        (marker / f"finished-{row.id}").touch()

    yield dispatch


@contextlib.asynccontextmanager
async def poison_dispatch(settings: Any, storage: Any, metrics: Any) -> AsyncIterator[Any]:
    """A dispatch factory for the crash tests: an event whose body has `"poison": true` SIGKILLs its own process
    (once another event has started beside it, or after $POISON_WAIT s); any other sleeps $SLOW_SECONDS. Each
    start touches $SLOW_MARKER/started-<id>-<pid>."""
    marker, seconds = Path(os.environ["SLOW_MARKER"]), float(os.environ.get("SLOW_SECONDS", "0.5"))
    wait = float(os.environ.get("POISON_WAIT", "0.5"))

    async def dispatch(row: EventRow) -> None:
        (marker / f"started-{row.id}-{os.getpid()}").touch()
        if not row.body.get("poison"):
            await asyncio.sleep(seconds)
            return
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            if any(not p.name.startswith(f"started-{row.id}-") and p.name.endswith(f"-{os.getpid()}")
                   for p in marker.glob("started-*")):
                break
            await asyncio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)

    yield dispatch
