"""The dashboard over real HTTP (pytest-aiohttp) on seeded storage, and in a real headless Chromium.

The seeded project (times in UTC, "now" is Wednesday 2025-03-19; the chart's weeks start on Mondays):

    MR  first suggested    shown (latest)   what people did                         accepted  merged reviewers
    7   02-25 (wk 02-24)   ann              ann final reviewer                      yes       yes    ann
    1   03-03 (wk 03-03)   ann bob cy       bob accepted, final reviewer            yes       yes    bob
    2   03-04 (wk 03-03)   bob ann          both passed over, dan final reviewer    no        yes    dan
    3   03-10 (wk 03-10)   ann cy (2nd)     cy assigned by the bot, then approved   yes       no     cy
    4   03-12 (wk 03-10)   ann              ann assigned by the bot only            awaiting  no     ann
    5   03-13 (wk 03-10)   bob cy           bob assigned, then removed              no        no     -
    6   03-17 (wk 03-17)   <img ...>        a thumbs up                             no        no     -
    8   2024-12-01         ann              (before the 12-week window)             -

4 has only the bot's own rows: it is awaiting the team, left out of the rate. So the weeks read 1/1, 1/2,
1/2 (and 1 awaiting), 0/1 (3 of 6 answered), and the merged ones give Top-1 1/3 and Top-3 2/3.

Where a hand-set term chose the first suggestion (a `moved_down_<term>` row beside the `suggested` one): on 7
the streak's choice ann was taken (bob not); on 1 the spreading's choice ann was not, bob (moved down) was; on
4 the spreading chose ann, whom only the bot assigned (not the team taking her); on 3 the duty lift chose ann
in the latest suggestion and cy (moved down) approved, and a streak row of the earlier suggestion there does
not count. Spreading 2 / 0 / 1, streak 1 / 1 / 0, duty 1 / 0 / 1 (chose, took first, took moved down).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from bot.backfill import BOT_PICK
from bot.config import Settings
from bot.dashboard import COOKIE, COOKIE_MAX_AGE, cookie_value, load_stats
from bot.dashboard_stats import NO_MODEL
from bot.metrics import Metrics
from bot.storage import Storage, utcnow
from bot.web import make_app
from graph.model import Change
from tests.bot_harness import handler_env  # noqa: F401 - fixture
from tests.storage_fixtures import FakeClock

TOKEN = "dashboard-token-0123456789abcdef"
GITLAB_TOKEN = "glpat-never-shown-0000"
WEBHOOK_SECRET = "webhook-secret-never-shown-1111"
EVIL = '<img src=x onerror="alert(1)">'
PROJECT, OTHER = 7, 9
NOW = datetime(2025, 3, 19, 12, 0, tzinfo=timezone.utc)


def make_settings(*, enabled: bool = True) -> Settings:
    dashboard = {"enabled": True, "token": TOKEN} if enabled else {}
    return Settings(gitlab={"url": "https://gitlab.example", "token": GITLAB_TOKEN},
                    webhook_secrets=[{"secret": WEBHOOK_SECRET}], dashboard=dashboard)


def at(clock: FakeClock, when: str) -> None:
    clock.now = datetime.fromisoformat(when).replace(tzinfo=timezone.utc)


async def suggest(storage: Storage, clock: FakeClock, when: str, iid: int, *people: str,
                  version: str = "v3") -> int:
    at(clock, when)
    return await storage.suggestions.add(PROJECT, iid, [{"username": p, "score": 1.0, "reasons": []} for p in people],
                                         version)


async def react(storage: Storage, clock: FakeClock, when: str, iid: int, person: str, label: str,
                suggestion: int | None) -> None:
    at(clock, when)
    await storage.feedback.record(PROJECT, iid, person, label, suggestion_id=suggestion)


async def moved(storage: Storage, clock: FakeClock, when: str, iid: int, suggestion: int, first: str, down: str,
                term: str) -> None:
    """The bot's rows when a hand-set term chose its first suggestion: whom it showed first, whom it moved down."""
    await react(storage, clock, when, iid, first, "suggested", suggestion)
    await react(storage, clock, when, iid, down, f"moved_down_{term}", suggestion)


async def seed(storage: Storage, clock: FakeClock) -> None:
    """The project of the module docstring, a second project without data or model, and two model versions."""
    await storage.projects.seen(PROJECT, "acme/widgets")
    await storage.projects.seen(OTHER, "acme/empty")
    await storage.models.save(PROJECT, "v2", b"old", backtest_score=0.55)
    await storage.models.save(PROJECT, "v3", b"new", backtest_score=0.612)
    await suggest(storage, clock, "2024-12-01T09:00", 8, "ann")
    s7 = await suggest(storage, clock, "2025-02-25T09:00", 7, "ann")
    await react(storage, clock, "2025-02-26T09:00", 7, "ann", "final_reviewer", s7)
    await moved(storage, clock, "2025-02-25T09:00", 7, s7, "ann", "bob", "streak")
    s1 = await suggest(storage, clock, "2025-03-03T10:00", 1, "ann", "bob", "cy")
    await moved(storage, clock, "2025-03-03T10:00", 1, s1, "ann", "bob", "spreading")
    await react(storage, clock, "2025-03-03T11:00", 1, "bob", "accepted", s1)
    await react(storage, clock, "2025-03-04T09:00", 1, "bob", "final_reviewer", s1)
    s2 = await suggest(storage, clock, "2025-03-04T10:00", 2, "bob", "ann")
    for person in ("bob", "ann"):
        await react(storage, clock, "2025-03-04T11:00", 2, person, "passed_over", s2)
    await react(storage, clock, "2025-03-05T09:00", 2, "dan", "final_reviewer", s2)
    s3 = await suggest(storage, clock, "2025-03-10T10:00", 3, "cy", "ann")
    await react(storage, clock, "2025-03-10T10:00", 3, "cy", "assigned", s3)
    await moved(storage, clock, "2025-03-10T10:00", 3, s3, "cy", "ann", "streak")
    s3b = await suggest(storage, clock, "2025-03-11T10:00", 3, "ann", "cy")
    await moved(storage, clock, "2025-03-11T10:00", 3, s3b, "ann", "cy", "duty")
    await react(storage, clock, "2025-03-12T10:00", 3, "cy", "approved", s3b)
    s4 = await suggest(storage, clock, "2025-03-12T11:00", 4, "ann")
    await moved(storage, clock, "2025-03-12T11:00", 4, s4, "ann", "bob", "spreading")
    await storage.feedback.record(PROJECT, 4, "ann", "assigned", suggestion_id=s4, value=BOT_PICK)
    s5 = await suggest(storage, clock, "2025-03-13T10:00", 5, "bob", "cy")
    await react(storage, clock, "2025-03-13T10:00", 5, "bob", "assigned", s5)
    await react(storage, clock, "2025-03-14T10:00", 5, "bob", "removed", s5)
    s6 = await suggest(storage, clock, "2025-03-17T10:00", 6, EVIL, version="v4-candidate")
    await react(storage, clock, "2025-03-17T11:00", 6, "zed", "thumbs_up", s6)
    clock.now = NOW


@pytest.fixture
async def seeded(sqlite_url: str) -> Storage:
    clock = FakeClock()
    storage = Storage(sqlite_url, clock=clock)
    await seed(storage, clock)
    yield storage
    await storage.close()


@pytest.fixture
async def client(aiohttp_client, seeded):
    return await aiohttp_client(make_app(make_settings(), seeded, Metrics()))


BEARER = {"Authorization": f"Bearer {TOKEN}"}


# --- off, sign-in --------------------------------------------------------------------------------------------
async def test_the_dashboard_is_off_by_default(aiohttp_client, seeded):
    client = await aiohttp_client(make_app(make_settings(enabled=False), seeded, Metrics()))
    for path in ("/", "/projects/7", "/api/projects/7/stats", "/dashboard/dashboard.js"):
        response = await client.get(path, headers=BEARER)
        assert response.status == 404, path
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize("headers, query, says", [
    ({}, "", "Sign-in needed"), ({"Authorization": "Bearer wrong-token-0123456789abcdef"}, "", "Token not accepted"),
    ({"Authorization": TOKEN}, "", "Sign-in needed"), ({}, "?token=wrong", "Token not accepted"),
    ({"Cookie": f"{COOKIE}={TOKEN}"}, "", "Sign-in needed"),
])
async def test_a_missing_or_wrong_token_gets_the_401_page(client, headers, query, says):
    """A token given and refused says so ("Token not accepted"); it met the first visit's page."""
    for path in ("/", "/projects/7"):
        response = await client.get(path + query, headers=headers, allow_redirects=False)
        text = await response.text()
        assert response.status == 401 and f"<h1>{says}</h1>" in text and "ann" not in text
        assert 'class="signin-form"' in text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "set-cookie" not in response.headers
    response = await client.get("/api/projects/7/stats" + query, headers=headers)
    assert response.status == 401 and "Bearer" in (await response.json())["error"]


async def test_a_wrong_token_is_refused_even_beside_a_valid_cookie(client):
    client.session.cookie_jar.update_cookies({COOKIE: cookie_value(TOKEN.encode(), int(NOW.timestamp()))})
    assert (await client.get("/")).status == 200
    assert (await client.get("/", headers={"Authorization": "Bearer nope"})).status == 401
    assert (await client.get("/?token=nope", allow_redirects=False)).status == 401
    assert (await client.get("/", headers={"Authorization": "Basic cHJveHk6cGFzcw=="})).status == 200  # a proxy's


async def test_a_cookie_expires_on_the_server_and_names_its_own_issue_time(client):
    now = int(NOW.timestamp())
    for issued, ok in ((now - 3600, True), (now - COOKIE_MAX_AGE - 1, False), (now + 3600, False)):
        client.session.cookie_jar.update_cookies({COOKIE: cookie_value(TOKEN.encode(), issued)})
        assert (await client.get("/", allow_redirects=False)).status == (200 if ok else 401), issued
    forged = f"{now}." + cookie_value(TOKEN.encode(), now - COOKIE_MAX_AGE - 1).partition(".")[2]
    client.session.cookie_jar.update_cookies({COOKIE: forged})
    assert (await client.get("/", allow_redirects=False)).status == 401
    other = cookie_value(b"another-token-0123456789abcdef", now)
    client.session.cookie_jar.update_cookies({COOKIE: other})
    assert (await client.get("/", allow_redirects=False)).status == 401


async def test_another_site_cannot_sign_a_user_in_or_out_and_a_broken_form_is_no_500(client):
    """A form on evil.example posting to /signout signed the user out (the cookie is not needed for that);
    a multipart body without its boundary was a 500 with a traceback in the log."""
    assert (await client.post("/signin", data={"token": TOKEN, "next": "/"}, allow_redirects=False)).status == 303
    here = str(client.make_url("/")).rstrip("/")
    for path in ("/signout", "/signin"):
        response = await client.post(path, data={"token": TOKEN}, headers={"Origin": "https://evil.example"},
                                     allow_redirects=False)
        assert response.status == 403 and "Set-Cookie" not in response.headers
    assert (await client.get("/", allow_redirects=False)).status == 200  # still signed in
    proxied = {"Origin": "https://bot.example", "X-Forwarded-Host": "bot.example"}  # a proxy that rewrote Host
    assert (await client.post("/signout", headers=proxied, allow_redirects=False)).status == 303
    response = await client.post("/signout", headers={"Origin": here}, allow_redirects=False)
    assert response.status == 303  # from the dashboard's own page
    for site, status in (("cross-site", 403), ("same-site", 403), ("same-origin", 303)):  # what browsers say
        response = await client.post("/signin", data={"token": TOKEN}, allow_redirects=False,
                                     headers={"Sec-Fetch-Site": site, "Origin": "null"})
        assert response.status == status, site
    broken = await client.post("/signin", data=b"xx", headers={"Content-Type": "multipart/form-data"},
                               allow_redirects=False)
    assert broken.status == 401 and "Sign-in needed" in await broken.text()


async def test_a_malformed_cookie_is_a_401_not_a_500(client):
    for value in ("\u00b2.0123abcd", "12x.0", ".", "9" * 13 + ".ab"):  # "²" passes str.isdigit(), not int()
        for path in ("/projects/7", "/api/projects/7/stats"):
            response = await client.get(path, headers={"Cookie": f"{COOKIE}={value}"}, allow_redirects=False)
            assert response.status == 401, (value, path)


async def test_signing_out_clears_the_cookie(client):
    response = await client.post("/signin", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    assert response.status == 303
    page = await client.get("/")
    assert page.status == 200 and 'action="/signout"' in await page.text()
    response = await client.post("/signout", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/"
    assert f"{COOKIE}=\"\"" in response.headers["Set-Cookie"] or f"{COOKIE}=;" in response.headers["Set-Cookie"]
    assert (await client.get("/", allow_redirects=False)).status == 401


async def test_a_cookie_copied_before_sign_out_is_refused_by_every_process(aiohttp_client, database_url, clock):
    """Sign-out only cleared the cookie of the browser that pressed it: a copy (another browser, a cookie jar
    taken from a shared machine) kept the dashboard open for the week the cookie lives. The sign-out is kept in
    the database, so another process on it (a second `serve`) refuses the copy at once too."""
    one, two = Storage(database_url, clock=clock), Storage(database_url, clock=clock)
    try:
        first = await aiohttp_client(make_app(make_settings(), one, Metrics()))
        second = await aiohttp_client(make_app(make_settings(), two, Metrics()))
        assert (await first.post("/signin", data={"token": TOKEN}, allow_redirects=False)).status == 303
        copied = first.session.cookie_jar.filter_cookies(first.make_url("/"))[COOKIE].value
        second.session.cookie_jar.update_cookies({COOKIE: copied})
        assert (await second.get("/", allow_redirects=False)).status == 200
        assert (await first.post("/signout", allow_redirects=False)).status == 303
        for client in (second, first):
            client.session.cookie_jar.update_cookies({COOKIE: copied})
            assert (await client.get("/", allow_redirects=False)).status == 401
            assert (await client.get("/api/projects/7/stats")).status == 401
        assert (await second.get("/", headers=BEARER)).status == 200  # the token itself is no sign-in to end
        clock.advance(1)
        assert (await second.post("/signin", data={"token": TOKEN}, allow_redirects=False)).status == 303
        assert (await second.get("/", allow_redirects=False)).status == 200  # a new sign-in is a new cookie
    finally:
        await one.close()
        await two.close()


async def test_two_sign_ins_in_the_same_second_are_two_cookies_and_one_sign_out_ends_one(aiohttp_client, database_url,
                                                                                         clock):
    """The token's cookie held only its issue second and a MAC: two people signing in with the token within one
    second got the same cookie, so one's sign-out ended the other's too. A random part tells them apart; a
    cookie of the earlier form (`issued.mac`) is still good, so an upgrade signs nobody out."""
    storage = Storage(database_url, clock=clock)
    try:
        one = await aiohttp_client(make_app(make_settings(), storage, Metrics()))
        two = await aiohttp_client(make_app(make_settings(), storage, Metrics()))
        for client in (one, two):
            assert (await client.post("/signin", data={"token": TOKEN}, allow_redirects=False)).status == 303
        cookies = [c.session.cookie_jar.filter_cookies(c.make_url("/"))[COOKIE].value for c in (one, two)]
        assert cookies[0] != cookies[1] and cookies[0].split(".")[0] == cookies[1].split(".")[0]
        assert (await one.post("/signout", allow_redirects=False)).status == 303
        assert (await two.get("/", allow_redirects=False)).status == 200
        one.session.cookie_jar.update_cookies({COOKIE: cookies[0]})
        assert (await one.get("/", allow_redirects=False)).status == 401
        earlier = cookie_value(TOKEN.encode(), int(clock.now.timestamp()))
        assert earlier.count(".") == 1
        one.session.cookie_jar.update_cookies({COOKIE: earlier})
        assert (await one.get("/", allow_redirects=False)).status == 200
        nonce = cookies[1].split(".")[1]
        for forged in (cookies[1].replace(nonce, "A" * 16), cookies[1].replace(nonce, nonce + "x"),
                       earlier.replace(".", f".{nonce}.")):
            one.session.cookie_jar.update_cookies({COOKIE: forged})
            assert (await one.get("/", allow_redirects=False)).status == 401, forged
    finally:
        await storage.close()


async def test_ending_every_sign_in_refuses_the_cookies_issued_until_then(aiohttp_client, database_url, clock):
    """`reviewbot signout-all` (tests/test_cli_signout.py) ends every cookie issued until it ran, in every
    process, and nothing after."""
    storage = Storage(database_url, clock=clock)
    try:
        client = await aiohttp_client(make_app(make_settings(), storage, Metrics()))
        now = int(clock.now.timestamp())
        for issued in (now - 3600, now):
            client.session.cookie_jar.update_cookies({COOKIE: cookie_value(TOKEN.encode(), issued)})
            assert (await client.get("/", allow_redirects=False)).status == 200
        await storage.signouts.end_all()
        for issued in (now - 3600, now):
            client.session.cookie_jar.update_cookies({COOKIE: cookie_value(TOKEN.encode(), issued)})
            assert (await client.get("/", allow_redirects=False)).status == 401, issued
        clock.advance(1)
        client.session.cookie_jar.update_cookies({COOKIE: cookie_value(TOKEN.encode(), now + 1)})
        assert (await client.get("/", allow_redirects=False)).status == 200
    finally:
        await storage.close()


async def test_a_sign_out_the_database_cannot_keep_keeps_the_cookie_and_says_so(client, seeded):
    """The sign-out must reach the database to end the cookie everywhere: when it cannot, the browser keeps its
    cookie (to try again) and the page says the database did not answer."""
    assert (await client.post("/signin", data={"token": TOKEN}, allow_redirects=False)).status == 303
    async with seeded.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE dashboard_signouts"))
    response = await client.post("/signout", allow_redirects=False)
    assert response.status == 503 and "database did not answer" in await response.text()
    assert "Set-Cookie" not in response.headers


async def test_the_token_in_the_address_once_sets_a_lax_httponly_cookie_and_leaves_the_address(client):
    response = await client.get(f"/projects/7?week=1&token={TOKEN}", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/projects/7?week=1"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    followed = await client.get("/projects/7")  # the test client keeps the cookie, as a browser does
    assert followed.status == 200 and "acme/widgets" in await followed.text()


async def test_the_token_cookie_is_secure_when_the_dashboards_address_is_https(aiohttp_client, seeded):
    """Behind a proxy that ends TLS and does not say so (no X-Forwarded-Proto), the request looks like plain http,
    and the cookie, as good as the token for a week, was set without Secure: a browser then sent it over any
    http:// address of the host. `public_url` names the scheme people use, as it does for GitLab sign-in's
    cookies."""
    settings = Settings(gitlab={"url": "https://gitlab.example", "token": GITLAB_TOKEN},
                        webhook_secrets=[{"secret": WEBHOOK_SECRET}],
                        dashboard={"enabled": True, "token": TOKEN, "public_url": "https://bot.example"})
    client = await aiohttp_client(make_app(settings, seeded, Metrics()))
    signed = await client.post("/signin", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    linked = await client.get(f"/?token={TOKEN}", allow_redirects=False)
    for response in (signed, linked):
        assert response.status == 303 and "Secure" in response.headers["Set-Cookie"]
    plain = await (await aiohttp_client(make_app(make_settings(), seeded, Metrics()))).get(
        f"/?token={TOKEN}", allow_redirects=False)
    assert plain.status == 303 and "Secure" not in plain.headers["Set-Cookie"]  # http: the cookie must come back


async def test_the_sign_in_form_posts_the_token_and_goes_back_only_to_this_site(client):
    page = await (await client.get("/projects/7?week=1")).text()
    assert '<form class="signin-form" method="post" action="/signin">' in page
    assert '<input type="hidden" name="next" value="/projects/7?week=1">' in page
    wrong = await client.post("/signin", data={"token": "nope", "next": "/projects/7"}, allow_redirects=False)
    assert wrong.status == 401 and "set-cookie" not in wrong.headers
    said = await wrong.text()
    assert 'name="next" value="/projects/7"' in said and "<title>Token not accepted" in said
    assert "<h1>Token not accepted</h1>" in said and "check it against the [dashboard] token setting" in said
    for asked, location in (("/projects/7?week=1", "/projects/7?week=1"), ("//evil.example/", "/"),
                            ("https://evil.example/", "/"), ("/\\evil.example", "/"), ("/\t/evil.example/", "/"),
                            ("/\n/evil.example/", "/"), ("/x\\@evil.example", "/")):
        response = await client.post("/signin", data={"token": TOKEN, "next": asked}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == location
        assert "HttpOnly" in response.headers["Set-Cookie"] and TOKEN not in response.headers["Set-Cookie"]
    assert (await client.get("/projects/7")).status == 200


async def test_bearer_works_and_every_page_carries_the_security_headers(client):
    for path in ("/", "/projects/7", "/api/projects/7/stats", "/dashboard/dashboard.js"):
        response = await client.get(path, headers=BEARER)
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["Referrer-Policy"] == "same-origin"
    unknown = await client.get("/projects/12345", headers=BEARER)
    assert unknown.status == 404 and "first webhook event" in await unknown.text()
    assert "script-src 'self'" in unknown.headers["Content-Security-Policy"]


HTTPS = Settings(gitlab={"url": "https://gitlab.example", "token": GITLAB_TOKEN},
                 webhook_secrets=[{"secret": WEBHOOK_SECRET}],
                 dashboard={"enabled": True, "token": TOKEN, "public_url": "https://bot.example"})


async def test_a_dashboard_at_an_https_address_tells_browsers_to_keep_to_https(aiohttp_client, seeded):
    """HSTS: a browser that has seen the dashboard over https never again sends its cookie over plain http (a
    link to http://, a network that strips TLS). For this host only (no includeSubDomains, no preload: other
    sites may share the domain), and never when the dashboard's address is http."""
    client = await aiohttp_client(make_app(HTTPS, seeded, Metrics()))
    asked = [client.get(path, headers=BEARER) for path in ("/", "/projects/7", "/projects/12345",
                                                            "/api/projects/7/stats", "/dashboard/dashboard.css")]
    asked += [client.get("/"), client.get("/no-such-page"), client.post("/signout", allow_redirects=False),
              client.post("/signin", data={"token": TOKEN}, allow_redirects=False)]
    for response in [await request for request in asked]:
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000", response.url
    http = HTTPS.model_copy(update={"dashboard": HTTPS.dashboard.model_copy(update={"public_url": "http://bot.test"})})
    for settings in (make_settings(), http):
        plain = await aiohttp_client(make_app(settings, seeded, Metrics()))
        for response in (await plain.get("/", headers=BEARER), await plain.get("/")):
            assert "Strict-Transport-Security" not in response.headers


async def test_the_not_found_page_links_back_to_the_projects(client):
    """A project address that names nothing offers the way back to the list, not only the header's brand."""
    unknown = await client.get("/projects/12345", headers=BEARER)
    page = await unknown.text()
    assert unknown.status == 404 and '<a href="/">Back to the projects</a>' in page
    listed = await client.get(page.split('<a href="')[-1].split('"')[0], headers=BEARER)
    assert listed.status == 200 and "<title>Projects" in await listed.text()
    assert (await client.get("/api/projects/12345/stats", headers=BEARER)).status == 404
    for path in ("/projects/99999999999999999999999", "/api/projects/99999999999999999999999/stats"):
        assert (await client.get(path, headers=BEARER)).status == 404, path  # not a 500 from the database
    assert (await client.get("/favicon.ico")).status == 204  # not a 404 in every first visit's console


async def test_no_page_shows_a_secret(client):
    for path in ("/", "/projects/7", "/projects/9", "/api/projects/7/stats", "/?token=x"):
        text = await (await client.get(path, headers=BEARER if "token" not in path else {})).text()
        for secret in (TOKEN, GITLAB_TOKEN, WEBHOOK_SECRET):
            assert secret not in text, (path, secret)


# --- numbers -------------------------------------------------------------------------------------------------
def week(day: str, suggested: int, accepted: int, pending: int = 0) -> dict:
    return {"week": day, "suggested": suggested, "accepted": accepted, "pending": pending,
            "rate": round(accepted / (suggested - pending), 4) if suggested - pending else None}


def mr(iid, day, top3, reviewers, merged, top1_hit, top3_hit, closed=False) -> dict:
    return {"mr_iid": iid, "suggested_at": day, "top1": top3[0] if top3 else None, "top3": top3,
            "reviewers": reviewers, "merged": merged, "closed": closed, "top1_hit": top1_hit, "top3_hit": top3_hit}


def person(name, open_, suggested, top1, reviewing, approved) -> dict:
    return {"person": name, "open": open_, "suggested": suggested, "top1": top1, "reviewing": reviewing,
            "approved": approved}


def terms(term, changed, took_first, took_moved_down) -> dict:
    return {"term": term, "changed": changed, "took_first": took_first, "took_moved_down": took_moved_down}


async def test_the_json_stats_are_exact(client):
    stats = await (await client.get("/api/projects/7/stats", headers=BEARER)).json()
    assert len(stats["weeks"]) == 12 and stats["weeks"][0]["week"] == "2024-12-30"
    assert [w for w in stats["weeks"] if w["suggested"]] == [
        week("2025-02-24", 1, 1), week("2025-03-03", 2, 1), week("2025-03-10", 3, 1, 1), week("2025-03-17", 1, 0)]
    assert (stats["suggested"], stats["accepted"], stats["pending"], stats["acceptance"]) == (7, 3, 1, 0.5)
    assert stats["history"] == {"changes": 0, "import_done": False}
    assert (stats["judged"], stats["top1"], stats["top3"]) == (3, 0.3333, 0.6667)
    assert stats["recent"] == [
        mr(6, "2025-03-17T10:00:00Z", [EVIL], [], False, None, None),
        mr(5, "2025-03-13T10:00:00Z", ["bob", "cy"], [], False, None, None),
        mr(4, "2025-03-12T11:00:00Z", ["ann"], ["ann"], False, None, None),
        mr(3, "2025-03-10T10:00:00Z", ["ann", "cy"], ["cy"], False, None, None),
        mr(2, "2025-03-04T10:00:00Z", ["bob", "ann"], ["dan"], True, False, False),
        mr(1, "2025-03-03T10:00:00Z", ["ann", "bob", "cy"], ["bob"], True, False, True),
        mr(7, "2025-02-25T09:00:00Z", ["ann"], ["ann"], True, True, True),
    ]
    assert stats["load"] == [person("ann", 1, 5, 4, 1, 0), person("cy", 1, 3, 1, 1, 1), person("bob", 0, 3, 2, 2, 0),
                             person("dan", 0, 0, 0, 1, 0), person(EVIL, 0, 1, 1, 0, 0)]
    assert stats["model"] == {"version": "v3", "backtest_score": 0.612, "trained_at": "2025-03-01T12:00:00Z",
                              "serving": "v4-candidate"}
    assert stats["model_label"] == "v3" and stats["generated_at"] == "2025-03-19T12:00:00Z"
    assert stats["terms"] == [terms("spreading", 2, 0, 1), terms("streak", 1, 1, 0), terms("duty", 1, 0, 1)]


@pytest.mark.postgres
async def test_postgresql_gives_the_same_stats(client, postgres_url):
    clock = FakeClock()
    storage = Storage(postgres_url, clock=clock)
    try:
        await seed(storage, clock)
        stats = await load_stats(storage, await storage.projects.get(PROJECT), now=NOW)
    finally:
        await storage.close()
    assert stats.model_dump(mode="json") == await (await client.get("/api/projects/7/stats", headers=BEARER)).json()


async def test_an_mr_first_suggested_before_the_window_keeps_its_week_and_its_reviewers(sqlite_url):
    """Pushed again in the window, it is read whole: not a new MR of this week, ann still its reviewer;
    one merged (in the history) and one closed hold no open review."""
    from graph.model import Change

    clock = FakeClock()
    storage = Storage(sqlite_url, clock=clock)
    try:
        s = await suggest(storage, clock, "2024-12-20T10:00", 20, "ann")
        await react(storage, clock, "2024-12-21T10:00", 20, "ann", "accepted", s)
        await suggest(storage, clock, "2025-03-18T10:00", 20, "ann", "bob")
        for iid, person in ((21, "cy"), (22, "dan")):
            s = await suggest(storage, clock, "2025-03-11T10:00", iid, person)
            await react(storage, clock, "2025-03-11T11:00", iid, person, "assigned", s)
        await react(storage, clock, "2025-03-12T10:00", 22, "ann", "closed", s)
        await storage.history.upsert(PROJECT, [Change("!21", 1741700000, "eve", (), ("a.c",))])
        await storage.projects.seen(PROJECT, "acme/widgets")
        stats = await load_stats(storage, await storage.projects.get(PROJECT), now=NOW)
    finally:
        await storage.close()
    assert [(w.week.isoformat(), w.suggested) for w in stats.weeks if w.suggested] == [("2025-03-10", 2)]
    rows = {r.mr_iid: r for r in stats.recent}
    assert rows[20].suggested_at.date().isoformat() == "2024-12-20" and rows[20].reviewers == ["ann"]
    assert (rows[21].merged, rows[22].closed) == (True, True)
    assert {r.person: r.open for r in stats.load} == {"ann": 1, "bob": 0, "cy": 0, "dan": 0}


async def test_an_approval_taken_back_leaves_the_open_reviews_gitlab_shows(handler_env):
    """Real approval hooks from the simulator through the handlers: bob, the reviewer ann asked for, approves
    and takes it back (GitLab still lists him); cy, nobody's reviewer, does the same (GitLab shows her nowhere).
    cy stayed an actual reviewer and an open review for as long as the merge request was open."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    for person in (env.tiny.bob, env.tiny.cy):
        env.state.approve(mr, person)
        env.state.unapprove(mr, person)
    await env.run()
    stats = await load_stats(env.storage, await env.storage.projects.get(env.pid), now=utcnow())
    [row] = [r for r in stats.recent if r.mr_iid == mr.iid]
    on_gitlab = sorted(env.state.user(i).username for i in mr.reviewer_ids)
    assert row.reviewers == on_gitlab == ["bob"] and not mr.approvals
    assert {r.person: r.open for r in stats.load if r.open} == {"bob": 1}


async def test_the_reviewers_a_roulette_asks_are_not_the_teams_on_the_dashboard(handler_env):
    """A reviewer roulette (a project access token's script) asks bob, suggested first, and dee: the team took
    no suggestion and chose nobody, as with the bot's own requests. The merge request awaits the team, and
    neither counts as reviewing it, though both are open reviews as GitLab lists them; dee's submitted review
    is the team's answer."""
    env = await handler_env()
    robot = env.state.add_user(f"project_{env.pid}_bot_5e1f")
    env.state.add_member(env.tiny.project, robot, 40)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.dee], by=robot)
    await env.run()
    project = await env.storage.projects.get(env.pid)
    stats = await load_stats(env.storage, project, now=utcnow())
    assert (stats.suggested, stats.accepted, stats.pending) == (1, 0, 1)
    assert {r.person: (r.open, r.reviewing) for r in stats.load if r.open} == {"bob": (1, 0), "dee": (1, 0)}
    env.state.submit_review(mr, env.tiny.dee, "reviewed")
    await env.run()
    stats = await load_stats(env.storage, project, now=utcnow())
    assert (stats.suggested, stats.accepted, stats.pending) == (1, 0, 0)


async def test_the_project_page_shows_the_numbers_and_escapes_names(client):
    text = await (await client.get("/projects/7", headers=BEARER)).text()
    assert "3 of 6 merge requests the team responded to; 1 awaiting the team" in text
    assert ">50%<" in text and ">33%<" in text and ">67%<" in text
    assert ">v3<" in text and "latest suggestion by v4-candidate" in text
    assert "Top-1 on the last merged MRs (up to 200, kept out of its training): 61%" in text
    assert "backtest score" not in text and "0.612" not in text  # a fraction beside the % cards, unexplained
    assert 'href="https://gitlab.example/acme/widgets/-/merge_requests/3"' in text
    assert "<img" not in text and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert 'data-stats="/api/projects/7/stats"' in text and '<script src="/dashboard/dashboard.js"' in text
    section = text[text.index('<section id="terms">'):]
    assert re.search(r"<td>Load spreading</td><td class=\"num\">2</td><td class=\"num\">0</td>"
                     r"<td class=\"num\">1</td>", section)


async def test_the_overview_lists_every_project_and_its_model(client):
    text = await (await client.get("/", headers=BEARER)).text()
    assert '<a href="/projects/7">acme/widgets</a>' in text and '<a href="/projects/9">acme/empty</a>' in text
    assert NO_MODEL in text and ">50%<" in text and "no history imported yet" in text
    other = await (await client.get("/projects/9", headers=BEARER)).text()
    assert NO_MODEL in other and "has not suggested anyone" in other


async def test_the_page_tells_an_empty_project_from_an_imported_one(aiohttp_client, seeded):
    """Both read "history-trained (no stored model)": nothing said whether any history had been imported."""
    client = await aiohttp_client(make_app(make_settings(), seeded, Metrics()))
    empty = await (await client.get("/projects/9", headers=BEARER)).text()
    assert "<div class=\"label\">History</div>" in empty and ">none<" in empty and "no history imported yet" in empty
    await seeded.history.upsert(PROJECT, [Change(f"!{i}", 1_700_000_000 + i, "ann", ("bob",), ("a.c",))
                                          for i in range(1200)])
    importing = await (await client.get("/projects/7", headers=BEARER)).text()
    assert ">1,200 merged MRs<" in importing and "import not finished yet" in importing
    await seeded.projects.set_backfill(PROJECT, cursor=None, page=None, done=True)
    done = await (await client.get("/projects/7", headers=BEARER)).text()
    assert ">1,200 merged MRs<" in done and ">import finished<" in done
    overview = await (await client.get("/", headers=BEARER)).text()
    assert "1,200 merged MRs; import finished" in overview and "no history imported yet" in overview
    stats = await (await client.get("/api/projects/7/stats", headers=BEARER)).json()
    assert stats["history"] == {"changes": 1200, "import_done": True}


def row_reads(storage: Storage) -> list[str]:
    """The statements reading feedback rows (not the counts the overview checks first), as they run."""
    statements: list[str] = []
    sa.event.listen(storage.engine.sync_engine, "before_cursor_execute",
                    lambda *args: statements.append(args[2]) if "feedback.label" in args[2] else None)
    return statements


async def test_the_overview_reads_a_projects_rows_again_only_once_they_changed(aiohttp_client, database_url):
    """Each load computed every project from all its rows (4.9 s for 5 projects of 3,000 merge requests).
    Now a project's numbers are kept with what they were computed from (its rows' counts and largest ids,
    its active model, the chart's first week), read from the database at each load: a row stored or a
    model activated by another process shows at once, and only that project is read again."""
    clock = FakeClock()
    storage, other_process = Storage(database_url, clock=clock), Storage(database_url, clock=clock)
    try:
        await seed(storage, clock)
        at(clock, "2025-03-18T10:00")
        await storage.suggestions.add(OTHER, 1, [{"username": "eve"}], "v1")
        clock.now = NOW
        client = await aiohttp_client(make_app(make_settings(), storage, Metrics()))
        reads = row_reads(storage)

        async def overview() -> tuple[str, int]:
            before = len(reads)
            text = await (await client.get("/", headers=BEARER)).text()
            row = re.search(r'<a href="/projects/9">acme/empty</a></span></td><td class="num">(\d+)</td>.*?</tr>', text)
            return row.group(0), len(reads) - before

        first, read = await overview()
        assert '<td class="num">1</td>' in first and NO_MODEL in first and read == 2
        assert await overview() == (first, 0)
        sid = await other_process.suggestions.add(OTHER, 2, [{"username": "eve"}], "v1")
        await other_process.feedback.record(OTHER, 2, "eve", "accepted", suggestion_id=sid)
        second, read = await overview()
        assert '<td class="num">2</td><td class="num">100%</td><td class="num">1</td>' in second and read == 1
        await other_process.models.save(OTHER, "v9", b"model")
        third, read = await overview()
        assert ">v9<" in third and read == 1
        page = await (await client.get("/projects/9", headers=BEARER)).text()
        assert "1 of 1 merge requests the team responded to; 1 awaiting the team" in page and ">v9<" in page
        assert await overview() == (third, 0)
        await other_process.projects.set_backfill(OTHER, cursor=None, page=None, done=True)  # the import ends
        fourth, read = await overview()
        assert "import finished: no merged MR found" in fourth and read == 1
        assert await overview() == (fourth, 0)
        clock.now = datetime(2025, 3, 24, 0, 0, tzinfo=timezone.utc)  # a new week: the chart moves on
        assert (await overview())[1] == 2
    finally:
        await storage.close()
        await other_process.close()


async def test_a_project_path_from_gitlab_is_escaped(aiohttp_client, seeded):
    await seeded.projects.seen(OTHER, 'evil/"><script>alert(1)</script>')
    client = await aiohttp_client(make_app(make_settings(), seeded, Metrics()))
    for path in ("/", "/projects/9"):
        text = await (await client.get(path, headers=BEARER)).text()
        assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


# --- a real browser ------------------------------------------------------------------------------------------
def chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
    "--no-default-browser-check", "--mute-audio", "--virtual-time-budget=5000",
)


async def run_chromium(url: str, profile: Path, *extra: str) -> str:
    """Chromium's DOM after the page's scripts ran (`--dump-dom`), or its screenshot with `--screenshot=`."""
    proc = await asyncio.create_subprocess_exec(
        chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_a_real_browser_signs_in_and_the_script_draws_the_chart(aiohttp_server, seeded, tmp_path):
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    dom = await run_chromium(f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}", tmp_path / "profile",
                             "--dump-dom", "--window-size=1200,1600")
    holder = re.search(r'<div class="chart" id="acceptance-chart"[^>]*>', dom)
    assert holder and 'data-state="drawn"' in holder.group(0) and 'data-bars="4"' in holder.group(0), dom[:3000]
    bars = re.findall(r'<rect class="bar"[^>]*>', dom)
    assert len(bars) == 4
    heights = [float(re.search(r'height="([\d.]+)"', b).group(1)) for b in bars]
    assert heights[0] > heights[1] == heights[2] > heights[3] == 1  # 100 %, 50 %, 50 % (1 awaiting), 0 %
    values = re.findall(r'<text class="value"[^>]*>([^<]*)</text>', dom)
    assert values == ["100%", "50%", "50%", "0%"]
    assert re.findall(r'<text class="count"[^>]*>([^<]*)</text>', dom)[-4:] == ["1/1", "1/2", "1/2", "0/1"]
    assert ("Week of 2025-03-10: 1 of 2 merge requests the team responded to took a suggested reviewer (50%); "
            "1 awaiting the team") in dom
    assert ">v3<" in dom and "<img" not in dom


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_a_browser_without_the_token_sees_no_data(aiohttp_server, seeded, tmp_path):
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    dom = await run_chromium(f"http://127.0.0.1:{server.port}/projects/7", tmp_path / "profile", "--dump-dom")
    assert "Sign-in needed" in dom and "acme/widgets" not in dom and "acceptance-chart" not in dom


async def in_chromium(profile: Path, url: str, script: str,
                      until: str = "!document.querySelector('form.signin-form') || document.title.includes('Sign-in')",
                      *, width: int | None = None) -> tuple[str, str]:
    """Open `url` in Chromium driven over DevTools, run `script` in the page (submit a form, click), and
    return the title and text of the page it leads to (once `until` holds there): forms and links as a person
    uses them, with the headers (`Origin`, `Sec-Fetch-Site`) a browser really sends. `width`: a phone's
    viewport of that many CSS pixels."""
    flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time")]
    proc = await asyncio.create_subprocess_exec(chromium(), *flags, f"--user-data-dir={profile}",
                                                "--remote-debugging-port=0", "about:blank",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    try:
        deadline = time.monotonic() + 90  # polled: Chromium starts in a second alone, far slower on a loaded machine
        while time.monotonic() < deadline and not (port_file.exists() and port_file.read_text().strip()):
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            pages = await (await http.get(f"http://127.0.0.1:{port}/json")).json()
            page = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
            async with http.ws_connect(page) as ws:
                calls = itertools.count(1)

                async def call(method: str, **params) -> dict:
                    n = next(calls)
                    await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                    while (message := json.loads((await ws.receive(timeout=30)).data)).get("id") != n:
                        pass
                    return message.get("result", {})  # an evaluation caught by a navigation answers an error

                async def evaluate(expression: str):
                    return (await call("Runtime.evaluate", expression=expression, returnByValue=True)).get(
                        "result", {}).get("value")

                async def settled(check: str) -> None:
                    deadline = time.monotonic() + 60  # polled (the assertions after it fail if it never holds)
                    while time.monotonic() < deadline:
                        if await evaluate(f"document.readyState === 'complete' && ({check})"):
                            return
                        await asyncio.sleep(0.1)

                if width is not None:
                    await call("Emulation.setDeviceMetricsOverride", width=width, height=800, deviceScaleFactor=1,
                               mobile=True)
                await call("Page.navigate", url=url)
                await settled("document.forms.length > 0")
                await evaluate(f"{script}; 1")
                await settled(until)
                await asyncio.sleep(0.5)
                return await evaluate("document.title"), await evaluate("document.body.innerText")
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_the_sign_in_form_and_the_sign_out_button_work_in_a_real_browser(aiohttp_server, seeded, tmp_path):
    """With `Referrer-Policy: no-referrer` Chromium posts the page's own forms with `Origin: null`, which the
    cross-site check refused (403): the form and the button never worked outside the test client."""
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    here = f"http://127.0.0.1:{server.port}"
    title, text = await in_chromium(tmp_path / "in", f"{here}/projects/7",
                                    f"document.getElementById('token').value = {json.dumps(TOKEN)};"
                                    "document.querySelector('form.signin-form').submit()")
    assert "acme/widgets" in title, text[:300]
    title, text = await in_chromium(tmp_path / "out", f"{here}/projects/7?token={TOKEN}",
                                    "document.querySelector('form.signout button').click()")
    assert "Sign-in needed" in title, text[:300]
    title, text = await in_chromium(tmp_path / "typo", f"{here}/projects/7",
                                    "document.getElementById('token').value = 'not-the-token';"
                                    "document.querySelector('form.signin-form').submit()",
                                    until="document.title.includes('Token not accepted')")
    assert "Token not accepted" in title and "check it against" in text and "acme/widgets" not in text, text[:300]


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_a_token_link_followed_from_another_site_signs_in(aiohttp_server, seeded, tmp_path):
    """A `?token=` link shared in chat or mail: with a Strict cookie the redirect that drops the token from
    the address arrived without it (a navigation another site started), and the page asked to sign in."""
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    link = f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}"

    async def chat(request: web.Request) -> web.Response:
        return web.Response(text=f'<!doctype html><form></form><a href="{link}">the dashboard</a>',
                            content_type="text/html")

    other = web.Application()
    other.router.add_get("/", chat)
    elsewhere = await aiohttp_server(other)
    title, text = await in_chromium(tmp_path / "profile", f"http://localhost:{elsewhere.port}/",
                                    "document.querySelector('a').click()", until=f"location.port === '{server.port}'")
    assert "acme/widgets" in title and "Sign-in needed" not in text, text[:600]


async def test_the_tables_say_how_many_rows_they_leave_out(aiohttp_client, seeded):
    """A team of 56 saw the 30 busiest in the load table, and 63 merge requests the 20 newest, with nothing
    saying that anyone or anything was left out: a lead looking for a person concluded they had no load."""
    clock = seeded.suggestions.clock
    for k in range(56):
        sid = await suggest(seeded, clock, f"2025-03-18T{k % 24:02d}:{k // 24:02d}", 100 + k, f"dev{k:02d}")
        await react(seeded, clock, f"2025-03-18T{k % 24:02d}:{k // 24 + 10:02d}", 100 + k, f"dev{k:02d}", "accepted",
                    sid)
    clock.now = NOW
    client = await aiohttp_client(make_app(make_settings(), seeded, Metrics()))
    text = await (await client.get("/projects/7", headers=BEARER)).text()
    assert text.count('<tr><td><span class="person">') == 30
    assert "The 30 busiest of 61 people." in text
    assert "The 20 newest of 63 merge requests." in text
    small = await (await client.get("/projects/9", headers=BEARER)).text()
    assert "busiest of" not in small and "newest of" not in small
    stats = await (await client.get("/api/projects/7/stats", headers=BEARER)).json()
    assert (len(stats["load"]), stats["load_total"], len(stats["recent"]), stats["recent_total"]) == (30, 61, 20, 63)


async def test_a_project_without_suggestions_says_so_instead_of_empty_figures(client):
    """A project the bot has suggested no one on read "0 of 0 merge requests the team responded to", "the
    reviewers of 0 merged MRs" and drew a chart of twelve empty weeks labelled 0/0."""
    text = await (await client.get("/projects/9", headers=BEARER)).text()
    assert "0 of 0" not in text and "of 0 merged MRs" not in text
    assert "no merge request suggested on in the last 12 weeks" in text
    assert text.count("no merged merge request with a suggestion yet") == 2
    assert 'id="acceptance-chart"' not in text and "Nothing to chart yet" in text
    busy = await (await client.get("/projects/7", headers=BEARER)).text()
    assert 'id="acceptance-chart"' in busy and "Nothing to chart yet" not in busy


async def test_a_project_nobody_answered_yet_says_so(client, seeded):
    await seeded.suggestions.add(OTHER, 1, [{"username": "eve", "score": 1.0, "reasons": []}], "v1")
    text = await (await client.get("/projects/9", headers=BEARER)).text()
    assert "1 awaiting the team, none responded to yet" in text and "0 of 0" not in text
    # the chart drew twelve empty weeks labelled 0/0 (the demo's first page): the one MR awaits the team
    assert 'id="acceptance-chart"' not in text
    assert "Nothing to chart yet: 1 merge request awaiting the team, none responded to yet." in text


async def test_without_javascript_the_weekly_numbers_show_open_and_the_chart_has_a_legend(client):
    """Without JavaScript the chart's box read "Drawing the chart…" above a 200-pixel blank band for ever,
    the numbers folded away; and nothing said what the "44/50" under each week counted."""
    text = await (await client.get("/projects/7", headers=BEARER)).text()
    chart = text[text.index("<h2>Acceptance rate per week</h2>"):text.index("</section>", text.index("Acceptance"))]
    assert "Drawing the chart" not in chart and 'data-state="loading"' not in chart
    assert "<noscript>" in chart and "The chart needs JavaScript: the numbers are in the table below." in chart
    assert '<details id="acceptance-numbers" open>' in chart and "<th>Week of</th>" in chart
    assert "Under each week: accepted / responded to." in chart and 'id="acceptance-legend"' in chart


async def test_the_model_card_says_in_words_what_made_the_latest_suggestion(client, seeded):
    """It read "latest suggestion by default@300/prior": the recommender, its graph's merged MRs and the
    model, in the bot's own notation."""
    await seeded.suggestions.add(PROJECT, 30, [{"username": "ann", "score": 1.0, "reasons": []}], "default@1200/v3")
    text = await (await client.get("/projects/7", headers=BEARER)).text()
    assert "latest suggestion ranked from 1,200 merged MRs with model v3 (default@1200/v3)" in text
    await seeded.suggestions.add(OTHER, 1, [{"username": "ann", "score": 1.0, "reasons": []}], "default@12/prior")
    text = await (await client.get("/projects/9", headers=BEARER)).text()
    assert "latest suggestion ranked from 12 merged MRs with the prior model (default@12/prior)" in text


def contrast(one: str, other: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` / `#rgb` colours."""
    def luminance(colour: str) -> float:
        hex_ = colour.lstrip("#")
        hex_ = "".join(c * 2 for c in hex_) if len(hex_) == 3 else hex_
        lin = [(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
               for c in (int(hex_[i:i + 2], 16) / 255 for i in (0, 2, 4))]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_text_colour_keeps_its_contrast_in_light_and_dark():
    """In dark mode the sign-in button's white text sat on the light blue accent at 2.7:1 (WCAG AA asks 4.5)."""
    from bot.dashboard_html import asset

    css = asset("dashboard.css")
    light = dict(re.findall(r"--([\w-]+): (#[0-9a-f]+)", css[:css.index("@media (prefers-color-scheme: dark)")]))
    dark = light | dict(re.findall(r"--([\w-]+): (#[0-9a-f]+)", css[css.index("@media (prefers-color-scheme"):
                                                                      css.index("* {")]))
    assert "color: #fff" not in css and "var(--on-accent)" in css
    # a <code> in a hint was the hint's muted grey on the accent's soft ground: 4.2:1 in light mode
    assert re.search(r"\ncode \{ background: var\(--accent-soft\); color: var\(--ink\);", css)
    pairs = [(text, ground) for ground in ("card", "bg") for text in ("ink", "muted", "good", "bad")]
    pairs += [("accent", "card"), ("on-accent", "accent"), ("ink", "accent-soft")]
    for scheme, colours in (("light", light), ("dark", dark)):
        low = {pair: round(contrast(colours[pair[0]], colours[pair[1]]), 2) for pair in pairs}
        assert min(low.values()) >= 4.5, (scheme, {pair: ratio for pair, ratio in low.items() if ratio < 4.5})


LONG_PATH = "platform-engineering-and-developer-productivity/internal-tooling/deployment-orchestration-pipeline"


async def measured(tmp_path: Path, url: str, measure: str, *, width: int) -> dict:
    """`measure` (a JavaScript expression) evaluated on the page at `url` once its chart is drawn, on a
    viewport `width` CSS pixels wide."""
    script = (f"new Promise(function wait(done) {{ const c = document.getElementById('acceptance-chart');"
              f"  if (!c || c.dataset.state !== 'loading') done(); else setTimeout(() => wait(done), 50); }})"
              f".then(() => {{ document.title = 'measured ' + JSON.stringify({measure}); }})")
    title, _ = await in_chromium(tmp_path, url, script, until="document.title.startsWith('measured ')", width=width)
    return json.loads(title.removeprefix("measured "))


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_a_long_project_path_leaves_the_header_one_line_and_sign_out_whole(aiohttp_server, seeded, tmp_path):
    """The header's crumb repeated a long path in full: on a phone the header grew ten lines tall, and at any
    width the Sign out button was squeezed onto two lines ("Sign / out")."""
    await seeded.projects.seen(PROJECT, LONG_PATH)
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    url = f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}"
    for width in (375, 1280):
        sizes = await measured(tmp_path / f"w{width}", url, width=width, measure=(
            "{header: document.querySelector('header.top').getBoundingClientRect().height,"
            " button: document.querySelector('form.signout button').getBoundingClientRect().height,"
            " wide: document.documentElement.scrollWidth}"))
        assert sizes["header"] < 60 and sizes["button"] < 32 and sizes["wide"] <= width, (width, sizes)


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_usernames_in_the_tables_break_only_where_they_must(aiohttp_server, seeded, tmp_path):
    """Names could break between any two characters, so on a phone the tables squeezed into the screen
    instead of scrolling and read "dev0 / 8.per / son"; a very long name still wraps rather than widen a
    column without end."""
    long = "maximilian-alexander-konstantin-von-der-schulenburg-wittgenstein"
    clock = seeded.suggestions.clock
    sid = await suggest(seeded, clock, "2025-03-18T09:00", 20, "dev08.person", long, "dev17.person")
    await react(seeded, clock, "2025-03-18T10:00", 20, "dev08.person", "accepted", sid)
    clock.now = NOW
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    sizes = await measured(tmp_path, f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}", width=375, measure=(
        "Array.from(document.querySelectorAll('td .person')).map(function (p) {"
        "  return [p.textContent, p.getClientRects().length, p.getBoundingClientRect().width]; })"))
    lines = {name: n for name, n, _ in sizes}
    assert lines["dev08.person"] == lines["dev17.person"] == 1, sizes
    assert max(w for name, _, w in sizes if name == long) < 375, sizes


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_the_chart_stays_readable_on_a_phone(aiohttp_server, seeded, tmp_path):
    """The chart's drawing was scaled to the screen's width: on a phone its labels were 4-5 pixels tall,
    with a blank band under it (the holder's minimum height)."""
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    sizes = await measured(tmp_path, f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}", width=375, measure=(
        "{label: document.querySelector('#acceptance-svg text.axis').getBoundingClientRect().height,"
        " svg: document.getElementById('acceptance-svg').getBoundingClientRect().height,"
        " holder: document.getElementById('acceptance-chart').getBoundingClientRect().height,"
        " wide: document.documentElement.scrollWidth,"
        " left: document.querySelector('#acceptance-chart .plot').scrollLeft,"
        " hidden: (c => c.scrollWidth - c.clientWidth - c.scrollLeft)("
        "   document.querySelector('#acceptance-chart .plot')),"
        " numbers: document.getElementById('acceptance-numbers').open}"))
    assert sizes["label"] >= 9 and sizes["holder"] - sizes["svg"] < 10 and sizes["wide"] <= 375, sizes
    # it showed the oldest weeks, the newest (what a lead looks for) off the screen to the right
    assert sizes["left"] > 0 and sizes["hidden"] <= 1, sizes
    assert sizes["numbers"] is False, sizes  # folded once the chart shows them (open without JavaScript)


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_the_overview_on_a_phone_keeps_a_project_to_a_few_lines(aiohttp_server, seeded, tmp_path):
    """On a phone the overview's table squeezed every text column to its longest word: "9 merged MRs; import
    finished" and "history-trained (no stored model)" stood one word a line, five lines a project; the
    table scrolls sideways instead."""
    await seeded.history.upsert(PROJECT, [Change(f"!{i}", 1_700_000_000 + i, "ann", ("bob",), ("a.c",))
                                          for i in range(9)])
    await seeded.projects.set_backfill(PROJECT, cursor=None, page=None, done=True)
    await seeded.projects.seen(PROJECT, LONG_PATH)
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    measure = ("{rows: Array.from(document.querySelectorAll('tbody tr')).map(r => r.getBoundingClientRect().height),"
               " line: parseFloat(getComputedStyle(document.querySelector('tbody td')).lineHeight),"
               " wide: document.documentElement.scrollWidth,"
               " over: (s => s.scrollWidth - s.clientWidth)(document.querySelector('main section'))}")
    url = f"http://127.0.0.1:{server.port}/?token={TOKEN}"
    phone = await measured(tmp_path / "phone", url, width=375, measure=measure)
    assert phone["rows"][1] < 3.5 * phone["line"] and phone["wide"] <= 375, phone  # acme/empty, short words
    assert phone["rows"][0] < 6.5 * phone["line"], phone  # the long path still wraps, not a word a line
    desk = await measured(tmp_path / "desk", url, width=1280, measure=measure)
    assert desk["over"] == 0 and max(desk["rows"]) < 5.5 * desk["line"], desk  # no wider than its box there


# The chart's percentage labels, each as [text, left, right, top, bottom, shown where drawn], with the chart's
# scroller at `where` ("start": as drawn, "oldest": far left, "middle"); the scroller is whatever box in the
# chart scrolls sideways, the holder itself before the axis got a column of its own.
AXIS_LABELS = """((where) => {
  const holder = document.getElementById('acceptance-chart');
  const scroller = [holder, ...holder.querySelectorAll('div')].find(e => e.scrollWidth > e.clientWidth + 1);
  holder.scrollIntoView({block: 'center'});  // the page's scroll, for elementFromPoint to see the chart
  if (scroller && where === 'oldest') scroller.scrollLeft = 0;
  if (scroller && where === 'middle') scroller.scrollLeft = (scroller.scrollWidth - scroller.clientWidth) / 2;
  return {scrolls: Boolean(scroller), high: innerHeight,
          labels: Array.from(holder.querySelectorAll('text.axis')).filter(t => t.textContent.endsWith('%')).map(t => {
            const r = t.getBoundingClientRect(), hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
            return [t.textContent, r.left, r.right, r.top, r.bottom, hit === t || hit === t.ownerSVGElement];
          }),
          heights: Array.from(holder.querySelectorAll('svg')).map(s => s.getBoundingClientRect().height)};
})"""


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
async def test_the_percentage_axis_stays_in_view_while_a_phone_scrolls_the_weeks(aiohttp_server, seeded, tmp_path):
    """On a phone the chart scrolls sideways, and its 0-100% labels scrolled with the bars: the chart opens at
    the newest week with the scale off the screen to the left, and a reader had to scroll back to read it."""
    server = await aiohttp_server(make_app(make_settings(), seeded, Metrics()))
    url = f"http://127.0.0.1:{server.port}/projects/7?token={TOKEN}"
    for width, places in ((390, ("start", "middle", "oldest")), (1280, ("start",))):
        for where in places:
            seen = await measured(tmp_path / f"{width}-{where}", url, width=width,
                                  measure=f"{AXIS_LABELS}({json.dumps(where)})")
            assert seen["scrolls"] is (width == 390), (width, where, seen)
            assert [label[0] for label in seen["labels"]] == ["0%", "25%", "50%", "75%", "100%"], seen
            for text, left, right, top, bottom, shown in seen["labels"]:
                inside = 0 <= left < right <= width and 0 <= top < bottom <= seen["high"]
                assert inside and shown, (width, where, text, seen)
            assert max(seen["heights"]) - min(seen["heights"]) < 1, (width, where, seen)  # labels on their lines
