"""Projects the bot has seen: path, history backfill progress, who imports it, and settings overrides set from GitLab.

Why keep the backfill cursor: a restart in the middle of downloading a large project's history
resumes where it stopped instead of starting again (and spending the API rate limit twice). Why a lease on
the import (`claim_import`): several processes see a new project's first events, and one import of its
history is enough.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import insert_for, utcnow
from bot.storage.tables import feedback, history, models, projects, suggestions

__all__ = ["ProjectRow", "ProjectStore"]


@dataclass(frozen=True, slots=True)
class ProjectRow:
    """One project's stored state."""

    id: int
    path: str | None
    backfill_cursor: str | None
    backfill_page: int | None
    backfill_done: bool
    settings: dict[str, Any]
    last_event_at: datetime | None
    import_owner: str | None = None       # the process holding the import's lease, if any
    import_until: datetime | None = None  # ... until when, unless renewed


def _row(row: sa.Row[Any]) -> ProjectRow:
    m = dict(row._mapping)
    m["backfill_done"] = bool(m["backfill_done"])
    return ProjectRow(**m)


class ProjectStore:
    """Read and update project rows (created on first sight)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def _upsert(self, project_id: int, insert: Mapping[str, Any], update: Mapping[str, Any]) -> str | None:
        """Insert or update the project's row; the path it had before, when `update` changes it, else None."""
        async with self.engine.begin() as conn:
            former = None
            if update.get("path"):
                former = (await conn.execute(sa.select(projects.c.path).where(projects.c.id == project_id))).scalar()
            stmt = insert_for(conn, projects).values(**{"id": project_id, "settings": {}, **insert})
            if update:
                stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=dict(update))
            else:
                stmt = stmt.on_conflict_do_nothing(index_elements=["id"])
            await conn.execute(stmt)
        return former if former and former != update.get("path") else None

    async def seen(self, project_id: int, path: str | None = None) -> str | None:
        """Record that an event arrived for the project now (creating its row, updating its path). Returns the
        path stored before when `path` differs (the project was renamed or moved: settings keyed by the old
        path stop applying), else None."""
        now = self.clock()
        update: dict[str, Any] = {"last_event_at": now}
        if path:
            update["path"] = path
        return await self._upsert(project_id, {"path": path, "last_event_at": now}, update)

    async def named(self, project_id: int, path: str) -> str | None:
        """Record the project's path (creating its row), as GitLab gave it to a command such as `backfill`,
        so that `evaluate --project PATH` finds a project no event has named yet. Returns the path stored
        before when it differs, as `seen` does."""
        return await self._upsert(project_id, {"path": path}, {"path": path})

    async def get(self, project_id: int) -> ProjectRow | None:
        """The project's row, if the bot has seen it."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(projects).where(projects.c.id == project_id))).first()
        return _row(row) if row else None

    async def marker(self, project_id: int) -> tuple[int, ...]:
        """Where the project's suggestions, feedback, history and active model stand: the row count and largest
        id of each table, and the active model's id, read in one statement.

        Why: a reader that caches what it computed from these rows (the dashboard's overview) asks this first,
        in every process, and computes again only when it changed. Their rows are only ever added (a history
        row is replaced in place, which leaves it merged all the same) or pruned (the count drops), so any new
        row changes it, even one that committed late under a smaller id (the count); activating a model changes
        its id.
        """
        def count_and_last(table: sa.Table) -> list[sa.ScalarSelect[Any]]:
            where = table.c.project_id == project_id
            return [sa.select(sa.func.count()).select_from(table).where(where).scalar_subquery(),
                    sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0)).where(where).scalar_subquery()]

        active = sa.select(sa.func.coalesce(sa.func.max(models.c.id), 0)).where(
            models.c.project_id == project_id, models.c.active).scalar_subquery()
        stmt = sa.select(*count_and_last(suggestions), *count_and_last(feedback), *count_and_last(history), active)
        async with self.engine.connect() as conn:
            return tuple(int(v) for v in (await conn.execute(stmt)).one())

    async def list(self) -> list[ProjectRow]:
        """Every known project, by id."""
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(sa.select(projects).order_by(projects.c.id))).all()]

    async def set_backfill(
        self, project_id: int, *, cursor: str | None, page: int | None, done: bool = False
    ) -> None:
        """Save how far the history backfill got."""
        values = {"backfill_cursor": cursor, "backfill_page": page, "backfill_done": done}
        await self._upsert(project_id, values, values)

    async def claim_import(self, project_id: int, owner: str, seconds: float, *, done_too: bool = False) -> bool:
        """Take the lease on the project's history import for `seconds` (creating its row): True when `owner`
        holds it now (it was free, expired, or `owner`'s already), False when another process holds it or the
        import is done (unless `done_too`: `reviewbot backfill` reads a done project again, to catch up or
        `--restart`). One atomic UPDATE: of processes claiming at once, one wins."""
        await self._upsert(project_id, {"path": None}, {})
        now = self.clock()
        stmt = sa.update(projects).where(
            projects.c.id == project_id, sa.true() if done_too else projects.c.backfill_done == sa.false(),
            sa.or_(projects.c.import_owner.is_(None), projects.c.import_until < now, projects.c.import_owner == owner),
        ).values(import_owner=owner, import_until=now + timedelta(seconds=seconds))
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def renew_import(self, project_id: int, owner: str, seconds: float) -> bool:
        """Extend `owner`'s lease on the import by `seconds` from now; False if another process took it over."""
        stmt = sa.update(projects).where(projects.c.id == project_id, projects.c.import_owner == owner).values(
            import_until=self.clock() + timedelta(seconds=seconds))
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def release_import(self, project_id: int, owner: str) -> None:
        """Hand the import's lease back (if `owner` still holds it): another process may take it at once."""
        stmt = sa.update(projects).where(projects.c.id == project_id, projects.c.import_owner == owner).values(
            import_owner=None, import_until=None)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)

    def lease_free(self, row: ProjectRow) -> bool:
        """Whether nobody holds the row's import lease (never taken, handed back, or expired by this clock)."""
        return row.import_owner is None or row.import_until is None or row.import_until < self.clock()

    async def set_overrides(self, project_id: int, overrides: Mapping[str, Any]) -> None:
        """Replace the project's settings overrides (validate them with `Settings.project_settings` first)."""
        values = {"settings": dict(overrides)}
        await self._upsert(project_id, values, values)
