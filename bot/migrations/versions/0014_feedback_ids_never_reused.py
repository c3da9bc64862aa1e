"""Feedback row ids are never given twice on SQLite: `feedback` becomes an AUTOINCREMENT table, as `history` did
in 0013.

Why: a recommender learns the feedback rows above the id of the last one it read (`label_mark`, kept in memory
and in snapshots; `bot.learning.new_labels`). SQLite gives a new row of a plain rowid table the largest id in it
plus one: once `reviewbot forget` deleted a project whose labels were the newest rows, the labels given next took
the forgotten rows' ids, below the mark of an engine still holding the project (one without merged MRs yet,
whose forget no history row tells), or of another project whose newest label `prune` had deleted; they were
never learned. With AUTOINCREMENT SQLite keeps the largest id it ever gave (`sqlite_sequence`) and gives only
larger ones, as PostgreSQL's sequence does: nothing changes there.

The table is built again (alembic's batch "move and copy", read from the database as it is) with every row
under its id, its foreign key, unique constraint and indexes. `sqlite_sequence` starts at the largest id kept (a
project forgotten before this revision may leave larger ones to be given once). Processes of the previous
release keep working on the new table.

Downgrade builds the table again without AUTOINCREMENT, rows and ids kept.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    """SQLite: `feedback` built again with or without AUTOINCREMENT; other databases: nothing to do."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("feedback", recreate="always",
                              table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
