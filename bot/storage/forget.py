"""Deleting everything the bot stored about one project: its history, suggestions, feedback, comments, opt-outs,
models, snapshots, events and its row.

Why: an operator who takes the bot off a project (or whose project was deleted on GitLab) otherwise keeps its
review history, its people's feedback and its events for good, and the dashboard keeps listing it. `prune`
only ages rows out; this is the way to remove a project's data on purpose. Usernames (`people`) are the
instance's, not a project's, and are kept.

A retraining or a snapshot of the project running meanwhile in a bot process stores nothing once this has
committed (`bot.storage.history.require_rows`); on PostgreSQL the deletion first takes the project's locks
those writers take, so one committing at the same moment is either deleted with the rest or finds the history
gone.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.db import MODEL_LOCK, SNAPSHOT_LOCK, lock_project
from bot.storage.tables import (bot_comments, events, feedback, feedback_times, history, models, optouts, projects,
                                snapshots, suggestions)

__all__ = ["PROJECT_TABLES", "project_rows", "forget_project"]

# Child rows first: feedback points at suggestions. Each with the column naming its project.
PROJECT_TABLES: tuple[tuple[str, sa.Table, sa.Column], ...] = (
    ("feedback", feedback, feedback.c.project_id),
    ("feedback_times", feedback_times, feedback_times.c.project_id),
    ("suggestions", suggestions, suggestions.c.project_id),
    ("bot_comments", bot_comments, bot_comments.c.project_id),
    ("optouts", optouts, optouts.c.project_id),
    ("models", models, models.c.project_id),
    ("snapshots", snapshots, snapshots.c.project_id),
    ("history", history, history.c.project_id),
    ("events", events, events.c.project_id),
    ("projects", projects, projects.c.id),
)


async def project_rows(engine: AsyncEngine, project_id: int) -> dict[str, int]:
    """How many rows of each table belong to the project (what `forget_project` would delete)."""
    async with engine.connect() as conn:
        return {name: (await conn.execute(sa.select(sa.func.count()).select_from(table).where(column == project_id)
                                          )).scalar_one()
                for name, table, column in PROJECT_TABLES}


async def forget_project(engine: AsyncEngine, project_id: int) -> dict[str, int]:
    """Delete the project's rows from every table, in one transaction: all or nothing. Returns the rows deleted
    of each table."""
    async with engine.begin() as conn:
        for kind in (MODEL_LOCK, SNAPSHOT_LOCK):  # a model or snapshot being stored now commits first
            await lock_project(conn, kind, project_id)
        return {name: (await conn.execute(sa.delete(table).where(column == project_id))).rowcount
                for name, table, column in PROJECT_TABLES}
