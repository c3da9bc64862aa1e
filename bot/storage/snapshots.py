"""Recommender snapshots per project (`graph.snapshot` bytes), so a worker starts warm after a restart.

Why in the database: the graph is derived from the stored history, but replaying a large project's history
takes minutes; Heroku-style dynos lose their disk at every restart and do not share one, so a snapshot one
worker writes must be readable by every other. Each row says which history it has seen (`history_count`
rows, the newest at `history_time`, and the ids of the rows at that time), so a reader observes only the
rows stored after it.

Several workers may write at once: each save is one transaction that inserts its row and prunes the
project's older ones (serialised per project by an advisory lock on PostgreSQL; SQLite serialises writers
anyway). The most advanced snapshots (most history rows seen, then newest) are the ones kept and read. A
snapshot whose history `reviewbot forget` deleted while it was encoded is not stored (`HistoryGone`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import SNAPSHOT_LOCK, lock_project, utcnow
from bot.storage.history import require_rows
from bot.storage.tables import snapshots

__all__ = ["SnapshotRow", "SnapshotStore", "KEEP"]

KEEP = 2  # snapshots kept per project: the newest, and one to fall back on
_ORDER = (snapshots.c.history_count.desc(), snapshots.c.id.desc())


@dataclass(frozen=True, slots=True)
class SnapshotRow:
    """One stored snapshot; `blob` is None in listings (snapshots can be tens of megabytes)."""

    id: int
    project_id: int
    format: str
    config: str
    history_count: int
    history_time: int | None
    boundary: tuple[int, ...]
    created_at: datetime
    size: int
    blob: bytes | None = None


def _row(row: sa.Row[Any]) -> SnapshotRow:
    m = dict(row._mapping)
    m["boundary"] = tuple(int(i) for i in m["boundary"])
    if m.get("blob") is not None:
        m["blob"] = bytes(m["blob"])
    return SnapshotRow(**m)


class SnapshotStore:
    """Save, read and prune the snapshots of each project's recommender."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def save(self, project_id: int, blob: bytes, *, format: str, config: str, history_count: int,
                   history_time: int | None, boundary: Sequence[int], keep: int = KEEP,
                   built_on: Collection[int] = ()) -> int:
        """Store a snapshot; keep the project's `keep` most advanced ones of this `format` and `config` and
        drop the others (written by older code or other settings, so of no use to the writer); return its id.
        `built_on`: history row ids it has seen (its `boundary`); `HistoryGone` when none is stored any more."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        async with self.engine.begin() as conn:
            await lock_project(conn, SNAPSHOT_LOCK, project_id)
            stmt = sa.insert(snapshots).values(
                project_id=project_id, format=format, config=config, history_count=history_count,
                history_time=history_time, boundary=[int(i) for i in boundary], created_at=self.clock(),
                size=len(blob), blob=blob,
            ).returning(snapshots.c.id)
            new_id = int((await conn.execute(stmt)).scalar_one())
            await require_rows(conn, project_id, built_on)
            kept = sa.select(snapshots.c.id).where(
                snapshots.c.project_id == project_id, snapshots.c.format == format, snapshots.c.config == config,
            ).order_by(*_ORDER).limit(keep)
            await conn.execute(sa.delete(snapshots).where(
                snapshots.c.project_id == project_id, snapshots.c.id.not_in(kept)))
        return new_id

    async def latest(self, project_id: int, *, format: str | None = None,
                     config: str | None = None) -> SnapshotRow | None:
        """The most advanced snapshot of the project (with its blob), among those of `format` and `config`."""
        stmt = sa.select(snapshots).where(snapshots.c.project_id == project_id)
        if format is not None:
            stmt = stmt.where(snapshots.c.format == format)
        if config is not None:
            stmt = stmt.where(snapshots.c.config == config)
        async with self.engine.connect() as conn:
            row = (await conn.execute(stmt.order_by(*_ORDER).limit(1))).first()
        return _row(row) if row else None

    async def list(self, project_id: int) -> list[SnapshotRow]:
        """The project's snapshots without their blobs, most advanced first."""
        columns = [c for c in snapshots.c if c.name != "blob"]
        stmt = sa.select(*columns).where(snapshots.c.project_id == project_id).order_by(*_ORDER)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(stmt)).all()]

    async def delete(self, project_id: int) -> int:
        """Forget the project's snapshots (e.g. when its history is re-imported); return how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(snapshots).where(snapshots.c.project_id == project_id))
        return int(result.rowcount or 0)
