"""`SimState`: everything a simulated GitLab knows, plus the knobs tests turn (failures, slow answers, rate limits,
free tier).

Plain Python, no I/O. The aiohttp app (simulator.py) reads and changes it; tests build scenarios with its helper
methods and then check `requests`, `unknown` and `deliveries`. Merge request lifecycle helpers live in the
`MRActions` mixin (sim_mr.py); webhook events go to `outbox` and are POSTed by the running simulator.
"""
from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from bot.gitlab.sim_approvals import ApprovalActions
from bot.gitlab.sim_groups import GroupActions
from bot.gitlab.sim_model import (
    Delivery, HookEvent, SimGroup, SimHook, SimMR, SimProject, SimProtectedBranch, SimRequest, SimToken, SimUser,
)
from bot.gitlab.sim_mr import MRActions
from bot.gitlab.sim_oauth import OAuthActions

if TYPE_CHECKING:
    from bot.gitlab.sim_webhooks import WebhookSender

__all__ = ["SimState", "UserRef", "ProjectRef", "DEVELOPER", "MAINTAINER", "RateInfo"]

UserRef = SimUser | str | int
ProjectRef = SimProject | str | int
DEVELOPER, MAINTAINER, OWNER = 30, 40, 50


class RateInfo:
    """The RateLimit-* numbers of one request; `exceeded` means answer 429."""

    def __init__(self, limit: int, observed: int, reset: float) -> None:
        self.limit, self.observed, self.reset = limit, observed, reset

    @property
    def exceeded(self) -> bool:
        return self.observed > self.limit


class SimState(MRActions, GroupActions, ApprovalActions, OAuthActions):
    """The simulated GitLab instance: users, groups, projects, tokens, recorded requests and failure knobs.

    >>> s = SimState(token="t")
    >>> p = s.add_project("acme/app")
    >>> s.add_user("ann").username in {u.username for u in s.users.values()}
    True
    """

    def __init__(self, *, token: str = "sim-token", bot_username: str = "reviewbot", seed: int = 0,
                 web: str = "http://gitlab.example.com", free_tier: bool = False) -> None:
        self.web = web
        self.root_path = ""  # GitLab's relative_url_root (e.g. "/gitlab"): every route and URL is under it
        # where GitLab believes it is reached, when a proxy in front does not pass Host and X-Forwarded-Proto on
        # (e.g. "http://10.0.0.5:8080"): the pagination `Link` headers point there (None: where it was asked)
        self.seen_url: str | None = None
        self.free_tier = free_tier  # no Premium: one reviewer kept, no approval rules, CE's approval hooks
        self.community_edition = False  # GitLab without its Enterprise code: its endpoints (`ee_only`) are missing
        self.version: tuple[int, int] = (17, 5)  # the GitLab version played (endpoints added later answer 404)
        self.diff_max_files = 1000  # GitLab's diff limit (admin setting, 1,000 by default, at most 3,000)
        self.users: dict[int, SimUser] = {}
        self.projects: dict[int, SimProject] = {}
        self.groups: dict[int, SimGroup] = {}
        self.tokens: dict[str, SimToken] = {}
        self.requests: list[SimRequest] = []
        self.unknown: list[SimRequest] = []
        self.outbox: list[HookEvent] = []
        self.deliveries: list[Delivery] = []
        self.auto_hooks = True
        self.sender: WebhookSender | None = None
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.failure_rate = 0.0
        self.retry_after = 1.0
        self.rate_limit = 2000
        self.rate_window = 60.0
        self._fail_queue: list[tuple[int, float | None]] = []
        self.broken_paths: dict[str, int] = {}  # path ending -> status answered every time (`fail_path`)
        self.holds: list[tuple[str, dict[str, str], asyncio.Event]] = []  # `hold_path`
        self.held: list[str] = []  # the paths of the requests waiting on a hold right now
        self._scheduled: list[tuple[int, Callable[[], None]]] = []  # `after_requests`: (requests left, action)
        self._rate: dict[str, tuple[float, int]] = {}
        self._rng = random.Random(seed)
        self._ids = {kind: itertools.count(1) for kind in ("user", "group", "project", "mr", "note",
                                                           "award", "hook", "label", "token", "protection",
                                                           "approval_rule")}
        self._labels: dict[tuple[int, str], int] = {}
        self._init_oauth()  # applications, `browser_user` (signed in to GitLab), `oauth_deny`
        self.root = self.add_user("root", "Administrator")
        self.bot = self.add_user(bot_username, "Reviewer Bot", bot=True)
        self.add_token(self.bot, token)
        self.token = token

    # --- clock, ids -------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.clock()

    def new_uuid(self) -> str:
        """A v4 UUID from the seeded generator, so seeded runs send the same event ids."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def label_id(self, project: SimProject, title: str) -> int:
        return self._labels.setdefault((project.id, title), next(self._ids["label"]))

    # --- lookups ----------------------------------------------------------------------------------------------
    def user(self, ref: UserRef) -> SimUser:
        """A user by object, id or username; KeyError names what is missing."""
        if isinstance(ref, SimUser):
            return ref
        if isinstance(ref, int):
            return self.users[ref]
        for user in self.users.values():
            if user.username == ref:
                return user
        raise KeyError(f"no simulated user {ref!r}; add it with state.add_user({ref!r})")

    def find_user(self, ref: str) -> SimUser | None:
        """A user by the API's `:id` (numeric id or username), or None."""
        try:
            return self.user(int(ref) if ref.isdigit() else ref)
        except KeyError:
            return None

    def project(self, ref: ProjectRef) -> SimProject:
        """A project by object, id or path; KeyError names what is missing."""
        found = ref if isinstance(ref, SimProject) else self.find_project(str(ref))
        if found is None:
            raise KeyError(f"no simulated project {ref!r}; add it with state.add_project(...)")
        return found

    def find_project(self, ref: str) -> SimProject | None:
        """A project by the API's `:id` (numeric id or `group/name` path), or None."""
        if ref.isdigit():
            return self.projects.get(int(ref))
        return next((p for p in self.projects.values() if p.path_with_namespace == ref), None)

    def mr(self, project: ProjectRef, iid: int) -> SimMR:
        return self.project(project).mrs[iid]

    def token_user(self, token: str | None) -> SimUser | None:
        found = self.tokens.get(token or "")
        return None if found is None else self.users[found.user_id]

    def access_level(self, project: SimProject, user_id: int) -> int:
        """The user's effective level: direct, or inherited from the project's groups and shared groups (none
        while their membership awaits a seat)."""
        if user_id in self.awaiting_members(project):
            return 0
        return self.effective_members(project).get(user_id, 0)

    # --- building the world -----------------------------------------------------------------------------------
    def add_user(self, username: str, name: str | None = None, *, bot: bool = False, state: str = "active",
                 busy: bool = False, email: str | None = None, public_email: str | None = None) -> SimUser:
        """Create a user (`state` active/blocked/deactivated; `busy` sets the Busy status; `public_email` the
        address others may search for)."""
        user = SimUser(next(self._ids["user"]), username, name or username.replace(".", " ").title(), state=state,
                       bot=bot, busy=busy, email=email or f"{username}@example.com", created_at=self.now(),
                       public_email=public_email)
        self.users[user.id] = user
        return user

    def add_token(self, user: UserRef, token: str, *, scopes: Iterable[str] = ("api",)) -> SimToken:
        """Let `token` authenticate as `user` (the API acts as that user) within `scopes`."""
        record = SimToken(next(self._ids["token"]), self.user(user).id, f"token {len(self.tokens) + 1}", self.now(),
                          tuple(scopes))
        self.tokens[token] = record
        return record

    def set_busy(self, user: UserRef, busy: bool = True, message: str | None = None) -> None:
        target = self.user(user)
        target.busy, target.status_message = busy, message

    def set_status(self, user: UserRef, *, emoji: str | None = None, message: str | None = None,
                   busy: bool = False) -> None:
        """Set a user's status as they would under *Set status* (an emoji, a message, Busy or not)."""
        target = self.user(user)
        target.busy, target.status_message, target.status_emoji = busy, message, emoji

    def block_user(self, user: UserRef) -> None:
        self.user(user).state = "blocked"

    def rename_user(self, user: UserRef, username: str) -> SimUser:
        """Change a user's username, as they may in their profile: the id stays, and with it their
        memberships, merge requests, notes and approvals; every answer and webhook from now on names them
        `username`. A username another user holds (ignoring case) is refused, as GitLab refuses it."""
        target = self.user(user)
        if any(u.username.casefold() == username.casefold() and u.id != target.id for u in self.users.values()):
            raise ValueError(f"username {username!r} is taken: GitLab refuses it")
        target.username = username
        return target

    def add_project(self, path_with_namespace: str, *, default_branch: str = "main", approvals_required: int = 0,
                    bot_access_level: int | None = DEVELOPER) -> SimProject:
        """Create a project; the bot user becomes a member at `bot_access_level` (None: not a member).

        Its default branch is protected as GitLab protects a new project's, without code owner approval
        (`protect_branch` changes that)."""
        name = path_with_namespace.rsplit("/", 1)[-1].replace("-", " ").title()
        project = SimProject(next(self._ids["project"]), path_with_namespace, name, self.now(),
                             default_branch=default_branch, approvals_required=approvals_required)
        self.projects[project.id] = project
        project.members[self.root.id] = OWNER
        if bot_access_level is not None:
            project.members[self.bot.id] = bot_access_level
        self.protect_branch(project, default_branch)
        return project

    def fork_project(self, project: ProjectRef, owner: UserRef, path_with_namespace: str | None = None) -> SimProject:
        """Fork `project` as `owner` (default path `owner/name`): the fork has its repository files and
        visibility, `owner` as its one member (Owner), and none of its hooks, members or merge requests, as
        GitLab's fork copies none. MRs from it into `project` are opened with `open_mr(source_project=fork)`."""
        upstream, who = self.project(project), self.user(owner)
        fork = self.add_project(path_with_namespace or f"{who.username}/{upstream.path}", bot_access_level=None,
                                default_branch=upstream.default_branch)
        fork.forked_from_id, fork.visibility, fork.description = upstream.id, upstream.visibility, upstream.description
        fork.files = dict(upstream.files)
        fork.members[who.id] = OWNER
        return fork

    def protect_branch(self, project: ProjectRef, name: str, *, code_owner_approval_required: bool = False,
                       push_access_level: int = MAINTAINER, merge_access_level: int = MAINTAINER
                       ) -> SimProtectedBranch:
        """Protect a branch or wildcard (`release/*`); protecting a name again changes its settings."""
        target = self.project(project)
        found = next((p for p in target.protected_branches if p.name == name), None)
        if found is None:
            found = SimProtectedBranch(next(self._ids["protection"]), name)
            target.protected_branches.append(found)
        found.code_owner_approval_required = code_owner_approval_required
        found.push_access_level, found.merge_access_level = push_access_level, merge_access_level
        return found

    def unprotect_branch(self, project: ProjectRef, name: str) -> None:
        target = self.project(project)
        target.protected_branches = [p for p in target.protected_branches if p.name != name]

    def add_member(self, project: ProjectRef, user: UserRef, access_level: int = DEVELOPER) -> None:
        self.project(project).members[self.user(user).id] = access_level

    def archive(self, project: ProjectRef, archived: bool = True) -> None:
        """Archive the project (what POST /projects/:id/archive does), or unarchive it: GET shows `archived`, and
        every write to its merge requests, notes and awards is refused with 403, as GitLab does."""
        self.project(project).archived = archived

    def add_file(self, project: ProjectRef, path: str, content: str | bytes, ref: str | None = None) -> None:
        """Store a file (e.g. `.gitlab/CODEOWNERS`) on `ref`: a branch name (default: the project's default branch)
        or `refs/tags/<name>` for a tag. Text is stored as UTF-8, bytes as they are (a Latin-1 or UTF-16 file)."""
        target = self.project(project)
        target.files[(ref or target.default_branch, path.lstrip("/"))] = content

    def add_hook(self, project: ProjectRef, url: str, *, token: str | None = None, push_events: bool = False,
                 merge_requests_events: bool = True, note_events: bool = True, emoji_events: bool = True,
                 confidential_note_events: bool = False, name: str = "") -> SimHook:
        """Register a webhook (what POST /projects/:id/hooks does)."""
        target = self.project(project)
        hook = SimHook(next(self._ids["hook"]), target.id, url, self.new_uuid(), self.now(), token=token,
                       name=name, push_events=push_events, merge_requests_events=merge_requests_events,
                       note_events=note_events, emoji_events=emoji_events,
                       confidential_note_events=confidential_note_events)
        target.hooks.append(hook)
        return hook

    # --- failures and rate limits -----------------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, *, retry_after: float | None = None) -> None:
        """Make the next `n` API requests fail with `status` (429s carry Retry-After, default `retry_after`)."""
        self._fail_queue.extend([(status, retry_after)] * n)

    def fail_path(self, ending: str, status: int = 500) -> None:
        """Answer `status` to every request whose path ends with `ending` (an MR whose diff GitLab cannot
        render, say `/merge_requests/4/diffs`), however often it is asked."""
        self.broken_paths[ending] = status

    def hold_path(self, ending: str, **query: str) -> asyncio.Event:
        """Keep every request whose path ends with `ending` (and whose query has `query`) unanswered until the
        returned event is set: a GitLab slow to answer, say a large project's history listing
        (`hold_path("/projects/7/merge_requests", state="merged")`). `held` lists the requests waiting."""
        gate = asyncio.Event()
        self.holds.append((ending, dict(query), gate))
        return gate

    def hold_for(self, path: str, query: dict[str, str]) -> asyncio.Event | None:
        """The unset hold this request must wait on, if any."""
        for ending, wanted, gate in self.holds:
            if not gate.is_set() and path.endswith(ending) and all(query.get(k) == v for k, v in wanted.items()):
                return gate
        return None

    def after_requests(self, n: int, action: Callable[[], None]) -> None:
        """Run `action` when the `n`-th request from now arrives, before it is answered: something that happens
        in the middle of a run of calls (GitLab going down, `fail_path("", 502)`, or the bot user removed from
        the project half-way through a page of an import)."""
        self._scheduled.append((n, action))

    def _run_scheduled(self) -> None:
        due = [action for n, action in self._scheduled if n <= 1]
        self._scheduled = [(n - 1, action) for n, action in self._scheduled if n > 1]
        for action in due:
            action()

    def take_failure(self, path: str = "") -> tuple[int, float | None] | None:
        """The failure to inject into this request, if any: broken paths, scripted ones, then `failure_rate`."""
        self._run_scheduled()
        for ending, status in self.broken_paths.items():
            if path.endswith(ending):
                return status, None
        if self._fail_queue:
            return self._fail_queue.pop(0)
        if self.failure_rate and self._rng.random() < self.failure_rate:
            return (500, None) if self._rng.random() < 0.5 else (429, None)
        return None

    def rate_check(self, token: str) -> RateInfo:
        """Count this request in the token's fixed window (`rate_limit` per `rate_window` seconds)."""
        now = time.time()
        start, count = self._rate.get(token, (now, 0))
        if now - start >= self.rate_window:
            start, count = now, 0
        self._rate[token] = (start, count + 1)
        return RateInfo(self.rate_limit, count + 1, start + self.rate_window)

    # --- recorded traffic -------------------------------------------------------------------------------------
    def record(self, request: SimRequest, *, unknown: bool = False) -> None:
        self.requests.append(request)
        if unknown:
            self.unknown.append(request)

    def assert_no_unknown(self) -> None:
        """Fail loudly if anything called an endpoint the simulator does not implement."""
        if self.unknown:
            calls = ", ".join(f"{r.method} {r.path}" for r in self.unknown)
            raise AssertionError(f"requests to endpoints the GitLab simulator does not know: {calls}")

    def calls(self, method: str | None = None, contains: str = "") -> list[SimRequest]:
        """Recorded requests filtered by method and a substring of the path."""
        return [r for r in self.requests if (method is None or r.method == method) and contains in r.path]

    # --- webhook events ---------------------------------------------------------------------------------------
    def emit(self, project: SimProject, event_name: str, body: dict[str, Any]) -> HookEvent | None:
        """Queue an event for every hook of `project` that wants it (nothing is queued without such a hook)."""
        if not any(hook.wants(event_name) for hook in project.hooks):
            return None
        event = HookEvent(project.id, event_name, body, self.new_uuid())
        self.outbox.append(event)
        if self.auto_hooks and self.sender is not None:
            self.sender.wake()
        return event

    async def flush_hooks(self) -> list[Delivery]:
        """Deliver every queued event now and return the deliveries made (needs the simulator running)."""
        if self.sender is None:
            raise RuntimeError("webhooks need a running simulator: use `async with run_simulator(state)` first")
        return await self.sender.flush()

    async def deliver(self, event_name: str, body: dict[str, Any], project: ProjectRef) -> list[Delivery]:
        """Send one hand-built event body to the project's hooks right away, bypassing the queue."""
        target = self.project(project)
        if self.sender is None:
            raise RuntimeError("webhooks need a running simulator: use `async with run_simulator(state)` first")
        return await self.sender.send_event(HookEvent(target.id, event_name, body, self.new_uuid()))

    def iter_hooks(self, project_id: int, event_name: str) -> Iterable[SimHook]:
        project = self.projects[project_id]
        return [hook for hook in project.hooks if hook.wants(event_name)]
