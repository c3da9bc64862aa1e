"""Sign in to the dashboard with GitLab, over real HTTP: the bot's app, the GitLab simulator's OAuth provider
and API, and a browser played by hand (each redirect followed one at a time, cookies kept per site).

The world: in GitLab, ann is a Developer of acme/widgets, a Guest of acme/guest (private: its merge requests
are closed to Guests) and no member of acme/secret (bob's) nor of acme/open (public); root is the instance
administrator. The bot stores all four.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from pydantic import SecretStr

from bot.config import Settings
from bot.dashboard import COOKIE, SESSION_COOKIE, cookie_value
from bot.database_wait import DatabaseWait
from bot.dashboard_session import FLOW_COOKIE, Session, derive_key, encode_session
from bot.gitlab.sim_oauth import SimOAuthApp
from bot.gitlab.simulator import SimState
from bot.metrics import Metrics
from bot.storage import Storage
from bot.web import make_app
from tests.gitlab_fixtures import http_session, sim_state, simulator  # noqa: F401 - fixtures
from tests.storage_fixtures import FakeClock

TOKEN = "dashboard-token-0123456789abcdef"
PUBLIC_URL = "http://dashboard.test"
NOW = datetime(2025, 3, 19, 12, 0, tzinfo=timezone.utc)


@dataclass
class World:
    state: SimState
    gitlab: str
    app: SimOAuthApp
    storage: Storage
    clock: FakeClock
    ids: dict[str, int]

    def settings(self, *, token: bool = False, secret: str | None = None) -> Settings:
        dashboard = {"gitlab_app_id": self.app.uid, "gitlab_app_secret": secret or self.app.secret,
                     "public_url": PUBLIC_URL, **({"token": TOKEN} if token else {})}
        return Settings(gitlab={"url": self.gitlab, "token": "glpat-never-shown-0000"},
                        webhook_secrets=[{"secret": "webhook-secret-never-shown-1111"}], dashboard=dashboard)


@pytest.fixture
async def world(simulator, sqlite_url) -> AsyncIterator[World]:
    state, gitlab = simulator
    state.add_user("ann"), state.add_user("bob")
    ids = {}
    for path, members in (("acme/widgets", {"ann": 30}), ("acme/secret", {"bob": 30}), ("acme/guest", {"ann": 10}),
                          ("acme/open", {})):
        project = state.add_project(path)
        for user, level in members.items():
            state.add_member(project, user, level)
        ids[path] = project.id
    state.project("acme/open").visibility = "public"
    app = state.add_oauth_app(f"{PUBLIC_URL}/auth/gitlab/callback")
    clock = FakeClock(NOW)
    storage = Storage(sqlite_url, clock=clock)
    for path, pid in ids.items():
        await storage.projects.seen(pid, path)
    yield World(state, gitlab, app, storage, clock, ids)
    await storage.close()


@pytest.fixture
async def bot(aiohttp_client, world):
    return await aiohttp_client(make_app(world.settings(), world.storage, Metrics()))


async def start(bot, next_path: str = "/") -> str:
    """The dashboard's "Sign in with GitLab": where it sends the browser (GitLab's authorize URL)."""
    response = await bot.get("/auth/gitlab", params={"next": next_path}, allow_redirects=False)
    assert response.status == 303, await response.text()
    return response.headers["Location"]


async def consent(http: aiohttp.ClientSession, authorize: str) -> str:
    """GitLab's side: the browser opens the authorize URL; where GitLab sends it back (path and query only)."""
    async with http.get(authorize, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        back = urlsplit(response.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == PUBLIC_URL
    return f"{back.path}?{back.query}"


async def sign_in(bot, http, user, world: World, next_path: str = "/") -> aiohttp.ClientResponse:
    world.state.browser_user = world.state.user(user)
    callback = await consent(http, await start(bot, next_path))
    return await bot.get(callback, allow_redirects=False)


async def listed(bot) -> set[str]:
    page = await bot.get("/")
    assert page.status == 200
    text = await page.text()
    return {path for path in ("acme/widgets", "acme/secret", "acme/guest", "acme/open") if path in text}


# --- the flow ------------------------------------------------------------------------------------------------
async def test_a_member_signs_in_and_sees_only_what_gitlab_shows_them(bot, world, http_session):
    response = await sign_in(bot, http_session, "ann", world, next_path="/projects/%d" % world.ids["acme/widgets"])
    assert response.status == 303 and response.headers["Location"] == f"/projects/{world.ids['acme/widgets']}"
    cookie = response.headers.getall("Set-Cookie")
    session = next(c for c in cookie if c.startswith(f"{SESSION_COOKIE}="))
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session and "Max-Age=28800" in session
    assert any(c.startswith(f"{FLOW_COOKIE}=") and "Max-Age=0" in c for c in cookie)  # the flow's cookie is spent
    assert await listed(bot) == {"acme/widgets", "acme/open"}  # not bob's, not where ann is a Guest
    page = await bot.get(f"/projects/{world.ids['acme/widgets']}")
    assert page.status == 200 and "@ann" in await page.text() and 'action="/signout"' in await page.text()
    for hidden in ("acme/secret", "acme/guest"):
        pid = world.ids[hidden]
        for path in (f"/projects/{pid}", f"/api/projects/{pid}/stats"):
            response = await bot.get(path)
            assert response.status == 404, path  # as for a project the bot does not know: not a 403
            assert hidden not in await response.text()
        assert (await bot.get(f"/projects/{pid + 100}")).status == 404
    assert (await bot.get(f"/api/projects/{world.ids['acme/open']}/stats")).status == 200


async def test_gitlab_is_asked_with_pkce_as_the_person_and_their_token_is_revoked(bot, world, http_session):
    authorize = await start(bot)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(f"{world.gitlab}/oauth/authorize?")
    assert {k: v[0] for k, v in query.items() if k not in ("state", "code_challenge")} == {
        "client_id": world.app.uid, "redirect_uri": f"{PUBLIC_URL}/auth/gitlab/callback", "response_type": "code",
        "scope": "read_api", "code_challenge_method": "S256"}
    world.state.browser_user = world.state.user("ann")
    assert (await bot.get(await consent(http_session, authorize), allow_redirects=False)).status == 303
    exchange = world.state.calls("POST", "/oauth/token")[0]
    verifier = exchange.json["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == query["code_challenge"][0] and 43 <= len(verifier) <= 128
    assert exchange.json["client_secret"] == world.app.secret and exchange.status == 200
    assert verifier not in str(bot.session.cookie_jar.filter_cookies(bot.make_url("/")))
    revoked = world.state.calls("POST", "/oauth/revoke")
    assert len(revoked) == 1 and revoked[0].status == 200
    assert world.state.token_user(revoked[0].json["token"]) is None  # the bot keeps no GitLab token
    mrs = world.state.calls("GET", "/merge_requests")
    assert sorted(r.path for r in mrs) == sorted(f"/api/v4/projects/{p}/merge_requests" for p in world.ids.values())
    assert all(r.query == {"per_page": "1"} for r in mrs)


async def test_an_administrator_sees_every_project(bot, world, http_session):
    assert (await sign_in(bot, http_session, "root", world)).status == 303
    assert await listed(bot) == {"acme/widgets", "acme/secret", "acme/guest", "acme/open"}


# --- what is refused -----------------------------------------------------------------------------------------
async def test_a_callback_without_this_browsers_state_is_refused(bot, world, http_session, aiohttp_client):
    world.state.browser_user = world.state.user("ann")
    callback = await consent(http_session, await start(bot))
    other = await aiohttp_client(make_app(world.settings(), world.storage, Metrics()))  # a browser without the cookie
    response = await other.get(callback, allow_redirects=False)
    assert response.status == 400 and "Sign-in not accepted" in await response.text()
    assert f"{SESSION_COOKIE}=" not in response.headers.get("Set-Cookie", "")
    wrong = callback.replace("state=", "state=x")  # this browser's cookie, another state
    assert (await bot.get(wrong, allow_redirects=False)).status == 400
    no_state = callback.split("&state=")[0] if "&state=" in callback else callback.split("state=")[0]
    assert (await bot.get(no_state, allow_redirects=False)).status == 400
    assert world.state.calls("POST", "/oauth/token") == []  # the code was never exchanged
    assert (await bot.get("/", allow_redirects=False)).status == 401


async def test_a_sign_in_while_serve_waits_for_its_database_is_a_clear_page(aiohttp_client, world, http_session,
                                                                             tmp_path):
    """`serve` started without its database reads no project from it (`bot.database_wait`): the callback says so,
    without exchanging the code, rather than failing on the database."""
    async def never() -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    settings = world.settings()
    settings = settings.model_copy(update={"server": settings.server.model_copy(update={"spool_dir": str(tmp_path)})})
    waiting = DatabaseWait(world.storage, never)
    bot = await aiohttp_client(make_app(settings, world.storage, Metrics(), spool=True, waiting=waiting))
    response = await sign_in(bot, http_session, "ann", world)
    text = await response.text()
    assert response.status == 503 and "waiting for its database" in text and "has not been reachable" in text
    assert f"{SESSION_COOKIE}=" not in response.headers.get("Set-Cookie", "")
    assert world.state.calls("POST", "/oauth/token") == []


async def test_a_sign_in_older_than_ten_minutes_is_refused(bot, world, http_session):
    world.state.browser_user = world.state.user("ann")
    callback = await consent(http_session, await start(bot))
    world.clock.advance(601)
    assert (await bot.get(callback, allow_redirects=False)).status == 400
    assert world.state.calls("POST", "/oauth/token") == []


async def test_a_declined_consent_signs_nobody_in(bot, world, http_session):
    world.state.browser_user, world.state.oauth_deny = world.state.user("ann"), True
    callback = await consent(http_session, await start(bot))
    response = await bot.get(callback, allow_redirects=False)
    assert response.status == 401 and "declined" in await response.text()
    assert world.state.calls("POST", "/oauth/token") == []


async def test_a_wrong_application_secret_is_a_clear_page_not_a_session(aiohttp_client, world, http_session):
    bot = await aiohttp_client(make_app(world.settings(secret="gloas-not-the-secret"), world.storage, Metrics()))
    response = await sign_in(bot, http_session, "ann", world)
    text = await response.text()
    assert response.status == 502 and "invalid_client" in text and "REVIEWBOT_GITLAB_APP_SECRET" in text
    assert "gloas-not-the-secret" not in text and world.app.secret not in text
    assert (await bot.get("/", allow_redirects=False)).status == 401


async def test_an_expired_or_tampered_session_is_refused(bot, world, http_session):
    assert (await sign_in(bot, http_session, "ann", world)).status == 303
    value = bot.session.cookie_jar.filter_cookies(bot.make_url("/"))[SESSION_COOKIE].value
    assert (await bot.get("/", allow_redirects=False)).status == 200
    payload, _, mac = value.rpartition(".")
    key = derive_key(world.app.secret)
    bot.session.cookie_jar.clear()  # from here on the session cookie is set by hand
    forged = [
        f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}",  # one character changed
        encode_session(derive_key("another-secret"), Session(2, "ann", frozenset(world.ids.values()),
                                                             int(NOW.timestamp()))),  # signed with another key
        f"{payload}.", "garbage", "",
    ]
    for bad in forged:
        bot.session.cookie_jar.update_cookies({SESSION_COOKIE: bad})
        assert (await bot.get("/", allow_redirects=False)).status == 401, bad
    everything = encode_session(key, Session(2, "ann", frozenset(world.ids.values()), int(NOW.timestamp())))
    bot.session.cookie_jar.update_cookies({SESSION_COOKIE: everything})  # what only the bot's key can sign
    assert (await bot.get(f"/projects/{world.ids['acme/secret']}")).status == 200
    bot.session.cookie_jar.update_cookies({SESSION_COOKIE: value})
    world.clock.advance(8 * 3600 + 1)
    assert (await bot.get("/", allow_redirects=False)).status == 401
    assert (await bot.get(f"/api/projects/{world.ids['acme/widgets']}/stats")).status == 401


async def test_signing_out_ends_the_gitlab_session(bot, world, http_session, aiohttp_client, sqlite_url):
    """Also for a copy of its cookie, in another process on the same database (a second `serve`): the cookie
    alone was good for 8 hours whatever its browser did."""
    assert (await sign_in(bot, http_session, "ann", world)).status == 303
    copied = bot.session.cookie_jar.filter_cookies(bot.make_url("/"))[SESSION_COOKIE].value
    storage = Storage(sqlite_url, clock=world.clock)
    try:
        other = await aiohttp_client(make_app(world.settings(), storage, Metrics()))
        other.session.cookie_jar.update_cookies({SESSION_COOKIE: copied})
        assert (await other.get("/", allow_redirects=False)).status == 200
        response = await bot.post("/signout", allow_redirects=False)
        assert response.status == 303 and any(c.startswith(f"{SESSION_COOKIE}=") for c in
                                               response.headers.getall("Set-Cookie"))
        assert (await bot.get("/", allow_redirects=False)).status == 401
        bot.session.cookie_jar.update_cookies({SESSION_COOKIE: copied})
        for client in (bot, other):
            assert (await client.get("/", allow_redirects=False)).status == 401
            assert (await client.get(f"/api/projects/{world.ids['acme/widgets']}/stats")).status == 401
        world.clock.advance(1)
        assert (await sign_in(other, http_session, "ann", world)).status == 303
        assert await listed(other) == {"acme/widgets", "acme/open"}
    finally:
        await storage.close()


async def test_ending_every_sign_in_ends_the_gitlab_sessions_too(bot, world, http_session):
    assert (await sign_in(bot, http_session, "ann", world)).status == 303
    assert (await bot.get("/", allow_redirects=False)).status == 200
    await world.storage.signouts.end_all()
    assert (await bot.get("/", allow_redirects=False)).status == 401
    world.clock.advance(1)
    assert (await sign_in(bot, http_session, "ann", world)).status == 303
    assert (await bot.get("/", allow_redirects=False)).status == 200


# --- the sign-in page, and the token beside GitLab sign-in -----------------------------------------------------
async def test_the_sign_in_page_offers_gitlab_and_the_token_form_only_with_a_token(bot, world, aiohttp_client):
    page = await bot.get("/projects/1?week=1", allow_redirects=False)
    text = await page.text()
    assert page.status == 401 and 'href="/auth/gitlab?next=%2Fprojects%2F1%3Fweek%3D1"' in text
    assert "Sign in with GitLab" in text and 'class="signin-form"' not in text
    assert (await bot.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status == 401  # no token configured
    assert "GitLab" in (await (await bot.get("/api/projects/1/stats")).json())["error"]
    both = await aiohttp_client(make_app(world.settings(token=True), world.storage, Metrics()))
    text = await (await both.get("/")).text()
    assert "Sign in with GitLab" in text and 'class="signin-form"' in text


async def test_the_token_still_sees_every_project_beside_gitlab_sign_in(aiohttp_client, world, http_session):
    bot = await aiohttp_client(make_app(world.settings(token=True), world.storage, Metrics()))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    text = await (await bot.get("/", headers=bearer)).text()
    assert all(path in text for path in world.ids)
    assert (await bot.get(f"/projects/{world.ids['acme/secret']}", headers=bearer)).status == 200
    assert (await sign_in(bot, http_session, "ann", world)).status == 303
    assert await listed(bot) == {"acme/widgets", "acme/open"}
    assert (await bot.get(f"/projects/{world.ids['acme/secret']}", headers=bearer)).status == 200  # Bearer decides
    assert (await bot.get("/", headers={"Authorization": "Bearer wrong-token-0123456789"})).status == 401


async def test_an_empty_token_never_signs_in(aiohttp_client, world):
    """The settings refuse `token = ""`; were one to get through, an empty Bearer, ?token= or a cookie signed
    with the empty key must not see every project."""
    settings = world.settings()
    settings = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(update={"token": SecretStr("")})})
    bot = await aiohttp_client(make_app(settings, world.storage, Metrics()))
    secret = world.ids["acme/secret"]
    assert (await bot.get("/", headers={"Authorization": "Bearer "})).status == 401
    assert (await bot.get(f"/api/projects/{secret}/stats?token=")).status == 401
    bot.session.cookie_jar.update_cookies({COOKIE: cookie_value(b"", int(NOW.timestamp()))})
    assert (await bot.get(f"/api/projects/{secret}/stats")).status == 401


async def test_gitlab_failing_on_one_project_is_a_clear_page_and_the_token_is_revoked(bot, world, http_session):
    """One project's check failing (a 500, a 429 past its retry) fails the sign-in with the 502 page naming the
    status, not a bare 500 from the check's task group, and GitLab's token is still revoked."""
    world.state.fail_path(f"/projects/{world.ids['acme/guest']}/merge_requests", 500)
    response = await sign_in(bot, http_session, "ann", world)
    text = await response.text()
    assert response.status == 502 and "Sign-in failed" in text and "(500)" in text, text
    assert response.headers["X-Frame-Options"] == "DENY"
    assert any(c.startswith(f"{FLOW_COOKIE}=") and "Max-Age=0" in c for c in response.headers.getall("Set-Cookie"))
    assert len(world.state.calls("POST", "/oauth/revoke")) == 1
    assert (await bot.get("/", allow_redirects=False)).status == 401


async def test_a_gitlab_slow_on_every_project_fails_the_sign_in_at_the_deadline(bot, world, http_session, monkeypatch):
    """Each check has its own timeout and one retry (about 20 s), 8 at a time: without a deadline for the
    whole sign-in, a GitLab hanging on its merge request lists held the page N / 8 x 20 s."""
    monkeypatch.setattr("bot.dashboard_gitlab.READ_DEADLINE", 1.0, raising=False)
    gate = world.state.hold_path("/merge_requests")
    try:
        started = asyncio.get_running_loop().time()
        response = await sign_in(bot, http_session, "ann", world)
        waited = asyncio.get_running_loop().time() - started
    finally:
        gate.set()
    text = await response.text()
    assert response.status == 504 and "more than 1 seconds" in text and waited < 5, (response.status, waited)
    assert len(world.state.calls("POST", "/oauth/revoke")) == 1


async def test_a_long_next_leads_home_and_still_signs_in(bot, world, http_session):
    """A `next` too long for the flow cookie (browsers drop cookies over 4096 bytes: the sign-in would be
    refused) is replaced by /."""
    long_next = "/projects/1?utm=" + "x" * 5000
    response = await bot.get("/auth/gitlab", params={"next": long_next}, allow_redirects=False)
    flow = next(c for c in response.headers.getall("Set-Cookie") if c.startswith(f"{FLOW_COOKIE}="))
    assert len(flow) < 4096, len(flow)
    response = await sign_in(bot, http_session, "ann", world, next_path=long_next)
    assert response.status == 303 and response.headers["Location"] == "/"
