"""The durable event queue: webhook deliveries stored once, then claimed, run and retried by workers.

Why a table and not an in-memory queue: a webhook is acknowledged only after its event is stored, so
nothing is lost when a process restarts (Heroku cycles dynos daily), several workers can share the
load, and a failing event is retried with backoff and finally kept as `dead` for a human to inspect.

Life of an event: `queued` -> `running` (leased by one worker) -> `done`; on an error `failed`
(waiting for `next_attempt_at`) and claimed again; after `max_attempts` `dead`. A run that failed because
GitLab or the database was out (within `outage_hours`) is moved from `attempts` to `outage_attempts`: an
outage never uses up the attempts the event has for failures of its own. A lease that expires (the worker
crashed) makes the event claimable again, alone (`claim`): a poison event (one that kills its process) takes
the events that ran beside it down once, not at each of its attempts, and that once costs them no attempt
(`ran_alone`: only a crash under an event that ran alone is counted). An event that must wait for something
else (the first events of a project wait for its history import) is parked: `queued` again, due at a later
`next_attempt_at` or as soon as it is woken, its attempt not counted; it holds no worker meanwhile, and like
any queued event it is in the table, so a crash or a restart loses nothing. Events of one merge request run
one at a time and in arrival order: an event is claimable only when no older event of the same MR is pending.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import UTCDateTime, insert_for, is_sqlite, utcnow
from bot.storage.tables import events

__all__ = ["EventRow", "EventQueue", "dedupe_key_for", "backoff_delay", "without_nul", "MIN_KEY_RETENTION",
           "HOOK_HEADER", "COPY_MARK"]

MIN_KEY_RETENTION = timedelta(hours=24)  # GitLab re-sends can come much later; keep dedupe keys a day
HOOK_HEADER = "X-Gitlab-Webhook-UUID"  # GitLab 16.2+, drawn anew for every delivery (it names no hook); kept
COPY_MARK = "skipped: the copy another hook sent of event"  # `last_error` of a copy (`mark_copy`)
HISTORY_MARK = "waiting for the project's history import"  # `last_error` of an event parked for it (the handlers)
MAX_KEY_LENGTH = 200
MAX_ERROR_LENGTH = 4000
PENDING = ("queued", "failed", "running")
# For the claim's transaction only (PostgreSQL). A burst of webhooks outruns ANALYZE (autovacuum looks once a
# minute, and may be off): with the table's estimate still at a dozen rows, the planner picks a bitmap scan and a
# sort, which runs the per-MR head check on every queued event (100 ms per claim with 2,000 queued, so a burst
# slows its own draining). The ordered index scan stops after `limit` heads whatever the statistics say.
ORDERED_SCANS = sa.text(
    "SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true)"
)
# `EventQueue.finish_and_claim`'s UPDATE of the runs that ended, built once (as the claim's: building costs more
# than running)
FINISH = (
    sa.update(events)
    .where(events.c.id.in_(sa.bindparam("done", expanding=True)), events.c.status == "running",
           events.c.lease_owner == sa.bindparam("owner"))
    .values(status="done", finished_at=sa.bindparam("now", type_=UTCDateTime), lease_owner=None,
            lease_expires_at=None)
    .returning(events.c.id)
)
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds no NUL and no lone surrogate


@functools.cache
def _twins_statement(no_mr: bool) -> sa.Select[Any]:
    """`EventQueue.twin_done`'s SELECT, built once with bound parameters (every delivery GitLab 16.2+ sends is
    checked): the events of the same project, merge request and kind with the same body."""
    same_mr = events.c.mr_iid.is_(None) if no_mr else events.c.mr_iid == sa.bindparam("mr_iid")
    return (
        sa.select(events.c.id, events.c.body, events.c.status, events.c.last_error)
        .where(events.c.project_id == sa.bindparam("project_id"), same_mr, events.c.kind == sa.bindparam("kind"),
               events.c.id != sa.bindparam("id"), events.c.body == sa.bindparam("body"))  # not every body read
        .order_by(events.c.id)
    )


@functools.cache
def _between_statement(no_mr: bool) -> sa.Select[Any]:
    """The events of the same project, merge request and kind stored between two ids (`twin_done`)."""
    same_mr = events.c.mr_iid.is_(None) if no_mr else events.c.mr_iid == sa.bindparam("mr_iid")
    return (
        sa.select(events.c.id, events.c.body)
        .where(events.c.project_id == sa.bindparam("project_id"), same_mr, events.c.kind == sa.bindparam("kind"),
               events.c.id > sa.bindparam("low"), events.c.id < sa.bindparam("high"))
    )


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored webhook delivery, as the worker hands it to `dispatch`."""

    id: int
    dedupe_key: str
    project_id: int | None
    mr_iid: int | None
    kind: str
    action: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    last_error: str | None
    received_at: datetime
    finished_at: datetime | None
    outage_attempts: int = 0  # runs that failed in an outage (GitLab, the database), not counted in `attempts`
    ran_alone: bool = False  # its last claim ran it with no other event in its worker: a crash then is counted
    reclaimed: bool = False  # claimed after its lease expired (its last run recorded no outcome): to run alone

    def as_event(self) -> Any:
        """The delivery as a `gidgetlab.sansio.Event`, ready for `Router.dispatch`."""
        from gidgetlab.sansio import Event

        return Event(self.body, event=self.kind)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.lower())
    return value.strip() if value and value.strip() else None


def dedupe_key_for(headers: Mapping[str, str], body: bytes, kind: str) -> str:
    """The key that makes a re-sent delivery a duplicate.

    GitLab keeps `Idempotency-Key` across re-sends (17.4+). Before that, the body itself is the identity:
    the event UUID is drawn anew for each request, so a "Resend Request" from the hook's log (same body)
    carries a new one and would run the event again.
    """
    idem = _header(headers, "Idempotency-Key")
    if idem:
        key = f"idem:{idem}"
    else:
        key = "sha256:" + hashlib.sha256(kind.encode() + b"\n" + body).hexdigest()
    if len(key) > MAX_KEY_LENGTH or UNSTORABLE.search(key):
        key = "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait before attempt `attempts + 1`: base, 2*base, 4*base, ... at most `cap`.

    >>> [backoff_delay(n, 10, 60) for n in (1, 2, 3, 4)]
    [10, 20, 40, 60]
    """
    return min(cap, base * 2 ** max(0, attempts - 1))


def without_nul(value: Any) -> Any:
    r"""The payload with NUL characters and lone surrogates replaced by U+FFFD.

    PostgreSQL's JSONB stores neither U+0000 nor half of a UTF-16 surrogate pair (JSON may spell both as
    `\u0000` / `\ud800`; a header may carry undecodable bytes), nor does its text (the `action` column, taken
    from the payload) and no database takes a lone surrogate as text; a refused write would turn the delivery
    into a 503.

    >>> without_nul({"note": "a\x00b", "list": ["\ud800", 1]}) == {"note": "a\ufffdb", "list": ["\ufffd", 1]}
    True
    """
    if isinstance(value, str):
        return UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def _row(row: sa.Row[Any]) -> EventRow:
    return EventRow(**row._mapping)


def _storable(text: str) -> str:
    r"""An error or reason as `last_error` keeps it: at most `MAX_ERROR_LENGTH` characters, without what no
    database stores (`without_nul`). An exception's text may quote GitLab's answer; refused, the outcome was
    never written and the event ran again at each lease's end until buried as though its worker had crashed.

    >>> _storable("KeyError: 'a\x00b'") == "KeyError: 'a\ufffdb'", len(_storable("x" * 5000))
    (True, 4000)
    """
    return without_nul(text[:MAX_ERROR_LENGTH])


def _failure(now: datetime, max_attempts: int) -> dict[str, Any]:
    """`retry_later`'s values for a failure of the event's own: `dead` on its last attempt."""
    exhausted = events.c.attempts >= max_attempts
    return {"status": sa.case((exhausted, "dead"), else_="failed"),
            "finished_at": sa.case((exhausted, now), else_=None)}


def _outage_failure() -> dict[str, Any]:
    """`retry_later`'s values for a run an outage failed (GitLab's, the database's): the claim's attempt moves
    to `outage_attempts`."""
    return {"status": "failed", "finished_at": None, "outage_attempts": events.c.outage_attempts + 1,
            "attempts": sa.case((events.c.attempts > 0, events.c.attempts - 1), else_=0)}


class EventQueue:
    """The queue's operations; every one is a single statement or a short transaction."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        # built once: building a statement costs more than running it (keyed by SQLite?, expired leases?)
        self._claims: dict[tuple[bool, bool], sa.Update] = {}
        self._inserts: dict[bool, Any] = {}

    async def store_event(
        self, *, dedupe_key: str, kind: str, headers: Mapping[str, str], body: Mapping[str, Any],
        action: str | None = None, project_id: int | None = None, mr_iid: int | None = None,
        received_at: datetime | None = None,
    ) -> tuple[int, bool]:
        """Store a delivery unless its key is known; return (event id, True if newly stored). `received_at`: when
        the bot received it, if earlier than now (a delivery kept in the spool while the database was down)."""
        now = self.clock()
        values = dict(
            dedupe_key=dedupe_key, kind=kind, action=without_nul(action), project_id=project_id, mr_iid=mr_iid,
            headers=without_nul(dict(headers)), body=without_nul(dict(body)), status="queued", attempts=0,
            next_attempt_at=now, received_at=received_at or now,
        )
        async with self.engine.connect() as conn:
            # One atomic statement needs no transaction: no BEGIN and COMMIT round trips on the webhook's path.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            new_id = (await conn.execute(self._insert_statement(conn), values)).scalar()
            if new_id is not None:
                return int(new_id), True
            old = await conn.execute(sa.select(events.c.id).where(events.c.dedupe_key == dedupe_key))
            return int(old.scalar_one()), False

    def _insert_statement(self, conn: Any) -> Any:
        """`INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`, built once per dialect."""
        sqlite = is_sqlite(conn)
        if sqlite not in self._inserts:
            stmt = insert_for(conn, events).on_conflict_do_nothing(index_elements=["dedupe_key"])
            self._inserts[sqlite] = stmt.returning(events.c.id)
        return self._inserts[sqlite]

    @staticmethod
    def _is_head(t: sa.Alias, now: Any) -> sa.ColumnElement[bool]:
        """`t` is the oldest pending event of its merge request (an event without one is always its own head)
        and no other event of it is running under a live lease: an older event requeued by hand, or one whose
        insert committed late, must not run beside (and after) a newer one already running.

        A correlated `ORDER BY id LIMIT 1` rather than `NOT EXISTS (older pending)`: PostgreSQL turns the
        latter into a hash anti-join over every pending event, on every claim (O(backlog) per claim; 15 ms
        with 5,000 queued). This form is checked row by row along the ordered index scan, which stops as soon
        as `limit` heads are found.
        """
        older = events.alias("older")
        head = (
            sa.select(older.c.id)
            .where(older.c.project_id == t.c.project_id, older.c.mr_iid == t.c.mr_iid, older.c.status.in_(PENDING))
            .order_by(older.c.id).limit(1).scalar_subquery()
        )
        running = events.alias("running")
        busy = sa.exists().where(running.c.project_id == t.c.project_id, running.c.mr_iid == t.c.mr_iid,
                                 running.c.status == "running", running.c.lease_expires_at >= now,
                                 running.c.id != t.c.id)
        return sa.or_(t.c.project_id.is_(None), t.c.mr_iid.is_(None), sa.and_(head == t.c.id, ~busy))

    @staticmethod
    def _is_due(t: sa.Alias, status: str, now: Any) -> sa.ColumnElement[bool]:
        due = t.c.lease_expires_at < now if status == "running" else t.c.next_attempt_at <= now
        return sa.and_(t.c.status == status, due)

    def _due(self, status: str, now: Any, limit: Any) -> sa.Select[Any]:
        """Up to `limit` claimable events of one status, locked, oldest due first: an ordered scan of the index
        (status, next_attempt_at) that stops after `limit` heads."""
        t = events.alias("candidate")
        return (
            sa.select(t.c.id, t.c.next_attempt_at).where(self._is_due(t, status, now), self._is_head(t, now))
            .order_by(t.c.next_attempt_at).limit(limit).with_for_update(skip_locked=True, of=t)
        )

    def _pick_locked(self, now: Any, limit: Any, statuses: tuple[str, ...]) -> sa.ScalarSelect[Any]:
        """PostgreSQL: up to `limit` due events of `statuses` locked with `FOR UPDATE SKIP LOCKED`, the oldest due
        first.

        One locked, ordered scan per status, each in its own CTE (locking is not allowed on a UNION, and an
        ordered scan per status is what keeps a claim cheap), then the `limit` oldest of them.
        """
        ctes = [self._due(status, now, limit).cte(f"due_{status}") for status in statuses]
        due = sa.union_all(*(sa.select(c.c.id, c.c.next_attempt_at) for c in ctes)).subquery("due")
        return sa.select(due.c.id).order_by(due.c.next_attempt_at, due.c.id).limit(limit).scalar_subquery()

    def _pick_subquery(self, now: Any, limit: Any, statuses: tuple[str, ...]) -> sa.ScalarSelect[Any]:
        """SQLite: the same choice as one subquery, so that the claim stays a single atomic UPDATE."""
        t = events.alias("candidate")  # an alias, so that the subquery is not correlated to the UPDATE
        due = sa.or_(*(self._is_due(t, status, now) for status in statuses))
        return (
            sa.select(t.c.id).where(due, self._is_head(t, now))
            .order_by(t.c.next_attempt_at, t.c.id).limit(limit).scalar_subquery()
        )

    def _expired_waits(self, now: Any) -> sa.Exists:
        """Some event whose lease expired is claimable (due, and its merge request's head)."""
        t = events.alias("expired")
        return sa.exists().where(self._is_due(t, "running", now), self._is_head(t, now))

    async def _bury_expired(self, conn: Any, now: datetime, max_attempts: int) -> None:
        """Dead-letter the events whose lease expired on their last attempt, run alone: an event that ran beside
        others is run again alone first (see `claim`), whatever its attempts."""
        await conn.execute(
            sa.update(events)
            .where(events.c.status == "running", events.c.lease_expires_at < now, events.c.attempts >= max_attempts,
                   events.c.ran_alone)
            .values(
                status="dead", finished_at=now, lease_owner=None, lease_expires_at=None,
                last_error="lease expired on the last attempt, run alone: the event kills its worker (out of "
                "memory, a segfault), or the worker was killed or exceeded worker.lease_seconds",
            )
        )

    async def claim(
        self, worker_id: str, lease_seconds: float, limit: int = 1, *, max_attempts: int | None = None,
        busy: bool = False,
    ) -> list[EventRow]:
        """Lease up to `limit` due events to `worker_id` (see `finish_and_claim`, which this is without events
        to finish)."""
        return (await self.finish_and_claim((), worker_id, lease_seconds, limit, max_attempts=max_attempts,
                                            busy=busy))[1]

    async def finish_and_claim(
        self, done: Collection[int], worker_id: str, lease_seconds: float, limit: int = 1, *,
        max_attempts: int | None = None, busy: bool = False,
    ) -> tuple[set[int], list[EventRow]]:
        """Mark the events `done` whose runs ended (as `complete` does, those still leased to `worker_id`) and
        lease up to `limit` due events to `worker_id`; no event is ever leased to two workers at once.

        An `UPDATE ... WHERE id IN (SELECT ...) RETURNING` statement. PostgreSQL: `FOR UPDATE SKIP LOCKED`
        lets concurrent claimers pass each other's rows. SQLite: the statement runs under the database's
        write lock, so it is atomic. Each claim counts as an attempt (until `retry_later` records it as an
        outage's, or a crash's beside others: below); with `max_attempts`, events whose lease expired on their
        last attempt, run alone, are dead-lettered instead of run again.

        An event whose lease expired (its run recorded no outcome: the process running it died, perhaps of it)
        comes back alone, `reclaimed`, for a caller running nothing else (`busy` False), which must claim nothing
        more until it is over; while one waits, a `busy` caller gets nothing, so that it soon is idle and takes it.
        Why: claimed in one batch, a poison event (one that kills its process: out of memory, a segfault) and the
        events beside it died together at each of its attempts, and all were dead-lettered together.

        Which crash counts: the claim records whether the event runs alone (`ran_alone`: reclaimed, or the one
        event a caller that is not `busy` takes with `limit` 1, which must then pass `busy` while it runs). A lease
        that expires on an event that ran beside others costs it nothing (reclaimed, its attempt is given back,
        since any of them may have killed the process); on an event that ran alone it is an attempt used, and on
        the last one the event is dead-lettered. Each crash not counted is followed by a run alone, counted as any
        run is, so an event that keeps killing its worker (or whose worker is killed over and over: out of
        memory, a deploy's SIGKILL) still ends `dead`: a poison event after `max_attempts` crashes alone and the
        one beside others before them.

        Returns the ids of the events marked done and the events claimed, in one transaction. Why one: a worker
        claims as soon as an event ends (its slot is free), and recording that end in a transaction of its own
        was a third of a plain comment's transactions (claim, read, end).
        """
        now = self.clock()
        params = {"now": now, "limit": limit, "owner": worker_id, "until": now + timedelta(seconds=lease_seconds)}
        async with self.engine.begin() as conn:
            sqlite = is_sqlite(conn)
            finished = await self._finish(conn, done, worker_id, now) if done else set()
            if not sqlite:
                await conn.execute(ORDERED_SCANS)
            if max_attempts is not None:
                await self._bury_expired(conn, now, max_attempts)
            if not busy and limit > 0:
                expired = (await conn.execute(self._claim_statement(sqlite, True), {**params, "limit": 1})).all()
                if expired:
                    return finished, [replace(_row(expired[0]), reclaimed=True)]
            alone = not busy and limit == 1
            rows = (await conn.execute(self._claim_statement(sqlite, False), {**params, "alone": alone})).all()
        return finished, sorted((_row(r) for r in rows), key=lambda e: (e.next_attempt_at, e.id))

    async def _finish(self, conn: Any, done: Collection[int], owner: str, now: datetime) -> set[int]:
        """`complete` for several events at once, in the caller's transaction: the ids it marked done."""
        params = {"done": list(done), "owner": owner, "now": now}
        return {int(i) for i in (await conn.execute(FINISH, params)).scalars()}

    def _claim_statement(self, sqlite: bool, expired: bool) -> sa.Update:
        """The claim's UPDATE, built once per dialect and kind with bound parameters (building it costs more than
        running it: a few milliseconds of SQLAlchemy per claim): of events whose lease `expired`, or of the
        failed and queued events due, none while an expired one waits. An expired event runs alone, and its
        crashed run counts as an attempt only if that one ran alone too; the others run alone if `alone`."""
        if (sqlite, expired) not in self._claims:
            now, limit = sa.bindparam("now", type_=UTCDateTime), sa.bindparam("limit", type_=sa.Integer)
            statuses = ("running",) if expired else ("failed", "queued")
            pick = self._pick_subquery if sqlite else self._pick_locked
            where = [events.c.id.in_(pick(now, limit, statuses))]
            if not expired:
                where.append(~self._expired_waits(now))
            if expired:  # the crashed run's attempt is given back unless it ran alone; this run's is counted
                counted: dict[str, Any] = {"attempts": events.c.attempts + sa.case((events.c.ran_alone, 1), else_=0),
                                           "ran_alone": sa.true()}
            else:
                counted = {"attempts": events.c.attempts + 1, "ran_alone": sa.bindparam("alone", type_=sa.Boolean)}
            self._claims[(sqlite, expired)] = (
                sa.update(events).where(*where)
                .values(status="running", lease_owner=sa.bindparam("owner"),
                        lease_expires_at=sa.bindparam("until", type_=UTCDateTime), **counted)
                .returning(*events.c)
            )
        return self._claims[(sqlite, expired)]

    def _owned(self, event_id: int, owner: str | None) -> list[sa.ColumnElement[bool]]:
        where = [events.c.id == event_id, events.c.status == "running"]
        if owner is not None:
            where.append(events.c.lease_owner == owner)
        return where

    async def renew(self, event_id: int, owner: str, lease_seconds: float) -> bool:
        """Extend a running event's lease (its worker is alive and still at it); False if it is no longer
        leased to `owner`."""
        stmt = sa.update(events).where(*self._owned(event_id, owner)).values(
            lease_expires_at=self.clock() + timedelta(seconds=lease_seconds))
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def complete(self, event_id: int, owner: str | None = None) -> bool:
        """Mark a running event done; False if it is not running (or not leased to `owner` any more)."""
        stmt = sa.update(events).where(*self._owned(event_id, owner)).values(
            status="done", finished_at=self.clock(), lease_owner=None, lease_expires_at=None
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def retry_later(
        self, event_id: int, error: str, delay: float, *, max_attempts: int, owner: str | None = None,
        outage: bool = False,
    ) -> str | None:
        """Record a failure: `failed` until `delay` seconds have passed, or `dead` after `max_attempts`.

        With `outage` (GitLab or the database was out: no fault of the event) the run moves from `attempts` to
        `outage_attempts` and the event is never dead: the attempts it has left are still there for its own
        failures once it answers, and a lease expiring then is not taken for its last attempt. Returns the new
        status, or None if the event was not running under `owner`.
        """
        now = self.clock()
        stmt = (
            sa.update(events).where(*self._owned(event_id, owner))
            .values(
                next_attempt_at=now + timedelta(seconds=max(0.0, delay)),
                last_error=_storable(error), lease_owner=None, lease_expires_at=None,
                **(_outage_failure() if outage else _failure(now, max_attempts)),
            )
            .returning(events.c.status)
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).scalar()

    async def dead_letter(self, event_id: int, reason: str, owner: str | None = None) -> bool:
        """Give up on a running event at once (an error no retry can fix), keeping the reason."""
        stmt = sa.update(events).where(*self._owned(event_id, owner)).values(
            status="dead", finished_at=self.clock(), last_error=_storable(reason),
            lease_owner=None, lease_expires_at=None,
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def park(self, event_id: int, reason: str, delay: float, owner: str | None = None) -> bool:
        """Put a running event back in the queue, due in `delay` seconds (sooner if `wake` is called), without
        counting the attempt: it waits for something else, it did not fail. `reason` is kept in `last_error`,
        for `reviewbot events` to show and for the handlers to know the event has had its wait. False if the
        event is not running (or not leased to `owner` any more)."""
        stmt = sa.update(events).where(*self._owned(event_id, owner)).values(
            status="queued", next_attempt_at=self.clock() + timedelta(seconds=max(0.0, delay)),
            last_error=_storable(reason), lease_owner=None, lease_expires_at=None,
            attempts=sa.case((events.c.attempts > 0, events.c.attempts - 1), else_=0),
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def wake(self, event_id: int) -> bool:
        """Make a parked event due now (what it waited for is there); False if it is not waiting any more
        (due already, claimed, or gone)."""
        now = self.clock()
        stmt = sa.update(events).where(
            events.c.id == event_id, events.c.status == "queued", events.c.next_attempt_at > now,
        ).values(next_attempt_at=now)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release(self, owner: str) -> int:
        """Hand back every event `owner` still runs (graceful shutdown); the attempt is not counted."""
        stmt = (
            sa.update(events).where(events.c.status == "running", events.c.lease_owner == owner)
            .values(
                status="queued", lease_owner=None, lease_expires_at=None,
                attempts=sa.case((events.c.attempts > 0, events.c.attempts - 1), else_=0),
            )
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def get(self, event_id: int) -> EventRow | None:
        """One event by id."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(events).where(events.c.id == event_id))).first()
        return _row(row) if row else None

    async def twin_done(self, row: EventRow) -> int | None:
        """The id of a handled event that is `row`'s very event sent by another hook, else None.

        A project hook and a group hook both set up each send every event, each delivery with its own
        `Idempotency-Key` and `X-Gitlab-Webhook-UUID` (GitLab draws that one anew for every delivery,
        `WebHookService#build_headers`: it names no hook), so both are stored; the bodies are the same. A note's or
        an award's body names the note or award, so an equal body is the same event. A merge request's may repeat
        as a new event: approved, taken back and approved again within a minute carry one body (the approval's
        system note touches the MR once a minute), and the second approval was lost as the first's copy. So a
        Merge Request Hook's copy must have been stored next to it: no other body of the MR's hooks between them
        (GitLab sends each hook's copy of an event at once). A copy whose insert commits late pairs all the same,
        whichever was stored first, and so does one requeued after its twin ran; one that is not `done`, or was
        a copy itself, is no twin. Deliveries without `X-Gitlab-Webhook-UUID` (GitLab before 16.2) are not
        checked, which spares them the read.
        """
        if row.headers.get(HOOK_HEADER) is None or row.project_id is None:
            return None
        params = {"project_id": row.project_id, "mr_iid": row.mr_iid, "kind": row.kind, "id": row.id,
                  "body": row.body}
        async with self.engine.connect() as conn:
            ran = [r for r in (await conn.execute(_twins_statement(row.mr_iid is None), params)).all()
                   if r.body == row.body and r.status == "done" and not (r.last_error or "").startswith(COPY_MARK)]
            if ran and row.kind == "Merge Request Hook":
                ran = await self._stored_beside(conn, row, ran, params)
        return int(ran[0].id) if ran else None

    @staticmethod
    async def _stored_beside(conn: Any, row: EventRow, ran: list[Any], params: dict[str, Any]) -> list[Any]:
        """Those of `ran` with no event of another body of the same MR and kind stored between them and `row`."""
        low, high = min(row.id, *(r.id for r in ran)), max(row.id, *(r.id for r in ran))
        between = await conn.execute(_between_statement(row.mr_iid is None), {**params, "low": low, "high": high})
        others = [r.id for r in between.all() if r.body != row.body]
        return [r for r in ran if not any(min(r.id, row.id) < i < max(r.id, row.id) for i in others)]

    async def mark_copy(self, event_id: int, twin_id: int) -> None:
        """Note on a running event that it is a copy of `twin_id` (handled; this one is skipped): it does not
        count as having run when copies pair (`twin_done`)."""
        await self.mark_skipped(event_id, f"{COPY_MARK} {twin_id}")

    async def mark_skipped(self, event_id: int, reason: str) -> None:
        """Note on a running event why it is skipped rather than handled (it finishes `done` all the same): the
        reason is kept in `last_error`, for `reviewbot events` to show."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(events).where(events.c.id == event_id, events.c.status == "running")
                               .values(last_error=_storable(reason)))

    async def list_events(
        self, *, failed_only: bool = False, status: str | None = None, limit: int = 50
    ) -> list[EventRow]:
        """The newest events first; `failed_only` shows `failed` and `dead` ones."""
        stmt = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if failed_only:
            stmt = stmt.where(events.c.status.in_(("failed", "dead")))
        if status is not None:
            stmt = stmt.where(events.c.status == status)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(stmt)).all()]

    async def requeue(self, event_id: int) -> bool:
        """Run a failed, dead or done event again from a fresh attempt count, its outage retries too (or a
        running one whose lease ran out: its worker is gone); False if unknown or running under a live lease."""
        live = sa.and_(events.c.status == "running", events.c.lease_expires_at >= self.clock())
        stmt = (
            sa.update(events).where(events.c.id == event_id, ~live)
            .values(
                status="queued", attempts=0, outage_attempts=0, next_attempt_at=self.clock(), finished_at=None,
                lease_owner=None, lease_expires_at=None,
            )
        )
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def prune(self, older_than: timedelta, *, status: str = "done") -> int:
        """Delete `done` (or `dead`) events finished before `older_than` ago (never less than 24 h: dedupe
        keys). `failed` and other pending events are never deleted: they are still to run (a failed one is
        retried until it is done or dead).

        The newest event is always kept: SQLite hands out max(id) + 1, so an emptied table would give
        ids again that old suggestions and feedback rows still name (`feedback` is unique per source event).
        """
        if status not in ("done", "dead"):
            raise ValueError(f"only done and dead events are pruned, not {status!r}: a pending one is still to run")
        cutoff = self.clock() - max(older_than, MIN_KEY_RETENTION)
        newest = sa.select(sa.func.max(events.c.id)).scalar_subquery()
        stmt = sa.delete(events).where(events.c.status == status, events.c.finished_at < cutoff, events.c.id < newest)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount

    async def depth(self) -> dict[str, int]:
        """How many events are in each status (for the queue-depth gauge and `reviewbot events`)."""
        stmt = sa.select(events.c.status, sa.func.count()).group_by(events.c.status)
        async with self.engine.connect() as conn:
            counts = {status: int(n) for status, n in (await conn.execute(stmt)).all()}
        return {status: counts.get(status, 0) for status in ("queued", "running", "failed", "dead", "done")}
