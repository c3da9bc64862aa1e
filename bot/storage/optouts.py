"""People who asked not to be suggested on a project, for a while or until they opt back in.

Rows are kept under the username the person had when opting out. A person who renames themselves on GitLab
keeps their opt-out: the suggestion maps each stored name to the member holding that id now
(`bot.suggesting.MRFacts.person`, from `bot.people`), and `/reviewers optin` clears the rows under every name
of their id. Why not rewrite the row when the rename is learned: a rename is learned by whichever process
sees it first (a members list, a webhook, an import), possibly long after, possibly in several at once; the
row may sit under a case variant, or have a twin under the new name with another end time, and the history
and feedback stay under the old name anyway, so a map read at each suggestion is needed all the same.
"""
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

    async def clear(self, project_id: int, username: str, *former: str) -> bool:
        """Opt back in, under `username` and any `former` usernames of the same person (an opt-out made
        before they renamed themselves); False if they were opted out under none of them."""
        names = {username, *former}
        stmt = sa.delete(optouts).where(optouts.c.project_id == project_id, optouts.c.username.in_(names))
        async with self.engine.begin() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def active(self, project_id: int, now: datetime | None = None) -> set[str]:
        """Usernames opted out of this project right now."""
        now = now or self.clock()
        stmt = sa.select(optouts.c.username).where(
            optouts.c.project_id == project_id, sa.or_(optouts.c.until.is_(None), optouts.c.until > now)
        )
        async with self.engine.connect() as conn:
            return set((await conn.execute(stmt)).scalars())
