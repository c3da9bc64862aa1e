"""Per-project recommenders kept in memory and up to date with the stored history and feedback.

Why an engine: building a project's ownership graph replays its whole history (seconds for thousands of
changes, minutes for hundreds of thousands), so each project's recommender is built once, kept in a bounded
LRU, and brought up to date incrementally: when the history (stored by this or any other process) has new rows
that are not older than what the graph has seen, only those are observed; anything else (a backfill filling in
older MRs) rebuilds it; fewer rows than it has seen means `reviewbot forget` deleted the project, which is
dropped and started over as a new project. A restarted worker starts warm from the project's latest snapshot
(`graph.snapshot`, kept in `storage.snapshots` and rewritten in the background as history grows) plus the rows
stored since.
Graph work runs in a thread so the event loop (and the webhook endpoint beside it) keeps answering. What
one merge request gets from it is `bot.suggesting.suggest_for_mr`.
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
from dataclasses import dataclass, field, fields, replace
from typing import Any, AsyncIterator, Callable, Sequence

from bot import learning
from bot.config import ProjectSettings
from bot.logfmt import kv
from bot.lookups import Recent
from bot.storage import HistoryGone, Storage
from bot.storage.db import utcnow
from bot.threads import to_the_end
from graph import snapshot
from graph.model import Change
from graph.ownership import OwnershipGraph
from graph.recommend import (DEFAULT_SETTINGS, GraphRecommender, LearnedRecommender, RecommenderSettings,
                             make_recommender)

__all__ = ["Engine", "recommender_settings", "config_key", "WARM_CHUNK"]

log = logging.getLogger("bot.engine")


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
    used_at: float = -math.inf     # when an event last asked for the recommender (`Engine.evict_idle`)
    writes: int = -1               # storage.history.writes() then
    unsaved: int = 0               # rows observed since the last snapshot (or since built)
    saving: asyncio.Task[None] | None = None
    label_writes: int = -1         # storage.feedback.writes() when labels were last read
    labels_new: int = 0            # labels learned since the last retraining started
    retraining: asyncio.Task[None] | None = None
    retrained_at: float = -math.inf
    schedule_read: bool = False    # whether `retrained_at` was set from the stored model's time
    unadoptable: str | None = None  # an active model's version that could not be adopted (not read again)

    def forget(self, now: float) -> None:
        """Start over as a new project's entry, keeping only the lock (the caller holds it): the recommender of
        a project `reviewbot forget` deleted goes, with its bookkeeping. Its retraining or snapshot still
        running stores nothing (`HistoryGone`) and leaves this entry alone (see `Engine._retrain`)."""
        blank = _Entry(lock=self.lock, retrained_at=now)
        for f in fields(self):
            setattr(self, f.name, getattr(blank, f.name))

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


def _label_seen(entry: _Entry) -> int | None:
    """The newest feedback row the recommender of a project without history has read (`label_mark`), which the
    look at the history reads too: gone, the project was forgotten (or `reviewbot prune` deleted that row; a
    rebuild from what is stored is right then too, and cheap without history). None when history rows were seen
    (they tell the forget, and the common path reads nothing more) or no label was read."""
    rec = entry.recommender
    if entry.count or not isinstance(rec, LearnedRecommender) or not rec.label_mark:
        return None
    return rec.label_mark


def _gone(entry: _Entry) -> str:
    """Why a refresh found the project's rows gone, for the log: an operator reading "forgotten" after a
    `reviewbot prune` that only deleted old labels would look for a forget nobody ran. With history seen, what
    is gone is history (the label is looked at only without it: `_label_seen`)."""
    if entry.count:
        return "its history rows were deleted"
    return "the newest label it learned is gone (reviewbot forget, or prune's retention)"


class Engine:
    """Project recommenders built lazily from `storage.history`, at most `max_projects` kept in memory; plus
    the short-lived cache (`recent`) of GitLab answers that `bot.suggesting.suggest_for_mr` reads through.

    A project's recommender starts warm from its latest snapshot (`storage.snapshots`) and observes only the
    rows stored after it; without a usable snapshot it replays the whole history. At use, the history's row
    count is read at most every `refresh_seconds` (at once after this process stored history), and rows
    stored by any process are observed. A count below the rows observed, the newest row observed gone (read in
    the same statement; for a project without history rows, the newest label learned), or an active model gone
    that the recommender ranked with, means the project was forgotten (`reviewbot forget` is the only deleter of
    history rows and active models): what was held of it is dropped, and it is
    built again from what the history holds now, as a new project is. Once `snapshot_every` rows have been observed
    since the last snapshot (projects smaller than that get none), a new one is written in the background;
    `close()` writes the rest at shutdown. `snapshot_every=None` writes none (reading still happens).
    A project not used for `idle_seconds` is dropped from memory by `evict_idle()` (called on a timer), its
    snapshot written first, so that a process serving many quiet projects does not hold them for days.

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
                 prior: bool = False, idle_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_projects < 1:
            raise ValueError(f"max_projects must be at least 1, got {max_projects}")
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every must be at least 1 (or None for no snapshots), got {snapshot_every}")
        if idle_seconds is not None and not idle_seconds > 0:
            raise ValueError(f"idle_seconds must be above 0 (or None to keep idle projects), got {idle_seconds}")
        self.storage = storage
        self.recent = Recent(cache_seconds)
        self.method = method
        self.max_projects = max_projects
        self.refresh_seconds = refresh_seconds
        self.snapshot_every = snapshot_every
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.retrain_labels, self.retrain_seconds, self.holdout = retrain_labels, retrain_seconds, holdout
        self.use_prior = prior
        self.prior: Any | None = None
        self._prior_task: asyncio.Task[None] | None = None
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._authors: OrderedDict[tuple[int, int], str] = OrderedDict()  # (project, MR iid) -> author
        # called with a project's id when it is found forgotten: `Backfills.forget`, so its next event imports it
        self.on_forgotten: list[Callable[[int], None]] = []

    def __contains__(self, project_id: int) -> bool:
        return project_id in self._entries

    def _entry(self, project_id: int) -> _Entry:
        entry = self._entries.get(project_id)
        if entry is None:
            entry = self._entries[project_id] = _Entry(retrained_at=self.clock())  # the schedule starts now
        self._entries.move_to_end(project_id)
        entry.used_at = self.clock()
        while len(self._entries) > self.max_projects:
            evicted, _ = self._entries.popitem(last=False)
            log.info(kv("recommender evicted", project_id=evicted))
        return entry

    @contextlib.asynccontextmanager
    async def use(self, project_id: int, settings: ProjectSettings) -> AsyncIterator[GraphRecommender]:
        """The project's up-to-date recommender, held exclusively for the block (it is not thread-safe)."""
        entry = self._entry(project_id)
        async with entry.lock:
            if not entry.schedule_read:
                await self._read_schedule(project_id, entry)
            await to_the_end(self._refresh(project_id, entry, recommender_settings(settings)))
            assert entry.recommender is not None
            yield entry.recommender
        self._maybe_snapshot(project_id, entry)
        self._maybe_retrain(project_id, entry)

    async def _read_schedule(self, project_id: int, entry: _Entry) -> None:
        """Count the retraining schedule from the active model's time when there is one, not from this
        process's start: a platform that restarts its processes daily (Heroku) would otherwise never reach
        a daily `retrain_hours`."""
        entry.schedule_read = True
        if self.retrain_seconds is None:
            return
        active = await self.storage.models.active_summary(project_id)
        if active is not None:
            age = max(0.0, (utcnow() - active[2]).total_seconds())
            entry.retrained_at = min(entry.retrained_at, self.clock() - age)

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

    async def evict_idle(self) -> None:
        """Drop the projects no one has used for `idle_seconds`, writing the snapshot of the rows observed since
        the last one first (the next use loads it instead of replaying the history). One locked, being built,
        saving or retraining is left for the next call. Reads nothing from the database for projects kept."""
        if self.idle_seconds is None:
            return
        for project_id, entry in list(self._entries.items()):
            if not self._idle(entry):
                continue
            self._maybe_snapshot(project_id, entry, final=True)
            if entry.saving is not None:  # a failed write is logged; the project goes all the same
                await asyncio.wait([entry.saving])  # not cancelled with this call: `close()` waits for it
            if self._idle(entry) and self._entries.get(project_id) is entry:  # not used while it was written
                del self._entries[project_id]
                entry.recommender = None  # ends a snapshot's background warm-up (`_warm_blocks`)
                log.info(kv("idle recommender dropped", project_id=project_id, changes=entry.count,
                            unsaved=entry.unsaved, idle_hours=round((self.clock() - entry.used_at) / 3600, 1)))

    def _idle(self, entry: _Entry) -> bool:
        """Unused for `idle_seconds`, and nothing holds or works on it (a build or a use holds the lock)."""
        assert self.idle_seconds is not None
        if entry.lock.locked() or entry.saving is not None or entry.retraining is not None:
            return False
        return self.clock() - entry.used_at >= self.idle_seconds

    # -- keeping up with the stored history ------------------------------------------------------------
    async def _refresh(self, project_id: int, entry: _Entry, config: RecommenderSettings) -> None:
        current = entry.recommender is not None and entry.config == config
        writes, now = self.storage.history.writes(project_id), self.clock()
        label_writes = self.storage.feedback.writes(project_id)
        if current and writes == entry.writes and label_writes == entry.label_writes and \
                now - entry.checked_at < self.refresh_seconds:
            return
        count, holding = await self.storage.history.count_holding(project_id, max(entry.boundary, default=None),
                                                                  label_id=_label_seen(entry))
        if count < entry.count or not holding:
            self._forget(project_id, entry, count, cause=_gone(entry))
            current = False
        entry.checked_at, entry.writes, entry.label_writes = now, writes, label_writes
        if current and await self._catch_up(project_id, entry, history=count != entry.count):
            if not await self._follow_model(project_id, entry):
                return
            self._forget(project_id, entry, count, cause="its active model was deleted")
        await self._rebuild(project_id, entry, config)

    def _forget(self, project_id: int, entry: _Entry, count: int, *, cause: str) -> None:
        """Drop what is held of a project `reviewbot forget` deleted: its recommender, its bookkeeping, the authors
        of its open MRs; `on_forgotten` is told. The graph holds no reference cycles: it is freed at once, frozen
        (`FREEZE_AFTER`) or not (measured: a 25k-change graph gone without a collection, whose memory the next
        project built reused; unfreezing and collecting took 0.3 s more and gave nothing back)."""
        log.info(kv("project forgotten: recommender dropped", cause=cause, project_id=project_id,
                    changes=entry.count, stored=count))
        entry.forget(self.clock())
        for key in [k for k in self._authors if k[0] == project_id]:
            del self._authors[key]
        for hook in self.on_forgotten:
            hook(project_id)

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
        entry.labels_new += sum(x.label in learning.EVIDENCE for x in labels)  # who was shown first: no label
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
        og, cap = rec.og, OwnershipGraph.WARM_ROWS
        while entry.recommender is rec:
            async with entry.lock:
                if entry.recommender is not rec:
                    return
                before = og.block_rows
                done = await to_the_end(asyncio.to_thread(og.warm_blocks, min(cap, before + chunk)))
            if done >= cap or done == before:
                return

    # -- models ----------------------------------------------------------------------------------------
    async def _follow_model(self, project_id: int, entry: _Entry) -> bool:
        """Rank with the model another process activated since (`learning.follow_active`; under the entry's
        lock already): one small read of the active version at each look at the history. A model that cannot
        be adopted (unreadable, another code version's width during a rolling deploy) is not read again.

        True when the project has no active model while the recommender ranks with a stored one: only
        `reviewbot forget` deletes an active model. Why look here too: it tells the forget without the row ids.
        History imported again after the forget gets new ids (`HistoryStore.count_holding`), but on SQLite only
        since 0013: before, it took the forgotten rows' ids when those were the largest, and the row count and
        the rows seen matched again (a project forgotten before that upgrade may still leave such ids)."""
        rec = entry.recommender
        if not isinstance(rec, LearnedRecommender):
            return False
        before = rec.model_version
        version = await learning.follow_active(self.storage, project_id, rec, None, skip=entry.unadoptable)
        if version is None and before is not None:
            return True
        if version is None or version == rec.model_version:
            if version != before:
                log.info(kv("model another process activated adopted", project_id=project_id, version=version))
            return False
        entry.unadoptable = version
        return False

    async def _models_for(self, project_id: int, rec: GraphRecommender) -> None:
        """A (re)built recommender adopts the project's active stored model, and the prior if wanted."""
        if not isinstance(rec, LearnedRecommender):
            return
        found = await learning.stored_model(self.storage, project_id)
        if found is not None and learning.adopt(rec, found[1]):
            rec.model_version = found[0]
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

    def retrain_due(self) -> None:
        """Start the scheduled retrainings that are due (`retrain_seconds` since the last, and labels came in):
        called on a timer, so a quiet project is not left waiting for its next event."""
        for project_id, entry in list(self._entries.items()):
            self._maybe_retrain(project_id, entry)

    def _maybe_retrain(self, project_id: int, entry: _Entry) -> None:
        """Start retraining in the background after `retrain_labels` new labels, or on the schedule, once the
        project has the history a model needs (`learning.enough_history`)."""
        if entry.retraining is not None or not isinstance(entry.recommender, LearnedRecommender):
            return
        if not learning.enough_history(entry.recommender):  # the labels wait, counted, for the history to grow
            return
        due = self.retrain_labels is not None and entry.labels_new >= self.retrain_labels
        if self.retrain_seconds is not None and entry.labels_new > 0:
            due = due or self.clock() - entry.retrained_at >= self.retrain_seconds
        if not due:
            return
        entry.labels_new = 0
        rows = tuple(entry.boundary)  # rows it has seen: still those of the project it holds once the task runs
        task = entry.retraining = asyncio.create_task(self._retrain(project_id, entry, entry.recommender, rows))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retrain(self, project_id: int, entry: _Entry, rec: LearnedRecommender, rows: tuple[int, ...]) -> None:
        """Fit, store and maybe adopt a new model; a failure is logged and the next labels try again. `rows`: ids
        of history rows `rec` has seen, with which the model is stored (none once `reviewbot forget` deleted
        them: the entry may be a new project's by the time the fit is done)."""
        try:
            await learning.retrain_and_store(self.storage, project_id, rec, entry.lock, history=entry,
                                             holdout=self.holdout, built_on=rows)
        except Exception as exc:  # noqa: BLE001 - a background job must not die silently nor crash the worker
            log.warning(kv("retraining failed", project_id=project_id, error=f"{type(exc).__name__}: {exc}"))
        finally:
            if entry.retraining is asyncio.current_task():  # else the project was forgotten meanwhile
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
                state = await to_the_end(asyncio.to_thread(snapshot.state_of, rec))
                count, last_time, captured = entry.count, entry.last_time, entry.unsaved
                boundary = sorted(entry.boundary)
            blob = await asyncio.to_thread(snapshot.encode, state)
            del state
            await self.storage.snapshots.save(
                project_id, blob, format=snapshot.fingerprint(), config=config_key(self.method, config),
                history_count=count, history_time=last_time, boundary=boundary, built_on=boundary)
            if entry.recommender is rec:
                entry.unsaved = max(0, entry.unsaved - captured)
            log.info(kv("snapshot written", project_id=project_id, changes=count, size=len(blob),
                        seconds=round(time.monotonic() - started, 3)))
        except HistoryGone:  # `reviewbot forget` deleted the project meanwhile: nothing of it is stored again
            log.info(kv("snapshot not stored: the project was forgotten meanwhile", project_id=project_id))
        except Exception as exc:  # noqa: BLE001 - a background write must not die silently nor crash the worker
            log.warning(kv("snapshot failed", project_id=project_id, error=f"{type(exc).__name__}: {exc}"))
        finally:
            if entry.saving is asyncio.current_task():  # else the project was forgotten meanwhile
                entry.saving = None
