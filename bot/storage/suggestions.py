"""What the bot suggested on each merge request, and what people did about it (the learning signal).

Why both here: feedback rows point at the suggestion they judge, and the learned ranker is trained
on the pairs. Feedback is idempotent per (source event, person, label), so a retried event does not
count twice.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import FEEDBACK_LOCK, IN_CHUNK, insert_for, lock_project, utcnow
from bot.storage.tables import feedback, feedback_times, suggestions

__all__ = ["SuggestionRow", "FeedbackRow", "SuggestionStore", "FeedbackStore", "FEEDBACK_LABELS"]


REDELIVERY_WINDOW = timedelta(days=7)  # how much older than the newest applied a late delivery can be

FEEDBACK_LABELS = frozenset({
    "accepted", "assigned", "removed", "passed_over", "reroll", "exclude", "why", "thumbs_up", "thumbs_down",
    "approved", "reviewed", "final_reviewer",
    "unapproved",  # an approval taken back (not learned: they reviewed all the same; the dashboard drops it)
    "commented",  # a suggested person's reply in the bot comment's thread: an answer to the bot, no review (not
    # learned; a request answered only so is left lying at the merge)
    "suggested",  # the person the bot's comment put first (the load spreading counts first places given)
    # the person who would have been first but for the load spreading / the rejection streak's penalty / the lift
    # for people on duty (each term learns from whom the team then takes)
    "moved_down_spreading", "moved_down_streak", "moved_down_duty",
    "command",  # a `/reviewers` command that judges nobody (suggest, assign, optout, optin, help, unknown...)
    "closed", "reopened",  # the MR was closed without merging / reopened (`person`: who did it)
})


@dataclass(frozen=True, slots=True)
class SuggestionRow:
    """One ranked list shown on an MR: `people` = [{"username", "score", "reasons": [...]}, ...]; `author`
    and `files` = the MR as suggested for (None on rows stored before they were kept)."""

    id: int
    project_id: int
    mr_iid: int
    created_at: datetime
    people: list[dict[str, Any]]
    model_version: str
    event_id: int | None
    author: str | None = None
    files: list[str] | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One reaction to a suggestion (or to an MR without one)."""

    id: int
    suggestion_id: int | None
    project_id: int
    mr_iid: int
    person: str
    label: str
    value: Any
    created_at: datetime
    source_event_id: int | None


async def _of_mrs(engine: AsyncEngine, table: sa.Table, project_id: int, mr_iids: Iterable[int],
                  leave_out: Iterable[str] = ()) -> list[Mapping]:
    """The rows of `table` on these MRs, in id order, without the columns in `leave_out`: one statement per
    `IN_CHUNK` MRs."""
    wanted, skipped = sorted(set(mr_iids)), set(leave_out)
    columns = [c for c in table.c if c.name not in skipped]
    out: list[Mapping] = []
    async with engine.connect() as conn:
        for i in range(0, len(wanted), IN_CHUNK):
            stmt = sa.select(*columns).where(table.c.project_id == project_id,
                                             table.c.mr_iid.in_(wanted[i:i + IN_CHUNK]))
            out += [r._mapping for r in (await conn.execute(stmt)).all()]
    return sorted(out, key=lambda m: m["id"])


@functools.cache
def _latest_statement(with_mr: bool, before_event: bool) -> sa.Select[Any]:
    """`SuggestionStore.latest`'s SELECT, built once with bound parameters: every comment and award reads it, and
    building it cost more CPU than running it."""
    columns = [c for c in suggestions.c if with_mr or c.name not in ("author", "files")]
    stmt = (
        sa.select(*columns)
        .where(suggestions.c.project_id == sa.bindparam("project_id"), suggestions.c.mr_iid == sa.bindparam("mr_iid"))
        .order_by(suggestions.c.id.desc()).limit(1)
    )
    if before_event:
        event = sa.bindparam("before_event", type_=sa.BigInteger)
        stmt = stmt.where(sa.or_(suggestions.c.event_id.is_(None), suggestions.c.event_id != event))
    return stmt


class SuggestionStore:
    """Suggestions as shown, newest last."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def add(
        self, project_id: int, mr_iid: int, people: Iterable[Mapping[str, Any]], model_version: str,
        *, event_id: int | None = None, author: str | None = None, files: Sequence[str] | None = None,
    ) -> int:
        """Store a suggestion; return its id. `author` and `files` describe the MR it was made for: feedback
        labels about the MR are learned with them (`bot.learning.new_labels`)."""
        stmt = sa.insert(suggestions).values(
            project_id=project_id, mr_iid=mr_iid, created_at=self.clock(), people=[dict(p) for p in people],
            model_version=model_version, event_id=event_id, author=author,
            files=None if files is None else list(files),
        ).returning(suggestions.c.id)
        async with self.engine.begin() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def latest(self, project_id: int, mr_iid: int, *, before_event: int | None = None,
                     with_mr: bool = True) -> SuggestionRow | None:
        """The most recent suggestion on an MR; with `before_event`, the most recent one that event did not
        make (a retried event must judge what was shown before it, not what its killed attempt stored). Without
        `with_mr`, its `author` and `files` are left unread (None), as `of_mrs` does: a comment or an award
        asks who was suggested, not the MR's paths, which are most of the row's bytes."""
        params = {"project_id": project_id, "mr_iid": mr_iid, "before_event": before_event}
        async with self.engine.connect() as conn:
            row = (await conn.execute(_latest_statement(with_mr, before_event is not None), params)).first()
        return SuggestionRow(**row._mapping) if row else None

    async def mrs_since(self, project_id: int, since: datetime) -> set[int]:
        """The MRs with a suggestion or a feedback row at or after `since` (ids only)."""
        stmt = sa.union(*(sa.select(t.c.mr_iid).where(t.c.project_id == project_id, t.c.created_at >= since)
                          for t in (suggestions, feedback)))
        async with self.engine.connect() as conn:
            return {int(iid) for iid in (await conn.execute(stmt)).scalars()}

    async def of_mrs(self, project_id: int, mr_iids: Iterable[int], *, with_mr: bool = True) -> list[SuggestionRow]:
        """The suggestions on these MRs, oldest first: one statement per `IN_CHUNK` MRs. Without `with_mr`, their
        `author` and `files` are left unread (None): a reader that needs neither (the dashboard) skips what
        is most of the rows' bytes, the MR's paths."""
        leave_out = () if with_mr else ("author", "files")
        return [SuggestionRow(**m) for m in await _of_mrs(self.engine, suggestions, project_id, mr_iids, leave_out)]

    async def list(self, project_id: int, *, since: datetime | None = None) -> list[SuggestionRow]:
        """A project's suggestions, oldest first."""
        stmt = sa.select(suggestions).where(suggestions.c.project_id == project_id).order_by(suggestions.c.id)
        if since is not None:
            stmt = stmt.where(suggestions.c.created_at >= since)
        async with self.engine.connect() as conn:
            return [SuggestionRow(**r._mapping) for r in (await conn.execute(stmt)).all()]

    async def judged(self, project_id: int, ids: Iterable[int], latest_of: Iterable[int] = (),
                     ) -> list[SuggestionRow]:
        """The project's suggestions with these `ids`, and the latest one on each MR in `latest_of`, in id
        order: what a batch of feedback labels judges (a person's rank, the MR's author and files), read in
        one statement for the whole batch (one per `IN_CHUNK` ids), not one per label."""
        wanted, mrs = sorted(set(ids)), sorted(set(latest_of))
        of_project = suggestions.c.project_id == project_id
        found: dict[int, SuggestionRow] = {}
        async with self.engine.connect() as conn:
            for i in range(0, max(len(wanted), len(mrs)), IN_CHUNK):
                latest = (sa.select(sa.func.max(suggestions.c.id))
                          .where(of_project, suggestions.c.mr_iid.in_(mrs[i:i + IN_CHUNK]))
                          .group_by(suggestions.c.mr_iid))
                stmt = sa.select(suggestions).where(of_project, sa.or_(
                    suggestions.c.id.in_(wanted[i:i + IN_CHUNK]), suggestions.c.id.in_(latest.scalar_subquery())))
                found.update((r.id, SuggestionRow(**r._mapping)) for r in (await conn.execute(stmt)).all())
        return sorted(found.values(), key=lambda r: r.id)


class FeedbackStore:
    """Reactions: accepted, removed, passed over, thumbs, approvals..."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._writes: dict[int, int] = {}

    def writes(self, project_id: int) -> int:
        """How many rows this process has recorded for the project: the engine reads new labels at once
        after its own process recorded some, and now and then otherwise (as for `HistoryStore.writes`)."""
        return self._writes.get(project_id, 0)

    async def record(
        self, project_id: int, mr_iid: int, person: str, label: str, *, value: Any = None,
        suggestion_id: int | None = None, source_event_id: int | None = None,
    ) -> bool:
        """Store one reaction; False if this event already recorded it (a retry).

        Rows of one project are written one at a time (`lock_project`), so their ids commit in order and
        `since` never reads a row while a lower id is still to commit: a learner's watermark would pass it.
        """
        if label not in FEEDBACK_LABELS:
            raise ValueError(f"unknown feedback label {label!r}: use one of {sorted(FEEDBACK_LABELS)}")
        async with self.engine.begin() as conn:
            await lock_project(conn, FEEDBACK_LOCK, project_id)
            stmt = insert_for(conn, feedback).values(
                suggestion_id=suggestion_id, project_id=project_id, mr_iid=mr_iid, person=person, label=label,
                value=value, created_at=self.clock(), source_event_id=source_event_id,
            ).on_conflict_do_nothing(index_elements=["source_event_id", "person", "label"])
            added = (await conn.execute(stmt)).rowcount == 1
        if added:
            self._writes[project_id] = self._writes.get(project_id, 0) + 1
        return added

    async def record_once(self, project_id: int, mr_iid: int, person: str, label: str, *,
                          suggestion_id: int | None = None, source_event_id: int | None = None) -> bool:
        """Store `label` for `person` on the MR unless another event already did (an approval sent twice, a
        thread of comments: one piece of evidence); this event's own row, from a killed attempt, is kept."""
        if await self.stored_by_another(project_id, mr_iid, person, {label}, source_event_id):
            return False
        return await self.record(project_id, mr_iid, person, label, suggestion_id=suggestion_id,
                                 source_event_id=source_event_id)

    async def stored_by_another(self, project_id: int, mr_iid: int, person: str, labels: Collection[str],
                                source_event_id: int | None,
                                unless: Callable[[FeedbackRow], bool] = lambda _row: False) -> bool:
        """Whether an event other than `source_event_id` stored one of `labels` for `person` on the MR (a row
        `unless` says is no such label does not count)."""
        folded = person.casefold()
        return any(r.person.casefold() == folded and r.label in labels and r.source_event_id != source_event_id
                   and not unless(r) for r in await self.list(project_id, mr_iid=mr_iid))

    async def newer_applied(self, project_id: int, mr_iid: int, person: str, at: datetime | None,
                            aspect: str = "reviewer") -> datetime | None:
        """The time of a newer event about `person`'s `aspect` ("approval" or "reviewer") on the MR already
        applied, or None: then the event of time `at` is to be applied and is now the newest. GitLab delivers
        hooks asynchronously and an operator may re-send failed ones newest first; an older event handled after
        a newer one must not undo it. Approvals and reviewer changes keep a time each: one never undoes the
        other (an approval handled after a later removal of the same reviewer still counts).

        Times count in whole seconds, GitLab's hook precision: an equal time applies (a retry, a duplicate,
        two changes within one second). `at` None (a payload without a time) applies and is not kept. So does
        a time older than the newest by more than `REDELIVERY_WINDOW`: GitLab keeps a hook's deliveries for
        re-sending two days, so such a gap is no late delivery but another clock (a replayed or hand-made
        payload), and dropping its label would lose it. Events of one MR run one at a time (`EventQueue`), so
        no other writer interleaves here.
        """
        if at is None:
            return None
        at, key = at.replace(microsecond=0), dict(project_id=project_id, mr_iid=mr_iid, person=person.casefold(),
                                                  aspect=aspect)
        where = [feedback_times.c[name] == value for name, value in key.items()]
        async with self.engine.begin() as conn:
            newest = (await conn.execute(sa.select(feedback_times.c.event_at).where(*where))).scalar_one_or_none()
            if newest is not None and newest > at:
                return newest if newest - at <= REDELIVERY_WINDOW else None
            stmt = insert_for(conn, feedback_times).values(**key, event_at=at)
            await conn.execute(stmt.on_conflict_do_update(index_elements=list(key), set_={"event_at": at}))
        return None

    async def of_mrs(self, project_id: int, mr_iids: Iterable[int]) -> list[FeedbackRow]:
        """The reactions on these MRs, oldest first: one statement per `IN_CHUNK` MRs (a backfill page)."""
        return [FeedbackRow(**m) for m in await _of_mrs(self.engine, feedback, project_id, mr_iids)]

    async def since(self, project_id: int, after_id: int = 0, *, limit: int | None = None) -> list[FeedbackRow]:
        """A project's rows with an id above `after_id`, in id order (what a learner has not seen yet).

        Read once no row of the project is being written (`record`): every id below the last one read has
        committed, so a watermark at the last id read skips nothing.
        """
        stmt = (sa.select(feedback).where(feedback.c.project_id == project_id, feedback.c.id > after_id)
                .order_by(feedback.c.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        async with self.engine.begin() as conn:
            await lock_project(conn, FEEDBACK_LOCK, project_id, shared=True)
            return [FeedbackRow(**r._mapping) for r in (await conn.execute(stmt)).all()]

    async def list(
        self, project_id: int, *, mr_iid: int | None = None, since: datetime | None = None
    ) -> list[FeedbackRow]:
        """A project's (or one MR's) reactions, oldest first."""
        stmt = sa.select(feedback).where(feedback.c.project_id == project_id).order_by(feedback.c.id)
        if mr_iid is not None:
            stmt = stmt.where(feedback.c.mr_iid == mr_iid)
        if since is not None:
            stmt = stmt.where(feedback.c.created_at >= since)
        async with self.engine.connect() as conn:
            return [FeedbackRow(**r._mapping) for r in (await conn.execute(stmt)).all()]
