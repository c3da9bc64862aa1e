"""Per-project recommenders kept in memory, and `suggest_for_mr`: one merge request in, ranked eligible people out.

Why an engine: building a project's ownership graph replays its whole history (seconds for thousands of
changes, minutes for hundreds of thousands), so each project's recommender is built once, kept in a bounded
LRU, and brought up to date incrementally: when the history (stored by this or any other process) has new rows
that are not older than what the graph has seen, only those are observed; anything else (a backfill filling in
older MRs) rebuilds it. A restarted worker starts warm from the project's latest snapshot (`graph.snapshot`,
kept in `storage.snapshots` and rewritten in the background as history grows) plus the rows stored since.
Graph work runs in a thread so the event loop (and the webhook endpoint beside it) keeps answering.

`suggest_for_mr` is the service the handlers call: it gathers the changed files, members, opt-outs, per-MR
exclusions, statuses, open review loads and CODEOWNERS of the target branch, asks the graph for a ranking,
filters it with `bot.eligibility.eligible`, favours code owners and makes sure every CODEOWNERS section that
needs an approval is covered by someone who can give it.

    engine = Engine(storage)
    result = await suggest_for_mr(client, engine, storage, project_id, mr, settings, bot_username="reviewbot")
    result.suggestions, result.notes, result.cannot
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Collection, Hashable, Iterable, Mapping, Sequence, TypeVar

from bot import learning
from bot.comment import NO_ELIGIBLE, NO_FILES, NO_HISTORY, code_span
from bot.config import ProjectSettings
from bot.eligibility import Member, eligible
from bot.gitlab.client import GitLabClient
from bot.gitlab.models import Member as GitLabMember
from bot.gitlab.models import MergeRequest
from bot.logfmt import kv
from bot.owners import owners_to_resolve, resolve_owners
from bot.storage import Storage
from graph import snapshot
from graph.codeowners import CodeOwners, Owner, SectionMatch, parse_codeowners
from graph.model import Change, Suggestion
from graph.ownership import OwnershipGraph
from graph.recommend import DEFAULT_SETTINGS, GraphRecommender, LearnedRecommender, RecommenderSettings, make_recommender

__all__ = [
    "Engine", "Recent", "Lookups", "MRFacts", "SuggestionResult", "suggest_for_mr", "explain_person", "gather",
    "gather_facts", "load_codeowners", "owner_usernames", "boost_owners", "has_history", "open_change",
    "recommender_settings", "config_key", "CODEOWNERS_PATHS", "EXCLUDING_LABELS",
]

log = logging.getLogger("bot.engine")

CODEOWNERS_PATHS = (".gitlab/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS")
EXCLUDING_LABELS = ("exclude", "reroll")  # feedback labels that keep a person off one MR's suggestions
POOL = 40            # how many ranked candidates the eligibility filter looks at
SPARE = 3            # statuses fetched for k + SPARE people at a time (some may be busy or overloaded)
OWNER_BOOST = 0.25   # code owners move up by this share of the pool's score spread
MAX_SKIP_NOTES = 3
T = TypeVar("T")


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

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[T]], ttl: float | None = None) -> T:
        """The cached value of `key`, or `await fetch()` (a failure is not cached)."""
        now = self.clock()
        hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[no-any-return]
        value = await fetch()
        if len(self._items) >= self.size:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}
            if len(self._items) >= self.size:
                self._items.clear()
        self._items[key] = (now + (self.ttl if ttl is None else ttl), value)
        return value


class Lookups:
    """The GitLab answers the ranking needs beyond the MR itself, through a `Recent` cache."""

    LOADS_TTL = 10.0  # open review loads change when reviewers are requested: keep them only briefly

    def __init__(self, client: GitLabClient, recent: Recent) -> None:
        self.client, self.recent = client, recent

    async def members(self, project_id: int) -> list[GitLabMember]:
        return await self.recent.get(("members", project_id), lambda: self.client.list_members(project_id))

    async def codeowners(self, project_id: int, ref: str | None) -> CodeOwners | None:
        return await self.recent.get(("codeowners", project_id, ref),
                                     lambda: load_codeowners(self.client, project_id, ref))

    async def status(self, uid: int | str) -> str:
        """A user's status `availability` (busy / not_set)."""
        async def fetch() -> str:
            return (await self.client.user_status(uid)).availability
        return await self.recent.get(("status", uid), fetch)

    async def open_reviewers(self, project_id: int) -> list[list[int]]:
        """The reviewer ids of each open MR of the project (one listing)."""
        async def fetch() -> list[list[int]]:
            return [[u.id for u in mr.reviewers] for mr in await self.client.list_mrs(project_id, state="opened")]
        return await self.recent.get(("open", project_id), fetch, ttl=min(self.LOADS_TTL, self.recent.ttl))


# --- the per-project recommenders ---------------------------------------------------------------------------
def recommender_settings(settings: ProjectSettings) -> RecommenderSettings:
    """The graph's hyper-parameters for a project: the bot's defaults with its half-life and inactivity."""
    return replace(DEFAULT_SETTINGS, half_life_days=settings.half_life_days,
                   inactive_days=float(settings.inactive_days))


def config_key(method: str, config: RecommenderSettings) -> str:
    """The recommender method and a digest of its settings: a snapshot serves only one built the same way."""
    return f"{method}:{hashlib.sha256(repr(config).encode()).hexdigest()[:16]}"


# History rows from which a rebuilt project's objects are frozen out of the garbage collector's reach (`gc.freeze`):
# a graph of millions of dicts otherwise makes the occasional full collection last seconds (measured 3.2 s,
# loaded machine, 200k changes), landing on whichever request triggers it.
FREEZE_AFTER = 20_000
# Edge-block rows built per step when a loaded snapshot's blocks are warmed in the background (`_warm_blocks`):
# about 15-20 ms of work, the longest a suggestion waits for the lock meanwhile (100k rows made it 80-100 ms).
WARM_CHUNK = 20_000
Rows = Sequence[tuple[int, Change]]  # (history row id, change), oldest first


@dataclass
class _Entry:
    """One project's recommender and which history rows it has seen: `count` rows, the newest at
    `last_time`, `boundary` the ids of the rows at that time (rows stored later are at or after it)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    recommender: GraphRecommender | None = None
    config: RecommenderSettings | None = None
    count: int = 0
    last_time: int | None = None
    boundary: set[int] = field(default_factory=set)
    checked_at: float = -math.inf  # when the history's row count was last read
    writes: int = -1               # storage.history.writes() then
    unsaved: int = 0               # rows observed since the last snapshot (or since built)
    saving: asyncio.Task[None] | None = None
    label_writes: int = -1         # storage.feedback.writes() when labels were last read
    labels_new: int = 0            # labels learned since the last retraining started
    retraining: asyncio.Task[None] | None = None
    retrained_at: float = -math.inf

    def reset(self, rec: GraphRecommender, config: RecommenderSettings) -> None:
        self.recommender, self.config, self.count, self.last_time, self.boundary = rec, config, 0, None, set()
        self.unsaved = 0

    def seen(self, rows: Rows) -> None:
        """Record rows the recommender has just observed (in time order)."""
        for row_id, change in rows:
            if self.last_time is None or change.time > self.last_time:
                self.last_time, self.boundary = change.time, {row_id}
            elif change.time == self.last_time:
                self.boundary.add(row_id)
        self.count += len(rows)
        self.unsaved += len(rows)


class Engine:
    """Project recommenders built lazily from `storage.history`, at most `max_projects` kept in memory; plus
    the short-lived cache (`recent`) of GitLab answers that `suggest_for_mr` reads through.

    A project's recommender starts warm from its latest snapshot (`storage.snapshots`) and observes only the
    rows stored after it; without a usable snapshot it replays the whole history. At use, the history's row
    count is read at most every `refresh_seconds` (at once after this process stored history), and rows
    stored by any process are observed. Once `snapshot_every` rows have been observed since the last
    snapshot (projects smaller than that get none), a new one is written in the background; `close()`
    writes the rest at shutdown. `snapshot_every=None` writes none (reading still happens).

    Feedback labels stored by any process (`storage.feedback`) are learned the same way, in time order with
    the history (see `bot.learning`). After `retrain_labels` new labels (or `retrain_seconds` after the last
    retraining, when there are any), the ranker is retrained in the background and the new model stored,
    and adopted only if its backtest on the `holdout` most recent changes is not worse. A (re)built
    recommender adopts the project's active stored model. With `prior`, projects whose own model is not yet
    fitted are ranked by the synthetic-history prior (`bot.learning.prior_model`, fitted in the background
    at first use, which takes tens of seconds; the graph score ranks meanwhile).
    """

    def __init__(self, storage: Storage, *, method: str = "default", max_projects: int = 32,
                 cache_seconds: float = 60.0, refresh_seconds: float = 3.0, snapshot_every: int | None = 2000,
                 retrain_labels: int | None = 50, retrain_seconds: float | None = None, holdout: int = 200,
                 prior: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        if max_projects < 1:
            raise ValueError(f"max_projects must be at least 1, got {max_projects}")
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every must be at least 1 (or None for no snapshots), got {snapshot_every}")
        self.storage = storage
        self.recent = Recent(cache_seconds)
        self.method = method
        self.max_projects = max_projects
        self.refresh_seconds = refresh_seconds
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.retrain_labels, self.retrain_seconds, self.holdout = retrain_labels, retrain_seconds, holdout
        self.use_prior = prior
        self.prior: Any | None = None
        self._prior_task: asyncio.Task[None] | None = None
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._authors: OrderedDict[tuple[int, int], str] = OrderedDict()  # (project, MR iid) -> author

    def __contains__(self, project_id: int) -> bool:
        return project_id in self._entries

    def _entry(self, project_id: int) -> _Entry:
        entry = self._entries.get(project_id)
        if entry is None:
            entry = self._entries[project_id] = _Entry(retrained_at=self.clock())  # the schedule starts now
        self._entries.move_to_end(project_id)
        while len(self._entries) > self.max_projects:
            evicted, _ = self._entries.popitem(last=False)
            log.info(kv("recommender evicted", project_id=evicted))
        return entry

    @contextlib.asynccontextmanager
    async def use(self, project_id: int, settings: ProjectSettings) -> AsyncIterator[GraphRecommender]:
        """The project's up-to-date recommender, held exclusively for the block (it is not thread-safe)."""
        entry = self._entry(project_id)
        async with entry.lock:
            await self._refresh(project_id, entry, recommender_settings(settings))
            assert entry.recommender is not None
            yield entry.recommender
        self._maybe_snapshot(project_id, entry)
        self._maybe_retrain(project_id, entry)

    def note_author(self, project_id: int, mr_iid: int, author: str) -> None:
        """Remember who wrote an open MR: labels about it are learned with that author."""
        self._authors[(project_id, mr_iid)] = author
        self._authors.move_to_end((project_id, mr_iid))
        while len(self._authors) > 20000:
            self._authors.popitem(last=False)

    def _authors_of(self, project_id: int) -> dict[int, str]:
        return {iid: a for (pid, iid), a in self._authors.items() if pid == project_id}

    async def learn_new(self, project_id: int, settings: ProjectSettings) -> None:
        """Feed the project's recommender (when in memory) the feedback rows stored since it last learned."""
        if project_id in self._entries:
            async with self.use(project_id, settings):
                pass

    def changes_seen(self, project_id: int) -> int:
        """How many history rows the cached recommender has observed (0 when not cached)."""
        entry = self._entries.get(project_id)
        return entry.count if entry else 0

    async def add_merged(self, project_id: int, change: Change, settings: ProjectSettings) -> None:
        """Store a merged MR in the history and, when the project is in memory, in its graph."""
        await self.storage.history.upsert(project_id, [change])
        if project_id in self._entries:
            async with self.use(project_id, settings):
                pass

    async def close(self, timeout: float = 10.0) -> None:
        """At shutdown: snapshot every project with history observed since its last snapshot, waiting at
        most `timeout` seconds for those writes (and any running) before cancelling them."""
        for project_id, entry in list(self._entries.items()):
            self._maybe_snapshot(project_id, entry, final=True)
        pending = [t for t in self._tasks if not t.done()]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            log.warning(kv("snapshots abandoned at shutdown", count=len(late), timeout=timeout))

    # -- keeping up with the stored history ------------------------------------------------------------
    async def _refresh(self, project_id: int, entry: _Entry, config: RecommenderSettings) -> None:
        current = entry.recommender is not None and entry.config == config
        writes, now = self.storage.history.writes(project_id), self.clock()
        label_writes = self.storage.feedback.writes(project_id)
        if current and writes == entry.writes and label_writes == entry.label_writes and \
                now - entry.checked_at < self.refresh_seconds:
            return
        count = await self.storage.history.count(project_id)
        entry.checked_at, entry.writes, entry.label_writes = now, writes, label_writes
        if current and await self._catch_up(project_id, entry, history=count != entry.count):
            return
        await self._rebuild(project_id, entry, config)

    async def _catch_up(self, project_id: int, entry: _Entry, *, history: bool = True) -> bool:
        """Observe only the rows the recommender has not seen, and learn the labels stored since it last
        learned; False when some rows are older than what it has seen (a backfill filling in the past:
        then rebuild). `history=False`: the row count is unchanged, only labels are read."""
        rec = entry.recommender
        if rec is None:
            return False
        new: list[tuple[int, Change]] = []
        if history:
            rows, total = await self.storage.history.rows_since(project_id, entry.last_time)
            new = [(i, c) for i, c in rows if not (c.time == entry.last_time and i in entry.boundary)]
            if entry.count + len(new) != total:
                return False
        learned = await self._replay(project_id, entry, rec, [c for _, c in new])
        if new:
            entry.seen(new)
        if new or learned:
            log.info(kv("recommender updated", project_id=project_id, new=len(new), labels=learned,
                        changes=entry.count))
        return True

    async def _replay(self, project_id: int, entry: _Entry, rec: GraphRecommender, changes: list[Change]) -> int:
        """Observe `changes` and learn the labels above the recommender's mark, in time order (in a thread)."""
        labels: list[learning.Label] = []
        if isinstance(rec, LearnedRecommender):
            labels, mark = await learning.new_labels(self.storage, project_id, rec.label_mark)
            rec.label_mark = mark
        if changes or labels:
            items = learning.interleave(changes, labels)
            await asyncio.to_thread(learning.replay, rec, items, self._authors_of(project_id))
        entry.labels_new += len(labels)
        return len(labels)

    async def _rebuild(self, project_id: int, entry: _Entry, config: RecommenderSettings) -> None:
        if await self._warm_start(project_id, entry, config):
            return
        started = time.monotonic()
        rows, _ = await self.storage.history.rows_since(project_id)
        rec = make_recommender(self.method, settings=config)
        entry.reset(rec, config)
        if isinstance(rec, LearnedRecommender):
            await self._replay(project_id, entry, rec, [c for _, c in rows])
        else:  # no training rows nor labels to interleave: the graph takes the history in bulk
            await asyncio.to_thread(rec.observe_history, [c for _, c in rows])
        # the paths' edge blocks now, not on the first suggestions (a 500-file change on paths never read
        # costs several times one on read paths); after a snapshot load `_warm_blocks` builds them in steps
        await asyncio.to_thread(rec.og.warm_blocks)
        if len(rows) >= FREEZE_AFTER:  # one full collection now, instead of seconds-long ones during requests
            gc.unfreeze()  # what an earlier freeze kept (a dropped project's graph) can be collected now
            gc.collect()
            gc.freeze()
        entry.seen(rows)
        await self._models_for(project_id, rec)
        log.info(kv("recommender built", project_id=project_id, changes=entry.count,
                    seconds=round(time.monotonic() - started, 3)))

    async def _warm_start(self, project_id: int, entry: _Entry, config: RecommenderSettings) -> bool:
        """Load the project's latest usable snapshot and catch up from it; False when there is none or it
        does not fit the history (then the caller replays everything)."""
        started = time.monotonic()
        row = await self.storage.snapshots.latest(project_id, format=snapshot.fingerprint(),
                                                  config=config_key(self.method, config))
        if row is None or row.blob is None:
            return False
        if entry.recommender is not None and entry.config == config and row.history_count <= entry.count:
            return False  # no further than the one in memory, which could not catch up
        try:
            rec = await asyncio.to_thread(snapshot.loads, row.blob)
        except snapshot.SnapshotError as exc:
            log.warning(kv("snapshot unusable, rebuilding", project_id=project_id, snapshot_id=row.id, error=str(exc)))
            return False
        entry.reset(rec, config)
        entry.count, entry.last_time, entry.boundary = row.history_count, row.history_time, set(row.boundary)
        if not await self._catch_up(project_id, entry):
            log.info(kv("snapshot does not fit the history, rebuilding", project_id=project_id, snapshot_id=row.id))
            return False
        await self._models_for(project_id, rec)
        log.info(kv("recommender loaded", project_id=project_id, snapshot_id=row.id, size=row.size,
                    changes=entry.count, new=entry.unsaved, seconds=round(time.monotonic() - started, 3)))
        task = asyncio.create_task(self._warm_blocks(entry, rec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _warm_blocks(self, entry: _Entry, rec: GraphRecommender, chunk: int = WARM_CHUNK) -> None:
        """Build the loaded graph's edge blocks in the background, `chunk` rows at a time under the project's
        lock: a snapshot restores the graph, not its derived blocks, and a suggestion on paths never read
        costs several times one on read paths. Between chunks, suggestions get the lock (they wait for one
        chunk at most); a rebuilt or evicted recommender ends it."""
        og, cap = rec.og, int(OwnershipGraph.BLOCK_ROWS * 0.75)
        while entry.recommender is rec:
            async with entry.lock:
                if entry.recommender is not rec:
                    return
                before = og.block_rows
                done = await asyncio.to_thread(og.warm_blocks, min(cap, before + chunk))
            if done >= cap or done == before:
                return

    # -- models ----------------------------------------------------------------------------------------
    async def _models_for(self, project_id: int, rec: GraphRecommender) -> None:
        """A (re)built recommender adopts the project's active stored model, and the prior if wanted."""
        if not isinstance(rec, LearnedRecommender):
            return
        found = await learning.stored_model(self.storage, project_id)
        if found is not None and learning.adopt(rec, found[1]):
            log.info(kv("stored model adopted", project_id=project_id, version=found[0]))
        if self.use_prior:
            rec.prior = self.prior
            self._start_prior()

    def _start_prior(self) -> None:
        """Load or fit the prior in the background (once); recommenders built meanwhile get it when ready."""
        if self.prior is not None or self._prior_task is not None:
            return
        task = self._prior_task = asyncio.create_task(self._load_prior())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load_prior(self) -> None:
        try:
            self.prior = await learning.prior_model(self.storage)
        except Exception as exc:  # noqa: BLE001 - without a prior the graph score ranks; retried at next build
            log.warning(kv("prior model failed", error=f"{type(exc).__name__}: {exc}"))
            self._prior_task = None
            return
        for entry in self._entries.values():
            if isinstance(entry.recommender, LearnedRecommender):
                entry.recommender.prior = self.prior

    def _maybe_retrain(self, project_id: int, entry: _Entry) -> None:
        """Start retraining in the background after `retrain_labels` new labels, or on the schedule."""
        if entry.retraining is not None or not isinstance(entry.recommender, LearnedRecommender):
            return
        due = self.retrain_labels is not None and entry.labels_new >= self.retrain_labels
        if self.retrain_seconds is not None and entry.labels_new > 0:
            due = due or self.clock() - entry.retrained_at >= self.retrain_seconds
        if not due:
            return
        entry.labels_new = 0
        task = entry.retraining = asyncio.create_task(self._retrain(project_id, entry, entry.recommender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrain(self, project_id: int, entry: _Entry, rec: LearnedRecommender) -> None:
        """Fit, store and maybe adopt a new model; a failure is logged and the next labels try again."""
        try:
            await learning.retrain_and_store(self.storage, project_id, rec, entry.lock, holdout=self.holdout,
                                             changes=entry.count)
        except Exception as exc:  # noqa: BLE001 - a background job must not die silently nor crash the worker
            log.warning(kv("retraining failed", project_id=project_id, error=f"{type(exc).__name__}: {exc}"))
        finally:
            entry.retraining, entry.retrained_at = None, self.clock()

    async def wait_background(self) -> None:
        """Wait for the snapshots, retrainings and prior fit running now (tests, shutdown)."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- snapshots -------------------------------------------------------------------------------------
    def _maybe_snapshot(self, project_id: int, entry: _Entry, *, final: bool = False) -> None:
        """Start writing a snapshot in the background when enough history is unsaved (any, when `final`)."""
        every = self.snapshot_every
        if every is None or entry.saving is not None or entry.recommender is None or entry.count < every:
            return
        if entry.unsaved < (1 if final else every):
            return
        task = entry.saving = asyncio.create_task(self._save_snapshot(project_id, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save_snapshot(self, project_id: int, entry: _Entry) -> None:
        """Copy the state under the project's lock (brief), then encode and store it outside; a failure is
        logged and the next one tries again."""
        started = time.monotonic()
        try:
            async with entry.lock:
                rec, config = entry.recommender, entry.config
                if rec is None or config is None:
                    return
                state = await asyncio.to_thread(snapshot.state_of, rec)
                count, last_time, captured = entry.count, entry.last_time, entry.unsaved
                boundary = sorted(entry.boundary)
            blob = await asyncio.to_thread(snapshot.encode, state)
            del state
            await self.storage.snapshots.save(
                project_id, blob, format=snapshot.fingerprint(), config=config_key(self.method, config),
                history_count=count, history_time=last_time, boundary=boundary)
            if entry.recommender is rec:
                entry.unsaved = max(0, entry.unsaved - captured)
            log.info(kv("snapshot written", project_id=project_id, changes=count, size=len(blob),
                        seconds=round(time.monotonic() - started, 3)))
        except Exception as exc:  # noqa: BLE001 - a background write must not die silently nor crash the worker
            log.warning(kv("snapshot failed", project_id=project_id, error=f"{type(exc).__name__}: {exc}"))
        finally:
            entry.saving = None


# --- what the bot gathers about one MR ----------------------------------------------------------------------
@dataclass(frozen=True)
class MRFacts:
    """Everything about one MR the ranking and the filter need, fetched once.

    `owner_users` holds the usernames GitLab gave for the CODEOWNERS groups, e-mails and non-member `@name`s
    of the sections this MR touches (`bot.owners`); owners missing from it resolve to nobody.
    """

    files: tuple[str, ...]
    members: Mapping[str, GitLabMember]
    optouts: frozenset[str]
    excluded: frozenset[str]
    codeowners: CodeOwners | None
    owner_users: Mapping[Owner, tuple[str, ...]] = field(default_factory=dict)

    def member(self, username: str) -> GitLabMember | None:
        """A member by username, compared case-insensitively as GitLab does."""
        if username in self.members:
            return self.members[username]
        folded = username.casefold()
        return next((m for name, m in self.members.items() if name.casefold() == folded), None)


@dataclass
class SuggestionResult:
    """The outcome of `suggest_for_mr`: the people, their loads and names, notes for the comment.

    `cannot` is set (to `bot.comment.NO_FILES`, `NO_HISTORY` or `NO_ELIGIBLE`) when there is nobody to
    suggest for a reason worth saying. `candidates` is the graph's ranking (code owners moved up), `ranked`
    those of them who passed the filters that need no API call, best first (for `/reviewers why`);
    `dropped` says why the others were left out.
    """

    change: Change
    facts: MRFacts
    suggestions: list[Suggestion] = field(default_factory=list)
    candidates: list[Suggestion] = field(default_factory=list)
    ranked: list[Suggestion] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    cannot: str | None = None
    model_version: str = ""


async def load_codeowners(client: GitLabClient, project_id: int, ref: str | None) -> CodeOwners | None:
    """The CODEOWNERS file of `ref` (first of `CODEOWNERS_PATHS` that exists), parsed; None when there is none."""
    for path in CODEOWNERS_PATHS:
        text = await client.file_raw(project_id, path, ref or None)
        if text is not None:
            parsed = parse_codeowners(text)
            for error in parsed.errors[:5]:
                log.info(kv("CODEOWNERS problem", project_id=project_id, path=path, error=str(error)))
            return parsed
    return None


async def persisted_exclusions(storage: Storage, project_id: int, mr_iid: int) -> frozenset[str]:
    """People `/reviewers exclude` or `/reviewers reroll` took off this MR (kept as feedback rows)."""
    rows = await storage.feedback.list(project_id, mr_iid=mr_iid)
    return frozenset(r.person for r in rows if r.label in EXCLUDING_LABELS)


async def gather_facts(look: Lookups, storage: Storage, project_id: int, mr: MergeRequest,
                       extra_excluded: Collection[str] = ()) -> MRFacts:
    """Fetch the changed files, members and CODEOWNERS (together), the CODEOWNERS groups and e-mails those
    files need, opt-outs and exclusions."""
    changed, members, codeowners = await gather(
        look.client.mr_changed_files(project_id, mr.iid), look.members(project_id),
        look.codeowners(project_id, mr.target_branch),
    )
    files = tuple(dict.fromkeys(f.path for f in changed))
    by_name = {m.username: m for m in members}
    owner_users = await resolve_owners(look.client, look.recent, project_id,
                                       owners_to_resolve(codeowners, files, by_name))
    optouts = await storage.optouts.active(project_id)
    excluded = await persisted_exclusions(storage, project_id, mr.iid)
    return MRFacts(
        files=files, members=by_name, optouts=frozenset(optouts), excluded=excluded | frozenset(extra_excluded),
        codeowners=codeowners, owner_users=owner_users,
    )


def _eligibility_members(facts: MRFacts) -> dict[str, Member]:
    return {name: Member(m.access_level, m.state, m.bot) for name, m in facts.members.items()}


def owner_usernames(section: SectionMatch, facts: MRFacts) -> list[str]:
    """The project members who may approve for a CODEOWNERS section, in file order: named users, members
    holding a role, and the members of groups and owners of e-mails as resolved in `facts.owner_users`.

    People a group or an address stands for who are not project members cannot approve and are left out.
    """
    names: dict[str, None] = {}
    for owner in section.owners:
        if owner.kind == "role" and owner.access_level is not None:
            names.update((m.username, None) for m in facts.members.values() if m.access_level >= owner.access_level)
            continue
        wanted = (owner.name,) if owner.kind == "name" else ()
        for username in wanted + tuple(facts.owner_users.get(owner, ())):
            if (member := facts.member(username)) is not None:
                names[member.username] = None
    return list(names)


# --- ranking and filtering ----------------------------------------------------------------------------------
def has_history(rec: GraphRecommender, files: Iterable[str]) -> bool:
    """Whether any changed file, or a directory holding one, appears in the project's history."""
    graph = rec.og.G
    return any(node in graph for node in rec.og.paths_of(files))


def boost_owners(ranked: Sequence[Suggestion], owners: Collection[str]) -> list[Suggestion]:
    """Move code owners up by `OWNER_BOOST` of the score spread (a strong signal, not an override).

    >>> s = [Suggestion("ann", 1.0), Suggestion("bob", 0.9), Suggestion("cy", 0.0)]
    >>> [x.person for x in boost_owners(s, {"bob"})]
    ['bob', 'ann', 'cy']
    """
    if not ranked or not owners:
        return list(ranked)
    folded = {o.casefold() for o in owners}
    scores = [s.score for s in ranked]
    bonus = OWNER_BOOST * ((max(scores) - min(scores)) or 1.0)
    keyed = [(s.score + (bonus if s.person.casefold() in folded else 0.0), -i, s) for i, s in enumerate(ranked)]
    return [s for _, _, s in sorted(keyed, key=lambda item: (item[0], item[1]), reverse=True)]


async def _statuses(look: Lookups, facts: MRFacts, people: Sequence[str]) -> dict[str, str]:
    """Each person's status `availability` (busy / not_set); members are looked up by id."""
    def uid(person: str) -> int | str:
        member = facts.member(person)
        return member.id if member else person

    found = await gather(*(look.status(uid(p)) for p in people))
    return dict(zip(people, found))


def _cheap_filter(ranked: Sequence[Suggestion], facts: MRFacts, author: str, settings: ProjectSettings,
                  bots: Collection[str]) -> tuple[list[Suggestion], dict[str, str]]:
    """Eligibility without statuses and loads (no API calls): members, access, opt-outs, exclusions, bots."""
    return eligible(
        ranked, members=_eligibility_members(facts), statuses={}, author=author, optouts=facts.optouts,
        excluded=facts.excluded, bots=bots, open_loads={}, max_open_reviews=None,
        min_access_level=settings.min_access_level,
    )


async def _final_filter(look: Lookups, facts: MRFacts, pool: Sequence[Suggestion], k: int,
                        result: SuggestionResult, settings: ProjectSettings) -> list[Suggestion]:
    """Fetch statuses chunk by chunk and drop busy or overloaded people until `k` remain (or none are left)."""
    kept: list[Suggestion] = []
    start = 0
    while len(kept) < k and start < len(pool):
        chunk = list(pool[start:start + k - len(kept) + SPARE])
        start += len(chunk)
        result.statuses.update(await _statuses(look, facts, [s.person for s in chunk]))
        ok, dropped = eligible(
            chunk, members=None, statuses=result.statuses, author="", optouts=(), excluded=(), bots=(),
            open_loads=result.loads, max_open_reviews=settings.max_open_reviews or None,
        )
        kept += ok
        result.dropped.update(dropped)
    return kept[:k]


async def _loads(look: Lookups, project_id: int, facts: MRFacts) -> dict[str, int]:
    """Open reviews per member username (one listing of the project's open MRs)."""
    by_id = {m.id: name for name, m in facts.members.items()}
    loads = dict.fromkeys(by_id.values(), 0)
    for reviewers in await look.open_reviewers(project_id):
        for uid in reviewers:
            if uid in by_id:
                loads[by_id[uid]] += 1
    return loads


# --- CODEOWNERS coverage and notes --------------------------------------------------------------------------
def _sections_needing_approval(facts: MRFacts) -> list[SectionMatch]:
    if facts.codeowners is None:
        return []
    return [s for s in facts.codeowners.owners_for_files(facts.files).values() if s.approvals_required > 0]


def _all_owners(facts: MRFacts) -> set[str]:
    if facts.codeowners is None:
        return set()
    sections = facts.codeowners.owners_for_files(facts.files).values()
    return {name for section in sections for name in owner_usernames(section, facts)}


def _people(names: Iterable[str]) -> str:
    return ", ".join(f"@{n}" for n in names)


def _approvals(n: int) -> str:
    return f"{n} approval{'s' if n != 1 else ''}"


async def _best_owner(look: Lookups, facts: MRFacts, result: SuggestionResult, owners: Sequence[str],
                      author: str, settings: ProjectSettings, bots: Collection[str]) -> Suggestion | None:
    """The best-ranked owner who can review now: owners with history first, then the others in file order."""
    folded = {o.casefold() for o in owners}
    ranked = [s for s in result.ranked if s.person.casefold() in folded]
    known = {s.person.casefold() for s in ranked}
    others = [Suggestion(o, 0.0) for o in owners if o.casefold() not in known]
    pool, dropped = _cheap_filter(ranked + others, facts, author, settings, bots)
    result.dropped.update(dropped)
    found = await _final_filter(look, facts, pool, 1, result, settings)
    return found[0] if found else None


async def _cover_sections(look: Lookups, facts: MRFacts, result: SuggestionResult, kept: list[Suggestion],
                          author: str, settings: ProjectSettings, bots: Collection[str]) -> list[Suggestion]:
    """Make sure each CODEOWNERS section that needs approval has an owner among the people suggested."""
    kept = list(kept)
    for section in _sections_needing_approval(facts):
        owners = owner_usernames(section, facts)
        folded = {o.casefold() for o in owners}
        covering = [s.person for s in kept if s.person.casefold() in folded]
        need = f"CODEOWNERS section {code_span(section.section)} needs {_approvals(section.approvals_required)}"
        if covering:
            result.notes.append(f"{need}: {_people(covering)} can give it.")
            continue
        best = await _best_owner(look, facts, result, owners, author, settings, bots) if owners else None
        if best is None:
            who = f"from {_people(owners)}" if owners else \
                "from owners who are not project members or could not be resolved (groups, e-mails)"
            result.notes.append(f"{need} {who}, but none of them can review right now.")
            continue
        why = f"code owner: section {code_span(section.section)} needs their approval"
        kept.append(replace(best, reasons=(why, *best.reasons)))
        result.notes.append(f"{need}: added code owner @{best.person}.")
    return kept


def _skip_notes(result: SuggestionResult, settings: ProjectSettings) -> list[str]:
    """Busy, opted-out, excluded or overloaded people who would otherwise have ranked among those suggested
    (any of them when nobody could be suggested)."""
    chosen = {s.person for s in result.suggestions}
    last = max((i for i, s in enumerate(result.candidates) if s.person in chosen),
               default=-1 if chosen else len(result.candidates) - 1)
    facts, cap = result.facts, settings.max_open_reviews
    optouts = {p.casefold() for p in facts.optouts | facts.excluded}
    notes = []
    for s in result.candidates[:last + 1]:
        reason = result.dropped.get(s.person)
        relevant = s.person.casefold() in optouts or result.statuses.get(s.person) == "busy" or \
            (cap > 0 and result.loads.get(s.person, 0) >= cap)
        if reason and relevant:
            notes.append(f"Skipped @{s.person}: {reason}.")
    return notes[:MAX_SKIP_NOTES]


# --- the service ----------------------------------------------------------------------------------------------
def open_change(mr: MergeRequest, files: Sequence[str], now: float | None = None) -> Change:
    """The MR as the recommender sees it, under the id its merge will have in the history (`!iid`): the
    candidate rows remembered when suggesting become training rows at the merge, with the labels about it."""
    return Change(id=learning.mr_change_id(mr.iid), time=int(now if now is not None else time.time()),
                  author=mr.author.username, reviewers=(), files=tuple(files), title=mr.title)


async def _rank(engine: Engine, project_id: int, settings: ProjectSettings,
                result: SuggestionResult) -> list[Suggestion] | None:
    """The graph's candidates, best first; None when no changed file has history."""
    async with engine.use(project_id, settings) as rec:
        result.model_version = f"{rec.name}@{rec.og.changes}"
        if not has_history(rec, result.facts.files):
            return None
        return await asyncio.to_thread(rec.suggest, result.change, POOL, explain=False)


async def _explain_chosen(engine: Engine, project_id: int, settings: ProjectSettings,
                          result: SuggestionResult) -> list[Suggestion]:
    """The suggestions with their evidence. Only the people shown are explained: explaining all `POOL`
    ranked candidates cost several times the ranking itself."""
    folded = {s.person.casefold() for s in result.suggestions}
    if not folded:
        return []
    async with engine.use(project_id, settings) as rec:
        explained = await asyncio.to_thread(rec.suggest, result.change, len(folded),
                                            allowed=lambda p: p.casefold() in folded, explain=True)
    by_person = {s.person.casefold(): s for s in explained}
    out = []
    for s in result.suggestions:
        e = by_person.get(s.person.casefold())
        out.append(s if e is None else
                   replace(s, reasons=(*s.reasons, *e.reasons), contributions=e.contributions))
    return out


async def suggest_for_mr(client: GitLabClient, engine: Engine, storage: Storage, project_id: int,
                         mr: MergeRequest, settings: ProjectSettings, *, bot_username: str, k: int | None = None,
                         extra_excluded: Collection[str] = (), now: float | None = None) -> SuggestionResult:
    """Rank the people who can review `mr` now: the top `k` (default `settings.top_k`) plus CODEOWNERS cover."""
    look = Lookups(client, engine.recent)
    facts = await gather_facts(look, storage, project_id, mr, extra_excluded)
    result = SuggestionResult(open_change(mr, facts.files, now), facts,
                              names={n: m.name for n, m in facts.members.items() if m.name},
                              user_ids={n: m.id for n, m in facts.members.items()})
    if not facts.files:
        result.cannot = NO_FILES
        return result
    engine.note_author(project_id, mr.iid, mr.author.username)
    ranked = await _rank(engine, project_id, settings, result)
    if ranked is None:
        result.cannot = NO_HISTORY
        return result
    author, bots = mr.author.username, {*settings.bots, bot_username}
    result.candidates = boost_owners(ranked, _all_owners(facts))
    result.ranked, dropped = _cheap_filter(result.candidates, facts, author, settings, bots)
    result.dropped.update(dropped)
    result.loads = await _loads(look, project_id, facts)
    kept = await _final_filter(look, facts, result.ranked, k or settings.top_k, result, settings)
    result.suggestions = await _cover_sections(look, facts, result, kept, author, settings, bots)
    result.suggestions = await _explain_chosen(engine, project_id, settings, result)
    result.notes = _skip_notes(result, settings) + result.notes
    if not result.suggestions:
        result.cannot = NO_ELIGIBLE
    return result


async def explain_person(client: GitLabClient, engine: Engine, project_id: int, settings: ProjectSettings,
                         result: SuggestionResult, person: str, *, bot_username: str,
                         ) -> tuple[Suggestion | None, int | None, str | None]:
    """For `/reviewers why @person`: their suggestion (if any), rank and the reason they were left out."""
    folded = person.casefold()
    for rank, s in enumerate(result.suggestions, start=1):
        if s.person.casefold() == folded:
            return s, rank, None
    found = next(((i, s) for i, s in enumerate(result.ranked, start=1) if s.person.casefold() == folded), None)
    dropped = next((r for p, r in result.dropped.items() if p.casefold() == folded), None)
    if (found is None or not found[1].reasons) and result.cannot not in (NO_FILES, NO_HISTORY):
        async with engine.use(project_id, settings) as rec:  # ranked candidates come without their evidence
            alone = await asyncio.to_thread(rec.suggest, result.change, 1,
                                            allowed=lambda p: p.casefold() == folded, explain=True)
        found = (found[0] if found else None, alone[0]) if alone else found
    if dropped is None:
        dropped = await _reason_for(Lookups(client, engine.recent), result, person, settings, bot_username)
    return (found[1], found[0], dropped) if found else (None, None, dropped)


async def _reason_for(look: Lookups, result: SuggestionResult, person: str, settings: ProjectSettings,
                      bot_username: str) -> str | None:
    """Why `person` cannot be suggested on this MR right now, or None when they can."""
    _, dropped = _cheap_filter([person], result.facts, result.change.author, settings, {*settings.bots, bot_username})
    if dropped:
        return next(iter(dropped.values()))
    statuses = await _statuses(look, result.facts, [person])
    _, dropped = eligible([person], members=None, statuses=statuses, author="", optouts=(), excluded=(), bots=(),
                          open_loads=result.loads, max_open_reviews=settings.max_open_reviews or None)
    return next(iter(dropped.values()), None)
