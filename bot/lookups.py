"""What the bot asks GitLab about a project beyond the merge request itself, cached for a short while.

Why a cache: every suggestion needs the project's members, its CODEOWNERS file and branch protections, the
statuses of the people it considers and the open merge requests' reviewers (their loads), and the merge
request's changed files (kept for its head commit). Those change slowly next to a burst of webhooks (a push
updates several MRs at once, one comment holds 20 commands), so `Recent` keeps each answer for a minute (open
review loads for ten seconds). `gather` runs several of these requests at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Hashable, TypeVar

from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import ApprovalRule, ChangedFile, MergeRequest, ProtectedBranch
from bot.gitlab.models import Member as GitLabMember
from bot.logfmt import kv
from graph.codeowners import CodeOwners, parse_codeowners

__all__ = ["gather", "Recent", "Lookups", "load_codeowners", "CodeOwnersUnreadable", "ApprovalRulesUnreadable",
           "CODEOWNERS_PATHS"]

log = logging.getLogger("bot.lookups")

# GitLab reads the first of these that exists on the target branch (`Gitlab::CodeOwners::FILE_PATHS`)
CODEOWNERS_PATHS = ("CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")
# GitLab's answers about the CODEOWNERS file that say nothing of GitLab as a whole: a refusal, a server error
# for that file, a request GitLab will never accept. No answer, a bad token (401, or a 403 for its scopes) or a
# rate limit (429) still fail the event, to be retried.
_FILE_ONLY = frozenset({400, 403, 405, 410, 422})
T = TypeVar("T")


class CodeOwnersUnreadable(Exception):
    """GitLab would not give the CODEOWNERS file this time (`status` its answer): the suggestion goes on
    without it and says so."""

    def __init__(self, project_id: int, path: str, status: int | None) -> None:
        self.project_id, self.path, self.status = project_id, path, status
        super().__init__(f"CODEOWNERS {path} of project {project_id} could not be read ({status})")


async def gather(*aws: Awaitable[T]) -> list[T]:
    """Run awaitables together; on the first failure cancel the rest and raise that failure itself.

    (A TaskGroup would raise an ExceptionGroup, hiding `retry_after` / `permanent` from the worker.)
    """
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Recent:
    """Answers kept for `ttl` seconds (at most `size` of them), so a burst of events does not ask GitLab the
    same question (a status, the member list, CODEOWNERS) again and again; staleness of a minute is harmless.
    """

    def __init__(self, ttl: float = 60.0, *, size: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: dict[Hashable, tuple[float, Any]] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]],
                  ttl: float | Callable[[T], float] | None = None) -> T:
        """The cached value of `key`, or `await fetch()` (a failure is not cached); `ttl` may depend on the value
        (a function of it): some answers stay true longer than others."""
        now = self.clock()
        hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[no-any-return]
        value = await fetch()
        self.remember(key, value, self.ttl if ttl is None else ttl(value) if callable(ttl) else ttl, now=now)
        return value

    def peek(self, key: Hashable) -> Any:
        """`key`'s answer while it is kept, else None; asks nothing."""
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > self.clock() else None

    def remember(self, key: Hashable, value: Any, ttl: float, *, now: float | None = None) -> None:
        """Keep `value` as `key`'s answer for `ttl` seconds. At `size` answers, the expired ones go, and all of
        them if none had expired: a bound on memory, not an eviction order."""
        now = self.clock() if now is None else now
        if len(self._items) >= self.size:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= self.size:
                self._items.clear()
        self._items[key] = (now + ttl, value)

    def replace(self, key: Hashable, value: Any) -> None:
        """Change `key`'s answer while it is kept, until the time it was kept for: one the bot itself just made
        out of date (nothing when it is not kept: the next `get` asks)."""
        hit = self._items.get(key)
        if hit is not None and hit[0] > self.clock():
            self._items[key] = (hit[0], value)

    def forget(self, key: Hashable) -> None:
        """Drop `key`'s answer: the next `get` asks again (one that turned out to be out of date)."""
        self._items.pop(key, None)


class ApprovalRulesUnreadable(Exception):
    """GitLab failed on the merge request's approval state alone (a 5xx after the client's retries, or an answer
    no retry changes): the suggestion goes on without approval rules and says so."""

    def __init__(self, project_id: int, iid: int, status: int | None) -> None:
        self.project_id, self.iid, self.status = project_id, iid, status
        super().__init__(f"approval rules of merge request !{iid} of project {project_id} could not be read "
                         f"({status})")


class ProtectionsUnreadable(Exception):
    """GitLab would not list the branch protections (403 to a Developer on older versions, or a 5xx): whether
    code owners must approve is then taken as yes, as before the bot read protections, and asked again."""


class _SettingUnreadable(Exception):
    """GitLab failed on the project's approval settings this time (a 5xx): nothing is kept, asked again next time."""


class Lookups:
    """The GitLab answers the ranking needs beyond the MR itself, through a `Recent` cache."""

    LOADS_TTL = 10.0  # open review loads change when reviewers are requested: keep them only briefly
    BOT_TTL = 3600.0  # an account's bot flag never changes
    REFUSED_TTL = 3600.0  # a token refused the approval state: its permissions seldom change

    def __init__(self, client: GitLabClient, recent: Recent, once: dict[Hashable, Any] | None = None) -> None:
        """`once`: the answers one event's handling reads a single time however many suggestions it makes (one
        comment's 20 `why`s), to share between them; None reads afresh each time."""
        self.client, self.recent, self.once = client, recent, once

    async def members(self, project_id: int) -> list[GitLabMember]:
        return await self.recent.get(("members", project_id), lambda: self.client.list_members(project_id))

    async def changed_files(self, project_id: int, mr: MergeRequest) -> tuple[ChangedFile, ...]:
        """The MR's changed files (every page of its diffs), kept a minute for its head commit and target branch:
        every suggestion asks, and one comment's `why` commands (20, from anyone: `why` needs no access) read
        every page 20 times. A push (a new head) or a new target branch (a new diff, the head unchanged) reads
        them again; an MR GitLab gives no head for is read each time. Kept without their patches (GitLab sends
        each file's whole diff): a minute of large merge requests' diffs would fill the memory."""
        async def fetch() -> tuple[ChangedFile, ...]:
            fields = set(ChangedFile.model_fields)
            return tuple(ChangedFile.model_validate(f.model_dump(include=fields))
                         for f in await self.client.mr_changed_files(project_id, mr.iid))
        if not mr.sha:
            return await fetch()
        return await self.recent.get(("changed files", project_id, mr.iid, mr.sha, mr.target_branch), fetch)

    def forget_members(self, project_id: int) -> None:
        """Ask for the project's members again next time (one of them renamed themselves)."""
        self.recent.forget(("members", project_id))

    async def codeowners(self, project_id: int, branch: str | None) -> CodeOwners | None:
        """The parsed CODEOWNERS of `branch` (the default branch when None), or None; raises
        `CodeOwnersUnreadable`, which is not kept: the next suggestion asks again.

        The branch is read by its full name, `refs/heads/<branch>`, as GitLab reads it (`target_branch_ref`):
        for a bare name git takes a tag of that name first."""
        ref = f"refs/heads/{branch}" if branch else None
        return await self.recent.get(("codeowners", project_id, ref),
                                     lambda: load_codeowners(self.client, project_id, ref))

    async def code_owner_approval(self, project_id: int, branch: str) -> bool:
        """Whether GitLab requires code owners' approval for merge requests into `branch`: a protection of it
        (by name or wildcard) has "Code owner approval required" (Premium; GitLab's
        `branch_requires_code_owner_approval?`). An unprotected branch, or GitLab's free tier, requires none.

        When the token may not read the protections (403: older GitLab versions ask Maintainer), or GitLab
        fails on them (5xx after the client's retries), the bot cannot tell and takes it as required (asked
        again next time), as it did before it read them: asking one owner too many costs a
        review request, missing one leaves the merge request blocked.
        """
        try:
            protections = await self.recent.get(("protected", project_id), lambda: self._protections(project_id))
        except ProtectionsUnreadable:  # not cached: asked again next time
            return True
        return any(p.code_owner_approval_required and p.protects(branch) for p in protections)

    async def _protections(self, project_id: int) -> list[ProtectedBranch]:
        try:
            return await self.client.list_protected_branches(project_id)
        except GitLabError as exc:
            if exc.no_scope or not (exc.status == 403 or (exc.status or 0) >= 500):
                raise  # no answer, 401, 429 or a token without the scope: every call fails, retry the event
            log.info(kv("branch protections not readable: CODEOWNERS approval taken as required; give the bot "
                        "Maintainer access for the bot to know", project_id=project_id, error=str(exc)))
            raise ProtectionsUnreadable from exc

    async def approval_rules(self, project_id: int, iid: int) -> list[ApprovalRule]:
        """The rules GitLab applies to the MR now, each with who approved (`GitLabClient.mr_approval_state`).
        Not kept across events: approvals change them, and the merge request's other reads run beside this one.
        Within one event's handling (`once`) read once, their failure too: one comment's 20 `why`s, from anyone,
        each build a suggestion, and would ask GitLab 20 times.

        No rules where GitLab has none to give: without Premium (an empty list), on the Community Edition (no
        such endpoint: the client stops asking) or to a token GitLab refuses (403, say a fine-grained token
        without `read_merge_request_approval_state`: logged once and remembered an hour for the project, so
        nothing is asked meanwhile). Raises `ApprovalRulesUnreadable` when GitLab fails on this answer alone,
        and `GitLabError` when GitLab as a whole fails (no answer, 401, 429, a token without the api scope): the
        event is retried.
        """
        if self.once is None:
            return await self._approval_rules(project_id, iid)
        key = ("approval rules", project_id, iid)
        if key not in self.once:
            try:
                self.once[key] = await self._approval_rules(project_id, iid)
            except ApprovalRulesUnreadable as exc:
                self.once[key] = exc
        answer = self.once[key]
        if isinstance(answer, ApprovalRulesUnreadable):
            raise answer.with_traceback(None)
        return list(answer)

    async def _approval_rules(self, project_id: int, iid: int) -> list[ApprovalRule]:
        refused = ("approval state refused", project_id)
        if self.recent.peek(refused):
            return []
        try:
            state = await self.client.mr_approval_state(project_id, iid)
        except GitLabError as exc:
            if exc.general:
                raise
            if exc.status == 403:
                log.info(kv("approval rules not readable with the bot's token: suggesting without them",
                            project_id=project_id, error=str(exc)))
                self.recent.remember(refused, True, max(self.recent.ttl, self.REFUSED_TTL))
                return []
            log.warning(kv("approval rules not readable this time: suggesting without them", project_id=project_id,
                           mr_iid=iid, status=exc.status, error=str(exc)))
            raise ApprovalRulesUnreadable(project_id, iid, exc.status) from exc
        return [] if state is None else list(state.rules)

    async def committers_barred(self, project_id: int) -> bool:
        """Whether GitLab keeps whoever added commits to a merge request from approving it ("Prevent approvals
        by users who add commits": `merge_requests_disable_committers_approval` of GET /projects/:id/approvals),
        kept a minute like the other project lookups.

        Where GitLab does not say (a token it refuses, a GitLab without the field or the endpoint) the bot counts
        committers as approvers, as it did before it read the setting: logged once, and not asked again for the
        project for an hour. A GitLab failing on it (5xx) is logged and asked next time; no answer, 401, 429 or a
        token without the api scope fail the event, to be retried."""
        try:
            barred = await self.recent.get(("committers barred", project_id),
                                           lambda: self._committers_setting(project_id), ttl=self._setting_ttl)
        except _SettingUnreadable:
            return False
        return barred is True

    def _setting_ttl(self, barred: bool | None) -> float:
        """A setting GitLab did not give is not asked again for an hour (`REFUSED_TTL`): it seldom changes."""
        return self.recent.ttl if barred is not None else max(self.recent.ttl, self.REFUSED_TTL)

    async def _committers_setting(self, project_id: int) -> bool | None:
        """`merge_requests_disable_committers_approval`, or None where GitLab does not give it (logged)."""
        try:
            settings = await self.client.project_approval_settings(project_id)
        except GitLabError as exc:
            if exc.general:
                raise
            if exc.status >= 500:
                log.warning(kv("committers' approval setting not readable this time: committers counted as "
                               "approvers", project_id=project_id, status=exc.status, error=str(exc)))
                raise _SettingUnreadable from exc
            log.info(kv("committers' approval setting not readable with the bot's token: committers counted as "
                        "approvers", project_id=project_id, error=str(exc)))
            return None
        barred = settings.merge_requests_disable_committers_approval if settings is not None else None
        if barred is None:
            log.info(kv("GitLab does not say whether committers may approve (no such setting in its answer): "
                        "committers counted as approvers", project_id=project_id))
        return barred

    async def status(self, uid: int | str) -> str:
        """What a user's status says of reviewing now (`UserStatus.condition`: busy, away, at_capacity or
        available)."""
        async def fetch() -> str:
            return (await self.client.user_status(uid)).condition
        return await self.recent.get(("status", uid), fetch)

    async def is_bot(self, uid: int) -> bool:
        """Whether a user's account carries GitLab's `bot` flag: service accounts may take any username, and
        the members API leaves the flag out (`GET /users/:id` has it). Kept an hour: it does not change."""
        async def fetch() -> bool:
            try:
                return (await self.client.get_user(uid)).bot
            except GitLabError as exc:
                if exc.not_found:  # a deleted account (or one hidden from the bot's token): no bot to skip
                    return False
                raise
        try:
            return await self.recent.get(("bot", uid), fetch, ttl=max(self.recent.ttl, self.BOT_TTL))
        except GitLabError as exc:  # GitLab rate-limits the Users API: the name rules still apply; ask next time
            log.info(kv("bot flag unknown; taken as no bot", user_id=uid, status=exc.status))
            return False

    async def open_reviewers(self, project_id: int) -> list[tuple[int, list[int]]]:
        """(iid, reviewer ids) of each open MR of the project (one listing)."""
        async def fetch() -> list[tuple[int, list[int]]]:
            return [(mr.iid, [u.id for u in mr.reviewers])
                    for mr in await self.client.list_mrs(project_id, state="opened")]
        return await self.recent.get(("open", project_id), fetch, ttl=min(self.LOADS_TTL, self.recent.ttl))

    def open_reviews_changed(self, project_id: int) -> None:
        """Someone changed an open MR's reviewers, or an MR opened with some, closed, reopened or merged: the
        open reviews kept are out of date (the next suggestion lists them again)."""
        self.recent.forget(("open", project_id))

    def reviewers_set(self, project_id: int, iid: int, reviewer_ids: list[int]) -> None:
        """The bot set MR `iid`'s reviewers to `reviewer_ids` (as GitLab kept them): the open reviews kept are
        changed to say so. Why: a burst of merge requests (opened together, one push to several) is ranked on
        one listing, which did not count the review the bot had just requested on the one before: it asked the
        same person on each, past `max_open_reviews`."""
        listed = self.recent.peek(("open", project_id))
        if listed is not None:
            others = [(i, ids) for i, ids in listed if i != iid]
            self.recent.replace(("open", project_id), [*others, (iid, list(reviewer_ids))])


async def load_codeowners(client: GitLabClient, project_id: int, ref: str | None) -> CodeOwners | None:
    """The CODEOWNERS file of `ref` (first of `CODEOWNERS_PATHS` that exists), parsed; None when there is none.

    A 403, a 5xx after the client's retries or another answer no retry changes (400, 422…) raises
    `CodeOwnersUnreadable` with a warning: without it the whole event failed again and again until it was
    dead-lettered, and the merge request never got a suggestion. The later paths are not tried then (GitLab
    reads the first that exists, and this one may). No answer, 401 and 429 raise `GitLabError` as before:
    those stop every call, and the event is retried.
    """
    for path in CODEOWNERS_PATHS:
        try:
            data = await client.file_bytes(project_id, path, ref or None)
        except GitLabError as exc:
            if exc.status is None or exc.no_scope or not (exc.status in _FILE_ONLY or exc.status >= 500):
                raise
            log.warning(kv("CODEOWNERS not readable this time: suggesting without it", project_id=project_id,
                           path=path, ref=ref, status=exc.status, error=str(exc)))
            raise CodeOwnersUnreadable(project_id, path, exc.status) from exc
        if data is not None:
            # read as GitLab reads it (its first 10 MiB, none of a binary file); a 20k-line file takes a second
            parsed = await asyncio.to_thread(parse_codeowners, data)
            for error in parsed.errors[:5]:
                log.info(kv("CODEOWNERS problem", project_id=project_id, path=path, error=str(error)))
            return parsed
    return None
