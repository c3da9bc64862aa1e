"""The bot's one comment per merge request, enforced by the database's primary key.

Why a reservation: two workers handling two events of one MR could both find "no comment yet" and
both post one. `reserve()` inserts the (project, MR) row first; only the worker whose insert wins
posts the note, then records its id with `set_note()`. Everyone else edits that note.

Handler pattern::

    row = await storage.comments.get(pid, iid)
    if row and row.note_id:            edit note row.note_id
    elif await storage.comments.reserve(pid, iid, owner):
        note = post note; await storage.comments.set_note(pid, iid, note["id"])
    else:                              raise a retryable error (another worker is posting)
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import insert_for, utcnow
from bot.storage.tables import bot_comments

__all__ = ["CommentRow", "CommentStore"]


@dataclass(frozen=True, slots=True)
class CommentRow:
    """The bot's comment on one MR; `note_id` is None while a worker is posting it, `discussion_id` (GitLab's
    discussion of the note: replies to it share it) until the bot has seen it (`set_discussion`)."""

    project_id: int
    mr_iid: int
    note_id: int | None
    reserved_by: str | None
    created_at: datetime
    updated_at: datetime
    discussion_id: str | None = None


class CommentStore:
    """Which note is the bot's comment on each merge request."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    def _key(self, project_id: int, mr_iid: int) -> sa.ColumnElement[bool]:
        return sa.and_(bot_comments.c.project_id == project_id, bot_comments.c.mr_iid == mr_iid)

    async def get(self, project_id: int, mr_iid: int) -> CommentRow | None:
        """The MR's comment row, if the bot has one (or is posting one)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(bot_comments).where(self._key(project_id, mr_iid)))).first()
        return CommentRow(**row._mapping) if row else None

    async def reserve(self, project_id: int, mr_iid: int, owner: str, *, stale_after: float = 300.0) -> bool:
        """Claim the right to post the MR's comment; True for exactly one caller.

        A reservation without a note older than `stale_after` seconds (its worker died) is taken over.
        """
        now = self.clock()
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, bot_comments).values(
                project_id=project_id, mr_iid=mr_iid, note_id=None, reserved_by=owner, created_at=now, updated_at=now
            ).on_conflict_do_nothing(index_elements=["project_id", "mr_iid"])
            if (await conn.execute(stmt)).rowcount == 1:
                return True
            takeover = sa.update(bot_comments).where(
                self._key(project_id, mr_iid), bot_comments.c.note_id.is_(None),
                bot_comments.c.updated_at < now - timedelta(seconds=stale_after),
            ).values(reserved_by=owner, updated_at=now)
            return (await conn.execute(takeover)).rowcount == 1

    async def set_note(self, project_id: int, mr_iid: int, note_id: int) -> None:
        """Record the posted note's id (also used when the comment had to be re-posted)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            stmt = insert_for(conn, bot_comments).values(
                project_id=project_id, mr_iid=mr_iid, note_id=note_id, reserved_by=None, created_at=now, updated_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=["project_id", "mr_iid"],
                set_={"note_id": note_id, "reserved_by": None, "updated_at": now}
            )
            await conn.execute(stmt)

    async def set_discussion(self, project_id: int, mr_iid: int, note_id: int, discussion_id: str) -> bool:
        """Record the discussion of note `note_id` if it is the MR's comment now (False when it is not: a
        comment replaced since, or one whose id is not recorded yet)."""
        async with self.engine.begin() as conn:
            done = await conn.execute(sa.update(bot_comments).where(
                self._key(project_id, mr_iid), bot_comments.c.note_id == note_id,
            ).values(discussion_id=discussion_id))
        return done.rowcount == 1

    async def touch(self, project_id: int, mr_iid: int) -> None:
        """Note that the comment was just edited."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(bot_comments).where(self._key(project_id, mr_iid)).values(updated_at=self.clock())
            )

    async def forget(self, project_id: int, mr_iid: int) -> None:
        """Drop the row: a failed post's reservation, or a note someone deleted (GitLab answered 404)."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(bot_comments).where(self._key(project_id, mr_iid)))
