"""The read-only dashboard: GET / (projects), GET /projects/{id}, GET /api/projects/{id}/stats.

Why it is off by default and always behind a token or GitLab sign-in: it shows who reviews what in every
project the bot serves. `setup()` adds no route at all unless the dashboard is enabled with a token, GitLab
sign-in or both (either alone enables it; so every dashboard URL is a 404 otherwise).

With the token, a browser signs in once, with the 401 page's form (POST /signin) or by opening
`/?token=...`: the token is checked in constant time, an HttpOnly SameSite=Lax cookie (an HMAC of the token,
never the token itself) is set and the browser is sent on without the token in its address; scripts send
`Authorization: Bearer ...`. The token sees every project. With GitLab sign-in (bot.dashboard_gitlab) a
person sees only the projects GitLab lets them read the merge requests of; any other project's page or JSON
is a 404, as for a project the bot does not know, so its existence is not revealed. Anything else gets the
401 page with the form and the "Sign in with GitLab" link, headed "Token not accepted" when a token was given
and refused. No page shows the GitLab token, the webhook secrets or the database URL.

POST /signout ends the sign-in in the database (`bot.storage.signouts`), so a copy of its cookie is refused by
every process too; `reviewbot signout-all` ends every cookie issued until then. With an https `public_url`
every answer carries HSTS (`strict_transport`).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiohttp import web

from bot.config import Settings
from bot.database_wait import DatabaseWait, pending
from bot.dashboard_gitlab import GitLabSignIn
from bot.dashboard_html import (
    ASSETS, SECURITY_HEADERS, STRICT_TRANSPORT, asset, gitlab_link, message_body, overview_body, page, project_body,
    signin_form,
)
from bot.dashboard_session import SESSION_COOKIE, SESSION_MAX_AGE, local_path
from bot.dashboard_stats import HistoryInfo, ModelInfo, ProjectStats, project_stats, window_start
from bot.backfill import change_id as mr_change_id  # not bot.learning: that imports scikit-learn
from bot.logfmt import kv
from bot.storage import ProjectRow, Storage, StorageError
from bot.storage.db import as_id

__all__ = [
    "setup", "load_stats", "cached_stats", "fresh_stats", "active_model", "cookie_value", "cookie_valid",
    "credential", "ended", "local_path", "Viewer", "COOKIE", "SESSION_COOKIE", "DASHBOARD_KEY", "WEEKS",
]

log = logging.getLogger("bot.dashboard")

COOKIE = "reviewbot_dashboard"
COOKIE_MAX_AGE = 7 * 24 * 3600
WEEKS = 12
SIGN_IN_HINT = ('<p class="hint">The token is the <code>[dashboard] token</code> setting (or '
                "<code>REVIEWBOT_DASHBOARD_TOKEN</code>). Scripts send <code>Authorization: Bearer</code> with it; "
                "<code>?token=</code> in the address also signs in, but proxies may log addresses.</p>")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Dashboard:
    """What the dashboard's handlers share: settings, storage, the stores' clock, the token (None: GitLab
    sign-in only), GitLab sign-in (None: the token only), and each project's last computed numbers with the
    key they were computed for (see `cached_stats`)."""

    settings: Settings
    storage: Storage
    clock: Callable[[], datetime]
    token: bytes | None
    signin: GitLabSignIn | None = None
    computed: dict[int, tuple[tuple, ProjectStats]] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return f"Dashboard(token={'**********' if self.token else None}, gitlab_sign_in={self.signin is not None})"


@dataclass(frozen=True)
class Viewer:
    """Who is asking and how they proved it ("bearer", "query", "cookie": the token; "gitlab": a GitLab
    session), which projects they may see (None: every one, the token's), and the sign-in cookie that proved
    it with its issue time (unix seconds; None: the token itself, which no sign-out ends)."""

    via: str
    projects: frozenset[int] | None = None
    username: str | None = None
    cookie: str | None = field(default=None, repr=False)
    issued: int = 0

    def expires(self) -> datetime:
        """When the cookie expires anyway (its sign-out need not be kept longer)."""
        age = COOKIE_MAX_AGE if self.via == "cookie" else SESSION_MAX_AGE
        return datetime.fromtimestamp(self.issued + age, timezone.utc)

    def sees(self, project_id: int) -> bool:
        return self.projects is None or project_id in self.projects


def _request_key(name: str, kind: type) -> Any:
    """A typed request-storage key (aiohttp >= 3.12 warns on plain strings); a string on older aiohttp."""
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


VIEWER = _request_key("dashboard_viewer", Viewer)


DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)


def cookie_value(token: bytes, issued: int, nonce: str = "") -> str:
    """The sign-in cookie: its issue time (unix seconds), a random `nonce` and an HMAC of both keyed by the
    token, so the cookie jar never holds the token, a cookie is refused once `COOKIE_MAX_AGE` has passed whatever
    the browser does, and changing the token signs everyone out. The nonce tells apart two sign-ins of the same
    second, which share the token: without it they had one cookie, and one person's sign-out ended the other's.
    No nonce: the form before it (`issued.mac`), still taken so that an upgrade signs nobody out."""
    if not nonce:
        return f"{issued}.{_mac(token, b'v2 %d' % issued)}"
    return f"{issued}.{nonce}.{_mac(token, b'v3 %d %s' % (issued, nonce.encode()))}"


def _mac(token: bytes, what: bytes) -> str:
    return hmac.new(token, b"reviewbot dashboard cookie " + what, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """16 URL-safe characters (96 random bits) for a new sign-in cookie."""
    return secrets.token_urlsafe(12)


def cookie_valid(value: str, token: bytes, now: float) -> bool:
    """Whether `value` is a sign-in cookie for `token`, issued at most `COOKIE_MAX_AGE` ago."""
    issued, dot, rest = value.partition(".")
    if not (dot and issued.isascii() and issued.isdecimal() and len(issued) <= 12) or \
            not 0 <= now - int(issued) <= COOKIE_MAX_AGE:  # (isdigit() takes "²", which int() refuses)
        return False
    nonce = rest.rpartition(".")[0]
    if nonce and not (len(nonce) == 16 and nonce.isascii() and nonce.replace("-", "").replace("_", "").isalnum()):
        return False
    return hmac.compare_digest(_encoded(value), cookie_value(token, int(issued), nonce).encode())


def setup(app: web.Application, settings: Settings, storage: Storage,
          *, clock: Callable[[], datetime] | None = None) -> None:
    """Add the dashboard's routes to `app` when settings enable it with a token or GitLab sign-in; else add
    nothing (404).

    `clock` defaults to the stores' own clock, so "this week" agrees with the times they record.
    """
    config = settings.dashboard
    token = config.token.get_secret_value().encode() if config.token is not None else b""
    if not config.enabled or (not token and not config.gitlab_sign_in):
        return
    clock = clock or storage.suggestions.clock
    token = token or None  # an empty token (refused by the settings) would match an empty Bearer: none
    signin_ = GitLabSignIn.from_settings(settings, storage, clock) if config.gitlab_sign_in else None
    app[DASHBOARD_KEY] = Dashboard(settings, storage, clock, token, signin_)
    if signin_ is not None:
        signin_.add_routes(app)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_get("/", protected(overview))
    app.router.add_get(r"/projects/{project_id:\d+}", protected(project_page))
    app.router.add_get(r"/api/projects/{project_id:\d+}/stats", protected(project_api))
    app.router.add_get(r"/dashboard/{name:dashboard\.(css|js)}", static_asset)
    app.router.add_get("/favicon.ico", no_icon)
    if config.https:
        app.on_response_prepare.append(strict_transport)


async def strict_transport(_request: web.Request, response: web.StreamResponse) -> None:
    """HSTS on every answer of a dashboard people open over https (`public_url`): a browser that has seen it
    keeps to https for that host, so its cookie never goes out over plain http (an http:// link, a network
    stripping TLS). Set here, not in `SECURITY_HEADERS`, because it depends on the settings; in a signal,
    because a 404 or 405 of aiohttp's own must carry it too."""
    response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT)


# --- sign-in -------------------------------------------------------------------------------------------------
def _encoded(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def _is_token(value: str, token: bytes | None) -> bool:
    return token is not None and hmac.compare_digest(_encoded(value), token)


def credential(request: web.Request, dashboard: Dashboard) -> Viewer | None:
    """Who the request is and how it proved it (see `Viewer`), or None.

    The first credential present decides (Bearer header, then ?token=, then the token's cookie, then the
    GitLab session's), so a wrong token is refused even beside a valid cookie; other Authorization schemes (a
    proxy's Basic) are left alone.
    """
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return Viewer("bearer") if _is_token(value.strip(), dashboard.token) else None
    if "token" in request.query:
        return Viewer("query") if _is_token(request.query["token"], dashboard.token) else None
    return _token_cookie(request, dashboard) or _gitlab_cookie(request, dashboard)


def _token_cookie(request: web.Request, dashboard: Dashboard) -> Viewer | None:
    """The token's sign-in cookie, if valid (not asked whether it was signed out: `ended`)."""
    cookie = request.cookies.get(COOKIE)
    if cookie is None or dashboard.token is None or \
            not cookie_valid(cookie, dashboard.token, dashboard.clock().timestamp()):
        return None
    return Viewer("cookie", cookie=cookie, issued=int(cookie.partition(".")[0]))


def _gitlab_cookie(request: web.Request, dashboard: Dashboard) -> Viewer | None:
    """The GitLab session's cookie, if valid (not asked whether it was signed out: `ended`)."""
    session = dashboard.signin.session(request) if dashboard.signin is not None else None
    if session is None:
        return None
    return Viewer("gitlab", session.projects, session.username, cookie=request.cookies[SESSION_COOKIE],
                  issued=session.issued)


def _digest(cookie: str) -> str:
    """What a sign-out is kept under: the cookie's SHA-256, so the table signs nobody in."""
    return hashlib.sha256(_encoded(cookie)).hexdigest()


async def ended(dashboard: Dashboard, viewer: Viewer) -> bool:
    """Whether the viewer's sign-in cookie was signed out, in any process, or issued before `reviewbot
    signout-all` ran (`bot.storage.signouts`: one read by primary key). The token itself is never: changing
    it ends it."""
    if viewer.cookie is None:
        return False
    issued = datetime.fromtimestamp(viewer.issued, timezone.utc)
    return await dashboard.storage.signouts.ended(_digest(viewer.cookie), issued)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


REFUSED = ("Token not accepted", "The token given is not this dashboard's: check it against the [dashboard] token "
           "setting (or REVIEWBOT_DASHBOARD_TOKEN) and sign in again.")
FIRST_VISIT = ("Sign-in needed", "This dashboard needs its token.")
FIRST_VISIT_GITLAB = ("Sign-in needed", "Sign in with your GitLab account to see the projects you can see there.")
FIRST_VISIT_EITHER = ("Sign-in needed", "Sign in with your GitLab account, or with this dashboard's token.")


def _token_given(request: web.Request) -> bool:
    """Whether the request brought a token (Bearer or `?token=`), so a 401 means that token was wrong."""
    scheme = request.headers.get("Authorization", "").partition(" ")[0]
    return scheme.lower() == "bearer" or "token" in request.query


def _unauthorised(request: web.Request, next_path: str | None = None, *, refused: bool = False) -> web.Response:
    """The 401: the sign-in page, which says "Token not accepted" when a token was given (`refused`) so a
    mistyped token is not met by the same page as a first visit."""
    headers = {"WWW-Authenticate": 'Bearer realm="reviewbot dashboard"'}
    dashboard = request.app[DASHBOARD_KEY]
    if _is_api(request):
        why = "dashboard token not accepted" if refused else "missing dashboard token"
        how = "send Authorization: Bearer <dashboard token>" if dashboard.token is not None else \
            "sign in with GitLab in a browser (GET /auth/gitlab) and send its cookie"
        return web.json_response({"error": f"{why}: {how}"}, status=401, headers=headers)
    if next_path is None:
        next_path = str(request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"]))
    title, text = REFUSED if refused else _first_visit(dashboard)
    hint = gitlab_link(next_path) if dashboard.signin is not None else ""
    if dashboard.token is not None:
        hint += signin_form(next_path) + SIGN_IN_HINT
    body = message_body(title, text, html_hint=hint)
    response = web.Response(text=page(title, body), content_type="text/html", status=401, headers=headers)
    response.headers.update(SECURITY_HEADERS)
    return response


def _first_visit(dashboard: Dashboard) -> tuple[str, str]:
    if dashboard.signin is None:
        return FIRST_VISIT
    return FIRST_VISIT_GITLAB if dashboard.token is None else FIRST_VISIT_EITHER


def _signed_in(request: web.Request, dashboard: Dashboard, target: str) -> web.Response:
    """303 to `target` (a path on this site), setting the sign-in cookie (of the token, `dashboard.token`)."""
    assert dashboard.token is not None, "only the token's sign-in calls this"
    response = web.Response(status=303, headers={"Location": target})
    secure = dashboard.settings.dashboard.https or request.secure or \
        request.headers.get("X-Forwarded-Proto", "").lower() == "https"  # a proxy ending TLS may not say so
    issued = int(dashboard.clock().timestamp())
    response.set_cookie(COOKIE, cookie_value(dashboard.token, issued, new_nonce()), max_age=COOKIE_MAX_AGE, path="/",
                        httponly=True, samesite="Lax", secure=secure)  # Lax: a `?token=` link followed
    # from chat or mail keeps the cookie through its redirect (Strict drops it there); posts are `same_origin`
    return response


def protected(handler: Handler) -> Handler:
    """Wrap a handler: token check first, security headers always, a 503 page when the database fails or while
    `serve` waits for it (`bot.database_wait`: not queried then); a signed-out cookie is a 401 (`ended`, asked
    from the database: after the check of the database wait)."""
    async def checked(request: web.Request) -> web.StreamResponse:
        viewer = request[VIEWER]
        if not await ended(request.app[DASHBOARD_KEY], viewer):
            return await handler(request)
        response = _unauthorised(request)
        response.del_cookie(COOKIE if viewer.via == "cookie" else SESSION_COOKIE, path="/")  # no use to send it
        return response

    async def wrapper(request: web.Request) -> web.StreamResponse:
        dashboard = request.app[DASHBOARD_KEY]
        viewer = credential(request, dashboard)
        if viewer is None:
            response: web.StreamResponse = _unauthorised(request, refused=_token_given(request))
        elif viewer.via == "query" and not _is_api(request):  # the token leaves the address bar (and the history)
            target = request.rel_url.with_query([(k, v) for k, v in request.query.items() if k != "token"])
            response = _signed_in(request, dashboard, str(target))
        elif (waiting := pending(request.app)) is not None:
            response = _waiting(request, waiting)
        else:
            request[VIEWER] = viewer
            response = await _guarded(checked, request)
        response.headers.update(SECURITY_HEADERS)
        return response

    wrapper.__doc__ = handler.__doc__
    return wrapper


def _waiting(request: web.Request, waiting: DatabaseWait) -> web.Response:
    """The 503 of a `serve` started without its database: a database that does not answer would hold each page
    until its connect timed out, and one that fails the start-up checks may hold an older schema."""
    text = waiting.notice()
    if _is_api(request):
        return web.json_response({"error": text}, status=503)
    return web.Response(text=page("Waiting for the database", message_body("Waiting for the database", text)),
                        status=503, content_type="text/html")


async def _guarded(handler: Handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except (StorageError, sa.exc.SQLAlchemyError, OSError) as exc:
        log.error(kv("dashboard database error", path=request.path, error=type(exc).__name__))
        text = "The bot's database did not answer; try again in a moment (the bot's log names the cause)."
        if _is_api(request):
            return web.json_response({"error": text}, status=503)
        return web.Response(text=page("Unavailable", message_body("Unavailable", text)), status=503,
                            content_type="text/html")


async def signin(request: web.Request) -> web.Response:
    """POST /signin (the 401 page's form): the token in the body, never in an address; then back to `next`."""
    dashboard = request.app[DASHBOARD_KEY]
    if not same_origin(request):
        return _cross_site()
    try:
        form = await request.post()
    except ValueError:  # a malformed body (a multipart without its boundary): as no token
        form = {}
    token, target = form.get("token"), local_path(str(form.get("next") or "/"))
    if isinstance(token, str) and _is_token(token, dashboard.token):
        response = _signed_in(request, dashboard, target)
    else:
        log.warning(kv("dashboard sign-in refused", remote=request.remote))
        response = _unauthorised(request, target, refused=isinstance(token, str) and bool(token))
    response.headers.update(SECURITY_HEADERS)
    return response


def same_origin(request: web.Request) -> bool:
    """Whether a form post comes from this site: another site's page must not sign a user in or out (a form
    on evil.example posting here). Browsers say where a request comes from in `Sec-Fetch-Site`, and older
    ones send `Origin` with every POST. Neither: not a browser."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site.strip().casefold() == "same-origin"
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    hosts = {request.host, *request.headers.get("X-Forwarded-Host", "").split(",")}  # behind a proxy
    return urlsplit(origin).netloc.casefold() in {h.strip().casefold() for h in hosts if h.strip()}


def _cross_site() -> web.Response:
    response = web.Response(status=403, text="a form on another site cannot sign in or out of this dashboard "
                                             "(behind a proxy: pass the Host header, or X-Forwarded-Host, on)")
    response.headers.update(SECURITY_HEADERS)
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    """POST /signout (the header's button): the sign-in is ended in the database, so every copy of its cookie
    is refused by every process (`bot.storage.signouts`), then the token's and the GitLab session's cookies are
    cleared and the sign-in page shown (GitLab's own session is GitLab's: signing out there is done there).
    When the database cannot keep the sign-out, the page says so and the cookies stay, to try again."""
    if not same_origin(request):
        return _cross_site()
    if (waiting := pending(request.app)) is not None:
        response: web.StreamResponse = _waiting(request, waiting)
    else:
        response = await _guarded(_sign_out, request)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _sign_out(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    for viewer in (_token_cookie(request, dashboard), _gitlab_cookie(request, dashboard)):
        if viewer is not None and viewer.cookie is not None:
            await dashboard.storage.signouts.end(_digest(viewer.cookie), until=viewer.expires())
            log.info(kv("dashboard sign-out", via=viewer.via, user=viewer.username))
    response = web.Response(status=303, headers={"Location": "/"})
    response.del_cookie(COOKIE, path="/")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# --- data ----------------------------------------------------------------------------------------------------
async def active_model(storage: Storage, project_id: int) -> ModelInfo:
    """The active model's version, score and time, without loading its (possibly large) pickled blob."""
    found = await storage.models.active_summary(project_id)
    if found is None:
        return ModelInfo()
    version, score, created = found
    return ModelInfo(version=version, backtest_score=score, trained_at=created)


async def load_stats(storage: Storage, project: ProjectRow, *, now: datetime, weeks: int = WEEKS) -> ProjectStats:
    """Read the suggestions and feedback of the project's merge requests active in the window (all their rows:
    an MR suggested on before the window keeps its first week and earlier reviewers), which of them merged,
    the active model and how much history is stored; compute the dashboard numbers."""
    since = window_start(now, weeks)
    active = await storage.suggestions.mrs_since(project.id, since)
    suggestions = await storage.suggestions.of_mrs(project.id, active, with_mr=False)
    feedback = await storage.feedback.of_mrs(project.id, active)
    merged = await storage.history.present(project.id, {mr_change_id(iid) for iid in active})
    model = await active_model(storage, project.id)
    latest = max(suggestions, key=lambda r: r.id, default=None)
    if latest is not None:
        model = model.model_copy(update={"serving": latest.model_version})
    history = HistoryInfo(changes=await storage.history.count(project.id), import_done=project.backfill_done)
    return project_stats(project.id, project.path, suggestions, feedback, model, now=now, weeks=weeks,
                         merged=[iid for iid in active if mr_change_id(iid) in merged], history=history)


async def fresh_stats(dashboard: Dashboard, project: ProjectRow, now: datetime) -> ProjectStats:
    """The project's numbers computed now (the project page and its JSON: the load's 30 days end now), kept
    for the overview under the key read just before the rows (`_key`)."""
    key = await _key(dashboard.storage, project, now)
    stats = await load_stats(dashboard.storage, project, now=now)
    dashboard.computed[project.id] = (key, stats)
    return stats


async def cached_stats(dashboard: Dashboard, project: ProjectRow, now: datetime) -> ProjectStats:
    """The project's numbers as the overview shows them: those last computed, unless the key changed.

    Why: computing them reads every row of the project's merge requests of 12 weeks (about a second for
    3,000 of them), and the overview shows every project, most of them unchanged since the last load. What
    the overview shows (merge requests suggested, accepted, Top-1/3, model) depends only on the stored
    rows and the week, which the key covers; the rest (the load's last 30 days) may be older.
    """
    key = await _key(dashboard.storage, project, now)
    found = dashboard.computed.get(project.id)
    if found is not None and found[0] == key:
        return found[1]
    return await fresh_stats(dashboard, project, now)


async def _key(storage: Storage, project: ProjectRow, now: datetime) -> tuple:
    """What the overview's numbers of a project depend on: its rows (`ProjectStore.marker`, read from the
    database each time, so a row stored by another process counts at once), its path, whether its history
    import finished, and the chart's first day. Read before the rows: a row stored meanwhile makes the next
    load compute again, never hides."""
    return (await storage.projects.marker(project.id), project.path, project.backfill_done,
            window_start(now, WEEKS))


NOT_FOUND = "No such project: the bot lists a project after its first webhook event from it."
BACK_TO_PROJECTS = '<p><a href="/">Back to the projects</a></p>'  # a fixed link: no user text, nothing to escape


async def _project(request: web.Request) -> ProjectRow | None:
    """The project the address names; None (a 404) for one the bot has not seen, an id no database holds, or
    one the viewer may not see (a 404 too, not a 403: whether it exists is not theirs to learn)."""
    project_id = as_id(int(request.match_info["project_id"]))  # the route takes digits only
    if project_id is None or not request[VIEWER].sees(project_id):
        return None
    return await request.app[DASHBOARD_KEY].storage.projects.get(project_id)


# --- handlers ------------------------------------------------------------------------------------------------
def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status)


async def overview(request: web.Request) -> web.Response:
    """Every project the bot has seen that the viewer may see, with its headline numbers."""
    dashboard, viewer = request.app[DASHBOARD_KEY], request[VIEWER]
    now = dashboard.clock()
    projects = [p for p in await dashboard.storage.projects.list() if viewer.sees(p.id)]
    stats = [await cached_stats(dashboard, p, now) for p in projects]
    return _html(page("Projects", overview_body(stats), crumb="dashboard", now=now, signed_in=True,
                      who=viewer.username))


async def project_page(request: web.Request) -> web.Response:
    """One project: acceptance chart, suggestions against reviewers, review load, model."""
    dashboard = request.app[DASHBOARD_KEY]
    project = await _project(request)
    who = request[VIEWER].username
    if project is None:
        return _html(page("Not found", message_body("Not found", NOT_FOUND, html_hint=BACK_TO_PROJECTS),
                          signed_in=True, who=who), status=404)
    stats = await fresh_stats(dashboard, project, dashboard.clock())
    title = project.path or f"project {project.id}"
    body = project_body(stats, gitlab_url=dashboard.settings.gitlab.url)
    return _html(page(title, body, crumb=title, now=stats.generated_at, signed_in=True, who=who))


async def project_api(request: web.Request) -> web.Response:
    """The project page's numbers as JSON (what the page's script draws the chart from)."""
    dashboard = request.app[DASHBOARD_KEY]
    project = await _project(request)
    if project is None:
        return web.json_response({"error": NOT_FOUND}, status=404)
    stats = await fresh_stats(dashboard, project, dashboard.clock())
    return web.json_response(stats.model_dump(mode="json"))


async def no_icon(_request: web.Request) -> web.Response:
    """No icon, said plainly: browsers ask for `/favicon.ico` on every first visit, and a 404 is logged as an
    error in the page's console (a team lead reading it looks for a fault)."""
    return web.Response(status=204, headers={"Cache-Control": "max-age=86400"})


async def static_asset(request: web.Request) -> web.Response:
    """The stylesheet and the chart script (code only, no data: served without the token)."""
    name = request.match_info["name"]
    response = web.Response(text=asset(name), content_type=ASSETS[name])
    response.headers.update({**SECURITY_HEADERS, "Cache-Control": "no-cache"})
    return response
