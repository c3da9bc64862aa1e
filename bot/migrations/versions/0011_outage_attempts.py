"""An event's retries through a GitLab outage, counted apart from its attempts: `events.outage_attempts`.

Why: every run of an event counted as an attempt, and an outage (GitLab not answering, 5xx, 429, a refused
token) was kept from using them up by allowing one attempt more than the event had each time. After a long
outage an event had dozens, so once GitLab answered, its first failure of its own (a timeout, a handler's
error) dead-lettered it at once, and so did a worker killed while running it (its lease expired "on the
last attempt"). A run that fails as an outage within `[worker] outage_hours` now moves from `attempts`
to `outage_attempts`: `attempts` counts what `max_attempts` limits, `outage_attempts` what the outage took
(it still lengthens the retry delay). Existing rows start at 0: an event retried through an outage before
this revision keeps the attempts it had then (`reviewbot events requeue ID` starts it afresh).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("outage_attempts", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("events", "outage_attempts")  # plain DROP COLUMN, as 0003's downgrade
