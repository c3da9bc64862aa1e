"""People who asked not to be suggested on a project, for a while or until they opt back in."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import insert_for, utcnow
from bot.storage.tables import optouts

__all__ = ["OptOutStore"]


class OptOutStore:
    """Opt-outs per (project, username); `until=None` means until `clear()`."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def set(self, project_id: int, username: str, until: datetime | None = None) -> None:
        """Opt `username` out (again); a later call replaces the end time."""
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, optouts).values(
                project_id=project_id, username=username, until=until, created_at=self.clock()
            )
            stmt = stmt.on_conflict_do_update(index_elements=["project_id", "username"], set_={"until": until})
            await conn.execute(stmt)

    async def clear(self, project_id: int, username: str) -> bool:
        """Opt back in; False if they were not opted out."""
        stmt = sa.delete(optouts).where(optouts.c.project_id == project_id, optouts.c.username == username)
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def active(self, project_id: int, now: datetime | None = None) -> set[str]:
        """Usernames opted out of this project right now."""
        now = now or self.clock()
        stmt = sa.select(optouts.c.username).where(
            optouts.c.project_id == project_id, sa.or_(optouts.c.until.is_(None), optouts.c.until > now)
        )
        async with self.engine.connect() as conn:
            return set((await conn.execute(stmt)).scalars())
