"""`GitLabClient`: the bot's typed, retrying GitLab REST v4 client, built on gidgetlab's aiohttp `GitLabAPI`.

One aiohttp `ClientSession` is passed in and lives as long as the app. Transient failures are retried with
tenacity: 429 (sleeping `Retry-After`, else until `RateLimit-Reset`, capped), 5xx, connection errors and
timeouts, with capped exponential backoff and a maximum attempt count. A POST (not idempotent) is retried only
when GitLab surely did not act on it: 429, 502/503/504, or no connection. A redirect is not followed
(`errors.redirected`). Anything else raises `GitLabError` whose message names the cause and the fix. The token
is never logged.

    async with aiohttp.ClientSession() as session:
        gl = GitLabClient(session, url="https://gitlab.example.com", token=settings.gitlab_token)
        mr = await gl.get_mr("acme/app", 7)
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import gidgetlab.aiohttp
from multidict import CIMultiDict
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_exponential, wait_random

from bot.gitlab.errors import (
    GitLabError, error_message, project_missing, redirected, route_missing, scope_missing, without_logins,
)
from bot.gitlab.proxy import env_proxy
from bot.gitlab.models import (
    ApprovalSettings, Approvals, ApprovalState, AwardEmoji, ChangedFile, Commit, Group, Hook, Member, MergeRequest,
    Note, Page, Project, ProtectedBranch, ReviewerState, User, UserStatus,
)

__all__ = ["GitLabClient", "GitLabError", "GitLabStall", "RetryPolicy", "ProjectId", "project_ref"]

log = logging.getLogger(__name__)
ProjectId = int | str


def project_ref(text: str) -> ProjectId:
    """A project as given on the command line: its numeric id (ASCII digits), else its path.

    >>> project_ref(" 42 "), project_ref("group/app"), project_ref("²")
    (42, 'group/app', '²')
    """
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else text
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most `max_attempts` tries, backoff from `base_delay` doubling up to `max_delay`,
    server-requested waits (Retry-After) capped at `max_retry_after`, each request limited to `timeout` s."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 60.0
    timeout: float = 30.0


class _HTTPStatus(Exception):
    """An HTTP error answer, kept with its headers so the retry can read Retry-After."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        super().__init__(status)
        self.status, self.headers, self.body = status, headers, body


_NOT_FOUND = object()  # `_get_found`'s answer for a 404 where None is a possible body


class _API(gidgetlab.aiohttp.GitLabAPI):
    """gidgetlab's aiohttp API with a per-request timeout, through the environment's proxy for GitLab
    (`env_proxy`); error statuses raise `_HTTPStatus` with headers."""

    def __init__(self, session: aiohttp.ClientSession, *, token: str, url: str, timeout: float) -> None:
        super().__init__(session, "reviewbot", access_token=token, url=url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._proxy = env_proxy(self.api_url)

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        async with self._session.request(method, url, headers=headers, data=body, timeout=self._timeout,
                                         proxy=self._proxy, allow_redirects=False) as response:
            data = await response.read()
            if response.status >= 300:  # a redirect is not followed (`errors.redirected`)
                raise _HTTPStatus(response.status, response.headers, data)
            return response.status, _bytes_of_raw_files(url, response.headers), data

    async def get_page(self, url: str, params: dict[str, Any]) -> tuple[Any, str | None]:
        """One page and whether a next one exists; `getiter` would restart from page 1 after any error."""
        return await self._make_request("GET", url, params, b"")


def _bytes_of_raw_files(url: str, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The headers gidgetlab decodes a body by, a raw file's marked as bytes: GitLab serves any file it takes for
    text as `text/plain; charset=utf-8`, one saved as Latin-1 or UTF-16 too, and gidgetlab's strict decoding
    then raised UnicodeDecodeError, which failed the event until it was dead-lettered. The caller decodes."""
    if not urlsplit(url).path.endswith("/raw"):
        return headers
    marked = CIMultiDict(headers)
    marked["Content-Type"] = "application/octet-stream"
    return marked


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds GitLab asks us to wait: Retry-After (seconds or HTTP date), else until RateLimit-Reset."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            with_date = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max((with_date - datetime.now(timezone.utc)).total_seconds(), 0.0)
    reset = headers.get("RateLimit-Reset")
    if reset and reset.isdigit():
        return max(int(reset) - time.time(), 0.0)
    return None


def _asked_wait(answer: _HTTPStatus) -> float | None:
    """The seconds a 429 or 503 asks to wait (None: another status, or it does not say)."""
    return _retry_after(answer.headers) if answer.status in (429, 503) else None


def _transient(method: str) -> Callable[[BaseException], bool]:
    """Which failures to retry for `method` (a POST only when GitLab cannot have acted on it)."""
    def check(exc: BaseException) -> bool:
        if isinstance(exc, _HTTPStatus):
            return exc.status == 429 or exc.status >= 500 and (method != "POST" or exc.status in (502, 503, 504))
        if isinstance(exc, aiohttp.ClientConnectorError):
            return True
        return method != "POST" and isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError))
    return check


def _login_hidden(proxy: str) -> str:
    """A proxy URL as an error may show it: all before its last `@` but the scheme replaced by `***`, however the
    password is written.

    >>> _login_hidden("squid:pa/ss@proxy:3128"), _login_hidden("http://u:p#w@proxy:3128"), _login_hidden("http://p:1")
    ('***@proxy:3128', 'http://***@proxy:3128', 'http://p:1')
    """
    if "@" not in proxy:
        return proxy
    scheme, sep, _ = proxy.partition("://")
    return f"{scheme + sep if sep else ''}***@{proxy.rpartition('@')[2]}"


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _second(when: datetime) -> datetime:
    """`when` cut to the whole second, as `_iso` sends it."""
    return when.replace(microsecond=0)


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _readable(items: list[Any], model: type[M], path: str) -> list[M]:
    """The list items `model` can read; one it cannot is logged and left out, so that a single odd MR does not
    stop a whole import at the same page every time it is resumed."""
    out = []
    for item in items:
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            ident = item.get("iid", item.get("id")) if isinstance(item, dict) else None
            log.warning("GitLab %s listed an item this bot cannot read (id %s), left out: %s", path, ident,
                        str(exc).splitlines()[0])
    return out


NOT_JSON = ("GitLab answered with something that is not JSON (a sign-in page or a proxy's?): GITLAB_URL must be "
            "GitLab's base URL, e.g. https://gitlab.example.com (without /api/v4)")


def _json_only(method: str, path: str, answer: tuple[Any, str | None]) -> tuple[Any, str | None]:
    """The answer, unless GitLab sent text where JSON belongs (gidgetlab decodes a non-JSON body to a string);
    a file's raw content (`.../raw`) is text."""
    body = answer[0]
    if isinstance(body, (str, bytes)) and body.strip() and not path.endswith("/raw"):
        raise GitLabError(200, method, path, NOT_JSON)
    return answer


_STALL: ContextVar["GitLabStall | None"] = ContextVar("gitlab_stall", default=None)


class GitLabStall:
    """Whether one event's GitLab calls are stuck right now: its last try got no answer, a 5xx or a 429.

    Why: a GitLab that accepts connections and does not answer makes one call's tries (5 × 30 s at the defaults)
    outlast the worker's `dispatch_timeout`, so the event ends as a plain timeout, not as the outage it is, and
    used up its attempts. The worker sets one per event (`watching`); the client marks it on every try.
    """

    def __init__(self) -> None:
        self.failing = False

    @contextlib.contextmanager
    def watching(self) -> Iterator[GitLabStall]:
        """Calls made in this context, and in tasks started from it, mark this stall."""
        token = _STALL.set(self)
        try:
            yield self
        finally:
            _STALL.reset(token)


def _mark_stall(failing: bool) -> None:
    stall = _STALL.get()
    if stall is not None:
        stall.failing = failing


class GitLabClient:
    """Typed GitLab calls for the bot. `pid` is a numeric project id or a `group/project` path.

    `on_error(status)` is called for every failed attempt (retried ones too): the HTTP status, or 0 when no
    answer came (connection error, timeout); use it to count API errors in metrics.
    """

    def __init__(self, session: aiohttp.ClientSession, *, url: str, token: str, retry: RetryPolicy | None = None,
                 on_error: Callable[[int], None] | None = None, per_page: int = 100) -> None:
        self.retry = retry or RetryPolicy()
        self.per_page = per_page
        self._api = _API(session, token=token, url=url, timeout=self.retry.timeout)
        self._token = token
        self._on_error = on_error
        self._backoff = wait_exponential(multiplier=self.retry.base_delay, max=self.retry.max_delay) + \
            wait_random(0, self.retry.base_delay)
        self._no_diffs = False  # GitLab before 15.7 has no .../merge_requests/:iid/diffs: ask /changes at once
        self._no_approval_state = False  # GitLab's Community Edition has no .../approval_state: ask no more

    def __repr__(self) -> str:
        return f"GitLabClient(url={self._api.api_url!r}, token=<redacted>)"

    # --- transport ------------------------------------------------------------------------------------------
    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = _asked_wait(exc) if isinstance(exc, _HTTPStatus) else None
        return min(asked, self.retry.max_retry_after) if asked is not None else self._backoff(state)

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        what = exc.status if isinstance(exc, _HTTPStatus) else type(exc).__name__
        log.warning("GitLab call failed (%s), retry %d/%d in %.2fs", what, state.attempt_number,
                    self.retry.max_attempts - 1, state.upcoming_sleep)

    async def _once(self, method: str, path: str, params: dict[str, Any], data: Any) -> tuple[Any, str | None]:
        try:
            if method == "GET":
                answer = await self._api.get_page(path, params)
            elif method == "DELETE":
                await self._api.delete(path, params)
                answer = None, None
            else:
                send = self._api.post if method == "POST" else self._api.put
                answer = await send(path, params, data=data), None
        except _HTTPStatus as exc:
            _mark_stall(exc.status == 429 or exc.status >= 500)
            self._count(exc.status)
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError):
            _mark_stall(True)
            self._count(0)
            raise
        _mark_stall(False)
        return answer

    def _count(self, status: int) -> None:
        if self._on_error is not None:
            self._on_error(status)

    async def _call(self, method: str, path: str, params: dict[str, Any] | None = None,
                    data: Any = b"") -> tuple[Any, str | None]:
        """One API call with retries; returns (decoded body, next-page link or None)."""
        retrying = AsyncRetrying(stop=stop_after_attempt(self.retry.max_attempts), wait=self._wait,
                                 retry=retry_if_exception(_transient(method)), before_sleep=self._log_retry,
                                 reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    return _json_only(method, path, await self._once(method, path, params or {}, data))
        except json.JSONDecodeError as exc:  # a body that says it is JSON and is not (gidgetlab's decoding)
            raise GitLabError(200, method, path, f"{NOT_JSON} ({exc})") from None
        except _HTTPStatus as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            moved = redirected(exc.status, urljoin(self._api.api_url, exc.headers.get("Location", "")))
            raise GitLabError(exc.status, method, path, self._redacted(moved) if moved else
                              error_message(exc.status, self._redacted_body(exc.body), attempts=tries),
                              retry_after=_asked_wait(exc), no_route=route_missing(exc.status, exc.body),
                              no_scope=scope_missing(exc.status, exc.body),
                              no_project=project_missing(exc.status, exc.body)) from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            detail = f"{type(exc).__name__}: {exc}"
            proxy = isinstance(exc, (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)) or \
                bool(self._api._proxy) and self._api._proxy in detail  # an InvalidURL of the proxy's
            said = error_message(None, b"", attempts=tries, detail=detail, through_proxy=proxy)
            raise GitLabError(None, method, path, self._redacted(said)) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _redacted_body(self, body: bytes) -> bytes:
        """GitLab's answer without the token, before it is parsed and cut short (a cut inside the token would
        leave its first characters)."""
        return body.replace(self._token.encode(), b"<token>") if len(self._token) >= 8 else body

    def _redacted(self, text: str) -> str:
        """An error's text without the token: GitLab never echoes it, but a proxy's or firewall's error page in
        front of it may, and the text goes to the logs and to `reviewbot events`; nor the proxy's login, which
        aiohttp writes into the error of a CONNECT the proxy refused (`without_logins`), nor a proxy URL aiohttp
        cannot read (no scheme, or a `/`, `#` or `?` unencoded in its password), which its `InvalidURL` names
        whole and `without_logins` cannot take apart."""
        proxy = self._api._proxy
        if proxy:
            text = text.replace(proxy, _login_hidden(proxy))
        text = without_logins(text)
        return text.replace(self._token, "<token>") if len(self._token) >= 8 else text

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return (await self._call("GET", path, params))[0]

    async def _get_found(self, path: str, params: dict[str, Any] | None = None, *, missing: Any = None) -> Any:
        """`_get`, with `missing` for a 404 (GitLab's answer for "no such thing" and for "not visible to you")."""
        try:
            return await self._get(path, params)
        except GitLabError as exc:
            if exc.not_found:
                return missing
            raise

    async def _pages(self, path: str, params: dict[str, Any], page_start: int = 1) -> AsyncIterator[Page[Any]]:
        """Every page from `page_start`, each fetched (and retried) on its own."""
        page: int | None = page_start
        while page is not None:
            items, more = await self._call("GET", path, {**params, "page": page, "per_page": self.per_page})
            next_page = page + 1 if more else None
            yield Page[Any](page=page, items=list(items or []), next_page=next_page)
            page = next_page

    async def _all(self, model: type[M], path: str, params: dict[str, Any] | None = None) -> list[M]:
        return [model.model_validate(item) async for page in self._pages(path, params or {}) for item in page.items]

    @staticmethod
    def _p(pid: ProjectId) -> str:
        return f"/projects/{quote(str(pid), safe='')}"

    def _mr(self, pid: ProjectId, iid: int) -> str:
        return f"{self._p(pid)}/merge_requests/{int(iid)}"

    # --- users and projects ---------------------------------------------------------------------------------
    async def current_user(self) -> User:
        """The bot's own user (whose notes and reviewer changes the bot must ignore)."""
        return User.model_validate(await self._get("/user"))

    async def token_scopes(self) -> list[str] | None:
        """The scopes of the token in use (GET /personal_access_tokens/self, GitLab 15.5+, for personal, project
        and group access tokens), or None where GitLab does not say: an older version (404; 15.1 to 15.4 take
        "self" for a token id and answer 401) or a token it does not describe so (another 4xx)."""
        try:
            data = await self._get("/personal_access_tokens/self")
        except GitLabError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                return None
            raise
        scopes = data.get("scopes") if isinstance(data, dict) else None
        return [str(s) for s in scopes] if isinstance(scopes, list) else None

    async def get_user(self, uid: int | str) -> User:
        return User.model_validate(await self._get(f"/users/{quote(str(uid), safe='')}"))

    async def user_status(self, uid: int | str) -> UserStatus:
        """The user's status; `.busy` is True when they set "Busy" (skip them as reviewers)."""
        return UserStatus.model_validate(await self._get(f"/users/{quote(str(uid), safe='')}/status"))

    async def get_project(self, pid: ProjectId) -> Project:
        return Project.model_validate(await self._get(self._p(pid)))

    async def list_members(self, pid: ProjectId) -> list[Member]:
        """Everyone with access (inherited included) at their effective level, all pages; blocked users too
        (check `.state`)."""
        return await self._all(Member, f"{self._p(pid)}/members/all")

    async def list_direct_members(self, pid: ProjectId) -> list[Member]:
        """The project's own members (GET /projects/:id/members: none inherited from its groups), all pages."""
        return await self._all(Member, f"{self._p(pid)}/members")

    async def get_member(self, pid: ProjectId, uid: int) -> Member | None:
        """One member's effective access, or None when the user has no access."""
        found = await self._get_found(f"{self._p(pid)}/members/all/{int(uid)}")
        return None if found is None else Member.model_validate(found)

    async def search_users(self, query: str) -> list[User]:
        """GET /users?search=: users whose name or username contains `query`, or whose public email is it
        (any of their emails for an admin token). Regular tokens get no email fields back."""
        return await self._all(User, "/users", {"search": query})

    # --- groups ---------------------------------------------------------------------------------------------
    async def get_group(self, group: int | str) -> Group | None:
        """A group by id or full path (`acme/frontend`), or None when it does not exist or is not visible."""
        found = await self._get_found(f"/groups/{quote(str(group), safe='')}")
        return None if found is None else Group.model_validate(found)

    async def list_group_members(self, group: int | str) -> list[Member]:
        """The group's direct members (none inherited from its ancestor groups), all pages; blocked users
        too: check `.state`."""
        return await self._all(Member, f"/groups/{quote(str(group), safe='')}/members")

    # --- merge requests -------------------------------------------------------------------------------------
    async def get_mr(self, pid: ProjectId, iid: int) -> MergeRequest:
        return MergeRequest.model_validate(await self._get(self._mr(pid, iid)))

    async def mr_changed_files(self, pid: ProjectId, iid: int) -> list[ChangedFile]:
        """Every changed file GitLab lists for the MR (see `ChangedFile.path`): all pages of /diffs (GitLab 15.7+),
        else the deprecated /changes. Both stop at GitLab's diff limits (`MergeRequest.diff_capped`)."""
        if not self._no_diffs:
            try:
                return await self._all(ChangedFile, f"{self._mr(pid, iid)}/diffs")
            except GitLabError as exc:
                if not exc.no_route:
                    raise
                log.info("GitLab has no merge request /diffs endpoint (a version before 15.7): reading /changes")
                self._no_diffs = True
        return await self._changes(pid, iid)

    async def _changes(self, pid: ProjectId, iid: int) -> list[ChangedFile]:
        """GET .../changes: the MR with its `changes` in one answer, `overflow` true when GitLab cut the list at
        its diff limits (the files past them are not fetched: `access_raw_diffs` would read every diff)."""
        data = await self._get(f"{self._mr(pid, iid)}/changes")
        changes = [ChangedFile.model_validate(c) for c in data.get("changes") or ()]
        if data.get("overflow"):
            log.info("GitLab lists only the first %d changed files of merge request !%d (its diff limits)",
                     len(changes), int(iid))
        return changes

    async def mr_approvals(self, pid: ProjectId, iid: int) -> Approvals:
        """Who approved (`.approvers`) and how many approvals are still required."""
        return Approvals.model_validate(await self._get(f"{self._mr(pid, iid)}/approvals"))

    async def mr_approval_state(self, pid: ProjectId, iid: int) -> ApprovalState | None:
        """The MR's approval rules with who approved each (Premium); None where GitLab has no such endpoint.

        GitLab's Community Edition lacks the route (its catch-all 404): that is remembered, and this client asks
        no more. The Enterprise Edition without Premium (GitLab.com Free) answers with no rules.
        """
        if self._no_approval_state:
            return None
        try:
            return ApprovalState.model_validate(await self._get(f"{self._mr(pid, iid)}/approval_state"))
        except GitLabError as exc:
            if not exc.no_route:
                raise
            log.info("GitLab has no merge request /approval_state endpoint (Community Edition): approval rules "
                     "are not read")
            self._no_approval_state = True
            return None

    async def project_approval_settings(self, pid: ProjectId) -> ApprovalSettings | None:
        """The project's approval settings (GET /projects/:id/approvals); None where GitLab has no such endpoint
        (the Community Edition: its catch-all 404)."""
        try:
            return ApprovalSettings.model_validate(await self._get(f"{self._p(pid)}/approvals"))
        except GitLabError as exc:
            if not exc.no_route:
                raise
            return None

    async def mr_commits(self, pid: ProjectId, iid: int) -> list[Commit]:
        """The commits of the MR's branch (GET .../merge_requests/:iid/commits, newest first), all pages."""
        return await self._all(Commit, f"{self._mr(pid, iid)}/commits")

    async def mr_reviewer_states(self, pid: ProjectId, iid: int) -> list[ReviewerState] | None:
        """The MR's reviewers, each with their review state (who has reviewed, approved, asked for changes);
        None where GitLab has no such endpoint (a 404: versions before review states)."""
        found = await self._get_found(f"{self._mr(pid, iid)}/reviewers")
        return None if found is None else [ReviewerState.model_validate(r) for r in found]

    async def set_reviewers(self, pid: ProjectId, iid: int, ids: Sequence[int]) -> MergeRequest:
        """Replace the MR's reviewers with `ids` (send existing + new to add); returns the MR as GitLab left it
        (its `reviewers`: who GitLab kept; its `updated_at`: when).

        GitLab silently drops ids it refuses (non-members, blocked users; all but the first on the Free tier),
        so compare the result with what was asked.
        """
        mr = await self._call("PUT", self._mr(pid, iid), data={"reviewer_ids": [int(i) for i in ids]})
        return MergeRequest.model_validate(mr[0])

    async def iter_merged_mrs(self, pid: ProjectId, *, updated_after: datetime | None = None,
                              page_start: int = 1) -> AsyncIterator[Page[MergeRequest]]:
        """Merged MRs oldest-updated first, one `Page` at a time, for a resumable backfill.

        Store `page.next_page` after handling a page and pass it back as `page_start` to resume; or store the
        last `updated_at` seen and pass it as `updated_after` (robust when MRs change meanwhile).
        """
        params: dict[str, Any] = {"state": "merged", "order_by": "updated_at", "sort": "asc"}
        if updated_after is not None:
            params["updated_after"] = _iso(updated_after)
        async for page in self._pages(f"{self._p(pid)}/merge_requests", params, page_start):
            yield Page[MergeRequest](page=page.page, next_page=page.next_page,
                                     items=[MergeRequest.model_validate(item) for item in page.items])

    async def merged_mrs_since(self, pid: ProjectId, updated_after: datetime | None = None,
                               ) -> AsyncIterator[list[MergeRequest]]:
        """Merged MRs oldest-updated first, a page at a time, each page asked from the last `updated_at` seen.

        Page numbers over a list ordered by `updated_at` skip items when one already read is updated meanwhile
        (a comment on an old MR moves it to the end and shifts the rest left); asking again from the last time
        seen (`updated_after` is inclusive) cannot, and the MRs met twice at that time are not yielded again.
        A page number is used only to get past more than a page of MRs updated at the very same second; such
        a second is read once more from its first page at its end, for an MR a shift slid onto a page read.
        """
        params: dict[str, Any] = {"state": "merged", "order_by": "updated_at", "sort": "asc"}
        seen: set[int] = set()  # the ids yielded whose updated_at falls in the cursor's second
        page, again = 1, None  # `again`: the second stepped through by page numbers and read once more
        path = f"{self._p(pid)}/merge_requests"
        while True:
            if updated_after is not None:
                params["updated_after"] = _iso(updated_after)  # whole seconds: GitLab's times have milliseconds
            items, more = await self._call("GET", path, {**params, "page": page, "per_page": self.per_page})
            mrs = _readable(items or [], MergeRequest, path)
            new = [mr for mr in mrs if mr.id not in seen]
            if new:
                yield new
            last = _second(max((mr.updated_at for mr in mrs), default=updated_after or _EPOCH))
            second = _second(updated_after or _EPOCH)
            if more and updated_after is not None and last <= second:  # a whole page within one second
                seen |= {mr.id for mr in mrs}
                page += 1
            elif page > 1 and again != second:  # at the end of a second stepped through: read it once more
                seen |= {mr.id for mr in mrs}
                page, again = 1, second
            elif not more:
                return
            else:
                updated_after, page = last, 1
                seen = {mr.id for mr in mrs if _second(mr.updated_at) == last}

    async def reads_merge_requests(self, pid: ProjectId) -> bool:
        """Whether the token's user may read the project's merge requests (one item of GET .../merge_requests):
        False for a project GitLab hides from them (404) or whose merge requests it closes to them (403: a Guest
        of a private project, merge requests limited to members or turned off). A 403 for the token's scopes
        (`no_scope`) raises: it says nothing about the project."""
        try:
            await self._call("GET", f"{self._p(pid)}/merge_requests", {"per_page": 1})
        except GitLabError as exc:
            if exc.status == 404 or exc.status == 403 and not exc.no_scope:
                return False
            raise
        return True

    async def list_mrs(self, pid: ProjectId, **filters: str | int) -> list[MergeRequest]:
        """All MRs matching GitLab's list filters, e.g. `state="opened", reviewer_id=7`."""
        return await self._all(MergeRequest, f"{self._p(pid)}/merge_requests", dict(filters))

    async def open_review_counts(self, pid: ProjectId, user_ids: Iterable[int]) -> dict[int, int]:
        """How many open MRs each user is a reviewer of (one listing of open MRs, not one call per user)."""
        counts = dict.fromkeys((int(u) for u in user_ids), 0)
        for mr in await self.list_mrs(pid, state="opened"):
            for reviewer in mr.reviewers:
                if reviewer.id in counts:
                    counts[reviewer.id] += 1
        return counts

    # --- notes and award emoji ------------------------------------------------------------------------------
    async def list_notes(self, pid: ProjectId, iid: int) -> list[Note]:
        """All notes of the MR, oldest first (system notes included: check `.system`)."""
        params = {"order_by": "created_at", "sort": "asc"}
        return await self._all(Note, f"{self._mr(pid, iid)}/notes", params)

    async def notes_after(self, pid: ProjectId, iid: int, note_id: int) -> list[Note]:
        """The MR's notes posted after note `note_id`, newest first (system notes included).

        Pages newest first and stops at the first note that is `note_id` or older, so the cost follows the
        notes posted since, not the whole thread (thousands of notes were a request per hundred). GitLab
        numbers notes from one sequence: a note posted after `note_id` has a larger id and, its time set when
        it is saved, comes before it in the list (ties go by id).
        """
        params = {"order_by": "created_at", "sort": "desc"}
        newer: list[Note] = []
        async with aclosing(self._pages(f"{self._mr(pid, iid)}/notes", params)) as pages:
            async for page in pages:
                for note in (Note.model_validate(item) for item in page.items):
                    if note.id <= note_id:
                        return newer
                    newer.append(note)
        return newer

    async def get_note(self, pid: ProjectId, iid: int, note_id: int) -> Note:
        return Note.model_validate(await self._get(f"{self._mr(pid, iid)}/notes/{int(note_id)}"))

    async def discussion_notes(self, pid: ProjectId, iid: int, discussion_id: str) -> list[Note] | None:
        """The notes of one discussion of the MR, oldest first (the first one started it); None when GitLab
        has no such discussion (or does not show it). Why this call: the Notes API does not say which
        discussion a note is in, nor who started it; the Discussions API does."""
        found = await self._get_found(f"{self._mr(pid, iid)}/discussions/{quote(discussion_id, safe='')}")
        if not isinstance(found, dict):
            return None
        return [Note.model_validate(n) for n in found.get("notes") or () if isinstance(n, dict) and "id" in n]

    async def create_note(self, pid: ProjectId, iid: int, body: str, *, internal: bool = False) -> Note | None:
        """Comment on the MR; None when the body held only quick actions (GitLab ran them, saved nothing)."""
        data: dict[str, Any] = {"body": body, "internal": True} if internal else {"body": body}
        created, _ = await self._call("POST", f"{self._mr(pid, iid)}/notes", data=data)
        return Note.model_validate(created) if isinstance(created, dict) and "id" in created else None

    async def reply_in_discussion(self, pid: ProjectId, iid: int, discussion_id: str, body: str) -> Note | None:
        """Reply in a discussion of the MR (a thread, or one on the code); None as `create_note`. A reply is as
        internal as the discussion's first note (GitLab decides it)."""
        path = f"{self._mr(pid, iid)}/discussions/{quote(discussion_id, safe='')}/notes"
        created, _ = await self._call("POST", path, data={"body": body})
        return Note.model_validate(created) if isinstance(created, dict) and "id" in created else None

    async def update_note(self, pid: ProjectId, iid: int, note_id: int, body: str) -> Note:
        """Edit one of the bot's own notes (only the author may)."""
        edited, _ = await self._call("PUT", f"{self._mr(pid, iid)}/notes/{int(note_id)}", data={"body": body})
        return Note.model_validate(edited)

    async def award_emoji(self, pid: ProjectId, iid: int, note_id: int | None, name: str) -> AwardEmoji:
        """Award `name` (e.g. "eyes", without colons) on a note, or on the MR itself when `note_id` is None."""
        target = self._mr(pid, iid) + (f"/notes/{int(note_id)}" if note_id is not None else "")
        awarded, _ = await self._call("POST", f"{target}/award_emoji", data={"name": name})
        return AwardEmoji.model_validate(awarded)

    # --- files and hooks ------------------------------------------------------------------------------------
    async def file_raw(self, pid: ProjectId, path: str, ref: str | None = None) -> str | None:
        """A file's text on `ref` (default branch when None), or None when it does not exist; bytes that are
        not UTF-8 are replaced."""
        data = await self.file_bytes(pid, path, ref)
        return None if data is None else data.decode("utf-8", "replace")

    async def file_bytes(self, pid: ProjectId, path: str, ref: str | None = None) -> bytes | None:
        """A file's bytes on `ref` (default branch when None), or None when it does not exist."""
        params = {"ref": ref} if ref else {}
        data = await self._get_found(f"{self._p(pid)}/repository/files/{quote(path, safe='')}/raw", params,
                                     missing=_NOT_FOUND)
        if data is _NOT_FOUND:
            return None
        return data or b""  # gidgetlab reads an empty body as None

    async def list_protected_branches(self, pid: ProjectId) -> list[ProtectedBranch]:
        """The project's branch protections as defined, all pages, with those it inherits from its group
        (Premium). The listing, not GET .../protected_branches/:name: that one finds a protection only by its
        exact name, and a branch like `release/1.0` is protected by the wildcard `release/*`."""
        return await self._all(ProtectedBranch, f"{self._p(pid)}/protected_branches")

    async def list_hooks(self, pid: ProjectId) -> list[Hook]:
        return await self._all(Hook, f"{self._p(pid)}/hooks")

    async def create_hook(self, pid: ProjectId, url: str, *, token: str | None = None,
                          merge_requests_events: bool = True, note_events: bool = True, emoji_events: bool = True,
                          push_events: bool = False, enable_ssl_verification: bool = True,
                          name: str | None = None) -> Hook:
        """Register the bot's webhook (needs Maintainer); `push_events` is sent explicitly as GitLab defaults it on."""
        data: dict[str, Any] = {
            "url": url, "merge_requests_events": merge_requests_events, "note_events": note_events,
            "emoji_events": emoji_events, "push_events": push_events,
            "enable_ssl_verification": enable_ssl_verification,
        }
        if token:
            data["token"] = token
        if name:
            data["name"] = name
        created, _ = await self._call("POST", f"{self._p(pid)}/hooks", data=data)
        return Hook.model_validate(created)
