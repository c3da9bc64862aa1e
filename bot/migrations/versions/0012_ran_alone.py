"""Whether an event's last run was alone in its worker: `events.ran_alone`.

Why: a worker process that dies (SIGKILL, out of memory, a segfault) leaves every event it ran with a lease
that expires, and each was counted an attempt when claimed. The crashed events came back one at a time, alone,
so that a poison event (one that kills its process) took its neighbours down only once; but that once still
cost each neighbour an attempt, and an event on its last attempt was dead-lettered for a crash it may not have
caused. The claim now records whether the event runs alone (`ran_alone`): a lease that expires on an event that
ran beside others is not counted (it runs again alone), one that expires on an event that ran alone is (it is
the poison, or its worker was killed twice in a row under it). Existing rows start at false: an event running
under the old code when its lease expires runs again alone without that attempt counted.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("ran_alone", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("events", "ran_alone")  # plain DROP COLUMN, as 0003's and 0011's downgrades
