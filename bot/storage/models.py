"""Trained ranking models per project (pickled estimators), with one active version each.

Why in the database: Heroku's filesystem is ephemeral and not shared between dynos, so a model
trained by one process must be readable by every worker after any restart. Why pruned: each row is a
pickled ranker of about 110 KB and a busy project stores a few thousand a year; only the active one ranks,
and the few newest are kept to roll back to (`activate`, `MODELS_KEPT`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import MODEL_LOCK, lock_project, utcnow
from bot.storage.history import require_rows
from bot.storage.tables import models

__all__ = ["ModelRow", "ModelStore", "MODELS_KEPT"]

MODELS_KEPT = 5  # newest versions kept per project, besides the active one (whatever its age)


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One stored model version."""

    id: int
    project_id: int
    version: str
    created_at: datetime
    blob: bytes
    backtest_score: float | None
    active: bool


def _row(row: sa.Row[Any]) -> ModelRow:
    m = dict(row._mapping)
    m["blob"], m["active"] = bytes(m["blob"]), bool(m["active"])
    return ModelRow(**m)


class ModelStore:
    """Save, list, activate and prune model versions. Writes of one project take its advisory lock
    (PostgreSQL), so two processes activating at once leave one active version, not two. Each save prunes
    the project's versions to the active one and the `MODELS_KEPT` newest. A model fitted on a project's history
    names rows of it (`built_on`): once `reviewbot forget` deleted them, saving raises `HistoryGone` and stores
    nothing."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def save(
        self, project_id: int, version: str, blob: bytes, *, backtest_score: float | None = None,
        activate: bool = True, built_on: Collection[int] = (),
    ) -> int:
        """Store a new version (unique per project); with `activate`, it becomes the only active one."""
        async with self.engine.begin() as conn:
            await lock_project(conn, MODEL_LOCK, project_id)
            model_id = await self._insert(conn, project_id, version, blob, backtest_score, activate)
            await require_rows(conn, project_id, built_on)
            await conn.execute(self._prune_statement(MODELS_KEPT, project_id))
            return model_id

    async def save_replacing(self, project_id: int, version: str, blob: bytes, *, expected: str | None,
                             backtest_score: float | None = None, built_on: Collection[int] = ()) -> bool:
        """Store a new version and make it the active one if the active version is still `expected` (None: no
        active model), else store it inactive; True when it became active.

        Why: a model is compared with the one active when its retraining began; another process may have
        activated a better one meanwhile, which this one was never compared with."""
        async with self.engine.begin() as conn:
            await lock_project(conn, MODEL_LOCK, project_id)
            current = (await conn.execute(self._active_query(project_id, models.c.version))).scalar()
            activate = current == expected
            await self._insert(conn, project_id, version, blob, backtest_score, activate)
            await require_rows(conn, project_id, built_on)
            await conn.execute(self._prune_statement(MODELS_KEPT, project_id))
            return activate

    async def _insert(self, conn: Any, project_id: int, version: str, blob: bytes, backtest_score: float | None,
                      activate: bool) -> int:
        if activate:
            await conn.execute(sa.update(models).where(models.c.project_id == project_id).values(active=False))
        stmt = sa.insert(models).values(
            project_id=project_id, version=version, created_at=self.clock(), blob=blob,
            backtest_score=backtest_score, active=activate,
        ).returning(models.c.id)
        return int((await conn.execute(stmt)).scalar_one())

    @staticmethod
    def _prune_statement(keep: int, project_id: int) -> sa.Delete:
        """Delete the project's inactive versions that have `keep` newer ones: one statement, run under the
        project's lock (PostgreSQL; SQLite runs one writer at a time), so no activation runs beside it; a
        version deleted first cannot be activated any more (`activate` answers False)."""
        newer = models.alias("newer")
        newer_count = (sa.select(sa.func.count()).select_from(newer)
                       .where(newer.c.project_id == models.c.project_id, newer.c.id > models.c.id)
                       .scalar_subquery())
        return sa.delete(models).where(models.c.project_id == project_id, models.c.active.is_(False),
                                       newer_count >= keep)

    async def prune(self, keep: int = MODELS_KEPT) -> int:
        """Delete every project's inactive versions but the `keep` newest (`save` does it for its project; this
        is for a database from before, or a project no longer retrained); returns how many were deleted. One
        project at a time under its lock, as `activate` takes it: an activation holding one version while the
        prune holds another would deadlock on PostgreSQL."""
        if keep < 0:
            raise ValueError(f"keep must be 0 or more, got {keep}")
        crowded = (sa.select(models.c.project_id).group_by(models.c.project_id)
                   .having(sa.func.count() > keep + 1).order_by(models.c.project_id))
        async with self.engine.connect() as conn:
            projects = list((await conn.execute(crowded)).scalars())
        deleted = 0
        for project_id in projects:
            async with self.engine.begin() as conn:
                await lock_project(conn, MODEL_LOCK, project_id)
                deleted += (await conn.execute(self._prune_statement(keep, project_id))).rowcount
        return deleted

    @staticmethod
    def _active_query(project_id: int, *columns: Any) -> sa.Select[Any]:
        """The active row (the newest, should two ever be)."""
        return (sa.select(*columns).where(models.c.project_id == project_id, models.c.active.is_(True))
                .order_by(models.c.id.desc()).limit(1))

    async def activate(self, project_id: int, version: str) -> bool:
        """Make `version` the active one (e.g. roll back); False if there is no such version."""
        async with self.engine.begin() as conn:
            await lock_project(conn, MODEL_LOCK, project_id)
            found = await conn.execute(
                sa.update(models).where(models.c.project_id == project_id, models.c.version == version)
                .values(active=True)
            )
            if found.rowcount != 1:
                return False
            await conn.execute(
                sa.update(models).where(models.c.project_id == project_id, models.c.version != version)
                .values(active=False)
            )
            return True

    async def active(self, project_id: int) -> ModelRow | None:
        """The project's active model, if any."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(self._active_query(project_id, models))).first()
        return _row(row) if row else None

    async def active_summary(self, project_id: int) -> tuple[str, float | None, datetime] | None:
        """(version, backtest score, created) of the active model, without reading its pickled blob."""
        columns = (models.c.version, models.c.backtest_score, models.c.created_at)
        async with self.engine.connect() as conn:
            row = (await conn.execute(self._active_query(project_id, *columns))).first()
        return tuple(row) if row else None

    async def exists(self, project_id: int, version: str) -> bool:
        """Whether the project has a model of this version (stored by any process)."""
        stmt = sa.select(models.c.id).where(models.c.project_id == project_id, models.c.version == version)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def list(self, project_id: int) -> list[ModelRow]:
        """Every version of a project's model, oldest first."""
        stmt = sa.select(models).where(models.c.project_id == project_id).order_by(models.c.id)
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(stmt)).all()]
