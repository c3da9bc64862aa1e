"""Who is importing a project's history, and until when: `projects.import_owner`, `projects.import_until`.

Why: every process (each `reviewbot worker`, the worker inside `reviewbot serve`) starts the import of a
project it has not seen imported. Two processes handling a new project's first events each paged through
its whole merged history: no harm to the rows (they are upserted) but twice the API calls of a large import,
inviting GitLab's rate limit. The import is now a lease on the project's row: one process takes it, renews
it while it pages and hands it back at the end; the others wait for `backfill_done`, and take the lease over
when it expires (its holder died). Existing rows start with no holder.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from bot.storage.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("import_owner", sa.String(255), nullable=True))
    op.add_column("projects", sa.Column("import_until", UTCDateTime, nullable=True))


def downgrade() -> None:
    op.drop_column("projects", "import_until")  # plain DROP COLUMN, as 0003's downgrade
    op.drop_column("projects", "import_owner")
