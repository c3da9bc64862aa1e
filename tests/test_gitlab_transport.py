"""How the bot reaches a self-hosted GitLab: through the environment's HTTP proxy, under a relative URL root
(https://host/gitlab), over TLS with a private CA. The GitLab side is the simulator over real HTTP."""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.gitlab.client import GitLabClient
from bot.gitlab.oauth import OAuthApp, OAuthError, exchange_code
from tests.gitlab_fixtures import FAST_RETRY

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
              "NO_PROXY")


@dataclass
class Proxy:
    """A forward HTTP proxy recording the absolute URLs it was asked for and the Proxy-Authorization sent."""

    url: str = ""
    seen: list[str] = field(default_factory=list)
    logins: list[str | None] = field(default_factory=list)

    async def forward(self, request: web.Request) -> web.Response:
        self.seen.append(str(request.url))
        self.logins.append(request.headers.get("Proxy-Authorization"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-authorization")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, request.url, headers=headers,
                                       data=await request.read()) as answer:
                kept = {k: v for k, v in answer.headers.items()
                        if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")}
                return web.Response(status=answer.status, body=await answer.read(), headers=kept)


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
async def proxy(no_proxy_env) -> AsyncIterator[Proxy]:
    found = Proxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}"
    try:
        yield found
    finally:
        await runner.cleanup()


async def test_gitlab_calls_go_through_the_environments_proxy(simulator, http_session, proxy, no_proxy_env):
    state, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://squid:s3cret@"))
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    assert (await client.current_user()).username == "reviewbot"
    assert proxy.seen == [f"{url}/api/v4/user"]
    assert proxy.logins == ["Basic " + base64.b64encode(b"squid:s3cret").decode()]


async def test_no_proxy_naming_gitlabs_host_connects_directly(simulator, http_session, proxy, no_proxy_env):
    state, url = simulator
    no_proxy_env.setenv("http_proxy", proxy.url)
    no_proxy_env.setenv("no_proxy", "localhost,127.0.0.1")
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    assert (await client.current_user()).username == "reviewbot"
    assert proxy.seen == [] and state.calls("GET", "/api/v4/user")


async def test_the_dashboards_sign_in_goes_through_the_proxy_too(simulator, http_session, proxy, no_proxy_env):
    _, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    app = OAuthApp(url, "app-id", "app-secret", "https://bot.example.com/auth/gitlab/callback")
    with pytest.raises(OAuthError, match="invalid_client"):
        await exchange_code(http_session, app, "some-code", "v" * 43)
    assert proxy.seen == [f"{url}/oauth/token"]
