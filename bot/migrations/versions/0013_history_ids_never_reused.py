"""History row ids are never given twice on SQLite: `history` becomes an AUTOINCREMENT table.

Why: a retraining or a snapshot is stored only while the history rows it was built from are
(`bot.storage.history.require_rows`), so that one running when `reviewbot forget` deleted the project stores
nothing. SQLite gives a new row of a plain rowid table the largest id in it plus one: once a project whose rows
were the newest was forgotten, its history imported again took the very ids of the forgotten rows, the check
found them, and a model or snapshot of the forgotten project was stored (and a running engine, reading the row
count and its newest row, took the project for unchanged). With AUTOINCREMENT SQLite keeps the largest id it
ever gave (`sqlite_sequence`) and gives only larger ones, as PostgreSQL's sequence does: nothing changes there.

SQLite cannot add AUTOINCREMENT to a table: the table is built again (alembic's batch "move and copy", read from
the database as it is) with every row under its id, and its unique constraint and index. `sqlite_sequence` starts
at the largest id kept (a project forgotten before this revision may leave larger ones to be given once). It took
0.4-0.5 s for u-boot's 40,000 changes (29 MB; `benchmarks/history_ids_migration.py`), the bot's writes waiting
meanwhile (its reads go on). Processes of the previous release keep working on the new table.

Downgrade builds the table again without AUTOINCREMENT, rows and ids kept.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28
"""
from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    """SQLite: `history` built again with or without AUTOINCREMENT; other databases: nothing to do."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("history", recreate="always",
                              table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
