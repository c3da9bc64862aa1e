"""Sign in to the dashboard with GitLab: GET /auth/gitlab, then GitLab's consent, then GET /auth/gitlab/callback.

Why: one dashboard token shows every project the bot serves to whoever holds it, private ones included; on a
GitLab shared by many teams each person should see the projects GitLab shows them, no more. So the bot asks
GitLab, as the person (OAuth authorization code with PKCE and a state bound to this browser, scope
read_api), who they are (GET /user) and, for each project the bot stores, whether they may read its merge
requests (one item of GET /projects/:id/merge_requests, `GitLabClient.reads_merge_requests`): what the
dashboard shows is merge requests and who reviewed them, and that call answers exactly as GitLab would for
that person: a private project they are not a member of is a 404, one where they are a Guest (merge requests
closed to them) or whose merge requests are limited to members is a 403; a public or internal project is
visible to them as on GitLab. An instance administrator sees what GitLab's API shows them: every project,
unless Admin Mode is on (the read_api scope carries no admin_mode). The answers go into a signed session
cookie (bot.dashboard_session); the token is revoked once read.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import AsyncIterator, Callable, Iterable

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.dashboard_html import SECURITY_HEADERS, message_body, page
from bot.database_wait import pending
from bot.dashboard_session import (
    COOKIE_LIMIT, FLOW_COOKIE, FLOW_MAX_AGE, SESSION_COOKIE, SESSION_MAX_AGE, Session, decode_session, derive_key,
    encode_session, flow_next, flow_value, local_path, verifier_for,
)
from bot.gitlab.client import GitLabClient, GitLabError, RetryPolicy
from bot.gitlab.oauth import OAuthApp, OAuthError, authorize_url, exchange_code, revoke
from bot.logfmt import kv
from bot.storage import Storage

__all__ = ["GitLabSignIn", "visible_projects", "CALLBACK", "START"]

log = logging.getLogger("bot.dashboard")

START, CALLBACK = "/auth/gitlab", "/auth/gitlab/callback"
CONCURRENCY = 8  # projects checked at once for one person (GitLab allows 2,000 API calls a minute per user)
RETRY = RetryPolicy(max_attempts=2, base_delay=0.2, max_delay=1.0, max_retry_after=2.0, timeout=10.0)
NEXT_LIMIT = 1024  # bytes of `next` kept in the flow cookie: browsers drop a cookie over 4096 bytes, and the
# sign-in would then be refused as "did not start in this browser"
READ_DEADLINE = 25.0  # seconds for all the reads of one sign-in: a person waits on the page, and proxies give up
# (Heroku's router at 30 s); a GitLab slow on every project would otherwise hold it for N / 8 x 20 s. About
# 1,300 projects at 150 ms a check reach it (N / CONCURRENCY x latency).


async def visible_projects(client: GitLabClient, project_ids: Iterable[int]) -> frozenset[int]:
    """The projects among `project_ids` whose merge requests the client's user may read, `CONCURRENCY` at a
    time; any other failure (GitLab down, the token lacking read_api) raises `GitLabError`."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def check(pid: int) -> int | None:
        async with gate:
            return pid if await client.reads_merge_requests(pid) else None

    try:
        async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
            tasks = [group.create_task(check(pid)) for pid in project_ids]
    except* GitLabError as failed:  # the group wraps it: unwrapped, the callback's page names the status
        raise failed.exceptions[0] from None
    return frozenset(pid for task in tasks if (pid := task.result()) is not None)


@dataclass
class GitLabSignIn:
    """What the sign-in handlers share: the application, the cookies' key, the storage (which projects the
    bot serves), the clock, and one HTTP session for the app's life (`cleanup_ctx`)."""

    app: OAuthApp
    key: bytes = field(repr=False)
    storage: Storage
    clock: Callable[[], datetime]
    secure: bool
    http: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings, storage: Storage, clock: Callable[[], datetime]) -> GitLabSignIn:
        config = settings.dashboard
        if config.public_url is None or config.gitlab_app_secret is None or config.gitlab_app_id is None:
            raise ValueError("GitLab sign-in needs [dashboard] gitlab_app_id, gitlab_app_secret and public_url")
        secret = config.gitlab_app_secret.get_secret_value()
        app = OAuthApp(settings.gitlab.url, config.gitlab_app_id, secret, config.public_url + CALLBACK)
        return cls(app, derive_key(secret), storage, clock, secure=config.https)

    def add_routes(self, web_app: web.Application) -> None:
        web_app.router.add_get(START, self.start)
        web_app.router.add_get(CALLBACK, self.callback)
        web_app.cleanup_ctx.append(self._http_session)

    async def _http_session(self, _app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            self.http = session
            yield
            self.http = None

    def session(self, request: web.Request) -> Session | None:
        """The request's valid session cookie, or None."""
        value = request.cookies.get(SESSION_COOKIE)
        return None if value is None else decode_session(self.key, value, now=self.clock().timestamp())

    def _secure(self, request: web.Request) -> bool:
        return self.secure or request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    async def start(self, request: web.Request) -> web.Response:
        """GET /auth/gitlab?next=...: a fresh state in a 10-minute cookie, then GitLab's consent page."""
        state = secrets.token_urlsafe(32)
        target = local_path(request.query.get("next", "/"))
        target = target if len(target.encode()) <= NEXT_LIMIT else "/"
        issued = int(self.clock().timestamp())
        response = web.Response(status=303, headers={
            "Location": authorize_url(self.app, state=state, verifier=verifier_for(self.key, state))})
        response.set_cookie(FLOW_COOKIE, flow_value(self.key, state, target, issued), max_age=FLOW_MAX_AGE,
                            path=START, httponly=True, samesite="Lax", secure=self._secure(request))
        # Lax: GitLab's redirect back is a top-level GET from another site, which Lax lets the cookie into
        response.headers.update(SECURITY_HEADERS)
        return response

    async def callback(self, request: web.Request) -> web.Response:
        """GET /auth/gitlab/callback?code=...&state=...: check the state against this browser's flow cookie,
        exchange the code, read who it is and what they see, set the session cookie, go back to `next`."""
        query = request.query
        target = flow_next(self.key, request.cookies.get(FLOW_COOKIE), query.get("state"),
                           now=self.clock().timestamp())
        if target is None:
            log.warning(kv("dashboard GitLab sign-in refused", reason="state", remote=request.remote))
            response = _page(400, "Sign-in not accepted", STATE_REFUSED)
        elif "error" in query or not query.get("code"):
            response = _page(401, "Not signed in", _declined(query.get("error")))
        elif (waiting := pending(request.app)) is not None:  # the projects are read from it
            response = _page(503, "Waiting for the database", waiting.notice())
        else:
            response = await self._finish(request, query["code"], query["state"], target)
        response.del_cookie(FLOW_COOKIE, path=START)  # used once, whatever happened
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _finish(self, request: web.Request, code: str, state: str, target: str) -> web.Response:
        assert self.http is not None, "the app's cleanup_ctx opens the HTTP session"
        try:
            token = await exchange_code(self.http, self.app, code, verifier_for(self.key, state))
        except OAuthError as exc:
            log.warning(kv("dashboard GitLab sign-in failed", step="token", error=str(exc)))
            return _page(502, "Sign-in failed", str(exc))
        try:
            async with asyncio.timeout(READ_DEADLINE):
                session = await self._read(token)
        except GitLabError as exc:
            log.warning(kv("dashboard GitLab sign-in failed", step="api", status=exc.status))
            return _page(502, "Sign-in failed", _api_failure(exc))
        except TimeoutError:  # the calls' own timeouts are GitLabErrors: this is the deadline
            log.warning(kv("dashboard GitLab sign-in failed", step="api", deadline=READ_DEADLINE))
            return _page(504, "Sign-in failed", SLOW.format(seconds=READ_DEADLINE))
        finally:
            await revoke(self.http, self.app, token)
        value = encode_session(self.key, session)
        if len(value) > COOKIE_LIMIT:
            return _page(403, "Too many projects", TOO_MANY.format(n=len(session.projects)))
        log.info(kv("dashboard GitLab sign-in", user=session.username, projects=len(session.projects)))
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_MAX_AGE, path="/", httponly=True,
                            samesite="Lax", secure=self._secure(request))
        return response

    async def _read(self, token: str) -> Session:
        """Who the token's person is and which of the bot's projects they see, asked as them."""
        assert self.http is not None
        client = GitLabClient(self.http, url=self.app.gitlab_url, token=token, retry=RETRY)
        user = await client.current_user()
        ids = [project.id for project in await self.storage.projects.list()]
        visible = await visible_projects(client, ids)
        return Session(user.id, user.username, visible, int(self.clock().timestamp()))


STATE_REFUSED = ("This sign-in did not start in this browser in the last 10 minutes (its state does not match the "
                 "one this browser was given), so it was refused: sign in again from the dashboard's own address "
                 "(its public_url).")
SLOW = ("GitLab took more than {seconds:.0f} seconds to answer which of the bot's projects you can see: try again in "
        "a moment.")
TOO_MANY = ("You can see {n} of the bot's projects on GitLab, more than a sign-in cookie can list: ask for the "
            "dashboard token instead.")


def _declined(error: str | None) -> str:
    if error == "access_denied":
        return "GitLab did not sign you in: the access was declined on GitLab's page. Sign in again to allow it."
    return f"GitLab did not sign you in ({error or 'no code in its answer'}): sign in again."


def _api_failure(exc: GitLabError) -> str:
    if exc.status == 403 and exc.no_scope:
        return ("GitLab refused to tell the bot which projects you can see: the dashboard's GitLab application "
                "needs the read_api scope (tick it under Applications in GitLab), then sign in again.")
    return (f"GitLab did not answer which projects you can see ({exc.status or 'no answer'}): try again in a "
            "moment.")


def _page(status: int, title: str, text: str) -> web.Response:
    body = message_body(title, text, html_hint=f'<p><a class="gitlab-signin" href="{START}">Sign in with GitLab'
                                                "</a></p>")
    return web.Response(text=page(title, body), content_type="text/html", status=status)
