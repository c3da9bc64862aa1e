"""Dashboard sign-outs that hold everywhere: `dashboard_signouts`.

Why: the dashboard's cookies are signed, checked by every process with no shared state, so POST /signout could
only clear the cookie of the browser that pressed it; a copy (another browser, a cookie jar taken from a shared
machine) stayed good for as long as the cookie lives (8 hours for a GitLab sign-in, a week for the token's). The
bot may run as several `serve` processes on one database: the sign-out is kept there, by the cookie's SHA-256,
until the cookie would have expired anyway, and every process looks for it (by its primary key) at each request.
The row "*" (`reviewbot signout-all`) ends every cookie issued until then. The table starts empty.

Processes of the previous release ignore the table: a sign-out they took is the old one, this browser only.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.db import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_signouts",
        sa.Column("session", sa.String(64)),
        sa.Column("ended_at", UTCDateTime, nullable=False),
        sa.Column("until", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("session", name="pk_dashboard_signouts"),
    )


def downgrade() -> None:
    op.drop_table("dashboard_signouts")
