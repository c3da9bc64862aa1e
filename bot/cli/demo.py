"""`reviewbot demo`: the whole bot on one machine in a few seconds, with no GitLab, token or config.

Why: a newcomer should see what the bot does before creating tokens and hooks. The demo starts the GitLab
simulator seeded with a realistically skewed project, the bot itself (web app + worker on a temporary SQLite
database), registers the webhook the way `reviewbot install` does, backfills the merged history, opens a
merge request and prints the comment the bot posts. `--serve` keeps everything running to explore.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import AsyncIterator, Callable

import aiohttp
import gitlab
from aiohttp import web

from bot.cli.install import InstallError, install_hook
from bot.cli.commands import DEFAULT_DISPATCH
from bot.cli.serve import build_app, load_dispatch_factory, said_cannot_listen
from bot.comment import MARKER
from bot.config import ConfigError, Settings
from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.sim_model import SimMR, SimNote, SimUser
from bot.gitlab.simulator import SeededProject, SimState, run_simulator, seed_project
from bot.storage import Storage, StorageError, migrate
from bot.worker import DispatchFactory

__all__ = ["run", "run_demo", "DemoOptions", "DemoResult", "DemoError", "choose_change",
           "comment_text"]

ROOT_TOKEN = "demo-root-token"  # tokens of the local simulator only: they open nothing real
PROJECT = "acme/widgets"
Out = Callable[[str], None]


def say(text: str) -> None:
    """Print at once, also into a pipe (`reviewbot demo --serve | tee demo.log` shows the URLs live)."""
    print(text, flush=True)


class DemoError(Exception):
    """The demo could not finish; the message says which step failed and why."""


@dataclass(frozen=True)
class DemoOptions:
    serve: bool = False
    port: int = 0
    gitlab_port: int = 0
    seed: int = 7
    merged: int = 300
    timeout: float = 60.0
    plain: bool = False
    dispatch: str = DEFAULT_DISPATCH


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for its summary and for tests."""

    backfilled: int
    mr_iid: int
    author: str
    files: tuple[str, ...]
    comment: str
    seconds: float


def run(args: argparse.Namespace) -> int:
    # One OpenMP thread for the learned ranker (read when scikit-learn loads, i.e. later, with the handlers):
    # on a small shared machine more threads spin against each other and a 3 s fit takes 10-20 s.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    opts = DemoOptions(serve=args.serve, port=args.port, gitlab_port=args.gitlab_port, seed=args.seed,
                       plain=args.plain or not sys.stdout.isatty(), dispatch=args.dispatch)
    try:
        asyncio.run(run_demo(opts))
    except (DemoError, ConfigError, StorageError, InstallError, GitLabError) as exc:
        print(f"reviewbot demo: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if not said_cannot_listen(exc, "demo", "", "choose other ports (--port, --gitlab-port) or leave them out "
                                  "for free ones"):
            raise
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


async def run_demo(opts: DemoOptions, *, out: Out = say, factory: DispatchFactory | None = None) -> DemoResult:
    """Run the demo end to end; with `opts.serve`, keep everything up until SIGINT or SIGTERM."""
    started = time.monotonic()
    factory = factory or load_dispatch_factory(opts.dispatch)
    state = SimState(seed=opts.seed)
    year_ago = datetime.now(timezone.utc) - timedelta(days=365)  # a history that ends today: people are active
    seeded = seed_project(state, path=PROJECT, n_merged=opts.merged, n_open=0, seed=opts.seed, start=year_ago)
    state.add_token(state.root, ROOT_TOKEN)
    with tempfile.TemporaryDirectory(prefix="reviewbot-demo-") as tmp:
        async with run_simulator(state, port=opts.gitlab_port) as (_, gitlab_url):
            settings = demo_settings(gitlab_url, state, Path(tmp) / "demo.sqlite3", opts.port)
            await migrate(settings.database_url)
            async with _running_bot(settings, factory, opts.port) as (storage, bot_url):
                result = await _scenario(state, seeded, storage, settings, bot_url, opts, out, started)
                if opts.serve:
                    _print_exploring(out, state, seeded, result, gitlab_url, bot_url, Path(tmp), settings)
                    await _until_interrupted()
    return result


def demo_settings(gitlab_url: str, state: SimState, database: Path, port: int) -> Settings:
    """Settings built in code: the simulator's URL and bot token, a fresh secret, a temporary SQLite file."""
    return Settings(
        gitlab={"url": gitlab_url, "token": state.token, "bot_username": state.bot.username},
        server={"host": "127.0.0.1", "port": port or 8080, "shutdown_timeout": 5},
        database={"url": f"sqlite+aiosqlite:///{database}"},
        worker={"poll_interval": 0.5, "dispatch_timeout": 30, "lease_seconds": 60, "backoff": 1},
        webhook_secrets=[{"secret": secrets.token_urlsafe(32)}],
        dashboard={"enabled": True, "token": secrets.token_urlsafe(24)},
        source="reviewbot demo (built in)",
    )


@contextlib.asynccontextmanager
async def _running_bot(settings: Settings, factory: DispatchFactory,
                       port: int) -> AsyncIterator[tuple[Storage, str]]:
    """The `serve` app (web + worker + handlers) on 127.0.0.1; yields its storage and base URL."""
    storage = await Storage.open(settings.database_url)
    try:
        app = await build_app(settings, factory, storage=storage)  # the app closes the storage on cleanup
    except BaseException:
        await storage.close()
        raise
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.server.shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        host, real_port = runner.addresses[0][:2]
        yield storage, f"http://{host}:{real_port}"
    finally:
        await runner.cleanup()


async def _scenario(state: SimState, seeded: SeededProject, storage: Storage, settings: Settings, bot_url: str,
                    opts: DemoOptions, out: Out, started: float) -> DemoResult:
    """Hook, backfill, open a merge request, wait for the comment, print it."""
    project = seeded.project
    out(f"reviewbot demo: a simulated GitLab ({state.web}) and the bot ({bot_url}) on this machine\n")
    await _register_hook(state.web, f"{bot_url}/webhook", settings)
    out(f"  webhook        registered on {project.path_with_namespace}: merge requests, comments, emoji")
    backfilled, took = await _backfill(settings, storage, project.id)
    out(f"  history        {backfilled} merged merge requests backfilled in {took:.1f} s")
    out(f"  people         {len(seeded.people)} people and {len(seeded.bots)} bots; {len(seeded.owners)} "
        f"directories with owners; @{seeded.busy.username} is Busy, @{seeded.blocked.username} has left")
    author, files, title = choose_change(state, seeded)
    mr = state.open_mr(project, author, files, title=title)
    out(f"  merge request  !{mr.iid} \"{title}\" opened by @{author.username}, touching")
    out("".join(f"                   {path}\n" for path in files).rstrip("\n"))
    opened = time.monotonic()
    note = await _wait_for_comment(state, mr, storage, opts.timeout)
    out(f"  comment        posted by @{state.bot.username} {time.monotonic() - opened:.1f} s later:\n")
    _print_comment(out, note.body, plain=opts.plain)
    return DemoResult(backfilled, mr.iid, author.username, tuple(files), note.body, time.monotonic() - started)


async def _register_hook(gitlab_url: str, url: str, settings: Settings) -> None:
    """What `reviewbot install` does, with the simulator's root (Owner) token."""
    secret = settings.webhook_secrets[0].secret.get_secret_value()

    def install() -> None:
        with gitlab.Gitlab(gitlab_url, private_token=ROOT_TOKEN, timeout=10) as gl:
            install_hook(gl, PROJECT, url, secret)

    await asyncio.to_thread(install)


async def _backfill(settings: Settings, storage: Storage, project_id: int) -> tuple[int, float]:
    """Import the merged history through the bot's own backfill, as its first event would."""
    from bot.backfill import backfill_project  # loaded with the handlers, like them: `--help` never needs it

    started = time.monotonic()
    token = settings.gitlab.token.get_secret_value() if settings.gitlab.token else ""
    async with aiohttp.ClientSession() as session:
        client = GitLabClient(session, url=settings.gitlab.url, token=token)
        report = await backfill_project(client, storage, project_id, concurrency=8)
    return report.imported, time.monotonic() - started


def _active(state: SimState, user: SimUser) -> bool:
    return user.state == "active" and not user.bot and not user.busy


def choose_change(state: SimState, seeded: SeededProject) -> tuple[SimUser, list[str], str]:
    """A believable merge request: the busiest owned directory's most-changed files, by an active non-owner.

    Deterministic for a given seeded project, so the demo prints the same thing every time.
    """
    merged = [mr for mr in seeded.project.mrs.values() if mr.state == "merged"]
    touched = Counter(d.new_path for mr in merged for d in mr.diffs)
    by_dir = Counter(path.rsplit("/", 1)[0] for path in touched.elements())
    owned = [d for d, _ in by_dir.most_common() if seeded.owners.get(d)]
    home = next((d for d in owned if d.startswith("src/")), owned[0])
    activity = Counter(mr.author_id for mr in merged)
    candidates = [u for u in seeded.people if _active(state, u) and u.username not in seeded.owners[home]]
    author = max(candidates, key=lambda u: (activity[u.id], -u.id))
    top = [p for p, _ in touched.most_common() if p.startswith(home + "/")][:2]
    files = sorted({*top, f"{home}/rate_limits.py"})
    return author, files, f"Add rate limits to {home.rsplit('/', 1)[-1]}"


async def _wait_for_comment(state: SimState, mr: SimMR, storage: Storage, timeout: float) -> SimNote:
    """The bot's first note on `mr`; fail fast (naming the cause) if the delivery or the event failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        note = next((n for n in mr.notes if n.author_id == state.bot.id and not n.system), None)
        if note is not None:
            return note
        refused = [d for d in state.deliveries if not 200 <= d.status < 300]
        if refused:
            raise DemoError(f"the bot refused the webhook ({refused[0].status or refused[0].error})")
        failed = await storage.events.list_events(failed_only=True, limit=1)
        if failed:
            raise DemoError(f"the bot could not handle the merge request event: {failed[0].last_error}")
        await asyncio.sleep(0.05)
    raise DemoError(f"no comment from the bot on !{mr.iid} after {timeout:g} s: rerun with more time")


def comment_text(body: str) -> str:
    """The comment as a person sees it: without the hidden marker line.

    >>> comment_text(MARKER + "\\n\\nHello")
    'Hello'
    """
    return "\n".join(line for line in body.splitlines() if line.strip() != MARKER).strip()


def _print_comment(out: Out, body: str, *, plain: bool) -> None:
    text = comment_text(body)
    if plain:
        out(text)
        return
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel

    Console().print(Panel(Markdown(text), expand=False, padding=(1, 2)))


def _print_exploring(out: Out, state: SimState, seeded: SeededProject, result: DemoResult, gitlab_url: str,
                     bot_url: str, tmp: Path, settings: Settings) -> None:
    """The URLs and a few commands to poke at the running demo."""
    api = f"{gitlab_url}/api/v4/projects/{seeded.project.id}/merge_requests/{result.mr_iid}"
    author_token = f"demo-{result.author}-token"
    state.add_token(result.author, author_token)
    someone = next(user for owners in seeded.owners.values() for user in owners)
    dashboard = settings.dashboard.token.get_secret_value() if settings.dashboard.token else ""
    out(f"""
Still running (Ctrl-C stops both). Try:

  # the dashboard (acceptance over time, suggestions against reviewers, review load, model), in a browser
  {bot_url}/?token={dashboard}

  # the bot's health and metrics
  curl {bot_url}/healthz
  curl -s {bot_url}/metrics | grep '^reviewbot_'

  # the merge request's notes, as GitLab's API shows them
  curl -s -H 'PRIVATE-TOKEN: {ROOT_TOKEN}' {api}/notes

  # ask the bot, as the MR's author @{result.author}, why it did (not) suggest someone
  curl -s -H 'PRIVATE-TOKEN: {author_token}' --data-urlencode 'body=/reviewers why @{someone}' {api}/notes

  # assign the top suggestion, then look at the MR's reviewers
  curl -s -H 'PRIVATE-TOKEN: {author_token}' --data-urlencode 'body=/reviewers assign' {api}/notes
  curl -s -H 'PRIVATE-TOKEN: {ROOT_TOKEN}' {api}/reviewers

  # the bot's event queue
  DATABASE_URL=sqlite:///{tmp / 'demo.sqlite3'} reviewbot events list
""")


async def _until_interrupted() -> None:
    """Wait for Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
