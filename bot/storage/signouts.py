"""Dashboard sign-ins ended before their cookie expires: `dashboard_signouts`.

Why in the database: the dashboard's cookies are signed, and any process with the key accepts them, so a
sign-out that only cleared the browser's cookie left every copy of it good until it expired; and the bot may run
as several `serve` processes on one database, each of which must refuse the copy. A sign-out is kept under the
cookie's SHA-256 (a copy of the table signs nobody in) until the cookie would have expired anyway, then deleted
by the next sign-out. The row "*" ends every cookie issued until its time (`reviewbot signout-all`); it is one
row, kept.

Each dashboard request asks `ended` once: one read of at most two rows by primary key.
"""
from __future__ import annotations

from datetime import datetime
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import insert_for, utcnow
from bot.storage.tables import dashboard_signouts as table

__all__ = ["SignOutStore", "EVERY"]

EVERY = "*"  # the row that ends every cookie issued until its `ended_at`; a SHA-256 in hex is never "*"


class SignOutStore:
    """Cookies signed out (by their digest), and when every sign-in was last ended."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def end(self, session: str, *, until: datetime) -> None:
        """End the sign-in whose cookie has the digest `session` (kept until `until`, when the cookie expires
        anyway), and delete the sign-outs whose cookies have expired since."""
        now = self.clock()
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(table).where(table.c.until < now))
            stmt = insert_for(conn, table).values(session=session, ended_at=now, until=until)
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["session"]))

    async def end_all(self) -> None:
        """End every sign-in whose cookie was issued until now (a later call moves the time on, never back: run
        from a machine whose clock is behind, it would bring back the cookies issued since the last run)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, table).values(session=EVERY, ended_at=now, until=None)
            later = sa.case((table.c.ended_at < stmt.excluded.ended_at, stmt.excluded.ended_at),
                            else_=table.c.ended_at)
            await conn.execute(stmt.on_conflict_do_update(index_elements=["session"], set_={"ended_at": later}))

    async def ended(self, session: str, issued: datetime) -> bool:
        """Whether the sign-in whose cookie has the digest `session`, issued at `issued`, was ended: signed out,
        or issued at or before the last `end_all`."""
        stmt = sa.select(sa.literal(1)).where(table.c.session.in_([session, EVERY]),
                                              table.c.ended_at >= issued).limit(1)
        async with self.engine.connect() as conn:
            return (await conn.execute(stmt)).first() is not None
