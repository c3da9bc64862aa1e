"""The worker: claims stored events, runs the handlers on each, and records the outcome.

Why a lease-based loop: several processes (or several loops in one process) share the queue; a
claimed event is leased, so a crashed worker's events come back after `lease_seconds`. A failing
event is retried with exponential backoff (or after the exception's `retry_after` seconds, e.g. a
GitLab 429) and dead-lettered after `max_attempts`; an exception with `permanent = True` is dead-lettered at
once. An exception with `outage = True` (GitLab down), or one that says the database failed (`is_outage`), is
counted apart for `outage_hours` after the event arrived (`outage_attempts`, see `_outage_forgiven`): it never
uses up the attempts, and leaves them whole for the event's own failures once GitLab or the database answers
again. So is a run cut off by `dispatch_timeout` while GitLab failed, or inside a statement (or a connect, a
COMMIT: `bot.storage.waits`) the database had not answered for half of it (`_timeout_cause`).
An exception with `park = seconds` is no failure: the event waits for something else (the first events of a
project wait for its history import), so it goes back to the queue, due in that many seconds, its attempt not
counted, and sooner when the exception's `wakes` (an asyncio future: what it waits for) is done. A parked event
holds no worker slot, and it waits in the table, not in this process: a crash loses nothing.
A run's end is recorded in the transaction of the loop's next claim, which follows at once (its slot is free):
one transaction fewer per event, a third of a plain comment's. A running event's lease is renewed every third of
`lease_seconds`. An event whose lease expired (the process
running it died, perhaps of it) is claimed only with no other event running, and runs alone: nothing else is
claimed until it is over, so an event that kills its process takes no other event down a second time (alone
in its `Worker`: `serve` and `worker` run one a process). The crash costs an attempt only to an event that ran
alone (`EventRow.ran_alone`: reclaimed, or `concurrency` 1): the others may be innocent, and are charged only
if they crash again, alone.
On SIGTERM (`stop`) the worker claims nothing more, lets running events finish within the grace period and hands
the rest back to the queue.

Handlers are not written here: the worker is given `dispatch(event_row) -> awaitable`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from aiohttp import web

from bot import shutdown
from bot.config import Settings, WorkerSettings
from bot.deadline import let_go, within
from bot.gitlab.client import GitLabStall
from bot.logfmt import event_fields, kv
from bot.metrics import Metrics
from bot.storage import EventRow, Storage
from bot.storage.db import database_unavailable
from bot.storage.events import backoff_delay
from bot.storage.waits import DatabaseWait

__all__ = ["Worker", "Dispatch", "DispatchFactory", "run_in_app", "retry_delay", "park_seconds", "default_worker_id",
           "retention", "stop_loop", "is_outage"]

log = logging.getLogger("bot.worker")

T = TypeVar("T")
# A run cut off by `dispatch_timeout` while one of its statements (connects, commits) had waited this share of it is
# the database's hang (`DatabaseNotAnswering`), not the handler's slowness: the bot's statements take milliseconds
DATABASE_HANG_SHARE = 0.5
CLAIM_ERROR_EVERY = 300.0  # seconds between two log lines of one database outage, as the worker sees it
RECORD_PAUSE, RECORD_PAUSE_MAX = 0.5, 10.0  # seconds between tries of an outcome the database refused
Dispatch = Callable[[EventRow], Awaitable[Any]]
# What `reviewbot serve` / `reviewbot worker` import (default `bot.handlers:make_dispatch`): given the
# settings, storage and metrics, an async context manager that yields the dispatch callable and
# closes its resources (HTTP session, ...) on exit.
DispatchFactory = Callable[[Settings, Storage, Metrics], AbstractAsyncContextManager[Dispatch]]


def default_worker_id() -> str:
    """host:pid:random, unique across dynos and restarts (the lease owner's name)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_delay(exc: BaseException, attempts: int, base: float, cap: float) -> float:
    """The exception's `retry_after` seconds when it has one, else exponential backoff.

    >>> class RateLimited(Exception): retry_after = 42
    >>> retry_delay(RateLimited(), 1, 10, 3600), retry_delay(ValueError(), 3, 10, 3600)
    (42.0, 40)
    """
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) and retry_after >= 0:
        return float(retry_after)
    return backoff_delay(attempts, base, cap)


def park_seconds(exc: BaseException) -> float | None:
    """The exception's `park` seconds (the event waits for something else), None when it has none.

    >>> class Waiting(Exception): park = 20
    >>> park_seconds(Waiting()), park_seconds(ValueError())
    (20.0, None)
    """
    park = getattr(exc, "park", None)
    if isinstance(park, (int, float)) and not isinstance(park, bool) and park >= 0:
        return float(park)
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether a handler's error is an outage, no fault of the event: GitLab's (`outage = True`: no answer, 5xx, 429,
    a refused token) or the database's (`database_unavailable`: a failover, a restart, a lock held past its
    timeout). Why the database's too: a handler writes as it goes, and each run that met a failover used up an
    attempt, so a long one dead-lettered every event it caught; a statement that is wrong is still the event's.

    >>> class Down(Exception): outage = True
    >>> is_outage(Down()), is_outage(ConnectionRefusedError()), is_outage(KeyError("x"))
    (True, True, False)
    """
    return bool(getattr(exc, "outage", False)) or database_unavailable(exc)


class GitLabNotAnswering(Exception):
    """The event ran out of `dispatch_timeout` while its GitLab calls were failing or unanswered: an outage,
    retried for `outage_hours` whatever its attempts (see `_outage_forgiven`)."""

    outage = True

    def __init__(self, timeout: float) -> None:
        super().__init__(f"timed out after {timeout:g} s (worker.dispatch_timeout) while GitLab did not answer "
                         "or failed (5xx, 429): retried as an outage")


class DatabaseNotAnswering(Exception):
    """The event ran out of `dispatch_timeout` inside a statement, a connect or a COMMIT the database had not
    answered for most of it (a lock another session holds, a server that hangs): an outage, as
    `database_unavailable`'s errors are."""

    outage = True

    def __init__(self, timeout: float, waited: float) -> None:
        super().__init__(f"timed out after {timeout:g} s (worker.dispatch_timeout), {waited:.0f} s of them waiting "
                         "for the database to answer one statement, connect or COMMIT (a lock another session "
                         "holds? a server that hangs?): retried as an outage")


def _timeout_cause(exc: Exception, stall: GitLabStall, wait: DatabaseWait, timeout: float) -> Exception:
    """What a run cut off by `dispatch_timeout` waited for: GitLab failing or not answering, the database not
    answering for most of the run (`DATABASE_HANG_SHARE`), else the handler's own slowness (`exc` as it is)."""
    if stall.failing:
        return GitLabNotAnswering(timeout)
    if (waited := wait.waited()) >= DATABASE_HANG_SHARE * timeout:
        return DatabaseNotAnswering(timeout, waited)
    return exc


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g} s (worker.dispatch_timeout)"
    return f"{type(exc).__name__}: {exc}"


def retention(cfg: WorkerSettings) -> dict[str, timedelta | None]:
    """`Storage.prune`'s ages from the `[worker]` settings (a retention of 0 days keeps those rows)."""
    def kept_for(days: float) -> timedelta | None:
        return timedelta(days=days) if days else None

    return {"done": timedelta(days=cfg.retention_days), "dead": kept_for(cfg.dead_retention_days),
            "finished_mrs": kept_for(cfg.mr_retention_days)}


class Worker:
    """Runs stored events through `dispatch`, `settings.worker.concurrency` at a time."""

    def __init__(
        self, storage: Storage, dispatch: Dispatch, settings: Settings, metrics: Metrics | None = None,
        worker_id: str | None = None, *, prune_every: float | None = None,
    ) -> None:
        self.storage, self.dispatch, self.cfg = storage, dispatch, settings.worker
        # seconds between two prunes (the first at start): [worker] prune_interval
        self.prune_every = self.cfg.prune_interval if prune_every is None else prune_every
        self.metrics = metrics or Metrics()
        self.worker_id = worker_id or default_worker_id()
        self._tasks: dict[asyncio.Task[None], int] = {}  # running, with the id of the event each runs
        self._parked: set[asyncio.Task[None]] = set()  # each wakes a parked event when what it waits for is done
        self._alone: asyncio.Task[None] | None = None  # running a reclaimed event: nothing is claimed beside it
        # event id -> its run's end, to be recorded with the next claim (`_finish`); True once it is recorded,
        # None when that claim failed (the run then records it itself)
        self._ending: dict[int, asyncio.Future[bool | None]] = {}
        self._ended: set[asyncio.Task[None]] = set()  # runs whose end is recorded, still logging it: no slot
        self.claim_error: str | None = None  # why the last claim failed (the database), None after a good one
        self._outage_since: float = 0.0  # monotonic: when claims began to fail
        self._claim_logged: float | None = None  # monotonic: the last failed claim logged
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop_exited = asyncio.Event()
        self._loop_exited.set()
        self._last_prune: float | None = None

    def request_stop(self) -> None:
        """Claim nothing more (e.g. as soon as the web server begins to shut down); see `stop()`."""
        self._stopping.set()
        self._wake.set()

    def notify(self) -> None:
        """Wake the loop now (a new event was stored in this process) instead of at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """How many events this worker is running right now."""
        return len(self._tasks)

    async def run(self) -> None:
        """Claim and run events until `stop()` is called."""
        self._loop_exited.clear()
        log.info(kv("worker started", worker=self.worker_id, concurrency=self.cfg.concurrency))
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before claiming: a notify() during the claim is not lost
                if await self.run_once() == 0:
                    await self._idle()
                await self._maybe_prune()
        finally:
            self._loop_exited.set()
            self._hand_back_ends()
            log.info(kv("worker loop stopped", worker=self.worker_id))

    async def run_once(self) -> int:
        """Claim as many events as there are free slots and start them; return how many were started. The runs
        that ended since the last claim are recorded done in the claim's transaction (`_finish`)."""
        ending = dict(self._ending)
        self._ending.clear()
        running = len(self._tasks) - len(self._ended) - len(ending)
        free = self.cfg.concurrency - running
        if free <= 0 or self._alone is not None or self._stopping.is_set():
            self._hand_back_ends(ending)
            return 0
        try:
            finished, rows = await self._unless_stopping(self.storage.events.finish_and_claim(
                ending, self.worker_id, self.cfg.lease_seconds, free, max_attempts=self.cfg.max_attempts,
                busy=running > 0), (None, []))
        except Exception as exc:  # noqa: BLE001 - a database outage must not kill the loop
            self._hand_back_ends(ending)
            self._claim_failed(_describe(exc, 0))
            return 0
        if finished is not None:  # those runs hold no slot any more (they log their end and are over)
            self._ended.update(task for task, event_id in self._tasks.items() if event_id in ending)
        for event_id, ended in ending.items():
            if not ended.done():
                ended.set_result(None if finished is None else event_id in finished)
        if self.claim_error is not None:
            log.info(kv("worker can claim events again", worker=self.worker_id,
                        seconds=round(time.monotonic() - self._outage_since, 1)))
        self.claim_error = None
        for row in rows:
            task = asyncio.create_task(self._process(row), name=f"event-{row.id}")
            self._tasks[task] = row.id
            task.add_done_callback(self._forget)
            if row.reclaimed:
                self._alone = task
                log.warning(kv("event reclaimed after its lease expired: runs alone", event_id=row.id,
                               kind=row.kind, attempt=row.attempts))
        return len(rows)

    def _claim_failed(self, cause: str) -> None:
        """Log a failed claim when the outage begins and every `CLAIM_ERROR_EVERY` seconds while it lasts: the
        loop claims at every poll (2 s), so an hour without the database logged 1,800 identical errors."""
        now = time.monotonic()
        if self.claim_error is None:
            self._outage_since, self._claim_logged = now, None
        self.claim_error = cause
        if self._claim_logged is None or now - self._claim_logged >= CLAIM_ERROR_EVERY:
            self._claim_logged = now
            log.error(kv("worker cannot claim events", worker=self.worker_id, cause=cause,
                         failing_for=round(now - self._outage_since, 1),
                         next_report=f"in {CLAIM_ERROR_EVERY:g} s, or when it can again"))

    def _hand_back_ends(self, ending: dict[int, asyncio.Future[bool | None]] | None = None) -> None:
        """The runs' ends the loop will not record (it stops, or the claim failed): each run records its own."""
        if ending is None:
            ending, self._ending = self._ending, {}
        for ended in ending.values():
            if not ended.done():
                ended.set_result(None)

    async def _finish(self, row: EventRow) -> bool | None:
        """Record a run's end: with the loop's next claim, which follows at once (its slot is free), in one
        transaction; alone when the loop is not running (`run_once` called by hand, stopping) or the run is
        the reclaimed event's (nothing else is claimed until it is over) or the claim failed."""
        if not self._loop_exited.is_set() and not self._stopping.is_set() and \
                asyncio.current_task() is not self._alone:
            ended: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
            self._ending[row.id] = ended
            self._wake.set()
            if (recorded := await ended) is not None:
                return recorded
        return await self._record_outcome(lambda: self.storage.events.complete(row.id, owner=self.worker_id), row.id)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._ended.discard(task)
        if task is self._alone:
            self._alone = None

    async def _unless_stopping(self, work: Awaitable[T], stopped: T) -> T:
        """The loop's database work (a claim, a prune), or `stopped` when `stop()` comes first: a database that
        does not answer must not keep the loop, and so the process, from stopping (what such a claim took comes
        back with its lease)."""
        working = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if working.done():
            return working.result()
        let_go(working, self.storage.cancellable)  # on SQLite left to finish: cancelled, it kept the write lock
        return stopped

    async def drain(self) -> None:
        """Wait until every event this worker started has finished, and every event it parked is due again
        (for `worker --once` and tests)."""
        while self._tasks or self._parked:
            await asyncio.gather(*self._tasks, *self._parked, return_exceptions=True)

    async def _idle(self) -> None:
        """Wait for a notification, a finished event (a free slot) or the poll interval. A run whose end the last
        claim recorded gave its slot back then: its task ending is no reason to claim again."""
        waiters = [asyncio.ensure_future(self._wake.wait()), *(t for t in self._tasks if t not in self._ended)]
        try:
            await asyncio.wait(waiters, timeout=self.cfg.poll_interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiters[0].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiters[0]

    async def _renew(self, row: EventRow) -> None:
        """Keep the lease while the event runs: a handler may outlast `dispatch_timeout` (a first import of a
        project's history runs in a thread that cannot be cancelled), and another worker must not take the
        event meanwhile and run it twice."""
        every = self.cfg.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.storage.events.renew(row.id, self.worker_id, self.cfg.lease_seconds):
                    return
            except Exception as exc:  # noqa: BLE001 - a database blip: try again; the lease has room
                log.warning(kv("cannot renew lease", event_id=row.id, cause=_describe(exc, 0)))

    async def _process(self, row: EventRow) -> None:
        """Run one event; every line logged meanwhile, here or in the handlers, names it (`event_fields`)."""
        with event_fields(event_id=row.id, project_id=row.project_id, mr_iid=row.mr_iid):
            await self._run_event(row)

    async def _run_event(self, row: EventRow) -> None:
        started = time.monotonic()
        renewing = asyncio.create_task(self._renew(row), name=f"lease-{row.id}")
        stall, wait = GitLabStall(), DatabaseWait()
        try:  # the dispatch's task copies this context: its GitLab calls mark `stall`, its statements `wait`
            with stall.watching(), wait.watching():
                await asyncio.wait_for(self.dispatch(row), self.cfg.dispatch_timeout)
        except asyncio.CancelledError:
            raise  # stop(): the event is handed back by release()
        except Exception as exc:  # noqa: BLE001 - every handler error is recorded on the event
            if isinstance(exc, TimeoutError):
                exc = _timeout_cause(exc, stall, wait, self.cfg.dispatch_timeout)
            if (seconds := park_seconds(exc)) is not None:
                await self._park(row, exc, seconds)
            else:  # (a renewal meanwhile finds the event no longer ours, and stops)
                await self._failed(row, exc)
        else:
            await self._finish(row)
            self.metrics.events_processed.labels(kind=row.kind).inc()
            log.info(kv("event done", event_id=row.id, kind=row.kind, action=row.action,
                        seconds=round(time.monotonic() - started, 3)))
        finally:
            renewing.cancel()
            self.metrics.dispatch_seconds.labels(kind=row.kind).observe(time.monotonic() - started)

    async def _park(self, row: EventRow, exc: Exception, seconds: float) -> None:
        """Back to the queue for `seconds`, the attempt not counted; woken sooner by the exception's `wakes`."""
        reason = str(exc)
        parked = await self._record_outcome(
            lambda: self.storage.events.park(row.id, reason, seconds, owner=self.worker_id), row.id)
        if not parked:
            log.warning(kv("event not parked: it is no longer this worker's", event_id=row.id, kind=row.kind,
                           cause=reason))
            return
        log.info(kv("event parked", event_id=row.id, kind=row.kind, seconds=round(seconds, 1), cause=reason))
        wakes = getattr(exc, "wakes", None)
        if isinstance(wakes, asyncio.Future) and not self._stopping.is_set():  # stopping: due at its time
            task = asyncio.create_task(self._wake_when(row.id, wakes, seconds), name=f"wake-{row.id}")
            self._parked.add(task)
            task.add_done_callback(self._parked.discard)

    async def _wake_when(self, event_id: int, wakes: asyncio.Future[Any], seconds: float) -> None:
        """Make the parked event due as soon as `wakes` is done (at the latest, it is due after `seconds`)."""
        await asyncio.wait([wakes], timeout=seconds)
        await self._record(self.storage.events.wake(event_id), event_id)
        self.notify()

    def _outage_forgiven(self, row: EventRow, exc: Exception) -> bool:
        """Whether this failure is GitLab's or the database's outage (`is_outage`) within `outage_hours` of the
        event's arrival: then it is counted in `outage_attempts`, not in the attempts `max_attempts` limits. Past
        those hours an outage failure counts like any other: the event has the attempts it had left."""
        if not is_outage(exc) or self.cfg.outage_hours <= 0:
            return False
        age = (self.storage.events.clock() - row.received_at).total_seconds()
        return age < self.cfg.outage_hours * 3600

    def _retry_delay(self, row: EventRow, exc: Exception) -> float:
        """An outage's delay grows with every run of the event that failed (through the outage too, so a long
        one is retried `backoff_max` apart); a failure of the event's own backs off from its own attempts, as
        though the outage had not been (GitLab answering again, its first retry comes after `backoff`)."""
        runs = row.attempts + row.outage_attempts if is_outage(exc) else row.attempts
        return retry_delay(exc, runs, self.cfg.backoff, self.cfg.backoff_max)

    async def _failed(self, row: EventRow, exc: Exception) -> None:
        error = _describe(exc, self.cfg.dispatch_timeout)
        forgiven = False
        if getattr(exc, "permanent", False):
            done = await self._record_outcome(
                lambda: self.storage.events.dead_letter(row.id, error, owner=self.worker_id), row.id)
            status: str | None = "dead" if done else None
        else:
            forgiven = self._outage_forgiven(row, exc)
            delay = self._retry_delay(row, exc)
            status = await self._record_outcome(lambda: self.storage.events.retry_later(
                row.id, error, delay, max_attempts=self.cfg.max_attempts, owner=self.worker_id, outage=forgiven),
                row.id)
        if status is None:  # its lease ran out (or the database is down): the event is someone else's now
            log.warning(kv("event failed; outcome not recorded, the event is no longer this worker's",
                           event_id=row.id, kind=row.kind, attempt=row.attempts, cause=error))
            return
        result = "dead" if status == "dead" else "retry"
        self.metrics.events_failed.labels(kind=row.kind, result=result).inc()
        logger = log.error if result == "dead" else log.warning
        counted = {"outage_retry": row.outage_attempts + 1} if forgiven else {"attempt": row.attempts}
        logger(kv("event failed", event_id=row.id, kind=row.kind, **counted, result=result, cause=error),
               exc_info=exc if result == "dead" else None)

    async def _record(self, outcome: Awaitable[Any], event_id: int | None) -> Any:
        """Write to the queue once (a wake, the hand-back at shutdown); None when the database fails it."""
        try:
            return await outcome
        except Exception as exc:  # noqa: BLE001
            log.error(kv("cannot record event outcome", worker=self.worker_id, event_id=event_id,
                         cause=_describe(exc, 0)))
            return None

    async def _record_outcome(self, write: Callable[[], Awaitable[T]], event_id: int) -> T | None:
        """Write a run's outcome, trying again while the database refuses it (a failover, a restart) for a third
        of `lease_seconds`, which the lease outlasts (renewed meanwhile when it can be); None when it never
        could: the lease then expires and the event runs again.

        Why: given up at once, the event stayed `running` until its lease ran out and ran again with that
        attempt counted, so a park or an outage's retry used one up, and on its last attempt a handled event
        was dead-lettered as though its worker had crashed.
        """
        give_up, pause = time.monotonic() + self.cfg.lease_seconds / 3, RECORD_PAUSE
        while True:
            try:
                return await write()
            except Exception as exc:  # noqa: BLE001 - the database, not the event
                if time.monotonic() + pause > give_up:
                    log.error(kv("cannot record event outcome", worker=self.worker_id, event_id=event_id,
                                 cause=_describe(exc, 0)))
                    return None
                log.warning(kv("cannot record event outcome yet; trying again", worker=self.worker_id,
                               event_id=event_id, seconds=pause, cause=_describe(exc, 0)))
            await asyncio.sleep(pause)
            pause = min(RECORD_PAUSE_MAX, 2 * pause)

    async def _maybe_prune(self) -> None:
        """`prune`, every `prune_every` s."""
        now = time.monotonic()
        if self._last_prune is not None and now - self._last_prune < self.prune_every:
            return
        self._last_prune = now
        await self._unless_stopping(self.prune(), None)

    async def prune(self) -> None:
        """Apply the retention of `[worker]` (`Storage.prune`): done events (and with them their dedupe keys)
        older than `retention_days`, dead ones older than `dead_retention_days`, the rows of merge requests
        finished more than `mr_retention_days` ago (0: kept), model versions beyond the active and newest few."""
        try:
            pruned = await self.storage.prune(**retention(self.cfg))
        except Exception as exc:  # noqa: BLE001 - pruning is housekeeping; try again next time
            log.warning(kv("prune failed", cause=_describe(exc, 0)))
            return
        if any(pruned.values()):
            log.info(kv("pruned", **{k: v for k, v in pruned.items() if v}))

    async def stop(self, grace: float | shutdown.Deadline = 25.0) -> int:
        """Stop claiming, let running events finish within the grace (see `bot.shutdown`), hand back the rest.

        Returns how many events were handed back to the queue (Heroku sends SIGKILL 30 s after SIGTERM).
        """
        deadline = grace if isinstance(grace, shutdown.Deadline) else shutdown.Deadline(grace)
        self.request_stop()
        for waking in self._parked:  # parked events wait in the table: due at their time, whoever takes them
            waking.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._loop_exited.wait(), deadline.left_for_events())
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=deadline.left_for_events())
        running = sorted(self._tasks[task] for task in pending if task in self._tasks)
        for task in pending:
            task.cancel()
        if pending:  # an event in a thread (a history import) ends with it: hand it back without waiting
            await asyncio.wait(pending, timeout=deadline.left())
        # a database that hangs must not hold the process past its grace: the leases bring the events back
        try:  # cancelled, not waited for, when late: its connection is dropped when the storage closes
            released = await within(self._record(self.storage.events.release(self.worker_id), None),
                                    deadline.left()) or 0
        except TimeoutError:
            log.error(kv("worker stopped without handing its events back: the database does not answer; their "
                         "leases expire and another process runs them", worker=self.worker_id,
                         events=",".join(map(str, running)) or None, lease_seconds=self.cfg.lease_seconds))
            return 0
        log.info(kv("worker stopped", worker=self.worker_id, handed_back=released))
        return released


async def stop_loop(task: asyncio.Task[None]) -> None:
    """After `stop()`: end the task running `Worker.run`. Stuck in a database call that does not return, it is
    cancelled and not waited for (its connection is dropped when the storage closes)."""
    if not task.done():
        task.cancel()
        return
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run_in_app(app: web.Application, dispatch: Dispatch, *, worker_id: str | None = None,
               after: asyncio.Event | None = None) -> Worker:
    """Run a `Worker` inside the web app (`reviewbot serve`): started on startup (or once `after` is set: the
    handlers have started), stopped on cleanup.

    The app must come from `bot.web.make_app`; new events wake the worker at once.
    """
    from bot.web import METRICS_KEY, ON_STORED_KEY, SETTINGS_KEY, STORAGE_KEY

    settings = app[SETTINGS_KEY]
    worker = Worker(app[STORAGE_KEY], dispatch, settings, app[METRICS_KEY], worker_id)
    app[ON_STORED_KEY].append(worker.notify)

    async def stop_claiming(_app: web.Application) -> None:
        worker.request_stop()

    app.on_shutdown.append(stop_claiming)  # before aiohttp waits for open requests

    async def run_after() -> None:
        if after is not None:
            await after.wait()
        await worker.run()

    async def worker_ctx(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run_after(), name="reviewbot-worker")
        yield
        if after is None or after.is_set():  # else it never ran: nothing to stop or hand back
            await worker.stop(shutdown.current() or shutdown.begin(settings.server.shutdown_timeout))
        await stop_loop(task)

    app.cleanup_ctx.append(worker_ctx)
    return worker
