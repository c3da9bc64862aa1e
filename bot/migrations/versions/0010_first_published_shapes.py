"""Bring `feedback_times` and `people` to today's shape where an earlier 0005 or 0007 created them.

Why: 0005 and 0007 were amended in place after commits on main had shipped them: 0005 first created
`feedback_times` without `aspect` (in its key since), 0007 first created `people` without `username_key`
and its index. A database migrated by such a commit is at 0005, 0007 or later by number, so no later
`reviewbot migrate` ran them again, and `serve` started on it (the revision is all it checks): every
approval or reviewer event then failed on `feedback_times.aspect` and every suggestion on
`people.username_key`, retried until dead. This revision repairs either table where it lacks the column and
changes nothing on a database today's 0005 and 0007 created.

A process of the release that created either table, still running on the repaired database, fails on it: on
`feedback_times` every approval or reviewer event (its upsert names the old key), on `people` every event
recording a username it has not written in its last ten minutes, so soon most (it leaves `username_key`
empty), each retried until dead. The run says so, for the operator to stop them (`NOTES`, printed by
`reviewbot migrate`).

`feedback_times` is created again, empty: a row of the first shape is the time of the newest approval *or*
reviewer change, and taking it as both would drop an approval handled after a later review request as
"older", the mistake `aspect` was added for. Empty, every event applies until a timed one was, as after
0005 on any database. `people` keeps its rows; `username_key` is filled from each username, casefolded
as `PeopleStore.learn` writes it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from bot.storage.db import UTCDateTime
from bot.storage.migrate import NOTES

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


STOP_THEM = ("stop them now; their failed events run again in the new processes, and dead ones once requeued "
             "(`reviewbot events list --failed`, `reviewbot events requeue ID`)")


def _note(text: str) -> None:
    context.config.attributes.setdefault(NOTES, []).append(text)


def _has_column(table: str, column: str) -> bool:
    return column in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def _feedback_times() -> None:
    if _has_column("feedback_times", "aspect"):
        return
    _note("`feedback_times` had the shape of an early 0005 and was created again: processes of the release that "
          f"made it fail every approval and reviewer event on it: {STOP_THEM}")
    op.drop_table("feedback_times")
    op.create_table(  # as 0005 creates it today
        "feedback_times",
        sa.Column("project_id", sa.BigInteger, autoincrement=False),
        sa.Column("mr_iid", sa.BigInteger, autoincrement=False),
        sa.Column("person", sa.String(255)),
        sa.Column("aspect", sa.String(16)),
        sa.Column("event_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("project_id", "mr_iid", "person", "aspect", name="pk_feedback_times"),
    )


def _people() -> None:
    if _has_column("people", "username_key"):
        return
    _note("`people` had the shape of an early 0007 and got its username_key: processes of the release that made "
          f"it fail every event recording a username they have not written in their last ten minutes (soon most "
          f"events): {STOP_THEM}")
    op.add_column("people", sa.Column("username_key", sa.String(255), nullable=True))
    people = sa.table("people", sa.column("user_id"), sa.column("username"), sa.column("username_key"))
    bind = op.get_bind()
    rows = [{"uid": uid, "name": name, "key": name.casefold()}
            for uid, name in bind.execute(sa.select(people.c.user_id, people.c.username))]
    if rows:
        bind.execute(sa.update(people).where(people.c.user_id == sa.bindparam("uid"),
                                             people.c.username == sa.bindparam("name"))
                     .values(username_key=sa.bindparam("key")), rows)
    with op.batch_alter_table("people") as batch:  # SQLite: a copy of the table (nothing refers to it)
        batch.alter_column("username_key", existing_type=sa.String(255), nullable=False)
    op.create_index("ix_people_username_key", "people", ["username_key"])


def upgrade() -> None:
    _feedback_times()
    _people()


def downgrade() -> None:
    pass  # the shapes repaired are those 0005 and 0007 create today: nothing to undo
