"""Row ids are never given twice on SQLite: `feedback`, `events`, `suggestions`, `models` and `snapshots` become
AUTOINCREMENT tables, as `history` did in 0013.

Why: SQLite gives a new row of a plain rowid table the largest id in it plus one. Once `reviewbot forget` deleted
a project whose rows were the newest, the rows written next took the forgotten rows' ids, ids that live on
outside the rows:
- `feedback`: a recommender learns the rows above the id of the last one it read (`label_mark`, kept in memory
  and in snapshots; `bot.learning.new_labels`): labels given after the forget fell under the mark of an engine
  still holding the project (one without merged MRs yet, whose forget no history row tells), or of another
  project whose newest label `prune` had deleted, and were never learned;
- `events`: a worker claims, renews, finishes and parks an event by its id, and `feedback.source_event_id` and
  `suggestions.event_id` name it: an event of the forgotten project still running in a worker, and a new event
  given its id, could be taken one for the other (the new one marked done by the old one's end);
- `suggestions`: `feedback.suggestion_id` names one: a label written while the forget ran could name a deleted
  suggestion that a new one then stood for;
- `models`: the active model's id tells a process's cached dashboard figures whether a model changed
  (`ProjectStore.marker`); `snapshots`: the logs name a snapshot by its id.
With AUTOINCREMENT SQLite keeps the largest id it ever gave (`sqlite_sequence`) and gives only larger ones, as
PostgreSQL's sequences do: nothing changes there. `projects`, `bot_comments`, `feedback_times`, `optouts` and
`people` have no generated id.

Each table is built again (alembic's batch "move and copy", read from the database as it is) with every row under
its id, its foreign key, unique and check constraints and indexes (the primary key loses its name, which SQLite
never uses: AUTOINCREMENT wants the key on its column, where alembic names none). Dropping the old `suggestions` would set every
`feedback.suggestion_id` NULL (foreign keys are on, ON DELETE SET NULL, and a transaction cannot turn them off):
the links are kept aside and put back. `sqlite_sequence` starts at the largest id kept (a project forgotten
before this revision may leave larger ones to be given once). The events take longest: 16-26 s for 200,000
stored webhooks (950 MB, about 4 KB each; `benchmarks/history_ids_migration.py --events 200000`, load 1-3),
against 2.4 s for 50,000 suggestions with 200,000 feedback rows on them, and 1.8-2.7 s for a u-boot-size
project's whole database (100 MB: 40,000 changes, two 11 MB snapshots, 46,000 suggestions, 133,000 feedback rows,
5,000 webhooks; `--whole`, load 3-8). The bot's writes wait meanwhile, as long (its
reads go on: `serve` spools a webhook it could not store within 7 s, and stores it afterwards), and the file
grows by the size of the tables copied (the space freed is reused; `VACUUM` gives it back). Processes of the
previous release keep working on the new tables.

Downgrade builds the tables again without AUTOINCREMENT, rows, ids and links kept.

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

TABLES = ("feedback", "events", "suggestions", "models", "snapshots")
LINKS = "_reviewbot_feedback_links"  # feedback.suggestion_id while `suggestions` is built again


def _rebuild(table: str, autoincrement: bool) -> None:
    """`table` built again with or without AUTOINCREMENT."""
    with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
        pass


def _rebuild_suggestions(autoincrement: bool) -> None:
    """`suggestions` built again, the feedback rows' links to it kept: the DROP of the old table sets them NULL."""
    op.execute(f"CREATE TEMP TABLE {LINKS} (feedback_id INTEGER PRIMARY KEY, suggestion_id INTEGER NOT NULL)")
    op.execute(f"INSERT INTO {LINKS} SELECT id, suggestion_id FROM feedback WHERE suggestion_id IS NOT NULL")
    _rebuild("suggestions", autoincrement)
    op.execute(f"UPDATE feedback SET suggestion_id = (SELECT suggestion_id FROM {LINKS} WHERE feedback_id = "
               f"feedback.id) WHERE id IN (SELECT feedback_id FROM {LINKS})")
    op.execute(f"DROP TABLE {LINKS}")


def _rebuild_all(autoincrement: bool) -> None:
    """SQLite: every table of `TABLES` built again; other databases: nothing to do."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        if table == "suggestions":
            _rebuild_suggestions(autoincrement)
        else:
            _rebuild(table, autoincrement)


def upgrade() -> None:
    _rebuild_all(True)


def downgrade() -> None:
    _rebuild_all(False)
