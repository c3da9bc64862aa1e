"""Storage on SQLite and PostgreSQL: migrations, the event queue, and every store."""
from __future__ import annotations

import asyncio
import os
import random
import uuid
from datetime import datetime, timedelta, timezone

import aiosqlite
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.storage import EventRow, SchemaOutOfDate, Storage, StorageError, migrate, utcnow
from bot.storage.db import SQLITE_WAL_LIMIT_BYTES, UTCDateTime, create_engine
from bot.storage.events import backoff_delay, dedupe_key_for
from bot.storage.migrate import alembic_config, current_revisions, upgrade
from bot.storage.db import MODEL_LOCK, database_unavailable, lock_project
from bot.storage.forget import forget_project
from bot.people import former_names
from bot.storage.people import REFRESH, PeopleStore, holders_query
from bot.storage.tables import events as events_table, feedback_times, history, metadata, models as models_table
from bot.storage.tables import dashboard_signouts, feedback, projects as projects_table, snapshots as snapshots_table, suggestions
from graph.model import Change

LEASE = 60.0


async def put(storage: Storage, key: str, *, mr_iid: int | None = 1, project_id: int = 7) -> int:
    event_id, _ = await storage.events.store_event(
        dedupe_key=key, kind="Merge Request Hook", action="open", project_id=project_id, mr_iid=mr_iid,
        headers={"X-Gitlab-Event": "Merge Request Hook"}, body={"object_kind": "merge_request"},
    )
    return event_id


# --- migrations -------------------------------------------------------------------------------

async def test_migrated_schema_matches_the_table_definitions(storage):
    def diff(conn):
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)

    async with storage.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    assert await storage.schema_is_current()


async def test_migrate_twice_is_a_no_op(database_url):
    assert await migrate(database_url) == await migrate(database_url)


async def downgrade(url: str, revision: str) -> set[str]:
    """Alembic's downgrade on the connection, as `migrate` upgrades (the code has no downgrade command)."""
    def run(conn: sa.Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run)
        return await current_revisions(engine)
    finally:
        await engine.dispose()


async def test_revision_0003_upgrades_a_0002_database_with_rows_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0002") == {"0002"}
    engine = create_engine(url)
    async with engine.begin() as conn:  # a row as 0002 stored it: no author, no files
        sid = (await conn.execute(sa.insert(suggestions).values(
            project_id=1, mr_iid=3, created_at=datetime(2025, 1, 2, tzinfo=timezone.utc),
            people=[{"username": "bob"}], model_version="v").returning(suggestions.c.id))).scalar_one()
    await engine.dispose()
    storage = Storage(url)
    try:
        await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid, source_event_id=5)
        assert await migrate(url, "0003") == {"0003"}
        old = await storage.suggestions.latest(1, 3)
        assert (old.id, old.people, old.author, old.files) == (sid, [{"username": "bob"}], None, None)
        await storage.suggestions.add(1, 3, [], "v", author="ann", files=["a.c"])
        assert await downgrade(url, "0002") == {"0002"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("suggestions")])
        assert "author" not in columns and "files" not in columns
        assert [r.suggestion_id for r in await storage.feedback.list(1)] == [sid]  # the copy did not unlink it
        assert await migrate(url, "0003") == {"0003"}
        assert [(r.author, r.files) for r in await storage.suggestions.list(1)] == [(None, None), (None, None)]
    finally:
        await storage.close()


async def test_revision_0004_keeps_older_history_rows_without_renames_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0003") == {"0003"}
    engine = create_engine(url)
    async with engine.begin() as conn:  # a row as 0003 stored it: no renames
        await conn.execute(sa.insert(history).values(
            project_id=1, change_id="!1", time=100, author="ann", reviewers=["bob"], ackers=[], files=["b.c"]))
    await engine.dispose()
    storage = Storage(url)
    try:
        assert await migrate(url, "0004") == {"0004"}
        moved = Change("!2", 200, "ann", ("cy",), ("c.c",), renames=(("b.c", "c.c"),))
        await storage.history.upsert(1, [moved])
        assert await storage.history.load(1) == [Change("!1", 100, "ann", ("bob",), ("b.c",)), moved]
        assert await downgrade(url, "0003") == {"0003"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("history")])
        assert "renames" not in columns and "files" in columns
    finally:
        await storage.close()


async def test_revision_0005_adds_the_times_of_the_events_applied_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0004") == {"0004"}
    storage = Storage(url)
    try:
        await storage.feedback.record(1, 3, "bob", "approved", source_event_id=5)  # a row as 0004 stored it
        assert await migrate(url, "0005") == {"0005"}
        at = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
        assert await storage.feedback.newer_applied(1, 3, "bob", at) is None  # nothing kept yet: applies
        assert await storage.feedback.newer_applied(1, 3, "bob", at - timedelta(seconds=1)) == at
        assert await downgrade(url, "0004") == {"0004"}
        async with storage.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "feedback_times" not in tables and [r.label for r in await storage.feedback.list(1)] == ["approved"]
    finally:
        await storage.close()


async def test_revision_0006_adds_the_import_lease_to_projects_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0005") == {"0005"}
    engine = create_engine(url)
    async with engine.begin() as conn:  # a row as 0005 stored it: no lease
        await conn.execute(sa.insert(projects_table).values(id=1, path="g/p", backfill_cursor="c", settings={}))
    await engine.dispose()
    storage = Storage(url)
    try:
        assert await migrate(url, "0006") == {"0006"}
        row = await storage.projects.get(1)
        assert (row.backfill_cursor, row.import_owner, row.import_until) == ("c", None, None)
        assert await storage.projects.claim_import(1, "a", LEASE)
        assert not await storage.projects.claim_import(1, "b", LEASE)
        assert await downgrade(url, "0005") == {"0005"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("projects")])
            cursor = (await conn.execute(sa.text("SELECT backfill_cursor FROM projects WHERE id = 1"))).scalar_one()
        assert "import_owner" not in columns and "import_until" not in columns and cursor == "c"
        assert await migrate(url, "0006") == {"0006"} and (await storage.projects.get(1)).import_owner is None
    finally:
        await storage.close()


async def test_revision_0007_adds_the_usernames_seen_per_user_id_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0006") == {"0006"}
    storage = Storage(url)
    try:
        await storage.optouts.set(1, "alice")  # a row as 0006 stored it
        assert await migrate(url, "0007") == {"0007"}
        assert await storage.people.sightings([7]) == []  # nothing known yet: learned from now on
        assert await storage.people.learn([(7, "Alice")]) == 1
        assert [s.username for s in await storage.people.sightings([7])] == ["Alice"]
        async with storage.engine.connect() as conn:
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("people"))
            keys = (await conn.execute(sa.text("SELECT username_key FROM people"))).scalars().all()
        assert [(i["name"], i["column_names"]) for i in indexes] == [("ix_people_username_key", ["username_key"])]
        assert keys == ["alice"]
        assert await downgrade(url, "0006") == {"0006"}
        async with storage.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert "people" not in tables and await storage.optouts.active(1) == {"alice"}
    finally:
        await storage.close()


async def test_revision_0008_indexes_the_suggestion_a_label_judges_and_goes_back(blank_database_url):
    """Without it, deleting a suggestion read the whole feedback table (the foreign key's SET NULL)."""
    url = blank_database_url
    assert await migrate(url, "0007") == {"0007"}
    storage = Storage(url)

    async def indexed() -> bool:
        async with storage.engine.connect() as conn:
            found = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("feedback"))
        return any(ix["column_names"] == ["suggestion_id"] for ix in found)

    try:
        sid = await storage.suggestions.add(1, 3, [], "v")  # rows as 0007 stored them
        await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid)
        assert not await indexed()
        assert await migrate(url, "0008") == {"0008"} and await indexed()
        assert [r.suggestion_id for r in await storage.feedback.list(1)] == [sid]
        assert await downgrade(url, "0007") == {"0007"} and not await indexed()
    finally:
        await storage.close()


async def test_revision_0009_keeps_the_discussion_of_the_bots_comment_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0008") == {"0008"}
    storage = Storage(url)
    try:
        await storage.comments.set_note(1, 3, 77)  # a row as 0008 stored it
        assert await migrate(url, "0009") == {"0009"}
        assert (await storage.comments.get(1, 3)).discussion_id is None  # not known yet: asked when needed
        assert await storage.comments.set_discussion(1, 3, 77, "a" * 40)
        assert await downgrade(url, "0008") == {"0008"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("bot_comments")])
            note_id = (await conn.execute(sa.text("SELECT note_id FROM bot_comments"))).scalar_one()
        assert "discussion_id" not in columns and note_id == 77
    finally:
        await storage.close()


async def test_revision_0011_counts_outage_retries_apart_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0010") == {"0010"}
    storage = Storage(url)
    try:
        event_id = await put(storage, "k")  # a row as 0010 stored it
        async with storage.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE events SET status = 'failed', attempts = 4"))
        assert await migrate(url) == {"0015"}
        row = await storage.events.get(event_id)
        assert (row.status, row.attempts, row.outage_attempts) == ("failed", 4, 0)
        await outage_failures(storage, event_id, 1, max_attempts=6)
        row = await storage.events.get(event_id)
        assert (row.status, row.attempts, row.outage_attempts) == ("failed", 4, 1)
        assert await downgrade(url, "0010") == {"0010"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("events")])
            kept = (await conn.execute(sa.text("SELECT status, attempts FROM events"))).one()
        assert "outage_attempts" not in columns and tuple(kept) == ("failed", 4)
        assert await migrate(url) == {"0015"}
        assert (await storage.events.get(event_id)).outage_attempts == 0
    finally:
        await storage.close()


async def test_revision_0012_says_whether_an_event_ran_alone_and_goes_back(blank_database_url):
    """An event running when 0012 comes in has no record of running alone: a lease expiring on it is not counted
    (it runs again alone), even on its last attempt."""
    url = blank_database_url
    assert await migrate(url, "0011") == {"0011"}
    storage = Storage(url)
    try:
        event_id = await put(storage, "k")  # a row as 0011 stored it, then claimed and its worker killed
        async with storage.engine.begin() as conn:
            await conn.execute(sa.update(events_table).values(
                status="running", attempts=2, lease_owner="gone", lease_expires_at=datetime.now(timezone.utc)))
        assert await migrate(url, "0012") == {"0012"}
        assert (await storage.events.get(event_id)).ran_alone is False
        [row] = await storage.events.claim("w", LEASE, 2, max_attempts=2)
        assert (row.id, row.attempts, row.ran_alone) == (event_id, 2, True)
        assert await downgrade(url, "0011") == {"0011"}
        async with storage.engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("events")])
            kept = (await conn.execute(sa.text("SELECT status, attempts FROM events"))).one()
        assert "ran_alone" not in columns and tuple(kept) == ("running", 2)
        assert await migrate(url, "0012") == {"0012"}
        assert (await storage.events.get(event_id)).ran_alone is False
    finally:
        await storage.close()


async def _history_rows(storage: Storage) -> list[tuple]:
    async with storage.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.select(history).order_by(history.c.id))).all()]


async def test_revision_0013_keeps_every_history_row_under_its_id_and_never_gives_an_id_twice(blank_database_url):
    """SQLite gave a new history row the largest id plus one: a project forgotten while its rows were the newest
    and imported again took the forgotten rows' ids, and a model built on those was stored (see
    `tests/test_cli_forget.py`). 0013 builds the table again with AUTOINCREMENT (PostgreSQL's ids come from a
    sequence already: nothing to do). Every row keeps its id and values, the constraint and index stay; and back."""
    url = blank_database_url
    assert await migrate(url, "0012") == {"0012"}
    storage = Storage(url)
    try:
        await storage.history.upsert(1, [
            Change("!1", 1_700_000_000, "ann", ("bob",), ("a.c", "b.c"), title="t", ackers=("cy",), committer="dee",
                   bot_author=True, renames=(("old.c", "a.c"),)),
            Change("!2", 1_700_000_100, "bob", (), ("a.c",))])
        await storage.history.upsert(2, [Change("!1", 1_700_000_200, "cy", ("ann",), ("z.c",))])
        async with storage.engine.begin() as conn:  # a row as 0003 left it: no renames known
            await conn.execute(sa.update(history).where(history.c.change_id == "!2").values(renames=None))
        before = await _history_rows(storage)
        assert await migrate(url) == {"0015"}
        assert await _history_rows(storage) == before
        async with storage.engine.connect() as conn:
            assert await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), metadata)) == []
        await storage.history.upsert(1, [Change("!2", 1_700_000_100, "bob", (), ("a.c",))])  # (project, change) unique
        assert await storage.history.count(1) == 2
        newest = max(r[0] for r in before)
        async with storage.engine.begin() as conn:  # as `reviewbot forget` of the project with the newest row
            await conn.execute(sa.delete(history).where(history.c.project_id == 2))
        await storage.history.upsert(3, [Change("!1", 1_700_000_300, "ann", (), ("y.c",))])
        assert [r[0] for r in await _history_rows(storage)][-1] > newest
        kept = await _history_rows(storage)
        assert await downgrade(url, "0012") == {"0012"}
        assert await _history_rows(storage) == kept
        assert await migrate(url) == {"0015"} and await _history_rows(storage) == kept
    finally:
        await storage.close()



ID_TABLES_0014 = (feedback, events_table, suggestions, models_table, snapshots_table)  # AUTOINCREMENT since 0014


async def _rows_0014(storage: Storage) -> dict[str, list[tuple]]:
    async with storage.engine.connect() as conn:
        return {t.name: [tuple(r) for r in (await conn.execute(sa.select(t).order_by(t.c.id))).all()]
                for t in ID_TABLES_0014}


def _shapes(conn: sa.Connection) -> dict[str, str]:
    """Each 0014 table's columns, keys, constraints and indexes as the database reports them (types as text). The
    primary key's name aside: SQLite's AUTOINCREMENT wants the key on its column, where SQLAlchemy names none."""
    inspector = sa.inspect(conn)
    return {t.name: repr((inspector.get_columns(t.name), inspector.get_pk_constraint(t.name)["constrained_columns"],
                          inspector.get_foreign_keys(t.name), inspector.get_unique_constraints(t.name),
                          inspector.get_check_constraints(t.name), inspector.get_indexes(t.name)))
            for t in ID_TABLES_0014}


async def _seed_0013(storage: Storage, *pids: int) -> None:
    """Rows of each project in every table 0014 builds again, as 0013's code stored them; the last one's newest."""
    for pid in pids:
        event_id = await put(storage, f"k{pid}", project_id=pid)
        sid = await storage.suggestions.add(pid, 4, [{"username": "bob"}], "v1", event_id=event_id, author="ann",
                                            files=["a.c"])
        await storage.feedback.record(pid, 4, "bob", "removed", suggestion_id=sid, source_event_id=event_id)
        await storage.feedback.record(pid, 5, "cy", "accepted", value={"action": "award"}, source_event_id=event_id)
        await storage.models.save(pid, "v1", b"m" * 10, backtest_score=0.5)
        await storage.snapshots.save(pid, b"s" * 10, format="f", config="c", history_count=1, history_time=None,
                                     boundary=[])


async def test_revision_0014_keeps_every_row_under_its_id_and_never_gives_an_id_twice(blank_database_url):
    """SQLite gave a new row the largest id plus one: after `reviewbot forget` deleted the newest rows, the next
    took their ids, which live on outside the rows (a learner's feedback mark, a worker's event, a feedback row's
    suggestion: see `tests/test_cli_forget.py`). 0014 builds feedback, events, suggestions, models and snapshots
    again with AUTOINCREMENT; every row keeps its id and values (the feedback rows their suggestion, though the
    old suggestions table is dropped under them), every key, constraint and index stays; and back."""
    url = blank_database_url
    assert await migrate(url, "0013") == {"0013"}
    storage = Storage(url)
    try:
        await _seed_0013(storage, 1, 2)
        [claimed] = await storage.events.claim("w", LEASE)
        assert await storage.events.complete(claimed.id, owner="w")
        before = await _rows_0014(storage)
        async with storage.engine.connect() as conn:
            shapes = await conn.run_sync(_shapes)
        assert await migrate(url, "0014") == {"0014"}
        assert await _rows_0014(storage) == before
        assert sum(r[1] is not None for r in before["feedback"]) == 2  # feedback rows' suggestion_id
        async with storage.engine.connect() as conn:
            assert await conn.run_sync(_shapes) == shapes
        assert not await storage.feedback.record(1, 4, "bob", "removed", source_event_id=1)  # (event, person, label)
        await forget_project(storage.engine, 2)  # the project with the newest rows
        await _seed_0013(storage, 3)
        after = await _rows_0014(storage)
        assert {name: after[name][-1][0] > before[name][-1][0] for name in after} == {name: True for name in after}
        assert await downgrade(url, "0013") == {"0013"}
        assert await _rows_0014(storage) == after
        async with storage.engine.connect() as conn:
            assert await conn.run_sync(_shapes) == shapes
        assert await migrate(url) == {"0015"} and await _rows_0014(storage) == after
        async with storage.engine.connect() as conn:  # the tables as the code declares them (0015 adds one)
            assert await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), metadata)) == []
    finally:
        await storage.close()


async def test_revision_0015_keeps_dashboard_sign_outs_and_goes_back(blank_database_url):
    url = blank_database_url
    assert await migrate(url, "0014") == {"0014"}
    storage = Storage(url)
    try:
        assert await migrate(url) == {"0015"}
        issued = utcnow() - timedelta(minutes=1)
        await storage.signouts.end("a" * 64, until=utcnow() + timedelta(hours=1))
        assert await storage.signouts.ended("a" * 64, issued) and not await storage.signouts.ended("b" * 64, issued)
        assert await downgrade(url, "0014") == {"0014"}
        async with storage.engine.connect() as conn:
            assert "dashboard_signouts" not in await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert await migrate(url) == {"0015"} and not await storage.signouts.ended("a" * 64, issued)
    finally:
        await storage.close()


def _first_published_shapes() -> sa.MetaData:
    """`feedback_times` and `people` as 0005 and 0007 first created them (commits 008c9d6 and 41b1790), before
    both files were amended in place: no `aspect`, no `username_key` (nor its index)."""
    old = sa.MetaData()
    sa.Table("feedback_times", old, sa.Column("project_id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("mr_iid", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("person", sa.String(255), primary_key=True),
             sa.Column("event_at", UTCDateTime, nullable=False))
    sa.Table("people", old, sa.Column("user_id", sa.BigInteger, primary_key=True, autoincrement=False),
             sa.Column("username", sa.String(255), primary_key=True),
             sa.Column("seen_at", UTCDateTime, nullable=False))
    return old


async def test_revision_0010_repairs_the_tables_0005_and_0007_first_created(blank_database_url):
    """A database migrated by a release with the first 0005 or 0007 is at that revision by number, so no later
    `reviewbot migrate` ran them again: every approval or reviewer event failed on `feedback_times.aspect`,
    every suggestion on `people.username_key`, retried until dead."""
    url = blank_database_url
    assert await migrate(url, "0009") == {"0009"}
    at = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)
    old = _first_published_shapes()
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # the database as such a release left it, with its rows
            await conn.execute(sa.text("DROP INDEX ix_people_username_key"))
            await conn.execute(sa.text("DROP TABLE people"))
            await conn.execute(sa.text("DROP TABLE feedback_times"))
            await conn.run_sync(old.create_all)
            await conn.execute(sa.insert(old.tables["feedback_times"]).values(
                project_id=1, mr_iid=3, person="bob", event_at=at))
            await conn.execute(sa.insert(old.tables["people"]), [
                {"user_id": 7, "username": "Alice", "seen_at": at},
                {"user_id": 7, "username": "alice.w", "seen_at": at},
                {"user_id": 9, "username": "STRASSE", "seen_at": at}])
    finally:
        await engine.dispose()
    assert await migrate(url) == {"0015"}
    storage = Storage(url)
    try:
        async with storage.engine.connect() as conn:
            assert await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), metadata)) == []
            keys = (await conn.execute(sa.text("SELECT username, username_key FROM people ORDER BY username"))).all()
        assert [tuple(k) for k in keys] == [("Alice", "alice"), ("STRASSE", "strasse"), ("alice.w", "alice.w")]
        assert {s.username for s in await storage.people.sightings([7])} == {"Alice", "alice.w"}
        assert await storage.feedback.newer_applied(1, 3, "bob", at, aspect="approval") is None
        assert await storage.feedback.newer_applied(1, 3, "bob", at - timedelta(seconds=1), aspect="approval") == at
        assert await storage.feedback.newer_applied(1, 3, "bob", at - timedelta(seconds=9)) is None  # "reviewer"
        assert await migrate(url) == {"0015"}
    finally:
        await storage.close()


async def test_revision_0010_says_which_table_it_repaired_and_what_the_old_processes_do(blank_database_url):
    """A process of the release that created either first shape, still running, fails on the repaired table
    (an approval or reviewer event on `feedback_times`, any name new to it on `people.username_key`, retried
    until dead): the migrate that repairs it says so, and to stop them; one that repaired nothing says nothing."""
    url = blank_database_url
    assert await migrate(url, "0009") == {"0009"}
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ix_people_username_key"))
            await conn.execute(sa.text("DROP TABLE people"))
            await conn.execute(sa.text("DROP TABLE feedback_times"))
            await conn.run_sync(_first_published_shapes().create_all)
    finally:
        await engine.dispose()
    done = await upgrade(url)
    assert (done.before, done.after) == ({"0009"}, {"0015"}) and len(done.notes) == 2
    assert all("stop them" in note and "events requeue" in note for note in done.notes)
    assert "feedback_times" in done.notes[0] and "approval and reviewer event" in done.notes[0]
    assert "people" in done.notes[1] and "username_key" in done.notes[1]
    assert (await upgrade(url)).notes == []


async def test_a_migrate_that_fails_changes_nothing_and_can_run_again(blank_database_url):
    """A failed `reviewbot migrate` (a lock timeout, a killed release) must leave the database as it was: on
    SQLite the DDL ran outside any transaction, so 0004's column stayed while the revision stayed at 0003, and
    every later run failed with "duplicate column name: renames"."""
    url = blank_database_url
    assert await migrate(url, "0003") == {"0003"}
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:  # in 0005's way: its CREATE TABLE fails after 0004 ran
            await conn.execute(sa.text("CREATE TABLE feedback_times (x INTEGER)"))
        with pytest.raises(sa.exc.DBAPIError, match="feedback_times"):
            await migrate(url)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: [col["name"] for col in sa.inspect(c).get_columns("history")])
        assert await current_revisions(engine) == {"0003"} and "renames" not in columns
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE feedback_times"))
    finally:
        await engine.dispose()
    assert await migrate(url) == await migrate(url)


async def test_a_migrate_waiting_for_a_table_gives_way_to_the_running_bot(blank_database_url):
    """PostgreSQL: a transaction left open on a table a migration alters (an idle session, a long read) made
    `reviewbot migrate` wait for it without end, and every query of that table queued behind the waiting ALTER:
    the bot still running on the database stalled with it (a read of `bot_comments` waited 33 s behind a 40 s
    transaction, as long as the migrate). A try now waits `lock_wait` at most, then gives way and tries again;
    after `tries` it fails, the database unchanged, naming the cause."""
    url = blank_database_url
    if not url.startswith("postgresql"):
        pytest.skip("on SQLite readers never wait for the migration (WAL), writers wait busy_timeout")
    assert await migrate(url, "0008") == {"0008"}
    engine = create_engine(url)
    try:
        async with engine.connect() as holder:
            await holder.execute(sa.text("SELECT count(*) FROM bot_comments"))  # its transaction keeps the lock
            waiting = asyncio.create_task(migrate(url, lock_wait=0.5, tries=3))
            await asyncio.sleep(0.3)
            async with engine.connect() as bot:  # the running bot reads the table meanwhile: not held up
                await asyncio.wait_for(bot.execute(sa.text("SELECT count(*) FROM bot_comments")), 3)
            with pytest.raises(StorageError, match=r"kept a lock on a table .* run `reviewbot migrate` again"):
                await asyncio.wait_for(waiting, 20)
        assert await current_revisions(engine) == {"0008"}

        async def release_soon() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT count(*) FROM bot_comments"))
                await asyncio.sleep(1)
        holding = asyncio.create_task(release_soon())
        await asyncio.sleep(0.2)
        assert await asyncio.wait_for(migrate(url, lock_wait=0.5, tries=10), 20) == {"0015"}  # a later try
        await holding
    finally:
        await engine.dispose()


async def test_a_migrate_that_waited_out_the_sqlite_write_lock_names_the_cause_and_the_fix(tmp_path, monkeypatch):
    """SQLite: another connection keeping the write lock past busy_timeout failed the run with the driver's
    words alone ("OperationalError: database is locked"); now it says what held it and what to do, as the
    PostgreSQL lock wait does. Nothing was changed."""
    import sqlite3

    import bot.storage.db

    path = tmp_path / "locked.sqlite3"
    url = f"sqlite+aiosqlite:///{path}"
    assert await migrate(url, "0008") == {"0008"}
    monkeypatch.setattr(bot.storage.db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError, match=r"another process kept the database's write lock for 0.3 s .* "
                                               r"run `reviewbot migrate` again"):
            await migrate(url)
    finally:
        holder.close()
    engine = create_engine(url)
    try:
        assert await current_revisions(engine) == {"0008"}
    finally:
        await engine.dispose()
    assert await migrate(url) == {"0015"}


async def test_open_refuses_an_unmigrated_database_naming_the_fix(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}"
    with pytest.raises(SchemaOutOfDate, match="no SQLite database file at .*`reviewbot migrate`"):
        await Storage.open(url)
    (tmp_path / "empty.sqlite3").touch()
    with pytest.raises(SchemaOutOfDate, match="run `reviewbot migrate`") as caught:
        await Storage.open(url)
    # in plain words, the first message of someone who started the bot before `reviewbot migrate`
    assert str(caught.value).startswith("the database was never migrated: this version of reviewbot needs 0015")
    await migrate(url)
    storage = await Storage.open(url)
    await storage.close()


async def test_the_sqlite_write_ahead_log_shrinks_after_a_burst(sqlite_url):
    """A burst of writes grows the WAL file past its limit; once checkpointed, the next write cuts it back
    (it stayed at its high-water mark: 9 MB after a soak, for good)."""
    path = sqlite_url.removeprefix("sqlite+aiosqlite:///") + "-wal"
    engine = create_engine(sqlite_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE burst (body TEXT)"))
            for _ in range(12):
                await conn.execute(sa.text("INSERT INTO burst VALUES (:b)"), {"b": "x" * 1024 * 1024})
        grown = os.path.getsize(path)
        async with engine.begin() as conn:
            await conn.execute(sa.text("PRAGMA wal_checkpoint(PASSIVE)"))
        for _ in range(2):
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO burst VALUES ('y')"))
        assert grown > SQLITE_WAL_LIMIT_BYTES >= os.path.getsize(path)
    finally:
        await engine.dispose()


async def test_the_sqlite_driver_closes_when_stopped_meanwhile():
    """What SQLAlchemy does to a SQLite connection cancelled while it closes (it "terminates" it: the graceful
    close, then the driver's stop). aiosqlite 0.22 then waits for good for its stopped thread (a test run hung in
    its event loop's teardown): pyproject.toml keeps it below 0.22."""
    conn = await aiosqlite.connect(":memory:")
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0)
    stop = getattr(conn, "stop", None) or conn._stop_running  # 0.22's public stop; before it, the private one
    stop()
    await asyncio.wait_for(closing, 10)


async def test_ping_names_the_cause_when_the_database_is_unreachable(tmp_path):
    storage = Storage(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'db.sqlite3'}")
    with pytest.raises(StorageError, match="unreachable: OperationalError"):
        await storage.ping()
    await storage.close()


@pytest.mark.parametrize("url, said", [
    ("postgresql://u:secret-pw@h:abc/db", "cannot be used: invalid literal for int()"),
    ("postgresql://u:secret-pw@127.0.0.1:5432/db?foo=1", "unreachable: TypeError: connect() got an unexpected"),
])
async def test_a_database_url_sqlalchemy_cannot_use_is_a_storage_error(url, said):
    """Both passed the settings check and ended in a traceback (a port that is no number, an option the
    driver does not take); the password stays out of the message."""
    with pytest.raises(StorageError) as caught:
        await Storage.open(url)
    assert said in str(caught.value) and "secret-pw" not in str(caught.value)


async def test_naive_datetimes_are_refused(storage):
    with pytest.raises(sa.exc.StatementError, match="timezone-aware"):
        await storage.optouts.set(1, "ann", until=datetime(2030, 1, 1))


# --- event queue: storing and deduplicating -----------------------------------------------------

@pytest.mark.parametrize(
    ("headers", "prefix"),
    [
        ({"Idempotency-Key": "k1", "X-Gitlab-Event-UUID": "e", "X-Gitlab-Webhook-UUID": "w"}, "idem:k1"),
        ({"x-gitlab-event-uuid": "e", "x-gitlab-webhook-uuid": "w"}, "sha256:"),  # a resend gets a new UUID
        ({"X-Gitlab-Event-UUID": "e"}, "sha256:"),
        ({}, "sha256:"),
    ],
)
def test_dedupe_key_prefers_idempotency_key_then_the_body(headers, prefix):
    assert dedupe_key_for(headers, b"{}", "Note Hook").startswith(prefix)


def test_dedupe_key_of_the_body_depends_on_body_and_kind():
    keys = {dedupe_key_for({}, b, k) for b in (b"{}", b"[]") for k in ("Note Hook", "Emoji Hook")}
    assert len(keys) == 4 and all(len(k) <= 200 for k in keys)
    assert len(dedupe_key_for({"Idempotency-Key": "x" * 500}, b"", "N")) <= 200


async def test_a_duplicate_delivery_is_stored_once(storage):
    first = await storage.events.store_event(dedupe_key="k", kind="Note Hook", headers={}, body={"a": 1})
    second = await storage.events.store_event(dedupe_key="k", kind="Note Hook", headers={}, body={"a": 2})
    assert first == (first[0], True) and second == (first[0], False)
    assert (await storage.events.depth())["queued"] == 1


async def test_simultaneous_duplicates_are_stored_once(storage):
    results = await asyncio.gather(*(
        storage.events.store_event(dedupe_key="same", kind="Note Hook", headers={}, body={}) for _ in range(6)
    ))
    assert len({event_id for event_id, _ in results}) == 1
    assert sum(is_new for _, is_new in results) == 1


async def test_the_same_event_from_another_hook_is_its_twin(storage):
    """GitLab draws `X-Gitlab-Webhook-UUID` anew for every delivery, so it names no hook. An earlier, done event
    with an equal body is a twin; a Merge Request Hook's only with no other body of the MR's hooks stored between
    them: approved, taken back and approved again within a minute repeats one body, and that approval is new. A
    delivery without the header (GitLab before 16.2) is not checked."""
    async def put(kind: str, body: dict, *, done: bool = True, named: bool = True) -> EventRow:
        headers = {"X-Gitlab-Event": kind, **({"X-Gitlab-Webhook-UUID": str(uuid.uuid4())} if named else {})}
        event_id, _ = await storage.events.store_event(dedupe_key=str(uuid.uuid4()), kind=kind, action="x",
                                                       project_id=7, mr_iid=1, headers=headers, body=body)
        if done:  # the earlier ones still pending would hold the claim back (one MR's events run in order)
            async with storage.engine.begin() as conn:
                await conn.execute(sa.update(events_table).where(events_table.c.id == event_id).values(status="done"))
        row = await storage.events.get(event_id)
        assert row is not None
        return row

    mr_hook = "Merge Request Hook"
    approve = {"object_kind": "merge_request", "object_attributes": {"iid": 1, "action": "approval"}}
    unapprove = {"object_kind": "merge_request", "object_attributes": {"iid": 1, "action": "unapproval"}}
    note = {"object_kind": "note", "object_attributes": {"id": 5, "note": "/reviewers reroll"}}
    first = await put(mr_hook, approve)
    copy = await put(mr_hook, approve, done=False)
    await put(mr_hook, unapprove)
    again = await put(mr_hook, approve, done=False)
    unnamed = await put(mr_hook, approve, done=False, named=False)
    said = await put("Note Hook", note)
    await put(mr_hook, unapprove)
    note_copy = await put("Note Hook", note, done=False)
    assert await storage.events.twin_done(copy) == first.id
    assert await storage.events.twin_done(note_copy) == said.id
    assert [await storage.events.twin_done(r) for r in (first, again, unnamed, said)] == [None] * 4


async def test_copies_from_two_hooks_pair_one_to_one(storage):
    """Approved, taken back, approved again, each sent by a project hook (P) and a group hook (G): the second
    approval's copies must not pair with the first approval's (it would be lost, both copies skipped)."""
    approve = {"object_kind": "merge_request", "object_attributes": {"iid": 1, "action": "approval"}}
    unapprove = {"object_kind": "merge_request", "object_attributes": {"iid": 1, "action": "unapproval"}}
    seen = []
    for n, (hook, body) in enumerate([("P", approve), ("G", approve), ("P", unapprove), ("G", unapprove),
                                      ("P", approve), ("G", approve), ("H", approve)]):
        event_id, _ = await storage.events.store_event(
            dedupe_key=f"k{n}", kind="Merge Request Hook", action="x", project_id=7, mr_iid=1,
            headers={"X-Gitlab-Webhook-UUID": hook}, body=body)
        seen.append(await handled_as_worker(storage, event_id) is not None)
    assert seen == [False, True, False, True, False, True, True]


async def handled_as_worker(storage: Storage, event_id: int, *, dies: bool = False) -> int | None:
    """Claim `event_id`, check for a twin (noting a copy) and finish it, as the worker and the handlers do;
    return the twin's id. `dies`: the event is dead-lettered instead (it never ran)."""
    [claimed] = await storage.events.claim("w", LEASE)
    assert claimed.id == event_id
    twin = await storage.events.twin_done(claimed)
    if dies:
        await storage.events.dead_letter(event_id, "killed")
        return twin
    if twin is not None:
        await storage.events.mark_copy(event_id, twin)
    await storage.events.complete(event_id)
    return twin


async def one_note_from_hooks(storage: Storage, *hooks: str, mr_iid: int) -> list[int]:
    """One `/reviewers reroll` note delivered by each of `hooks` in turn; the stored events' ids."""
    body = {"object_kind": "note", "object_attributes": {"id": mr_iid, "note": "/reviewers reroll"}}
    ids = []
    for hook in hooks:
        event_id, _ = await storage.events.store_event(
            dedupe_key=f"{hook}-{mr_iid}", kind="Note Hook", action=None, project_id=7, mr_iid=mr_iid,
            headers={"X-Gitlab-Webhook-UUID": hook}, body=body)
        ids.append(event_id)
    return ids


async def test_a_copy_whose_insert_commits_late_is_skipped(storage):
    """The group hook's copy got the lower id, but its insert committed after the project hook's copy had run:
    pairing goes by each hook's order, not by ids, so the late one is the copy."""
    late, first = await one_note_from_hooks(storage, "G", "P", mr_iid=1)

    async def set_status(status: str) -> None:  # not visible yet / committed now
        async with storage.engine.begin() as conn:
            await conn.execute(sa.update(events_table).where(events_table.c.id == late).values(status=status))

    await set_status("dead")
    assert await handled_as_worker(storage, first) is None
    await set_status("queued")
    assert await handled_as_worker(storage, late) == first


async def test_a_copy_dead_lettered_then_requeued_after_its_twin_ran_is_skipped(storage):
    dead, live = await one_note_from_hooks(storage, "P", "G", mr_iid=2)
    assert await handled_as_worker(storage, dead, dies=True) is None
    assert await handled_as_worker(storage, live) is None  # its twin never ran: this one does
    assert await storage.events.requeue(dead)
    assert await handled_as_worker(storage, dead) == live  # requeued by hand later: a copy now
    assert await storage.events.requeue(live)
    assert await handled_as_worker(storage, live) is None  # the original, requeued: its copy never ran


async def test_the_stored_row_round_trips(storage, clock):
    event_id = await put(storage, "k")
    row = await storage.events.get(event_id)
    assert (row.kind, row.action, row.project_id, row.mr_iid, row.status) == (
        "Merge Request Hook", "open", 7, 1, "queued")
    assert row.body == {"object_kind": "merge_request"} and row.received_at == clock()
    assert row.as_event().event == "Merge Request Hook"


# --- event queue: claiming, leases, retries -----------------------------------------------------

async def test_claim_leases_an_event_to_one_worker(storage, clock):
    event_id = await put(storage, "k")
    [row] = await storage.events.claim("w1", LEASE, 5)
    assert (row.id, row.status, row.lease_owner, row.attempts) == (event_id, "running", "w1", 1)
    assert row.lease_expires_at == clock() + timedelta(seconds=LEASE)
    assert await storage.events.claim("w2", LEASE, 5) == []


async def test_an_expired_lease_is_claimable_again(storage, clock):
    await put(storage, "k")
    await storage.events.claim("w1", LEASE, 1)
    clock.advance(LEASE + 1)
    [row] = await storage.events.claim("w2", LEASE, 1)
    assert (row.lease_owner, row.attempts) == ("w2", 2)
    assert not await storage.events.complete(row.id, owner="w1")  # the first worker lost its lease
    assert await storage.events.complete(row.id, owner="w2")
    assert (await storage.events.get(row.id)).status == "done"


@pytest.mark.postgres
async def test_the_database_failing_is_told_from_a_statement_it_refuses(postgres_url):
    """PostgreSQL's errors as the handlers meet them: a failover's read-only standby, a lock held past
    `lock_timeout`, a lost connection are the database's; a value or a statement it rejects is the event's."""
    async def error(*sql: str) -> BaseException:
        storage = Storage(postgres_url)
        try:
            async with storage.engine.begin() as conn:
                for statement in sql:
                    await conn.execute(sa.text(statement))
        except Exception as exc:  # noqa: BLE001
            return exc
        finally:
            await storage.close()
        raise AssertionError(f"{sql} did not fail")

    holder = Storage(postgres_url)
    try:
        async with holder.engine.begin() as conn:
            await conn.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
            locked = await error("SET LOCAL lock_timeout = '50ms'", "SELECT count(*) FROM events")
    finally:
        await holder.close()
    assert database_unavailable(locked), locked
    assert database_unavailable(await error("SET TRANSACTION READ ONLY", "DELETE FROM events"))
    assert database_unavailable(await error("SELECT pg_terminate_backend(pg_backend_pid())"))
    for sql in ("SELECT 'x'::int", "SELECT 1/0", "SELECT no_such_column FROM events"):
        assert not database_unavailable(exc := await error(sql)), exc


async def test_an_event_whose_lease_expired_is_claimed_alone_by_an_idle_worker(storage, clock):
    """Its process died, perhaps of it: claimed again beside others, a poison event takes them down each time."""
    crashed, beside = await put(storage, "a", mr_iid=1), await put(storage, "b", mr_iid=2)
    waiting = await put(storage, "c", mr_iid=3)
    assert {r.id for r in await storage.events.claim("w1", LEASE, 2)} == {crashed, beside}
    clock.advance(LEASE + 1)  # w1 was killed
    assert await storage.events.claim("w2", LEASE, 5, busy=True) == []  # a busy worker waits, to take it alone
    [row] = await storage.events.claim("w2", LEASE, 5)
    assert (row.id, row.reclaimed, row.ran_alone, row.attempts) == (crashed, True, True, 1)  # that crash not counted
    [row] = await storage.events.claim("w3", LEASE, 5)
    assert (row.id, row.reclaimed) == (beside, True)
    assert [(r.id, r.reclaimed) for r in await storage.events.claim("w4", LEASE, 5)] == [(waiting, False)]


async def test_a_crash_costs_an_attempt_only_to_an_event_that_ran_alone(storage, clock):
    """Beside others, the event may be innocent: its crashed run is given back. Alone, the crash is its own (or
    its worker was killed twice running it): counted, and on the last attempt the event is dead-lettered."""
    poison, beside = await put(storage, "p", mr_iid=1), await put(storage, "b", mr_iid=2)
    claimed = await storage.events.claim("w1", LEASE, 2, max_attempts=2)
    assert [(r.id, r.attempts, r.ran_alone) for r in claimed] == [(poison, 1, False), (beside, 1, False)]
    for attempt in (1, 2):  # each run alone kills its worker
        clock.advance(LEASE + 1)
        [row] = await storage.events.claim(f"w{attempt + 1}", LEASE, 2, max_attempts=2)
        assert (row.id, row.attempts, row.ran_alone) == (poison, attempt, True)
    clock.advance(LEASE + 1)
    [row] = await storage.events.claim("w4", LEASE, 2, max_attempts=2)
    assert (row.id, row.attempts, row.ran_alone) == (beside, 1, True)
    assert await storage.events.complete(beside, owner="w4")
    dead = await storage.events.get(poison)
    assert (dead.status, dead.attempts) == ("dead", 2) and "lease expired on the last attempt" in dead.last_error


async def test_events_crashing_together_on_their_last_attempt_each_run_alone_then_are_buried(storage, clock):
    """Two poison events in one batch: neither is buried for the crash they shared, each is for its own alone."""
    first, second = await put(storage, "p1", mr_iid=1), await put(storage, "p2", mr_iid=2)
    assert len(await storage.events.claim("w1", LEASE, 2, max_attempts=1)) == 2
    for event_id in (first, second):
        clock.advance(LEASE + 1)
        [row] = await storage.events.claim("w", LEASE, 2, max_attempts=1)
        assert (row.id, row.attempts, row.reclaimed) == (event_id, 1, True)
    clock.advance(LEASE + 1)
    assert await storage.events.claim("w", LEASE, 2, max_attempts=1) == []
    assert [(await storage.events.get(i)).status for i in (first, second)] == ["dead", "dead"]


async def test_the_one_event_an_idle_caller_claims_runs_alone(storage):
    """A worker of `concurrency` 1 runs every event alone: a crash under it is counted at once."""
    await put(storage, "a", mr_iid=1), await put(storage, "b", mr_iid=2), await put(storage, "c", mr_iid=3)
    assert [r.ran_alone for r in await storage.events.claim("w", LEASE, 1)] == [True]
    assert [r.ran_alone for r in await storage.events.claim("w", LEASE, 1, busy=True)] == [False]
    assert [r.ran_alone for r in await storage.events.claim("w2", LEASE, 2)] == [False]


async def test_a_lease_expiring_on_the_last_attempt_dead_letters_the_event(storage, clock):
    event_id = await put(storage, "k")
    await storage.events.claim("w1", LEASE, 1, max_attempts=1)
    clock.advance(LEASE + 1)
    assert await storage.events.claim("w2", LEASE, 1, max_attempts=1) == []
    row = await storage.events.get(event_id)
    assert row.status == "dead" and "lease expired" in row.last_error


async def test_events_of_one_merge_request_run_one_at_a_time_in_order(storage):
    first, second = await put(storage, "a", mr_iid=1), await put(storage, "b", mr_iid=1)
    other = await put(storage, "c", mr_iid=2)
    assert {r.id for r in await storage.events.claim("w", LEASE, 10)} == {first, other}
    assert await storage.events.claim("w", LEASE, 10) == []
    await storage.events.complete(first)
    assert [r.id for r in await storage.events.claim("w", LEASE, 10)] == [second]


async def test_events_without_a_merge_request_do_not_block_each_other(storage):
    ids = {await put(storage, key, mr_iid=None) for key in "abc"}
    assert {r.id for r in await storage.events.claim("w", LEASE, 10)} == ids


async def test_retry_waits_for_the_delay_then_dead_letters_after_max_attempts(storage, clock):
    event_id = await put(storage, "k")
    for attempt in (1, 2):
        [row] = await storage.events.claim("w", LEASE, 1)
        assert row.attempts == attempt
        status = await storage.events.retry_later(event_id, "GitLab 502", 30, max_attempts=3, owner="w")
        assert status == "failed"
        assert await storage.events.claim("w", LEASE, 1) == []
        clock.advance(31)
    await storage.events.claim("w", LEASE, 1)
    assert await storage.events.retry_later(event_id, "GitLab 502 again", 30, max_attempts=3) == "dead"
    row = await storage.events.get(event_id)
    assert (row.status, row.last_error, row.finished_at) == ("dead", "GitLab 502 again", clock())


async def outage_failures(storage: Storage, event_id: int, times: int, *, max_attempts: int = 2) -> None:
    """Claim the event and fail it as an outage, `times` times (each due at once)."""
    for _ in range(times):
        assert [r.id for r in await storage.events.claim("w", LEASE, 1, max_attempts=max_attempts)] == [event_id]
        status = await storage.events.retry_later(event_id, "GitLab 502", 0, max_attempts=max_attempts, owner="w",
                                                  outage=True)
        assert status == "failed"


async def test_an_outage_failure_is_counted_apart_from_the_attempts(storage):
    """A failure while GitLab is out never dead-letters the event and leaves its attempts as they were: its own
    failures after the outage still have `max_attempts`."""
    event_id = await put(storage, "k")
    await outage_failures(storage, event_id, 5)
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts, row.last_error) == ("failed", 0, 5, "GitLab 502")
    [row] = await storage.events.claim("w", LEASE, 1, max_attempts=2)
    assert (row.attempts, row.outage_attempts) == (1, 5)
    assert await storage.events.retry_later(event_id, "timed out", 0, max_attempts=2, owner="w") == "failed"
    await storage.events.claim("w", LEASE, 1, max_attempts=2)
    assert await storage.events.retry_later(event_id, "timed out", 0, max_attempts=2, owner="w") == "dead"
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("dead", 2, 5)


async def test_a_lease_expiring_after_outage_failures_is_not_the_last_attempt(storage, clock):
    """A worker killed on the first run after an outage: the event is run again, as any event whose worker died
    on its first attempt, and buried only when its lease runs out on its own last attempt."""
    event_id = await put(storage, "k")
    await outage_failures(storage, event_id, 3)
    await storage.events.claim("killed", LEASE, 1, max_attempts=2)
    clock.advance(LEASE + 1)
    [row] = await storage.events.claim("w2", LEASE, 1, max_attempts=2)
    assert (row.id, row.attempts, row.outage_attempts) == (event_id, 2, 3)
    clock.advance(LEASE + 1)
    assert await storage.events.claim("w3", LEASE, 1, max_attempts=2) == []
    row = await storage.events.get(event_id)
    assert row.status == "dead" and "lease expired" in row.last_error


async def test_release_keeps_the_outage_count_and_requeue_starts_both_afresh(storage):
    event_id = await put(storage, "k")
    await outage_failures(storage, event_id, 2)
    await storage.events.claim("w", LEASE, 1)
    assert await storage.events.release("w") == 1
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("queued", 0, 2)
    await storage.events.claim("w", LEASE, 1)
    assert await storage.events.retry_later(event_id, "boom", 0, max_attempts=1, owner="w") == "dead"
    assert await storage.events.requeue(event_id)
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.outage_attempts) == ("queued", 0, 0)


async def test_an_error_quoting_a_nul_or_half_a_surrogate_pair_is_recorded(storage):
    """An exception's text may quote what GitLab answered: PostgreSQL refused a NUL in `last_error`, neither
    database takes a lone surrogate, so the outcome was never written; the event stayed `running`, ran again at
    the end of each lease, its attempts counted, and was buried as though its worker had crashed."""
    a, b, c, d = [await put(storage, key, mr_iid=n) for n, key in enumerate("abcd")]
    assert len(await storage.events.claim("w", LEASE, 4)) == 4
    assert await storage.events.retry_later(a, "KeyError: 'x\x00y'", 0, max_attempts=3, owner="w") == "failed"
    assert await storage.events.dead_letter(b, "title '\ud800'", owner="w")
    assert await storage.events.park(c, "waiting for \udc80", 5, owner="w")
    await storage.events.mark_skipped(d, "skipped: \x00")
    said = {r.id: r.last_error for r in await storage.events.list_events()}
    assert said == {a: "KeyError: 'x\ufffdy'", b: "title '\ufffd'", c: "waiting for \ufffd", d: "skipped: \ufffd"}


async def test_dead_letter_gives_up_at_once(storage):
    event_id = await put(storage, "k")
    await storage.events.claim("w", LEASE, 1)
    assert await storage.events.dead_letter(event_id, "payload has no project", owner="w")
    assert (await storage.events.get(event_id)).status == "dead"


async def test_release_hands_events_back_without_counting_the_attempt(storage):
    event_id = await put(storage, "k")
    await storage.events.claim("w1", LEASE, 1)
    assert await storage.events.release("someone-else") == 0
    assert await storage.events.release("w1") == 1
    row = await storage.events.get(event_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)
    assert [r.id for r in await storage.events.claim("w2", LEASE, 1)] == [event_id]


async def test_a_parked_event_waits_its_time_or_a_wake_without_counting_the_attempt(storage, clock):
    """An event waiting for something else (its project's history import) goes back to the queue: its attempt is
    not counted, the reason is kept, it is due after the delay or when woken, and it still holds back the later
    events of its merge request (they keep their order)."""
    first, later = await put(storage, "a"), await put(storage, "b")
    await storage.events.claim("w1", LEASE, 1)
    assert not await storage.events.park(first, "waiting", 30, owner="someone-else")
    assert await storage.events.park(first, "waiting for the import", 30, owner="w1")
    row = await storage.events.get(first)
    assert (row.status, row.attempts, row.last_error, row.lease_owner) == ("queued", 0, "waiting for the import", None)
    assert row.next_attempt_at == clock() + timedelta(seconds=30)
    assert await storage.events.claim("w2", LEASE, 10) == []  # not due, and `later` is not its MR's head
    clock.advance(10)
    assert await storage.events.wake(first) and not await storage.events.wake(first)
    [row] = await storage.events.claim("w2", LEASE, 10)
    assert (row.id, row.attempts) == (first, 1) and not await storage.events.wake(first)
    await storage.events.complete(first)
    assert [r.id for r in await storage.events.claim("w2", LEASE, 10)] == [later]


async def test_a_parked_event_comes_due_at_its_time_unwoken(storage, clock):
    """The worker that parked it may be gone (killed, restarted): the event is in the table, due at its time."""
    event_id = await put(storage, "a")
    await storage.events.claim("w1", LEASE, 1)
    await storage.events.park(event_id, "waiting", 20, owner="w1")
    clock.advance(20)
    assert [r.id for r in await storage.events.claim("w2", LEASE, 1)] == [event_id]


async def test_list_failed_and_requeue(storage, clock):
    ok, bad = await put(storage, "ok", mr_iid=1), await put(storage, "bad", mr_iid=2)
    await storage.events.claim("w", LEASE, 2)
    await storage.events.complete(ok)
    await storage.events.retry_later(bad, "boom", 5, max_attempts=1)
    assert [r.id for r in await storage.events.list_events(failed_only=True)] == [bad]
    assert [r.id for r in await storage.events.list_events()] == [bad, ok]
    assert await storage.events.requeue(bad) and not await storage.events.requeue(9999)
    row = await storage.events.get(bad)
    assert (row.status, row.attempts, row.next_attempt_at) == ("queued", 0, clock())


async def test_prune_keeps_dedupe_keys_for_a_day(storage, clock):
    event_id = await put(storage, "k")
    await storage.events.claim("w", LEASE, 1)
    await storage.events.complete(event_id)
    clock.advance(3600)
    assert await storage.events.prune(timedelta(0)) == 0
    assert (await storage.events.store_event(dedupe_key="k", kind="N", headers={}, body={}))[1] is False
    clock.advance(24 * 3600)
    await put(storage, "newer")  # the newest event is always kept (SQLite would reuse its id)
    assert await storage.events.prune(timedelta(0)) == 1
    assert (await storage.events.depth())["done"] == 0


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_delay(n, 5, 30) for n in range(0, 6)] == [5, 5, 10, 20, 30, 30]


async def test_concurrent_claimers_never_share_an_event(storage):
    total = 60
    for n in range(total):
        await put(storage, f"k{n}", mr_iid=None)

    async def claimer(name: str) -> list[int]:
        got: list[int] = []
        while batch := await storage.events.claim(name, LEASE, 3):
            got.extend(r.id for r in batch)
        return got

    results = await asyncio.gather(*(claimer(f"w{n}") for n in range(8)))
    claimed = [event_id for ids in results for event_id in ids]
    assert len(claimed) == total and len(set(claimed)) == total


async def test_concurrent_claimers_run_one_event_per_merge_request(storage):
    for n in range(12):
        await put(storage, f"k{n}", mr_iid=n % 3)
    batches = await asyncio.gather(*(storage.events.claim(f"w{n}", LEASE, 5) for n in range(6)))
    claimed = [row for batch in batches for row in batch]
    assert sorted(row.mr_iid for row in claimed) == [0, 1, 2]
    assert sorted(row.id for row in claimed) == [1, 2, 3]  # the oldest event of each MR


async def test_an_older_event_requeued_by_hand_waits_for_the_running_one(storage, clock):
    a, b = await put(storage, "a"), await put(storage, "b")
    [first] = await storage.events.claim("w1", LEASE)
    await storage.events.dead_letter(a, "boom", owner="w1")
    [running] = await storage.events.claim("w1", LEASE)
    assert (first.id, running.id) == (a, b)
    assert await storage.events.requeue(a)  # `reviewbot events requeue A` while B runs
    assert await storage.events.claim("w2", LEASE) == []
    await storage.events.complete(b, owner="w1")
    assert [r.id for r in await storage.events.claim("w2", LEASE)] == [a]


async def test_a_lease_that_expired_does_not_hold_up_an_older_event(storage, clock):
    a, b = await put(storage, "a"), await put(storage, "b")
    await storage.events.claim("w1", LEASE)
    await storage.events.dead_letter(a, "boom", owner="w1")
    assert [r.id for r in await storage.events.claim("w1", LEASE)] == [b]  # then its worker dies
    assert await storage.events.requeue(a)
    clock.advance(LEASE + 1)
    assert [r.id for r in await storage.events.claim("w2", LEASE)] == [a]  # the oldest first, B after it
    assert await storage.events.claim("w3", LEASE) == []


@pytest.mark.postgres
async def test_an_older_event_committed_late_waits_for_the_running_one(postgres_url, clock):
    """Web process 1 inserted A but commits after B (same MR) was stored and claimed: A must wait."""
    from bot.storage.tables import events

    storage = Storage(postgres_url, clock=clock)
    try:
        async with storage.engine.connect() as web1:
            tx = await web1.begin()
            await web1.execute(sa.insert(events).values(
                dedupe_key="a", kind="Merge Request Hook", headers={}, body={}, project_id=1, mr_iid=7,
                status="queued", attempts=0, next_attempt_at=clock(), received_at=clock()))
            b, _ = await storage.events.store_event(dedupe_key="b", kind="Note Hook", headers={}, body={},
                                                    project_id=1, mr_iid=7)
            assert [r.id for r in await storage.events.claim("w1", LEASE)] == [b]
            await tx.commit()
        assert await storage.events.claim("w2", LEASE) == []
    finally:
        await storage.close()


async def test_a_payload_with_nul_characters_is_stored(storage):
    body = {"object_attributes": {"description": "bad\x00byte"}}
    event_id, _ = await storage.events.store_event(dedupe_key="nul", kind="Note Hook", headers={}, body=body)
    assert (await storage.events.get(event_id)).body == {"object_attributes": {"description": "bad\ufffdbyte"}}


# --- the other stores ---------------------------------------------------------------------------

async def test_history_round_trips_changes_and_replaces_by_id(storage):
    a = Change("mr!1", 100, "ann", ("bob",), ("src/a.c", "README"), title="A", ackers=("cy",))
    b = Change("mr!2", 200, "bob", (), ("src/b.c",), committer="bob", bot_author=True,
               renames=(("old/b.c", "src/b.c"),))
    assert await storage.history.upsert(5, [b, a]) == 2
    assert await storage.history.load(5) == [a, b]
    a2 = Change("mr!1", 100, "ann", ("bob", "dan"), ("src/a.c",), title="A2")
    await storage.history.upsert(5, [a2])
    assert await storage.history.load(5, since=50) == [a2, b]
    assert await storage.history.load(5, since=150) == [b]
    assert (await storage.history.count(5), await storage.history.latest_time(5)) == (2, 200)
    assert await storage.history.latest_time(6) is None


async def test_one_comment_per_merge_request(storage, clock):
    wins = await asyncio.gather(*(storage.comments.reserve(1, 9, f"w{n}") for n in range(5)))
    assert sum(wins) == 1
    assert (await storage.comments.get(1, 9)).note_id is None
    await storage.comments.set_note(1, 9, 555)
    row = await storage.comments.get(1, 9)
    assert (row.note_id, row.reserved_by) == (555, None)
    assert not await storage.comments.reserve(1, 9, "late", stale_after=0)  # a posted note is never taken over
    await storage.comments.forget(1, 9)
    assert await storage.comments.get(1, 9) is None


async def test_the_comments_discussion_is_kept_only_for_the_comment_it_is_of(storage, clock):
    """Its Note Hook may be handled before the posting worker recorded the note's id, or after the comment
    was replaced: then nothing is kept (the discussion is asked of GitLab when a reply needs it)."""
    assert await storage.comments.reserve(1, 9, "w1")
    assert not await storage.comments.set_discussion(1, 9, 555, "d" * 40)  # the note's id not recorded yet
    await storage.comments.set_note(1, 9, 555)
    assert (await storage.comments.get(1, 9)).discussion_id is None
    assert not await storage.comments.set_discussion(1, 9, 554, "c" * 40)  # an older comment's
    assert await storage.comments.set_discussion(1, 9, 555, "d" * 40)
    assert (await storage.comments.get(1, 9)).discussion_id == "d" * 40


async def test_a_stale_comment_reservation_is_taken_over(storage, clock):
    assert await storage.comments.reserve(1, 9, "dead-worker")
    assert not await storage.comments.reserve(1, 9, "w2", stale_after=300)
    clock.advance(301)
    assert await storage.comments.reserve(1, 9, "w2", stale_after=300)
    assert (await storage.comments.get(1, 9)).reserved_by == "w2"


async def test_suggestions_and_feedback(storage):
    people = [{"username": "bob", "score": 0.9, "reasons": ["touched src/a.c"]}]
    sid = await storage.suggestions.add(1, 3, people, "heuristic-1", event_id=42)
    await storage.suggestions.add(2, 3, [], "heuristic-1")
    latest = await storage.suggestions.latest(1, 3)
    assert (latest.id, latest.people, latest.event_id) == (sid, people, 42)
    assert await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid, source_event_id=42)
    assert not await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid, source_event_id=42)
    assert await storage.feedback.record(1, 3, "bob", "thumbs_up", value=1)
    assert await storage.feedback.record(1, 3, "bob", "thumbs_up", value=1)  # no source event: never merged
    rows = await storage.feedback.list(1, mr_iid=3)
    assert [(r.label, r.value) for r in rows] == [("accepted", None), ("thumbs_up", 1), ("thumbs_up", 1)]
    with pytest.raises(ValueError, match="unknown feedback label"):
        await storage.feedback.record(1, 3, "bob", "liked")


async def test_an_event_older_than_one_applied_about_the_same_person_on_the_mr_is_refused(storage):
    feedback, at = storage.feedback, datetime(2026, 3, 1, 10, 0, 5, tzinfo=timezone.utc)
    assert await feedback.newer_applied(1, 3, "Bob", at) is None
    assert await feedback.newer_applied(1, 3, "bob", at - timedelta(seconds=1)) == at  # usernames ignore case
    assert await feedback.newer_applied(1, 3, "bob", at + timedelta(microseconds=900)) is None  # same second
    earlier = at - timedelta(minutes=5)
    for project, mr, person in ((1, 3, "cy"), (1, 4, "bob"), (2, 3, "bob")):  # another person, MR, project
        assert await feedback.newer_applied(project, mr, person, earlier) is None
    assert await feedback.newer_applied(1, 3, "bob", None) is None  # a payload without a time: applies
    later = at + timedelta(minutes=2)
    assert await feedback.newer_applied(1, 3, "bob", later) is None
    assert await feedback.newer_applied(1, 3, "bob", at) == later
    years_before = datetime(2013, 12, 3, 17, 23, 34, tzinfo=timezone.utc)  # another clock: no late delivery
    assert await feedback.newer_applied(1, 3, "bob", years_before) is None
    assert await feedback.newer_applied(1, 3, "bob", at) == later  # ... and the newest time stays
    assert await feedback.newer_applied(1, 3, "bob", earlier, "approval") is None  # an approval keeps its own time
    assert await feedback.newer_applied(1, 3, "bob", earlier - timedelta(seconds=1), "approval") == earlier


async def test_a_suggestion_keeps_the_mr_it_was_for_and_labels_find_it_in_one_statement(storage):
    files = ["src/a.c", "docs/résumé.md"]
    sid = await storage.suggestions.add(1, 3, [{"username": "bob"}], "v", author="ann", files=tuple(files))
    before = await storage.suggestions.add(1, 4, [], "v")  # as stored before the MR was kept: None
    latest = await storage.suggestions.add(1, 4, [], "v", author="cy", files=["b.c"])
    await storage.suggestions.add(2, 4, [], "v", author="other project", files=[])
    shown = await storage.suggestions.latest(1, 3)
    assert (shown.author, shown.files) == ("ann", files)
    statements: list[str] = []
    sa.event.listen(storage.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    judged = await storage.suggestions.judged(1, [sid, before], latest_of=[4, 5])
    assert [(r.id, r.author, r.files) for r in judged] == [(sid, "ann", files), (before, None, None),
                                                            (latest, "cy", ["b.c"])]
    assert len(statements) == 1
    assert await storage.suggestions.judged(2, [sid]) == [] and await storage.suggestions.judged(1, []) == []


async def test_history_says_which_mrs_it_holds(storage):
    await storage.history.upsert(1, [Change("!4", 100, "ann", ("bob",), ("a.c",))])
    assert await storage.history.present(1, ["!4", "!5", "!4"]) == {"!4"}
    assert await storage.history.present(2, ["!4"]) == set() and await storage.history.present(1, []) == set()


async def test_people_keep_every_username_of_an_id_seen_last_when_last_seen(storage, clock):
    first = clock()
    assert await storage.people.learn([(7, "alice"), (8, "bob"), (7, "alice"), (0, "ghost"), (9, "")]) == 2
    renamed = clock.advance(3600)
    await storage.people.learn([(7, "alice.w")])
    await storage.people.learn([(7, "alice")], at=first - timedelta(days=1))  # a late event: alice before
    assert await storage.people.sightings([7]) == [(7, "alice", first), (7, "alice.w", renamed)]
    taken = clock.advance(3600)
    await storage.people.learn([(9, "alice")])  # GitLab freed the name; someone else took it
    assert await storage.people.sightings([7]) == [(7, "alice", first), (7, "alice.w", renamed), (9, "alice", taken)]
    assert await storage.people.sightings([8, 8]) == [(8, "bob", first)] and await storage.people.sightings([]) == []
    assert storage.people.renamed([(8, "robert")]) and not storage.people.renamed([(8, "BOB"), (10, "new")])


async def test_a_name_freed_by_a_rename_and_taken_in_another_case_is_the_new_holders(storage, clock):
    """GitLab's usernames ignore case: 7 was `Alice`, renamed `alice.w`, and 9 took `alice`. Matched by exact
    spelling, `alice` stayed 7's former name, and 9's history went to 7."""
    first = clock()
    await storage.people.learn([(7, "Alice")])
    renamed = clock.advance(3600)
    await storage.people.learn([(7, "alice.w")])
    taken = clock.advance(3600)
    await storage.people.learn([(9, "alice")])
    seen = await storage.people.sightings([7])
    assert seen == [(7, "Alice", first), (7, "alice.w", renamed), (9, "alice", taken)]
    assert former_names([(7, "alice.w"), (9, "alice")], seen) == {} == former_names([(7, "alice.w")], seen)
    assert await storage.people.sightings([9]) == [(7, "Alice", first), (9, "alice", taken)]


@pytest.mark.postgres
async def test_who_held_the_members_names_is_read_through_indexes_not_the_whole_table(postgres_url):
    """Every suggestion asks who held its members' names; by the name as spelled there was no index, and
    PostgreSQL read the whole table (26 to 60 ms per suggestion for 500 members among 200,000 users)."""
    storage = Storage(postgres_url)
    try:
        await storage.people.learn([(7, "Alice"), (8, "bob")])
        async with storage.engine.begin() as conn:  # an instance where the bot has seen 200,000 users
            await conn.execute(sa.text(
                "INSERT INTO people (user_id, username, username_key, seen_at) SELECT n, 'user' || n, 'user' || n,"
                " now() FROM generate_series(10, 200000) AS n"))
            await conn.execute(sa.text("ANALYZE people"))
            query = holders_query(list(range(1, 501)))
            sql = str(query.compile(conn.engine, compile_kwargs={"literal_binds": True}))
            plan = "\n".join((await conn.execute(sa.text("EXPLAIN " + sql))).scalars().all())
        assert "Seq Scan" not in plan and "ix_people_username_key" in plan, plan
        assert len(await storage.people.sightings(range(1, 501))) == 493
    finally:
        await storage.close()


async def test_people_are_not_written_again_within_the_refresh_but_a_process_that_did_not_write_them_moves_them_on(
        storage, database_url, clock):
    start = clock()
    assert await storage.people.learn([(7, "alice")]) == 1
    clock.advance(60)
    assert await storage.people.learn([(7, "alice")]) == 0  # this process wrote it a minute ago
    other = Storage(database_url, clock=clock)
    try:
        assert await other.people.learn([(7, "alice")]) == 1
        assert await storage.people.sightings([7]) == [(7, "alice", start + timedelta(seconds=60))]
        later = clock.advance(REFRESH.total_seconds() + 1)
        assert await storage.people.learn([(7, "alice")]) == 1
        assert await other.people.sightings([7]) == [(7, "alice", later)]
    finally:
        await other.close()


async def test_processes_learning_the_same_people_at_once_do_not_deadlock(storage, clock):
    pairs = [(uid, f"user{uid}") for uid in range(1, 301)]
    learners = [PeopleStore(storage.engine, clock) for _ in range(8)]  # each process remembers its own writes
    shuffled = [random.Random(i).sample(pairs, len(pairs)) for i in range(len(learners))]
    assert await asyncio.gather(*(p.learn(order) for p, order in zip(learners, shuffled))) == [300] * 8
    assert len(await storage.people.sightings(range(1, 301))) == 300


async def test_people_learn_a_members_list_of_thousands_at_once(storage):
    assert await storage.people.learn((uid, f"user{uid}") for uid in range(1, 2501)) == 2500
    found = await storage.people.sightings(range(1, 2501))
    assert len(found) == 2500 and found[0].username == "user1"


async def test_an_optin_clears_the_optout_under_any_former_name(storage):
    await storage.optouts.set(1, "alice")
    await storage.optouts.set(1, "bob")
    assert await storage.optouts.clear(1, "alice.w", "alice") and await storage.optouts.active(1) == {"bob"}
    assert not await storage.optouts.clear(1, "alice.w", "alice")


async def test_optouts_expire(storage, clock):
    await storage.optouts.set(1, "ann")
    await storage.optouts.set(1, "bob", until=clock() + timedelta(days=7))
    assert await storage.optouts.active(1) == {"ann", "bob"}
    assert await storage.optouts.active(1, clock() + timedelta(days=8)) == {"ann"}
    assert await storage.optouts.clear(1, "ann") and not await storage.optouts.clear(1, "ann")
    assert await storage.optouts.active(2) == set()


async def test_a_sign_out_ends_its_cookie_and_is_deleted_once_the_cookie_would_have_expired(storage, clock):
    issued = clock() - timedelta(hours=1)
    await storage.signouts.end("a" * 64, until=clock() + timedelta(hours=7))
    assert await storage.signouts.ended("a" * 64, issued) and not await storage.signouts.ended("b" * 64, issued)
    await storage.signouts.end("a" * 64, until=clock() + timedelta(hours=7))  # signed out twice: one row
    async with storage.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(dashboard_signouts))).scalar() == 1
    clock.advance(8 * 3600)
    await storage.signouts.end("b" * 64, until=clock() + timedelta(hours=8))  # the first one's row goes
    async with storage.engine.connect() as conn:
        assert (await conn.execute(sa.select(dashboard_signouts.c.session))).scalars().all() == ["b" * 64]


async def test_ending_every_sign_in_ends_those_issued_until_then_and_is_kept(storage, clock):
    before, at = clock() - timedelta(days=6), clock()
    assert not await storage.signouts.ended("a" * 64, before)
    await storage.signouts.end_all()
    assert await storage.signouts.ended("a" * 64, before) and await storage.signouts.ended("a" * 64, at)
    assert not await storage.signouts.ended("a" * 64, at + timedelta(seconds=1))
    clock.advance(30 * 86400)
    await storage.signouts.end("c" * 64, until=clock() + timedelta(hours=8))  # cleans up, but not the "every" row
    assert await storage.signouts.ended("a" * 64, before)
    await storage.signouts.end_all()  # again, later: the later time counts
    assert await storage.signouts.ended("a" * 64, clock() - timedelta(days=1))
    clock.advance(-3600)  # run from a machine whose clock is an hour behind: the cut-off never moves back
    await storage.signouts.end_all()
    assert await storage.signouts.ended("a" * 64, clock() + timedelta(minutes=30))


async def test_models_keep_one_active_version(storage):
    await storage.models.save(1, "v1", b"\x00one", backtest_score=0.4)
    await storage.models.save(1, "v2", b"\x00two", backtest_score=0.5)
    assert (await storage.models.active(1)).blob == b"\x00two"
    assert await storage.models.activate(1, "v1") and not await storage.models.activate(1, "v9")
    assert [(m.version, m.active) for m in await storage.models.list(1)] == [("v1", True), ("v2", False)]
    assert await storage.models.active(2) is None


async def test_saving_a_model_keeps_the_active_one_and_the_newest_five_of_its_project(storage):
    """A busy project stored some 3,400 models (110 KB each) a year, every one kept."""
    from bot.storage.models import MODELS_KEPT

    await storage.models.save(1, "v1", b"one")  # active, then older than every other
    for n in range(2, 9):
        await storage.models.save(1, f"v{n}", b"x", activate=False)
    await storage.models.save(2, "other", b"x", activate=False)  # another project's save prunes only its own
    assert MODELS_KEPT == 5
    assert [(m.version, m.active) for m in await storage.models.list(1)] == [
        ("v1", True), ("v4", False), ("v5", False), ("v6", False), ("v7", False), ("v8", False)]
    assert await storage.models.activate(1, "v5") and not await storage.models.activate(1, "v2")  # gone
    assert await storage.models.prune(keep=1) == 4  # every project: v1 (no longer active), v4, v6, v7
    assert [m.version for m in await storage.models.list(1)] == ["v5", "v8"]
    assert [m.version for m in await storage.models.list(2)] == ["other"]
    await storage.models.save_replacing(1, "v9", b"x", expected="v5")  # stored and activated: prunes too
    assert [(m.version, m.active) for m in await storage.models.list(1)] == [("v5", False), ("v8", False),
                                                                              ("v9", True)]


@pytest.mark.postgres
async def test_a_model_being_activated_is_not_pruned_beside_it(postgres_url):
    """Another process prunes while a rollback activates an old version: the prune waits for it (without the
    project's lock, the two took each other's rows and PostgreSQL aborted one as a deadlock)."""
    storage = Storage(postgres_url)
    try:
        for n in range(1, 4):
            await storage.models.save(1, f"v{n}", b"x")
        held, go = asyncio.Event(), asyncio.Event()

        async def roll_back() -> None:  # `activate("v1")` in another process, its transaction held open
            async with storage.engine.begin() as conn:
                await lock_project(conn, MODEL_LOCK, 1)
                await conn.execute(sa.update(models_table).where(models_table.c.version == "v1").values(active=True))
                held.set()
                await go.wait()
                await conn.execute(sa.update(models_table).where(models_table.c.version != "v1")
                                   .values(active=False))

        rollback = asyncio.create_task(roll_back())
        await held.wait()
        pruning = asyncio.create_task(storage.models.prune(keep=0))
        await asyncio.sleep(0.3)
        assert not pruning.done()
        go.set()
        await rollback
        assert await pruning == 2
        assert [(m.version, m.active) for m in await storage.models.list(1)] == [("v1", True)]
    finally:
        await storage.close()


async def finished_and_open_mrs(storage: Storage, clock) -> dict[str, tuple[int, int]]:
    """Project 1's MRs: !1 merged, !2 closed, !3 closed and reopened, !4 open, !5 merged and given a thumb 300
    days later; project 2's !1 open. Each has a suggestion, a feedback row, an approval time and a comment."""
    start = clock()
    await storage.history.upsert(1, [Change(f"!{iid}", int(start.timestamp()), "ann", ("bob",), ("a.c",))
                                     for iid in (1, 5)])
    mrs = {"merged": (1, 1), "closed": (1, 2), "reopened": (1, 3), "open": (1, 4), "late thumb": (1, 5),
           "other project": (2, 1)}
    for project, iid in mrs.values():
        sid = await storage.suggestions.add(project, iid, [{"username": "bob"}], "v", author="ann", files=["a.c"])
        await storage.feedback.record(project, iid, "bob", "accepted", suggestion_id=sid)
        await storage.feedback.newer_applied(project, iid, "bob", start, "approval")
        await storage.comments.set_note(project, iid, 100 + iid)
    await storage.feedback.record(1, 2, "ann", "closed")
    await storage.feedback.record(1, 3, "ann", "closed")
    await storage.feedback.record(1, 3, "ann", "reopened")
    clock.advance(300 * 86400)
    await storage.feedback.record(1, 5, "cy", "thumbs_up")
    await storage.feedback.record(1, 4, "cy", "thumbs_up")  # the newest row, on an open MR
    return mrs


async def rows_of(storage: Storage, project: int, iid: int) -> tuple[int, int, int, bool]:
    """(suggestions, feedback rows, approval and reviewer times, a comment) of one MR."""
    times = sa.select(sa.func.count()).select_from(feedback_times).where(feedback_times.c.project_id == project,
                                                                         feedback_times.c.mr_iid == iid)
    async with storage.engine.connect() as conn:
        n_times = (await conn.execute(times)).scalar_one()
    shown, labels = await storage.suggestions.of_mrs(project, [iid]), await storage.feedback.list(project, mr_iid=iid)
    return len(shown), len(labels), n_times, await storage.comments.get(project, iid) is not None


async def test_rows_of_merge_requests_finished_long_ago_are_pruned_and_nothing_else(storage, clock):
    """A year of a busy project: 46k suggestions (60-140 MB, the MR's paths), 133k feedback rows, 51k
    approval and reviewer times, every one kept."""
    mrs = await finished_and_open_mrs(storage, clock)
    clock.advance(64 * 86400)  # 364 days after the merge and the close: within the retention
    assert set((await storage.retention.prune(timedelta(days=365))).values()) == {0}
    clock.advance(2 * 86400)
    assert await storage.retention.prune(timedelta(days=365)) == {
        "bot_comments": 2, "feedback_times": 2, "suggestions": 2, "feedback": 3}
    assert [await rows_of(storage, *mrs[k]) for k in ("merged", "closed")] == [(0, 0, 0, False)] * 2
    assert await rows_of(storage, *mrs["reopened"]) == (1, 3, 1, True)
    assert await rows_of(storage, *mrs["open"]) == (1, 2, 1, True)
    assert await rows_of(storage, *mrs["other project"]) == (1, 1, 1, True)
    assert await rows_of(storage, *mrs["late thumb"]) == (1, 2, 1, True)  # its thumb is 66 days old
    clock.advance(300 * 86400)
    assert await storage.retention.prune(timedelta(days=365)) == {
        "bot_comments": 1, "feedback_times": 1, "suggestions": 1, "feedback": 2}
    assert await rows_of(storage, *mrs["late thumb"]) == (0, 0, 0, False)
    assert await rows_of(storage, *mrs["open"]) == (1, 2, 1, True)  # open: kept, however quiet


async def test_finished_merge_requests_keep_their_rows_at_least_ninety_days(storage, clock):
    mrs = await finished_and_open_mrs(storage, clock)
    clock.advance(89 * 86400)  # the thumb is 89 days old, the merge 389
    assert (await storage.retention.prune(timedelta(days=0)))["feedback"] == 3
    assert await rows_of(storage, *mrs["late thumb"]) == (1, 2, 1, True)
    clock.advance(2 * 86400)
    assert (await storage.retention.prune(timedelta(days=0)))["feedback"] == 2


async def test_the_newest_suggestion_and_feedback_row_are_kept_so_that_ids_are_never_reused(storage, clock):
    await storage.history.upsert(1, [Change("!1", int(clock().timestamp()), "ann", ("bob",), ("a.c",))])
    sid = await storage.suggestions.add(1, 1, [], "v")
    newest = await storage.suggestions.add(1, 1, [], "v")
    await storage.feedback.record(1, 1, "bob", "accepted", suggestion_id=sid)
    await storage.feedback.record(1, 1, "bob", "approved", suggestion_id=newest)
    clock.advance(400 * 86400)
    assert await storage.retention.prune(timedelta(days=365)) == {
        "bot_comments": 0, "feedback_times": 0, "suggestions": 1, "feedback": 1}
    assert await storage.suggestions.add(1, 2, [], "v") == newest + 1
    assert [r.label for r in await storage.feedback.list(1)] == ["approved"]


async def test_dead_events_past_their_retention_are_pruned_and_failed_ones_never(storage, clock):
    done, dead, failed = [await put(storage, key, mr_iid=iid) for key, iid in (("a", 1), ("b", 2), ("c", 3))]
    await storage.events.claim("w", LEASE, 3)
    await storage.events.complete(done)
    await storage.events.dead_letter(dead, "broken")
    await storage.events.retry_later(failed, "GitLab said 502", 10 * 86400, max_attempts=6)
    newest = await put(storage, "d", mr_iid=4)
    clock.advance(12 * 3600)
    assert await storage.events.prune(timedelta(0), status="dead") == 0  # a day at least: dedupe keys
    clock.advance(31 * 86400)
    assert await storage.prune(done=timedelta(days=7), dead=None, finished_mrs=None) == {"done_events": 1,
                                                                                          "models": 0}
    assert await storage.events.get(dead) is not None  # None: kept
    assert await storage.events.prune(timedelta(days=30), status="dead") == 1
    assert [(await storage.events.get(i)).status for i in (failed, newest)] == ["failed", "queued"]
    with pytest.raises(ValueError, match="still to run"):
        await storage.events.prune(timedelta(0), status="failed")


async def test_projects_remember_backfill_and_overrides(storage, clock):
    await storage.projects.seen(3, "group/app")
    await storage.projects.set_backfill(3, cursor="2024-01-01T00:00:00Z", page=4)
    await storage.projects.set_overrides(3, {"top_k": 2})
    await storage.projects.set_overrides(4, {"mention": True})
    row = await storage.projects.get(3)
    assert (row.path, row.backfill_page, row.backfill_done, row.settings) == ("group/app", 4, False, {"top_k": 2})
    assert row.last_event_at == clock()
    assert [p.id for p in await storage.projects.list()] == [3, 4]
    assert await storage.projects.get(5) is None


async def test_a_projects_new_path_returns_the_one_it_replaced(storage):
    """A rename or a move keeps the id and changes the path: the caller learns the former path (settings keyed
    by it stop applying), once; the same path again, no path, or a new row return None."""
    projects = storage.projects
    assert await projects.seen(3, "group/app") is None and await projects.seen(3, "group/app") is None
    assert await projects.seen(3) is None
    assert await projects.seen(3, "platform/app") == "group/app"
    assert await projects.seen(3, "platform/app") is None
    assert await projects.named(3, "platform/renamed") == "platform/app"
    assert await projects.named(4, "x/y") is None and (await projects.get(3)).path == "platform/renamed"


async def test_a_projects_import_is_leased_to_one_process_until_done_released_or_expired(storage, clock):
    projects = storage.projects
    assert await projects.claim_import(7, "a", LEASE)  # creates the row
    assert not await projects.claim_import(7, "b", LEASE) and await projects.claim_import(7, "a", LEASE)
    assert not projects.lease_free(await projects.get(7))
    clock.advance(LEASE / 2)
    assert await projects.renew_import(7, "a", LEASE)
    clock.advance(LEASE - 1)
    assert not await projects.claim_import(7, "b", LEASE)  # renewed: not expired yet
    clock.advance(2)
    assert projects.lease_free(await projects.get(7)) and await projects.claim_import(7, "b", LEASE)
    assert not await projects.renew_import(7, "a", LEASE)  # taken over: the stalled holder learns it
    await projects.release_import(7, "a")  # not a's to hand back
    assert (await projects.get(7)).import_owner == "b"
    await projects.release_import(7, "b")
    assert projects.lease_free(await projects.get(7)) and await projects.claim_import(7, "a", LEASE)
    await projects.set_backfill(7, cursor="c", page=1, done=True)
    await projects.release_import(7, "a")
    assert not await projects.claim_import(7, "b", LEASE)  # done: nothing to import
    assert await projects.claim_import(7, "b", LEASE, done_too=True)  # unless asked to read it again (the CLI)
    assert not await projects.claim_import(7, "a", LEASE, done_too=True)  # held


async def test_a_projects_marker_changes_with_each_row_and_model_activation_and_only_its_own(storage):
    """What the dashboard's overview checks on each load before computing a project's numbers again."""
    seen = [await storage.projects.marker(1)]

    async def changed() -> bool:
        seen.append(await storage.projects.marker(1))
        return seen[-1] != seen[-2]

    sid = await storage.suggestions.add(1, 3, [{"username": "bob"}], "v")
    assert await changed()
    await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid)
    assert await changed()
    await storage.history.upsert(1, [Change("!3", 100, "ann", ("bob",), ("a.c",))])
    assert await changed()
    await storage.history.upsert(1, [Change("!3", 100, "ann", ("bob", "cy"), ("a.c",))])  # replaced in place
    assert not await changed()
    await storage.models.save(1, "v1", b"one")
    await storage.models.save(1, "v2", b"two")
    assert await changed()
    await storage.models.activate(1, "v1")
    assert await changed()
    await storage.suggestions.add(2, 3, [], "v")
    await storage.feedback.record(2, 3, "bob", "accepted")
    await storage.models.save(2, "v1", b"one")
    assert not await changed()
    assert await storage.projects.marker(9) == (0,) * 7


async def test_suggestions_of_mrs_can_leave_the_mr_unread(storage):
    sid = await storage.suggestions.add(1, 3, [{"username": "bob"}], "v", author="ann", files=["a.c"])
    [row] = await storage.suggestions.of_mrs(1, [3], with_mr=False)
    assert (row.id, row.people, row.author, row.files) == (sid, [{"username": "bob"}], None, None)
    [row] = await storage.suggestions.of_mrs(1, [3])
    assert (row.author, row.files) == ("ann", ["a.c"])
    row = await storage.suggestions.latest(1, 3, with_mr=False)  # what a comment or an award reads
    assert (row.id, row.people, row.author, row.files) == (sid, [{"username": "bob"}], None, None)
    assert (await storage.suggestions.latest(1, 3)).files == ["a.c"]
