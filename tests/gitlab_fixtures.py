"""Pytest fixtures for anything that talks to GitLab: the simulator over real HTTP, a fast-retrying client, and
a tiny webhook receiver. A plugin module: enable it with `pytest_plugins = ["tests.gitlab_fixtures"]` in the
root conftest, or import the fixtures you need into a test module.

The `simulator` fixture fails the test at teardown if anything called an endpoint the simulator does not know
(clear `state.unknown` in a test that does so on purpose).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web

from bot.gitlab.client import GitLabClient, RetryPolicy
from bot.gitlab.simulator import SimState, run_simulator

__all__ = ["sim_state", "simulator", "fast_retry", "http_session", "gitlab_client", "webhook_receiver",
           "refused_port", "Receiver", "Received", "FAST_RETRY"]

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005, max_retry_after=0.01, timeout=5.0)


@dataclass
class Received:
    """One webhook POST the receiver got."""

    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def event(self) -> str:
        return self.headers.get("X-Gitlab-Event", "")


@dataclass
class Receiver:
    """A webhook endpoint for tests: records what arrives and answers `status` (change it to simulate errors)."""

    url: str = ""
    status: int = 200
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), json.loads(await request.read())))
        self.arrived.set()
        return web.Response(status=self.status)

    def events(self, name: str) -> list[Received]:
        return [r for r in self.received if r.event == name]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where connections are refused for the whole test: a GitLab that is not there.

    Why held, not picked and closed (or pytest-asyncio's `unused_tcp_port`): bound without listening, it refuses
    connections and no other process can bind it; a closed one can be taken meanwhile by a server of another test
    process, which then answers instead.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def sim_state() -> SimState:
    """A fresh, empty simulated GitLab (root, the `reviewbot` user, token "sim-token")."""
    return SimState(token="sim-token", seed=1)


@pytest.fixture
async def simulator(sim_state: SimState) -> AsyncIterator[tuple[SimState, str]]:
    """The simulator serving `sim_state` on 127.0.0.1: yields `(state, base_url)`."""
    async with run_simulator(sim_state) as served:
        yield served
    sim_state.assert_no_unknown()


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Retries with millisecond waits (Retry-After capped at 10 ms) so failure tests stay fast."""
    return FAST_RETRY


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def gitlab_client(simulator: tuple[SimState, str], http_session: aiohttp.ClientSession,
                  fast_retry: RetryPolicy) -> GitLabClient:
    """A `GitLabClient` for the bot's token against the simulator."""
    state, url = simulator
    return GitLabClient(http_session, url=url, token=state.token, retry=fast_retry)


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[Receiver]:
    """A tiny aiohttp app on 127.0.0.1 recording webhook POSTs to `receiver.url`."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/webhook", receiver.handle)
    async with serve_app(app) as url:
        receiver.url = f"{url}/webhook"
        yield receiver


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    """Serve a small aiohttp app on a free port of 127.0.0.1; yields its base URL (`http://127.0.0.1:PORT`)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
