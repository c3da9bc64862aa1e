"""The review history of each project, as `graph.Change`s, kept so a restart needs no re-download.

Why upsert on (project_id, change_id): the backfill and the merge events may both report one merge
request (and a backfill may be resumed); the last report wins and nothing is counted twice.
"""
from __future__ import annotations

from typing import Any, Collection, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.storage.db import IN_CHUNK, insert_for
from bot.storage.tables import feedback, history
from graph.model import Change

__all__ = ["HistoryStore", "HistoryGone", "require_rows"]

BATCH = 500


class HistoryGone(LookupError):
    """The history rows a model or snapshot was built from are stored no more: `reviewbot forget` deleted the
    project (nothing else deletes history rows)."""


async def require_rows(conn: AsyncConnection, project_id: int, row_ids: Collection[int]) -> None:
    """Raise `HistoryGone` unless the project's history still holds `row_ids` (none given: no check). One of
    them is read: history rows go only all together, a row replaced by an upsert keeps its id, and an id is never
    given twice (PostgreSQL's sequence; SQLite's AUTOINCREMENT since 0013: before it, the project's history
    imported again after the forget took the forgotten rows' ids when those were the largest, and passed).

    Why: a retraining or a snapshot runs in the background for seconds to minutes, and `reviewbot forget` may
    delete the project meanwhile; what it then stored would bring the project back (a model, a snapshot), and
    a new project under that id would start from the forgotten history. Call it after the transaction's first
    write: SQLite then holds its write lock, so no forget commits between this read and the commit (PostgreSQL:
    the writer and `forget_project` take the project's advisory lock).
    """
    if not row_ids:
        return
    stmt = sa.select(sa.exists().where(history.c.project_id == project_id, history.c.id == max(row_ids)))
    if not (await conn.execute(stmt)).scalar():
        raise HistoryGone(f"project {project_id}'s history was deleted (reviewbot forget) while this was built "
                          "from it: not stored")


def _values(project_id: int, change: Change) -> dict[str, Any]:
    return dict(
        project_id=project_id, change_id=change.id, time=int(change.time), author=change.author,
        reviewers=list(change.reviewers), ackers=list(change.ackers), files=list(change.files),
        title=change.title, committer=change.committer, bot_author=change.bot_author,
        renames=[list(pair) for pair in change.renames],
    )


def _change(row: sa.Row[Any]) -> Change:
    m = row._mapping
    return Change(
        id=m["change_id"], time=int(m["time"]), author=m["author"], reviewers=tuple(m["reviewers"]),
        files=tuple(m["files"]), title=m["title"], ackers=tuple(m["ackers"]), committer=m["committer"],
        bot_author=bool(m["bot_author"]), renames=tuple((old, new) for old, new in m["renames"] or ()),
    )


class HistoryStore:
    """Read and write one project's reviewed changes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writes: dict[int, int] = {}

    def writes(self, project_id: int) -> int:
        """How many `upsert`s this process has made for the project: a reader caching the history (the
        engine) checks the database at once after its own process wrote, and only now and then otherwise."""
        return self._writes.get(project_id, 0)

    async def upsert(self, project_id: int, changes: Iterable[Change]) -> int:
        """Insert or replace changes (by their id); return how many were written."""
        rows = [_values(project_id, c) for c in changes]
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), BATCH):
                stmt = insert_for(conn, history).values(rows[start:start + BATCH])
                excluded = stmt.excluded
                stmt = stmt.on_conflict_do_update(
                    index_elements=["project_id", "change_id"],
                    set_={k: excluded[k] for k in rows[0] if k not in ("project_id", "change_id")},
                )
                await conn.execute(stmt)
        self._writes[project_id] = self._writes.get(project_id, 0) + 1
        return len(rows)

    async def load(self, project_id: int, *, since: int | None = None) -> list[Change]:
        """The project's changes, oldest first; `since` (Unix seconds) keeps only later ones."""
        stmt = sa.select(history).where(history.c.project_id == project_id).order_by(history.c.time, history.c.id)
        if since is not None:
            stmt = stmt.where(history.c.time >= since)
        async with self.engine.connect() as conn:
            return [_change(r) for r in (await conn.execute(stmt)).all()]

    async def rows_since(self, project_id: int, since: int | None = None) -> tuple[list[tuple[int, Change]], int]:
        """(row id, change) of the changes at or after `since` (all when None), oldest first, and the
        project's total row count, read in one statement so both describe the same moment."""
        total = (sa.select(sa.func.count().label("total")).select_from(history)
                 .where(history.c.project_id == project_id).subquery())
        on = history.c.project_id == project_id
        if since is not None:
            on = sa.and_(on, history.c.time >= since)
        stmt = (sa.select(total.c.total, history).select_from(total.outerjoin(history, on))
                .order_by(history.c.time, history.c.id))
        async with self.engine.connect() as conn:
            found = (await conn.execute(stmt)).all()
        count = int(found[0]._mapping["total"]) if found else 0
        return [(int(r._mapping["id"]), _change(r)) for r in found if r._mapping["id"] is not None], count

    async def present(self, project_id: int, change_ids: Iterable[str]) -> set[str]:
        """Which of `change_ids` the project's history holds (the MRs among them already merged)."""
        wanted, found = sorted(set(change_ids)), set[str]()
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                stmt = sa.select(history.c.change_id).where(
                    history.c.project_id == project_id, history.c.change_id.in_(wanted[start:start + IN_CHUNK]))
                found.update(str(c) for c in (await conn.execute(stmt)).scalars())
        return found

    async def count(self, project_id: int) -> int:
        """How many changes the project has."""
        stmt = sa.select(sa.func.count()).select_from(history).where(history.c.project_id == project_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def count_holding(self, project_id: int, row_id: int | None, *,
                            label_id: int | None = None) -> tuple[int, bool]:
        """How many changes the project has, and whether row `row_id` is one of them (True for None), in one
        statement. Why: a reader that has seen the rows (the engine) learns that `reviewbot forget` deleted them
        even when as many were imported again since (a row replaced by an upsert keeps its id, and re-imported
        rows get new ids: see `require_rows`).

        `label_id`: a project's feedback row the reader has learned, which must be stored still too (by its
        primary key, in the same statement). Why: a project without merged MRs has no history row to tell its
        forget, and its recommender would keep the labels it learned (feedback ids are never given twice either,
        since 0014)."""
        where = history.c.project_id == project_id
        holding = (sa.exists().where(where, history.c.id == row_id) if row_id is not None else sa.true())
        if label_id is not None:
            holding = sa.and_(holding, sa.exists().where(feedback.c.id == label_id,
                                                         feedback.c.project_id == project_id))
        stmt = sa.select(sa.select(sa.func.count()).where(where).scalar_subquery(), holding)
        async with self.engine.connect() as conn:
            count, held = (await conn.execute(stmt)).one()
        return int(count), bool(held)

    async def latest_time(self, project_id: int) -> int | None:
        """The newest change's time (Unix seconds), or None for a project without history."""
        stmt = sa.select(sa.func.max(history.c.time)).where(history.c.project_id == project_id)
        async with self.engine.connect() as conn:
            value = (await conn.execute(stmt)).scalar()
        return None if value is None else int(value)

    async def newest_ids(self, project_id: int, *, prefix: str = "", limit: int = 1) -> list[str]:
        """The ids of the project's newest changes, newest first, those starting with `prefix` only (`!`: the
        merge requests, by `bot.backfill.change_id`)."""
        stmt = (sa.select(history.c.change_id)
                .where(history.c.project_id == project_id, history.c.change_id.startswith(prefix, autoescape=True))
                .order_by(history.c.time.desc(), history.c.id.desc()).limit(limit))
        async with self.engine.connect() as conn:
            return [str(c) for c in (await conn.execute(stmt)).scalars()]
