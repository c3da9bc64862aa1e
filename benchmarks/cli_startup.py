"""How fast the command line starts: importing `bot.cli`, `reviewbot --help`, and `reviewbot serve` until it answers.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/cli_startup.py [--runs 5] [--gitlab simulator|unreachable] [--only commands|serve]

Each figure is the median wall time of `--runs` fresh processes (run in turn with the baseline, so both see
about the same load on a shared machine), and its ratio to the baseline: `python -c pass` with the same
interpreter, measured in the same run.

* `import bot.cli`: `python -c "import bot.cli"` (the entry point's module), and the import time of `bot.cli`
  itself from `python -X importtime` (one run; microseconds summed by Python, without start-up), and of `bot.web`
  (what `serve` imports before it listens); then
  `bot.cli.build_parser()` too (every subcommand's arguments: what `reviewbot --help` needs).
* `--help`: `reviewbot --help`, and `reviewbot <command> --help` for every subcommand (the slowest is printed).
* serve: `reviewbot migrate` on a new SQLite file, then `reviewbot serve --port P` started, and the clock runs
  until GET /healthz answers (first connection accepted: `listening`; first 200: `healthy`), polled every 10 ms.
  GitLab is a simulator in this process (the start-up token check passes), or an address that refuses
  connections (`--gitlab unreachable`: the check only logs). The worker runs, with the real handlers.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_support import machine  # noqa: E402

PY = sys.executable
SECRET = "bench-secret-0123456789"
COMMANDS = ("serve", "worker", "migrate", "events", "prune", "backfill", "evaluate", "simulate", "install", "demo")


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds from spawning `argv` to its exit (output discarded)."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def import_us(module: str) -> int:
    """`module`'s cumulative import time in microseconds, from `python -X importtime`."""
    err = subprocess.run([PY, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stderr
    found = re.search(rf"\|\s*(\d+) \| {re.escape(module)}$", err, re.MULTILINE)
    return int(found.group(1)) if found else -1


def reviewbot(*args: str) -> list[str]:
    """The installed `reviewbot` script beside this interpreter, else `python -m bot`."""
    script = Path(PY).parent / "reviewbot"
    return [str(script), *args] if script.exists() else [PY, "-m", "bot", *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve_until_up(env: dict[str, str], folder: str) -> tuple[float, float]:
    """(seconds until /healthz accepted a connection, seconds until it answered 200) for one `serve` start."""
    port = free_port()
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*reviewbot("serve", "--port", str(port)), env=env, cwd=folder,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    listening = None
    try:
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() - start < 60 and proc.returncode is None:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        listening = listening or time.perf_counter() - start
                        if resp.status == 200:
                            return listening, time.perf_counter() - start
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.01)
        raise SystemExit(f"serve did not answer /healthz within 60 s (exit code {proc.returncode})")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def serve_env(folder: str, gitlab_url: str) -> dict[str, str]:
    env = dict(os.environ, GITLAB_URL=gitlab_url, GITLAB_TOKEN="sim-token", GITLAB_WEBHOOK_SECRET=SECRET,
               DATABASE_URL=f"sqlite:///{Path(folder) / 'bot.sqlite3'}", PYTHONPATH=str(ROOT))
    env.pop("REVIEWBOT_CONFIG", None)
    env.pop("PORT", None)
    subprocess.run(reviewbot("migrate"), env=env, cwd=folder, check=True, capture_output=True)
    return env


async def paired(runs: int, measure: Callable[[], Awaitable[tuple[float, ...]]]) -> tuple[list[float], list[tuple]]:
    """`runs` baseline runs and measurements in turn: (baseline seconds, measurements)."""
    base, got = [], []
    for _ in range(runs):
        base.append(await asyncio.to_thread(wall, [PY, "-c", "pass"]))
        got.append(await measure())
    return base, got


def line(name: str, seconds: list[float], base: list[float]) -> str:
    value, baseline = statistics.median(seconds), statistics.median(base)
    return f"{name:<40} {value * 1000:8.0f} ms   baseline {baseline * 1000:5.0f} ms   ratio {value / baseline:6.1f}"


async def measure_commands(runs: int) -> None:
    async def one(argv: list[str]) -> tuple[float]:
        return (await asyncio.to_thread(wall, argv),)

    for name, argv in (("python -c 'import bot.cli'", [PY, "-c", "import bot.cli"]),
                       ("bot.cli.build_parser()", [PY, "-c", "import bot.cli; bot.cli.build_parser()"]),
                       ("reviewbot --help", reviewbot("--help"))):
        base, got = await paired(runs, lambda argv=argv: one(argv))
        print(line(name, [g[0] for g in got], base))
    slowest: tuple[float, str, list[float]] = (0.0, "", [])
    for command in COMMANDS:
        base, got = await paired(max(1, runs // 2), lambda c=command: one(reviewbot(c, "--help")))
        median = statistics.median(g[0] for g in got)
        print(line(f"reviewbot {command} --help", [g[0] for g in got], base))
        if median > slowest[0]:
            slowest = (median, command, base)
    print(f"slowest subcommand --help: {slowest[1]}")


async def measure_serve(runs: int, gitlab: str) -> None:
    with tempfile.TemporaryDirectory(prefix="reviewbot-bench-") as folder:
        if gitlab == "unreachable":
            env = serve_env(folder, "http://127.0.0.1:9")
            base, got = await paired(runs, lambda: serve_until_up(env, folder))
        else:
            from bot.gitlab.simulator import run_simulator

            async with run_simulator() as (_state, url):
                env = serve_env(folder, url)
                base, got = await paired(runs, lambda: serve_until_up(env, folder))
    print(line(f"serve: listening (gitlab {gitlab})", [g[0] for g in got], base))
    print(line(f"serve: /healthz 200 (gitlab {gitlab})", [g[1] for g in got], base))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gitlab", choices=["simulator", "unreachable"], default="simulator")
    parser.add_argument("--only", choices=["commands", "serve"], help="measure only these figures")
    args = parser.parse_args()
    print(machine())
    if args.only != "serve":
        for module in ("bot.cli", "bot.web"):
            print(f"import time of {module} (-X importtime): {import_us(module) / 1000:.0f} ms")
        await measure_commands(args.runs)
    if args.only != "commands":
        await measure_serve(args.runs, args.gitlab)
    print(machine())


if __name__ == "__main__":
    asyncio.run(main())
