"""Import a project's merged merge requests over the API into `storage.history`: the graph's first memory.

Why resumable: a large project has thousands of merged MRs and each costs two calls (changed files,
approvals), so an import can be cut short by a restart, a deploy or GitLab's rate limit. Merged MRs are
listed oldest-updated first; after each page the newest `updated_at` seen is saved as the project's backfill
cursor, and a later run lists again from there (`updated_after` is inclusive, so the boundary MR is read
twice and upserted once). Later merges arrive by webhook.

A backfill starts on the first event from a project (`Backfills.ensure`, in the background, a few projects at a
time: the event is parked in the queue for a bounded time, holding no worker, so other projects' events are not
held up) or by hand with `reviewbot backfill --project ID`. Of several processes (workers) seeing a new project,
one imports it, under a lease on the project's row; the others wait for it (see `Backfills`).

    report = await backfill_project(client, storage, 42, progress=print)
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import socket
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable, Collection, Iterable, Mapping, Sequence, TypeVar

from bot.eligibility import is_bot_username
from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import ChangedFile, MergeRequest, User
from bot.logfmt import kv
from bot.storage import FeedbackRow, Storage
from bot.storage.people import PeopleStore
from graph.model import Change

__all__ = ["BackfillProgress", "Backfills", "backfill_project", "change_from_mr", "change_id", "fetch_change",
           "drop_idle_picks", "BOT_PICK", "AUTOMATION", "is_bot_pick", "is_automated", "under_lease", "process_name",
           "IMPORT_LEASE", "DONE_RECHECK"]

log = logging.getLogger("bot.backfill")

Progress = Callable[["BackfillProgress"], None]
T = TypeVar("T")
IMPORT_LEASE = 60.0  # seconds a process holds a project's import unrenewed (it renews every third of them)
LEASE_POLL = 1.0     # seconds between looks at an import another process holds
DONE_RECHECK = 30.0  # seconds a project's import is taken as done before its row is read again
RETRY_FIRST = 30.0   # seconds before a failed background import may start again, doubled after each failure...
RETRY_MAX = 900.0    # ... up to this; less up to a quarter (jitter), so processes do not all retry together


@dataclass(frozen=True)
class BackfillProgress:
    """How far a backfill got: pages and MRs imported in this run, the cursor, whether it finished."""

    project_id: int
    pages: int
    imported: int
    skipped: int
    cursor: datetime | None
    done: bool


def change_id(iid: int) -> str:
    """The history id of a merge request (`!7`), the same for the backfill and the merge webhook."""
    return f"!{iid}"


def change_from_mr(mr: MergeRequest, files: Sequence[ChangedFile], approvers: Sequence[User], *,
                   bots: Collection[str] = ()) -> Change:
    """A merged MR as a `graph.Change`: people are GitLab usernames, the time is when it was merged, and the
    files it renamed carry their old path along (`Change.renames`).

    >>> from datetime import datetime, timezone
    >>> mr = MergeRequest.model_validate({"id": 1, "iid": 7, "project_id": 1, "title": "Fix", "state": "merged",
    ...     "author": {"id": 1, "username": "ann"}, "reviewers": [{"id": 2, "username": "bob"}],
    ...     "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-02T00:00:00Z",
    ...     "merged_at": "2025-01-02T00:00:00Z"})
    >>> files = [ChangedFile(old_path="a.py", new_path="a.py"), ChangedFile(old_path="b.py", new_path="c.py")]
    >>> c = change_from_mr(mr, files, [User(id=3, username="cy")])
    >>> c.id, c.author, c.reviewers, c.ackers, c.files, c.renames
    ('!7', 'ann', ('bob',), ('cy',), ('a.py', 'c.py'), (('b.py', 'c.py'),))
    """
    author = mr.author.username
    when = mr.merged_at or mr.updated_at
    bot = mr.author.bot or is_bot_username(author) or author.casefold() in {b.casefold() for b in bots}
    return Change(
        id=change_id(mr.iid), time=int(when.timestamp()), author=author,
        reviewers=tuple(dict.fromkeys(u.username for u in mr.reviewers)),
        files=tuple(dict.fromkeys(f.path for f in files)), title=mr.title,
        ackers=tuple(dict.fromkeys(u.username for u in approvers)),
        committer=mr.merge_user.username if mr.merge_user else "", bot_author=bot,
        renames=tuple(dict.fromkeys(f.rename for f in files if f.rename)),
    )


BOT_PICK = {"by": "bot"}  # the value of the `assigned` rows of the reviews the bot requested itself
AUTOMATION = {"by": "automation"}  # ... of the `assigned` and `removed` rows of another automation's reviewer
# change (a roulette script, a project access token's job): it asks people, the team chose nobody
ACTED = frozenset({"approved", "reviewed"})  # labels by which a person took up the review (not `commented`: a
# reply in a thread the bot started answers the request, "can someone else take this?" as often as not)
ASKED = frozenset({"accepted", "assigned"})  # ... by which a person (not a bot) asked them, until "removed"


def is_bot_pick(row: FeedbackRow) -> bool:
    """An `assigned` row of a review the bot, or another automation, requested (not a person choosing the
    reviewer)."""
    return row.label == "assigned" and row.value in (BOT_PICK, AUTOMATION)


def is_automated(row: FeedbackRow) -> bool:
    """A reviewer label no person's choice: a review requested by the bot or another automation
    (`is_bot_pick`), or another automation's removal of a reviewer (no rejection by the team)."""
    return is_bot_pick(row) or (row.label == "removed" and row.value == AUTOMATION)


def unacted_picks(change: Change, rows: Iterable[FeedbackRow]) -> list[str]:
    """The reviewers of `change` the bot or another automation requested (`rows`: the MR's feedback, oldest
    first) who did not approve, comment or merge it and whom no person asked for review as well (a person's
    request taken back by a removal no longer counts).

    >>> from datetime import datetime
    >>> row = lambda p, label, value=None: FeedbackRow(1, None, 1, 7, p, label, value, datetime.now(), None)
    >>> c = Change("!7", 0, "ann", ("bob", "cy", "dee"), ("a.py",), ackers=("cy",))
    >>> unacted_picks(c, [row("bob", "assigned", BOT_PICK), row("cy", "assigned", BOT_PICK), row("dee", "assigned")])
    ['bob']
    >>> unacted_picks(c, [row("dee", "accepted"), row("dee", "removed"), row("dee", "assigned", BOT_PICK)])
    ['dee']
    >>> unacted_picks(c, [row("dee", "assigned"), row("dee", "removed", AUTOMATION),
    ...                   row("dee", "assigned", AUTOMATION)])
    ['dee']
    """
    picked, asked, acted = set(), set(), {p.casefold() for p in (*change.ackers, change.committer)}
    for r in rows:
        who = r.person.casefold()
        if is_bot_pick(r):
            picked.add(who)
        elif r.label in ACTED:
            acted.add(who)
        elif r.label in ASKED:
            asked.add(who)
        elif r.label == "removed":
            asked.discard(who)
    return [p for p in change.reviewers if p.casefold() in picked - acted - asked]


async def drop_idle_picks(client: GitLabClient, project_id: int, iid: int, change: Change,
                          rows: Iterable[FeedbackRow]) -> tuple[Change, list[str]]:
    """`change` without the reviews the bot (or another automation) requested that nobody took up
    (`unacted_picks` whose GitLab review state is still "unreviewed"; where GitLab has no review states, nobody
    is dropped), and who they were.

    Why: a merged MR's reviewers are the history's truth, and a request left lying is not a review; the
    recommender would learn its own suggestions back, or a roulette's draws as the team's reviews. GitLab is
    asked only when there is such a reviewer.
    """
    idle = unacted_picks(change, rows)
    if not idle:
        return change, []
    states = await client.mr_reviewer_states(project_id, iid)
    unreviewed = {s.user.username.casefold() for s in states or () if s.state == "unreviewed"}
    idle = [p for p in idle if p.casefold() in unreviewed]
    return replace(change, reviewers=tuple(p for p in change.reviewers if p not in idle)), idle


async def fetch_change(client: GitLabClient, project_id: int, mr: MergeRequest, *, bots: Collection[str] = (),
                       people: PeopleStore | None = None) -> Change:
    """Fetch a merged MR's files and approvers (two calls) and build its `Change`. With `people`, the ids and
    usernames of its author, reviewers, assignees, approvers and merger are recorded: GitLab's API names
    everyone as they are called now, so an import learns who renamed themselves (`bot.people`)."""
    files = await client.mr_changed_files(project_id, mr.iid)
    approvals = await client.mr_approvals(project_id, mr.iid)
    if people is not None:
        users = [mr.author, *mr.reviewers, *mr.assignees, *approvals.approvers, mr.merge_user]
        await people.learn((u.id, u.username) for u in users if u is not None)
    return change_from_mr(mr, files, approvals.approvers, bots=bots)


class _PageReader:
    """Reads the pages of one import run as changes, `concurrency` MRs at a time, without the reviews the bot
    (or an automation) requested that nobody took up (`feedback`: the page's rows by MR, as the merge webhook
    reads them). It remembers the last MR GitLab served (`served`), to tell a broken MR from GitLab going down.

    What is skipped: an MR GitLab no longer finds (404 Merge Request Not Found: deleted since it was listed),
    and an MR GitLab keeps failing to serve (5xx or no answer, after the client's retries) while it serves
    another MR's files (asked as soon as it fails), and still fails when asked again after the rest of the page:
    a huge or broken diff must not stop the import at this page on every resume. Everything else raises, before
    the page's cursor is saved, so the next run reads the page again: GitLab failing the other MR too (it is
    down: the page stops there, not after the client's retries for each of its MRs), a missing endpoint, the
    project gone or hidden from the bot (404 Project Not Found), a refused token, the rate limit. Each would be
    every MR's, and skipping them would lose history.
    """

    def __init__(self, client: GitLabClient, storage: Storage, project_id: int, *, concurrency: int,
                 bots: Collection[str]) -> None:
        self.client, self.storage, self.project_id = client, storage, project_id
        self.concurrency, self.bots = concurrency, bots
        self.served: int | None = None  # the iid of the last MR GitLab served in this run
        self.imported: set[str] = set()  # the changes read in this run (an MR updated meanwhile is met again)

    async def page(self, mrs: Sequence[MergeRequest], feedback: Mapping[int, list[FeedbackRow]],
                   ) -> tuple[list[Change], int]:
        """The page's changes and how many of its MRs were skipped."""
        gate, asking = asyncio.Semaphore(self.concurrency), asyncio.Lock()

        async def one(mr: MergeRequest) -> Change | GitLabError | None:
            async with gate:  # held while GitLab is asked about another MR: nothing new starts meanwhile
                got = await self._change(mr, feedback)
                if isinstance(got, GitLabError):
                    async with asking:  # GitLab down: the first answer stops the page, the others wait for it
                        await self._gitlab_serves(mr, got)
                return got

        found = dict(zip((mr.iid for mr in mrs), await _all_or_none([one(mr) for mr in mrs])))
        for mr in [mr for mr in mrs if isinstance(found[mr.iid], GitLabError)]:  # asked again, one at a time
            found[mr.iid] = await self._change(mr, feedback)
            if isinstance(error := found[mr.iid], GitLabError):
                log.warning(kv("backfill: GitLab cannot serve this MR, skipped", project_id=self.project_id,
                               mr_iid=mr.iid, cause=str(error)))
        changes = [c for c in found.values() if isinstance(c, Change)]
        self.imported.update(c.id for c in changes)
        return changes, len(found) - len(changes)

    async def _change(self, mr: MergeRequest, feedback: Mapping[int, list[FeedbackRow]],
                      ) -> Change | GitLabError | None:
        """The MR's change; None when GitLab no longer finds it; GitLab's error when it fails to serve it (5xx
        or no answer); any other error raises (see the class)."""
        try:
            change = await fetch_change(self.client, self.project_id, mr, bots=self.bots, people=self.storage.people)
            change = (await drop_idle_picks(self.client, self.project_id, mr.iid, change,
                                            feedback.get(mr.iid, ())))[0]
        except GitLabError as exc:
            if exc.no_route or exc.no_project or exc.status is not None and exc.status < 500 and not exc.not_found:
                raise
            if exc.not_found:
                log.warning(kv("backfill: MR vanished, skipped", project_id=self.project_id, mr_iid=mr.iid))
                return None
            return exc
        self.served = mr.iid
        return change

    async def _gitlab_serves(self, failed: MergeRequest, error: GitLabError) -> None:
        """Raise unless GitLab serves the files of another MR now (the last one served, else the newest one
        imported before): GitLab down fails that one too. With no other MR to ask, `error` (the failed MR's)."""
        other = self.served if self.served not in (None, failed.iid) else await self._imported_before(failed.iid)
        if other is None:
            raise error
        try:
            await self.client.mr_changed_files(self.project_id, other)
        except GitLabError as exc:
            if exc.not_found and not (exc.no_project or exc.no_route):
                return  # that MR was deleted since, and GitLab says so: it answers
            log.warning(kv("backfill: GitLab fails another merge request too; stopping, the next run reads this "
                           "page again", project_id=self.project_id, mr_iid=failed.iid, cause=str(exc)))
            raise

    async def _imported_before(self, leave_out: int) -> int | None:
        """The iid of the newest MR of the project's history other than `leave_out`."""
        for found in await self.storage.history.newest_ids(self.project_id, prefix="!", limit=2):
            iid = found.removeprefix("!")
            if iid.isdigit() and int(iid) != leave_out:
                return int(iid)
        return None


async def _all_or_none(work: Sequence[Awaitable[T]]) -> list[T]:
    """Every result of `work`, run together; when one raises, the others are cancelled (and waited for) and
    the error goes on."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _cursor_text(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat() if when else None


def _parse_cursor(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        log.warning(kv("backfill cursor unreadable, starting over", cursor=text))
        return None


async def _not_yet_imported(storage: Storage, project_id: int, mrs: list[MergeRequest],
                            start: datetime | None) -> list[MergeRequest]:
    """The MRs less those of the resumed cursor's own second that the last run imported: GitLab's
    `updated_after` is inclusive and whole seconds, so a resumed run meets them again (it fetched them again
    and counted them as imported: "1 merged MRs imported" with nothing new)."""
    if start is None:
        return mrs
    edge = start.replace(microsecond=0) + timedelta(seconds=1)
    again = [mr for mr in mrs if mr.updated_at < edge]
    if not again:
        return mrs
    present = await storage.history.present(project_id, (change_id(mr.iid) for mr in again))
    return [mr for mr in mrs if not (mr.updated_at < edge and change_id(mr.iid) in present)]


async def backfill_project(client: GitLabClient, storage: Storage, project_id: int, *, restart: bool = False,
                           concurrency: int = 4, bots: Collection[str] = (),
                           progress: Progress | None = None) -> BackfillProgress:
    """Import every merged MR of the project (from the saved cursor unless `restart`); returns the last progress.

    The cursor is saved after each page, so an interrupted run resumes where it stopped.
    """
    row = await storage.projects.get(project_id)
    cursor = None if restart or row is None else _parse_cursor(row.backfill_cursor)
    state = BackfillProgress(project_id, 0, 0, 0, cursor, False)
    log.info(kv("backfill started", project_id=project_id, cursor=_cursor_text(cursor)))
    start, reader = cursor, _PageReader(client, storage, project_id, concurrency=concurrency, bots=bots)
    async for items in client.merged_mrs_since(project_id, cursor):
        items = await _not_yet_imported(storage, project_id, items, start)
        feedback: dict[int, list[FeedbackRow]] = {}
        for r in await storage.feedback.of_mrs(project_id, (mr.iid for mr in items)):
            feedback.setdefault(r.mr_iid, []).append(r)
        changes, skipped = await reader.page(items, feedback)
        await storage.history.upsert(project_id, changes)
        if items:
            cursor = max(cursor or items[0].updated_at, *(mr.updated_at for mr in items))
        state = BackfillProgress(project_id, state.pages + 1, len(reader.imported),
                                 state.skipped + skipped, cursor, False)
        await storage.projects.set_backfill(project_id, cursor=_cursor_text(cursor), page=state.pages)
        _tell(state, progress)
    await storage.projects.set_backfill(project_id, cursor=_cursor_text(cursor), page=state.pages, done=True)
    state = BackfillProgress(project_id, state.pages, state.imported, state.skipped, cursor, True)
    _tell(state, progress)
    return state


def _tell(state: BackfillProgress, progress: Progress | None) -> None:
    """Log how far the import got (a large project's runs for many minutes: after each page, not only at its
    start and end), and hand it to `progress`."""
    log.info(kv("backfill done" if state.done else "backfill page imported", project_id=state.project_id,
                pages=state.pages, imported=state.imported, skipped=state.skipped, cursor=_cursor_text(state.cursor)))
    if progress is not None:
        progress(state)


def process_name() -> str:
    """A name for this process's import leases, unique across hosts and restarts (as a worker's id)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"



async def under_lease(storage: Storage, project_id: int, owner: str, lease: float,
                      work: Awaitable[BackfillProgress]) -> BackfillProgress | None:
    """Run an import under the project's lease, already claimed by `owner`: renewed every third of `lease`,
    handed back at the end (done, failed or cancelled). None when another process took the lease over
    meanwhile (this one stalled past it): the import stops there and the other goes on from the cursor."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            finished, _ = await asyncio.wait({task}, timeout=lease / 3)
            if finished:
                return task.result()
            if not await _renew(storage, project_id, owner, lease):
                log.warning(kv("backfill lease taken over by another process; stopping here",
                               project_id=project_id, owner=owner))
                return None
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await _release(storage, project_id, owner, lease)


async def _renew(storage: Storage, project_id: int, owner: str, lease: float) -> bool:
    """Renew the lease; False if it was taken over. A database error is logged and the import goes on:
    the lease lasts a while yet, and the next renewal finds out whether it expired meanwhile."""
    try:
        return await storage.projects.renew_import(project_id, owner, lease)
    except Exception as exc:  # noqa: BLE001 - a missed heartbeat is no reason to drop the pages under way
        log.warning(kv("backfill lease not renewed", project_id=project_id, cause=f"{type(exc).__name__}: {exc}"))
        return True


async def _release(storage: Storage, project_id: int, owner: str, lease: float) -> None:
    """Hand the lease back; if the database cannot be reached it expires by itself."""
    try:
        await storage.projects.release_import(project_id, owner)
    except Exception as exc:  # noqa: BLE001 - the import's own outcome matters more than this
        log.warning(kv("backfill lease not handed back; it expires by itself", project_id=project_id,
                       lease_seconds=lease, cause=f"{type(exc).__name__}: {exc}"))


class Backfills:
    """Background backfills, one task per project, started by the first event that needs one, at most `imports`
    running at a time in this process (the others wait their turn: many new projects at once must not all
    page through GitLab together, nor crowd out the events of projects already imported).

    `ensure(project_id)` returns 0 at once for a project already imported (its row is read again every `recheck`
    seconds: `reviewbot forget` deletes the row, and the project's next event then imports its history as a new
    project's, in this process too); otherwise it starts (or joins) the
    import and returns how long an event of the project may still wait for it: until `wait` seconds after the
    import started, and at most `turn_wait` seconds more while it waits its turn (a small project queued behind
    two large imports would otherwise get "no review history yet" on its first MRs, a comment nothing corrects
    afterwards). The event does not wait here (that would hold a worker slot): the handlers park it in the
    queue for that long, woken as soon as the import (`task`) ends. The first MRs of a new project are ranked
    on its history when that is quick, and on what has arrived so far when it is
    not. A failed import is logged and started again (from its cursor) by an event `retry_first` seconds
    later at the earliest, doubled after each failure up to `retry_max` (GitLab down or the token refused:
    every event of a busy project would start it again, each failing after the client's retries); the events
    meanwhile go on with the history there is. A success starts the delays over. They are this process's own.

    Several processes: the import is leased on the project's row (`ProjectStore.claim_import`) for `lease`
    seconds, renewed every third of them while it pages, handed back at the end. A process that finds it
    held imports nothing (the API calls of a large import, once per process, invite GitLab's rate limit): its
    task looks at the row every `poll` seconds, holding no turn, and ends when the history is in, so its
    parked events wake then too; a lease handed back unfinished or expired (its holder failed or was killed)
    is taken over, and the import resumes from the stored cursor.
    """

    def __init__(self, client: GitLabClient, storage: Storage, *, wait: float = 20.0, concurrency: int = 4,
                 imports: int = 2, turn_wait: float = 120.0, lease: float = IMPORT_LEASE, poll: float = LEASE_POLL,
                 owner: str | None = None, recheck: float = DONE_RECHECK, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX, clock: Callable[[], float] | None = None) -> None:
        self.client, self.storage, self.wait, self.concurrency = client, storage, wait, concurrency
        self.imports, self.turn_wait = imports, turn_wait
        self.lease, self.poll, self.owner = lease, poll, owner or process_name()
        self.recheck, self.retry_first, self.retry_max = recheck, retry_first, retry_max
        self._clock = clock  # monotonic seconds; the event loop's time unless given (tests move their own)
        self._failures: dict[int, tuple[int, float]] = {}  # project -> failed imports in a row, next start (`_now`)
        self._turns = asyncio.Semaphore(imports)
        self._done: dict[int, float] = {}  # project -> when its import was last seen done (`_now`)
        self._tasks: dict[int, asyncio.Task[BackfillProgress]] = {}
        self._deadlines: dict[int, float] = {}

    def forget(self, project_id: int) -> None:
        """The project was forgotten (`reviewbot forget`, found by the engine): its next event reads its row
        again, without waiting for `recheck`, and imports its history as a new project's."""
        self._done.pop(project_id, None)

    def running(self, project_id: int) -> bool:
        """Whether an import of the project is under way (or waiting its turn) in this process."""
        task = self._tasks.get(project_id)
        return task is not None and not task.done()

    def task(self, project_id: int) -> asyncio.Task[BackfillProgress] | None:
        """The project's import in this process, if one was started (done or not)."""
        return self._tasks.get(project_id)

    async def ensure(self, project_id: int, *, bots: Collection[str] = ()) -> float:
        """Make sure the project's history is imported or being imported; the seconds its events may still
        wait for the import (0: it is complete, or the wait is over)."""
        now = self._now()
        if now - self._done.get(project_id, -math.inf) < self.recheck:
            return 0.0
        row = await self.storage.projects.get(project_id)
        if row is not None and row.backfill_done:
            self._done[project_id] = now
            self._failures.pop(project_id, None)  # imported elsewhere (`reviewbot backfill`, another process)
            return 0.0
        self._done.pop(project_id, None)  # gone (forgotten) or not imported: as for a new project
        if not self.running(project_id) and now < self._failures.get(project_id, (0, -math.inf))[1]:
            return 0.0  # its last import failed lately: none starts yet, and none would wake a parked event
        self._start(project_id, bots)
        return max(0.0, self._deadlines[project_id] - self._now())

    def _now(self) -> float:
        """Monotonic seconds: the event loop's, or the clock given (a test's, moved by hand)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _start(self, project_id: int, bots: Collection[str]) -> asyncio.Task[BackfillProgress]:
        """The running import of the project, started (with a fresh waiting deadline) if there is none."""
        task = self._tasks.get(project_id)
        if task is None or task.done():
            queued = sum(not t.done() for t in self._tasks.values()) >= self.imports and self.wait > 0
            task = asyncio.create_task(self._run(project_id, tuple(bots)), name=f"backfill-{project_id}")
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # failures are logged by _run
            self._tasks[project_id] = task
            self._deadlines[project_id] = self._now() + self.wait + \
                (self.turn_wait if queued else 0.0)  # a turn taken later moves it (`_run`)
        return task

    async def _run(self, project_id: int, bots: Collection[str]) -> BackfillProgress:
        """Import the project when this process gets its turn and the lease; else wait for the process that has
        the lease, and take over if that one lets it go unfinished."""
        report: BackfillProgress | None = None
        try:
            while report is None:
                async with self._turns:
                    started = self._now() + self.wait  # its turn: `wait` from now, no later
                    self._deadlines[project_id] = min(self._deadlines.get(project_id, started), started)
                    if await self.storage.projects.claim_import(project_id, self.owner, self.lease):
                        report = await self._import(project_id, bots)
                        continue
                report = await self._imported_elsewhere(project_id)
        except Exception as exc:
            delay = self._failed(project_id)
            next_try = datetime.now(timezone.utc) + timedelta(seconds=delay)
            log.warning(kv("backfill failed; the first event after next_try resumes it", project_id=project_id,
                           next_try=next_try.isoformat(timespec="seconds"), retry_in_seconds=round(delay),
                           cause=f"{type(exc).__name__}: {exc}"))
            raise
        self._done[project_id] = self._now()
        self._failures.pop(project_id, None)
        return report

    def _failed(self, project_id: int) -> float:
        """Count the project's failed import; the seconds before the next may start: `retry_first` doubled
        for each failure in a row before it, at most `retry_max`, less up to a quarter (jitter)."""
        count = self._failures.get(project_id, (0, 0.0))[0] + 1
        delay = min(self.retry_max, self.retry_first * 2 ** min(count - 1, 30)) * random.uniform(0.75, 1.0)
        self._failures[project_id] = (count, self._now() + delay)
        return delay

    async def _import(self, project_id: int, bots: Collection[str]) -> BackfillProgress | None:
        """The import, run under this process's lease (`under_lease`); None when another process took the
        lease over meanwhile (this one stalled past it): the other goes on from the cursor."""
        return await under_lease(self.storage, project_id, self.owner, self.lease,
                                 backfill_project(self.client, self.storage, project_id,
                                                  concurrency=self.concurrency, bots=bots))

    async def _imported_elsewhere(self, project_id: int) -> BackfillProgress | None:
        """Wait, every `poll` seconds, while another process holds the import's lease: the progress stored when
        the history is in, None once the lease is free unfinished (handed back after a failure, or expired)."""
        log.info(kv("backfill under way in another process; waiting for it", project_id=project_id))
        while True:
            row = await self.storage.projects.get(project_id)
            if row is not None and row.backfill_done:
                return BackfillProgress(project_id, 0, 0, 0, _parse_cursor(row.backfill_cursor), True)
            if row is None or self.storage.projects.lease_free(row):
                return None
            await asyncio.sleep(self.poll)

    async def close(self) -> None:
        """Stop every running import (their cursors are saved; the next start resumes them)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
