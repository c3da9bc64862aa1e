"""The usernames each GitLab user id was seen with (`people`), so a user who renames themselves stays one person.

Why: the history, feedback, opt-outs and the graph name people by username, and GitLab lets a user change
theirs (`alice` to `alice.w`) while their numeric id stays. The bot learns (id, username) pairs from GitLab's
API answers alone: the members lists it reads when suggesting, the merge requests and approvals the history
import and the merge handling read. Never from a webhook body: the table serves every project, and a webhook
secret scoped to one group would let whoever holds it tell the bot that any user id had any former name, and
so hand someone else's history to a member of a project outside that group.

Names are matched casefolded (`username_key`, indexed), as GitLab's usernames ignore case: `Alice` renamed and
`alice` taken since is one name, now someone else's.

Why one row per (id, name) and no "current name" column: several processes learn pairs at once, each from
what GitLab answered it, one just before a rename and another just after. A row per pair whose
`seen_at` only ever moves forward is one atomic upsert on both databases, with nothing read first to race
on, and what the bot saw is never overwritten. Who a user is now is GitLab's members list; this table says
which other names they had, and who had a name last (`bot.people`).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Iterable, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import IN_CHUNK, as_id, insert_for, utcnow
from bot.storage.tables import people

__all__ = ["PeopleStore", "Sighting", "REFRESH", "holders_query"]

REFRESH = timedelta(minutes=10)  # a pair this process wrote this recently is not written again
MEMORY = 100_000                 # pairs remembered as written, per process (then forgotten all at once)
ROWS = 1_000                     # pairs per INSERT (4 parameters each: far below both databases' limits)


class Sighting(NamedTuple):
    """A user id seen with a username, last at `seen_at`."""

    user_id: int
    username: str
    seen_at: datetime


class PeopleStore:
    """(user id, username, last seen) rows, written by `learn`, read by `sightings`."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock
        self._written: dict[tuple[int, str], datetime] = {}
        self._latest: dict[int, tuple[datetime, str]] = {}  # each id's newest name this process learned

    def renamed(self, pairs: Iterable[tuple[int, str]]) -> bool:
        """Whether one of `pairs` (a webhook's, which are never learned: anyone holding a webhook secret may
        write them) names a user otherwise than the newest name this process learned for their id (a rename,
        or a late event from before one): what this process keeps about them (the members list of a project,
        for a minute) may be out of date, and GitLab is asked again."""
        return any((known := self._latest.get(uid)) is not None and known[1].casefold() != name.casefold()
                   for uid, name in pairs)

    async def learn(self, pairs: Iterable[tuple[object, object]], at: datetime | None = None) -> int:
        """Record that each (user id, username), as a GitLab API answer gave it, was true at `at` (default now);
        returns how many pairs were written. Ids that are no GitLab user's (0: GitLab's ghost user, or no int)
        and empty names are left out. A pair this process wrote less than `REFRESH` before `at` is skipped: the
        members list of every suggestion names the same people, and their rows need no write each time."""
        at = at or self.clock()
        fresh = self._fresh(pairs, at)
        # in key order: statements writing overlapping rows (processes learning one members list, an import's
        # merge requests) then lock them in the same order, and PostgreSQL sees no deadlock
        rows = [{"user_id": uid, "username": name, "username_key": name.casefold(), "seen_at": at}
                for uid, name in sorted(fresh)]
        for start in range(0, len(rows), ROWS):
            async with self.engine.begin() as conn:
                stmt = insert_for(conn, people).values(rows[start:start + ROWS])
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=["user_id", "username"], set_={"seen_at": stmt.excluded.seen_at},
                    where=people.c.seen_at < stmt.excluded.seen_at))
        self._written.update(dict.fromkeys(fresh, at))
        return len(rows)

    def _fresh(self, pairs: Iterable[tuple[object, object]], at: datetime) -> list[tuple[int, str]]:
        """The valid pairs this process has not written since `REFRESH` before `at`, once each; each id's newest
        name is noted for `renamed`."""
        if len(self._written) > MEMORY or len(self._latest) > MEMORY:  # a bound, not a cache policy
            self._written.clear()
            self._latest.clear()
        fresh: dict[tuple[int, str], None] = {}
        for raw_id, name in pairs:
            uid = as_id(raw_id)
            if uid is None or uid <= 0 or not isinstance(name, str) or not name or len(name.casefold()) > 255:
                continue
            if (known := self._latest.get(uid)) is None or known[0] <= at:
                self._latest[uid] = (at, name)
            written = self._written.get((uid, name))
            if written is None or written < at - REFRESH:
                fresh[(uid, name)] = None
        return list(fresh)

    async def sightings(self, user_ids: Iterable[int]) -> list[Sighting]:
        """Every name these users were seen with, and every other user seen with one of those names in any case
        (GitLab frees a username when its holder renames themselves, and someone else may take it), oldest
        first."""
        ids = sorted({uid for uid in user_ids})
        found: set[Sighting] = set()
        async with self.engine.connect() as conn:
            for start in range(0, len(ids), IN_CHUNK):
                stmt = holders_query(ids[start:start + IN_CHUNK])
                found.update(Sighting(*row) for row in (await conn.execute(stmt)).all())
        return sorted(found, key=lambda s: (s.seen_at, s.user_id, s.username))


def holders_query(user_ids: Sequence[int]) -> sa.Select:
    """The rows of every name `user_ids` were seen with, whoever held it, matched casefolded: two index
    lookups (the primary key by id, `username_key` by name), never a scan of the table."""
    keys = sa.select(people.c.username_key).where(people.c.user_id.in_(user_ids))
    return sa.select(people.c.user_id, people.c.username, people.c.seen_at).where(people.c.username_key.in_(keys))
