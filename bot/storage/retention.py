"""Deleting what the bot keeps about merge requests finished long ago: their suggestions, feedback, approval and
reviewer times, and the note id of the bot's comment.

Why: those rows grow with every merge request and are read mostly while it is open, by the dashboard (the last
12 weeks) and by the learning, in which a label fades with a 60-day half-life (a year old, it weighs under 2 %).
A merge request is finished when it merged (its `!iid` row is in the history) or was closed and not reopened
since (its last `closed` / `reopened` row is `closed`); it is old when none of its suggestions, feedback rows
nor its comment's last edit is newer than the cutoff. A late thumb or command on a merged MR keeps all its rows
until it is that old too. An MR reopened after its rows went is an MR the bot has not seen: it suggests again
and posts a new comment.

One statement per table, each deciding by itself (feedback last: it holds the `closed` rows the others read),
under one lock on PostgreSQL so that two workers pruning at once do not delete the same rows crosswise. The
newest suggestion and feedback row are always kept: SQLite hands out max(id) + 1, and an id given again would
sit below a recommender's label watermark and never be learned.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import MR_RETENTION_MIN_DAYS
from bot.storage.db import PRUNE_LOCK, lock_project, utcnow
from bot.storage.tables import bot_comments, feedback, feedback_times, history, suggestions

__all__ = ["MergeRequestRetention", "MIN_MR_RETENTION"]

MIN_MR_RETENTION = timedelta(days=MR_RETENTION_MIN_DAYS)


def _finished_before(t: sa.Table, cutoff: datetime) -> sa.ColumnElement[bool]:
    """Whether the merge request of `t`'s row (project_id, mr_iid) is finished and had nothing newer than
    `cutoff` (correlated on the row; the inner tables are aliases, so `t` may be one of them)."""
    def of_mr(inner: sa.Alias) -> list[sa.ColumnElement[bool]]:
        return [inner.c.project_id == t.c.project_id, inner.c.mr_iid == t.c.mr_iid]

    h = history.alias("done_merged")
    merged = sa.exists().where(h.c.project_id == t.c.project_id,
                               h.c.change_id == sa.literal("!") + sa.cast(t.c.mr_iid, sa.String),
                               h.c.time < int(cutoff.timestamp()))
    state = feedback.alias("done_state")
    last_state = (sa.select(state.c.label).where(*of_mr(state), state.c.label.in_(("closed", "reopened")))
                  .order_by(state.c.id.desc()).limit(1).scalar_subquery())
    s, f, c = suggestions.alias("late_s"), feedback.alias("late_f"), bot_comments.alias("late_c")
    late = sa.or_(sa.exists().where(*of_mr(s), s.c.created_at >= cutoff),
                  sa.exists().where(*of_mr(f), f.c.created_at >= cutoff),
                  sa.exists().where(*of_mr(c), c.c.updated_at >= cutoff))
    return sa.and_(sa.or_(merged, last_state == "closed"), ~late)


def _below_newest(t: sa.Table) -> sa.ColumnElement[bool]:
    return t.c.id < sa.select(sa.func.max(t.c.id)).scalar_subquery()


class MergeRequestRetention:
    """`prune`: the rows of merge requests finished before a cutoff (`storage.retention`)."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.clock = clock

    async def prune(self, older_than: timedelta) -> dict[str, int]:
        """Delete the rows of merge requests finished, with nothing new, more than `older_than` ago (never less
        than `MIN_MR_RETENTION`); returns how many rows of each table went."""
        cutoff = self.clock() - max(older_than, MIN_MR_RETENTION)
        statements = {  # each row's own time first: a cheap test that leaves the subqueries the old rows only
            "bot_comments": sa.delete(bot_comments).where(bot_comments.c.updated_at < cutoff,
                                                          _finished_before(bot_comments, cutoff)),
            "feedback_times": sa.delete(feedback_times).where(feedback_times.c.event_at < cutoff,
                                                              _finished_before(feedback_times, cutoff)),
            "suggestions": sa.delete(suggestions).where(suggestions.c.created_at < cutoff, _below_newest(suggestions),
                                                        _finished_before(suggestions, cutoff)),
            "feedback": sa.delete(feedback).where(feedback.c.created_at < cutoff, _below_newest(feedback),
                                                  _finished_before(feedback, cutoff)),
        }
        async with self.engine.begin() as conn:
            await lock_project(conn, PRUNE_LOCK, 0)
            return {table: (await conn.execute(stmt)).rowcount for table, stmt in statements.items()}
