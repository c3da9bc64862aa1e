"""`reviewbot forget`: one project's rows deleted from every table (SQLite and PostgreSQL), the others' kept; and
what a running bot process does about it: it drops the project at its next look at the history, stores nothing of
it from work still running, and imports it again as a new project's at its next event."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import weakref
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.cli import build_parser
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.handlers import make_dispatch
from bot.handlers.context import AwaitingHistory
from bot.metrics import Metrics
from bot.storage import HistoryGone, Storage, utcnow
from bot.storage.db import MODEL_LOCK, lock_project
from bot.storage.forget import PROJECT_TABLES, forget_project, project_rows
from bot.storage.tables import (bot_comments, events, feedback, feedback_times, history, metadata, models, optouts,
                                people, projects, snapshots, suggestions)
from graph.model import Change
from tests.bot_harness import dispatch_outbox, event_row, handler_env, marker_notes, take_events  # noqa: F401
from tests.gitlab_fixtures import FAST_RETRY
from tests.storage_fixtures import run_in_thread
from tests.test_learning import PID, rejections, store_history

SETTINGS = ProjectSettings()
NOTHING = {name: 0 for name, _, _ in PROJECT_TABLES}


def run(*argv: str) -> int:
    args = build_parser().parse_args(["forget", *argv])
    return args.func(args)


def rows_of(pid: int, now) -> list[tuple[sa.Table, dict]]:
    """One row of each table for project `pid` (a suggestion's feedback is added apart: it needs its id)."""
    return [
        (projects, dict(id=pid, path=f"group/app{pid}", settings={})),
        (history, dict(project_id=pid, change_id="!1", time=1, author="ann", reviewers=["bob"], ackers=[],
                       files=["a.c"])),
        (bot_comments, dict(project_id=pid, mr_iid=1, note_id=5, created_at=now, updated_at=now)),
        (feedback_times, dict(project_id=pid, mr_iid=1, person="bob", aspect="approval", event_at=now)),
        (optouts, dict(project_id=pid, username="cy", created_at=now)),
        (models, dict(project_id=pid, version="v1", created_at=now, blob=b"m", active=True)),
        (snapshots, dict(project_id=pid, format="f", config="c", history_count=1, boundary=[], created_at=now,
                         size=1, blob=b"s")),
        (events, dict(dedupe_key=f"k{pid}", project_id=pid, mr_iid=1, kind="Merge Request Hook", headers={},
                      body={}, status="queued", next_attempt_at=now, received_at=now)),
    ]


async def seed_project(storage: Storage, pid: int) -> None:
    """One row of each table for project `pid`, and a feedback row on its suggestion."""
    now = utcnow()
    async with storage.engine.begin() as conn:
        for table, row in rows_of(pid, now):
            await conn.execute(sa.insert(table).values(**row))
        sid = (await conn.execute(sa.insert(suggestions).values(
            project_id=pid, mr_iid=1, created_at=now, people=[], model_version="v1").returning(
            suggestions.c.id))).scalar_one()
        await conn.execute(sa.insert(feedback).values(suggestion_id=sid, project_id=pid, mr_iid=1,
                                                      person="bob", label="accepted", created_at=now))


async def seed(url: str) -> None:
    storage = Storage(url)
    try:
        for pid in (1, 2):
            await seed_project(storage, pid)
        async with storage.engine.begin() as conn:
            await conn.execute(sa.insert(people).values(user_id=7, username="bob", username_key="bob",
                                                        seen_at=utcnow()))
    finally:
        await storage.close()


async def counts(url: str) -> dict[str, tuple[int, int]]:
    """Rows of project 1 and of project 2, per table; and the people rows."""
    storage = Storage(url)
    try:
        async with storage.engine.connect() as conn:
            out = {}
            for name, table, column in PROJECT_TABLES:
                out[name] = tuple([(await conn.execute(sa.select(sa.func.count()).select_from(table).where(
                    column == pid))).scalar_one() for pid in (1, 2)])
            out["people"] = (await conn.execute(sa.select(sa.func.count()).select_from(people))).scalar_one()
            return out
    finally:
        await storage.close()


@pytest.fixture
def two_projects(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    run_in_thread(lambda: seed(database_url))
    return database_url


def test_every_table_that_holds_a_project_s_rows_is_forgotten():
    """A table added later with a project_id column is deleted from too, or this fails."""
    holding = {t.name for t in metadata.tables.values() if "project_id" in t.c} | {"projects"}
    assert {table.name for _, table, _ in PROJECT_TABLES} == holding


def test_forget_says_what_would_go_and_deletes_nothing_without_yes(two_projects, capsys):
    assert run("--project", "1") == 0
    out = capsys.readouterr().out
    assert out.startswith(  # one of each, said in the singular
        "project 1: would delete 1 merged change, 1 suggestion, 1 feedback row, 1 approval or reviewer time, "
        "1 comment record, 1 opt-out, 1 model version, 1 snapshot, 1 event, 1 project row\n"), out
    assert "--yes" in out
    assert set(run_in_thread(lambda: counts(two_projects)).values()) == {(1, 1), 1}


def test_forget_deletes_one_project_s_rows_everywhere_and_keeps_the_others(two_projects, capsys):
    assert run("--project", "Group/App1", "--yes") == 0  # by its path, without case, as GitLab compares paths
    out = capsys.readouterr().out
    assert out.startswith("project 1: deleted 1 merged change, 1 suggestion,") and "drop it from memory" in out
    left = run_in_thread(lambda: counts(two_projects))
    assert left.pop("people") == 1  # usernames are the instance's, not a project's
    assert left == {name: (0, 1) for name, _, _ in PROJECT_TABLES}
    assert run("--project", "1", "--yes") == 1  # nothing left of it
    assert "holds nothing of project 1" in capsys.readouterr().err


def test_forget_names_a_project_the_database_does_not_hold(two_projects, capsys):
    assert run("--project", "group/nope") == 1
    err = capsys.readouterr().err
    assert "holds no project with the path group/nope" in err and "DATABASE_URL" in err
    assert "give its numeric id" in err  # a path is stored once the bot has read the project from GitLab
    assert set(run_in_thread(lambda: counts(two_projects)).values()) == {(1, 1), 1}


GENERATED_IDS = (events, history, suggestions, feedback, models, snapshots)  # every table whose id the database gives


async def test_no_row_id_is_given_twice_after_a_forget_deleted_the_newest_rows(two_projects):
    """Ids live on outside their rows (a worker's event, a feedback row's suggestion, a learner's mark): once
    project 2's rows, the newest of every table, are forgotten, a new row gets an id larger than any ever given.
    SQLite gave the largest id left plus one, the forgotten rows' very ids, until each table was AUTOINCREMENT
    (0013, 0014); PostgreSQL's sequences never give one twice."""
    storage = Storage(two_projects)
    try:
        async with storage.engine.begin() as conn:
            given = {t.name: (await conn.execute(sa.select(sa.func.max(t.c.id)))).scalar_one() for t in GENERATED_IDS}
        await forget_project(storage.engine, 2)
        await seed_project(storage, 3)
        async with storage.engine.begin() as conn:
            new = {t.name: (await conn.execute(sa.select(sa.func.min(t.c.id)).where(t.c.project_id == 3))
                            ).scalar_one() for t in GENERATED_IDS}
        assert {name: new[name] > given[name] for name in given} == {name: True for name in given}
    finally:
        await storage.close()


async def test_an_event_stored_after_a_forget_is_not_taken_for_a_forgotten_one_still_running(database_url):
    """A worker runs project 2's newest event when `forget` deletes it, and claims the next event stored. Were it
    given the forgotten event's id, the end of the forgotten event's run would mark the new one done before it
    ran (the worker finishes its events by id and lease owner)."""
    storage = Storage(database_url)
    try:
        for pid in (1, 2):
            await storage.events.store_event(dedupe_key=f"k{pid}", kind="Merge Request Hook", headers={}, body={},
                                             project_id=pid, mr_iid=1)
        running = await storage.events.claim("w", 60.0, 2)
        forgotten = max(row.id for row in running if row.project_id == 2)
        await forget_project(storage.engine, 2)
        new_id, _ = await storage.events.store_event(dedupe_key="k3", kind="Merge Request Hook", headers={},
                                                     body={}, project_id=3, mr_iid=1)
        assert [row.id for row in await storage.events.claim("w", 60.0)] == [new_id]
        assert new_id > forgotten
        assert not await storage.events.complete(forgotten, owner="w")  # the forgotten run ends
        assert (await storage.events.get(new_id)).status == "running"
    finally:
        await storage.close()


# --- a running bot process, after the forget ------------------------------------------------------------------
def change(i: int) -> Change:
    return Change(f"!{i}", 1_700_000_000 + i * 3600, "ann", ("bob",), ("src/a.py",))


@pytest.fixture
async def learned(database_url):
    """A project (`PID`) with a history a ranker can be retrained on."""
    storage = Storage(database_url)
    await store_history(storage)
    yield storage
    await storage.close()


async def test_a_model_or_snapshot_built_on_a_forgotten_history_is_not_stored(database_url):
    storage = Storage(database_url)
    try:
        await storage.history.upsert(1, [change(1), change(2)])
        await storage.history.upsert(2, [change(1)])
        rows = {pid: [i for i, _ in (await storage.history.rows_since(pid))[0]] for pid in (1, 2)}
        await forget_project(storage.engine, 1)
        with pytest.raises(HistoryGone):
            await storage.models.save(1, "v1", b"m", built_on=rows[1])
        with pytest.raises(HistoryGone):
            await storage.models.save_replacing(1, "v1", b"m", expected=None, built_on=rows[1])
        with pytest.raises(HistoryGone):
            await storage.snapshots.save(1, b"s", format="f", config="c", history_count=2, history_time=None,
                                         boundary=rows[1], built_on=rows[1])
        assert await project_rows(storage.engine, 1) == NOTHING
        await storage.models.save(2, "v1", b"m", built_on=rows[2])  # a project still stored: as before
        assert [m.version for m in await storage.models.list(2)] == ["v1"]
    finally:
        await storage.close()


async def test_a_fit_built_before_the_forget_is_not_stored_once_the_history_came_back_as_long(database_url):
    """The race on SQLite: a project forgotten while its rows were the newest, then imported again (as long a
    history) before a fit or snapshot built on the old rows was stored. SQLite gave the new rows max(rowid) + 1,
    the very ids of the forgotten ones, so the check found them and stored the forgotten project's model and
    snapshot. The history's ids are never given twice now (AUTOINCREMENT, as PostgreSQL's sequence)."""
    storage = Storage(database_url)
    try:
        await storage.history.upsert(2, [change(1)])  # another project's rows before: the ids are not just 1, 2
        await storage.history.upsert(1, [change(1), change(2)])
        built_on = [i for i, _ in (await storage.history.rows_since(1))[0]]
        await forget_project(storage.engine, 1)
        await storage.history.upsert(1, [change(1), change(2)])  # the next event imports it again
        with pytest.raises(HistoryGone):
            await storage.models.save(1, "v1", b"m", built_on=built_on)
        with pytest.raises(HistoryGone):
            await storage.models.save_replacing(1, "v1", b"m", expected=None, built_on=built_on)
        with pytest.raises(HistoryGone):
            await storage.snapshots.save(1, b"s", format="f", config="c", history_count=2, history_time=None,
                                         boundary=built_on, built_on=built_on)
        assert await storage.models.list(1) == [] and await storage.snapshots.list(1) == []
        assert await storage.history.count_holding(1, max(built_on)) == (2, False)  # what the engine reads
        assert min(i for i, _ in (await storage.history.rows_since(1))[0]) > max(built_on)
    finally:
        await storage.close()


async def test_a_model_being_stored_as_the_forget_starts_is_deleted_with_the_rest(postgres_url):
    """PostgreSQL runs writers side by side: `forget` waits for a model's transaction holding the project's lock
    (as `ModelStore.save` does), then deletes its row too. Without the lock it committed first, and the model
    stored after it stayed, a project's row again."""
    storage = Storage(postgres_url)
    try:
        await storage.history.upsert(1, [change(1)])
        async with storage.engine.begin() as conn:
            await lock_project(conn, MODEL_LOCK, 1)
            forgetting = asyncio.create_task(forget_project(storage.engine, 1))
            await asyncio.sleep(0.5)
            assert not forgetting.done()
            await conn.execute(sa.insert(models).values(project_id=1, version="v1", created_at=utcnow(), blob=b"m",
                                                        active=True))
        assert (await forgetting)["models"] == 1
        assert await project_rows(storage.engine, 1) == NOTHING
    finally:
        await storage.close()


async def test_a_retraining_that_ends_after_the_forget_stores_no_model(learned):
    """The fit takes seconds to minutes in the background; the model it stored after the forget brought the
    project back, and a new project under its id adopted the forgotten history's model."""
    engine = Engine(learned, retrain_labels=4, holdout=60, snapshot_every=None)
    async with engine.use(PID, SETTINGS) as rec:
        rec.model_ = None  # the first model is compared with the graph score: it would be stored
    await rejections(learned, 4)
    await engine.learn_new(PID, SETTINGS)  # four labels: the retraining starts, and needs the project's lock
    async with engine.use(PID, SETTINGS):
        await forget_project(learned.engine, PID)
    await engine.wait_background()
    assert await project_rows(learned.engine, PID) == NOTHING


async def test_a_retraining_waiting_while_the_engine_drops_the_project_stores_no_model(learned):
    """The retraining, started before the forget, gets the project's lock only after a use that found the project
    forgotten and started it over: the rows it names are the ones its recommender saw, not the new project's."""
    now = [0.0]
    engine = Engine(learned, retrain_labels=None, retrain_seconds=3600, holdout=60, snapshot_every=None,
                    clock=lambda: now[0])
    async with engine.use(PID, SETTINGS) as rec:
        rec.model_ = None
    await rejections(learned, 4)
    await engine.learn_new(PID, SETTINGS)
    now[0] += 3600  # the retraining is due, and so is a look at the history
    async with engine.use(PID, SETTINGS):
        await forget_project(learned.engine, PID)
        now[0] += engine.refresh_seconds
        looking = asyncio.create_task(engine.learn_new(PID, SETTINGS))  # the next event: waits for the lock
        await asyncio.sleep(0)
        engine.retrain_due()  # the timer: its retraining waits for the lock behind that event
    await looking
    assert engine.changes_seen(PID) == 0
    await engine.wait_background()
    assert await project_rows(learned.engine, PID) == NOTHING


async def forget_with_unsaved_rows(storage: Storage, engine: Engine) -> None:
    """Project 1 in `engine`, snapshotted after 12 changes, then a 13th observed (not in a snapshot yet), then
    forgotten."""
    await storage.history.upsert(1, [change(i) for i in range(12)])
    async with engine.use(1, SETTINGS):
        pass
    await engine.wait_background()
    await storage.history.upsert(1, [change(12)])
    async with engine.use(1, SETTINGS):
        pass
    await forget_project(storage.engine, 1)


async def test_a_snapshot_written_at_shutdown_after_the_forget_is_not_stored(database_url):
    storage = Storage(database_url)
    try:
        engine = Engine(storage, snapshot_every=10)
        await forget_with_unsaved_rows(storage, engine)
        await engine.close()  # the project was not looked at since: its last snapshot is refused
        assert await project_rows(storage.engine, 1) == NOTHING
    finally:
        await storage.close()


async def test_a_forgotten_project_no_event_uses_is_dropped_once_idle_and_nothing_of_it_stored(database_url):
    storage = Storage(database_url)
    try:
        now = [0.0]
        engine = Engine(storage, snapshot_every=10, idle_seconds=3600, clock=lambda: now[0])
        await forget_with_unsaved_rows(storage, engine)
        now[0] += 3600
        await engine.evict_idle()  # its snapshot is refused (the rows are gone), and it goes all the same
        assert 1 not in engine
        assert await project_rows(storage.engine, 1) == NOTHING
    finally:
        await storage.close()


async def test_a_running_engine_drops_a_forgotten_project_and_starts_it_over_as_a_new_one(learned):
    now = [0.0]
    engine = Engine(learned, retrain_labels=4, holdout=60, snapshot_every=None, clock=lambda: now[0])
    async with engine.use(PID, SETTINGS) as rec:
        rec.model_ = None
        held = weakref.ref(rec)
    del rec
    await rejections(learned, 3)
    await engine.learn_new(PID, SETTINGS)  # three labels: one short of a retraining
    await forget_project(learned.engine, PID)
    async with engine.use(PID, SETTINGS) as same:  # within refresh_seconds the history is not looked at
        assert same is held()
    del same
    now[0] += engine.refresh_seconds
    async with engine.use(PID, SETTINGS) as fresh:
        assert fresh.og.changes == 0 and fresh.feedback.labels == 0
    assert held() is None and engine.changes_seen(PID) == 0  # its graph and ranker are freed
    await store_history(learned)  # the history imported again, as a new project's
    await rejections(learned, 1, first_event=10, mr_iid=901)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    assert engine.changes_seen(PID) == await learned.history.count(PID)
    assert await learned.models.list(PID) == []  # the new project's one label: the forgotten three do not count


async def test_a_forgotten_project_whose_history_came_back_before_the_engine_looked_is_dropped(learned):
    """Another process imported the history again before this one looked: as many rows as it had seen, and the
    engine kept ranking with what it had learned of the forgotten project (its feedback). The newest row it saw
    is read with the count: gone."""
    now = [0.0]
    engine = Engine(learned, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
    await rejections(learned, 3)
    async with engine.use(PID, SETTINGS) as rec:
        assert rec.feedback.labels == 3
    await learned.history.upsert(PID + 1, [change(1)])  # another project's row after them: new ids on SQLite too
    await forget_project(learned.engine, PID)
    await store_history(learned)  # as another process's import would
    now[0] += engine.refresh_seconds
    async with engine.use(PID, SETTINGS) as fresh:
        assert fresh is not rec and fresh.feedback.labels == 0
        assert engine.changes_seen(PID) == await learned.history.count(PID)


async def test_a_forgotten_project_imported_again_before_the_engine_looks_is_dropped_all_the_same(learned):
    """As above, with no other project's row after the forgotten ones: before 0013 SQLite gave the re-imported rows
    the forgotten rows' ids, and the count and the rows seen matched. The active model the recommender ranked with
    is gone, which tells it too: only the forget deletes one."""
    from tests.test_retrain import trained

    await learned.models.save(PID, "v1", pickle.dumps(trained().model_, 5))
    now = [0.0]
    engine = Engine(learned, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
    await rejections(learned, 3)
    async with engine.use(PID, SETTINGS) as rec:
        assert rec.model_version == "v1" and rec.feedback.labels == 3
    await forget_project(learned.engine, PID)
    await store_history(learned)  # as another process's import would
    now[0] += engine.refresh_seconds
    async with engine.use(PID, SETTINGS) as fresh:
        assert fresh is not rec and fresh.model_version is None and fresh.feedback.labels == 0
        assert fresh.og.changes == len(await learned.history.load(PID))


async def test_the_next_event_of_a_forgotten_project_imports_its_history_again(handler_env):
    """The process kept the project as imported: its events after the forget ran on an empty history ("no
    review history yet") until a restart. It reads the project's row again every `backfill_recheck` seconds."""
    env = await handler_env()
    imported = await env.storage.history.count(env.pid)
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=FAST_RETRY, backfill_wait=600.0,
                             backfill_recheck=0.2) as dispatch:
        before = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
        await dispatch_outbox(env.state, dispatch)
        assert len(marker_notes(env.state, before)) == 1
        await forget_project(env.storage.engine, env.pid)
        await asyncio.sleep(0.3)
        mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
        [opened] = take_events(env.state)
        row = event_row(opened.event_name, opened.body)
        with pytest.raises(AwaitingHistory) as parked:  # parked for the import, as a new project's first event
            await dispatch(row)
        await parked.value.wakes
        assert await env.storage.history.count(env.pid) == imported
        await dispatch(dataclasses.replace(row, last_error=str(parked.value)))
    assert len(marker_notes(env.state, mr)) == 1 and "no review history" not in marker_notes(env.state, mr)[0].body
    assert (await env.storage.projects.get(env.pid)).backfill_done


async def test_the_event_that_finds_the_project_forgotten_has_the_next_one_import_it(handler_env):
    """Within `backfill_recheck` (30 s) of reading the project's row, the process takes its import as done: that
    event goes on with no history, and the engine finds the project forgotten. It tells the imports: the next
    event imports the history again."""
    env = await handler_env()
    imported = await env.storage.history.count(env.pid)
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=FAST_RETRY, backfill_wait=600.0) as dispatch:
        engine = dispatch.args[0].engine
        env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
        await dispatch_outbox(env.state, dispatch)
        await forget_project(env.storage.engine, env.pid)
        await asyncio.sleep(engine.refresh_seconds)  # the engine looks at the history at its next use
        env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
        [opened] = take_events(env.state)
        await dispatch(event_row(opened.event_name, opened.body))  # not parked: the import is taken as done
        assert engine.changes_seen(env.pid) == 0
        take_events(env.state)  # what the bot's comment caused
        mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m1.py"])
        [opened] = take_events(env.state)
        row = event_row(opened.event_name, opened.body)
        with pytest.raises(AwaitingHistory) as parked:
            await dispatch(row)
        await parked.value.wakes
        assert await env.storage.history.count(env.pid) == imported
        await dispatch(dataclasses.replace(row, last_error=str(parked.value)))
        assert engine.changes_seen(env.pid) == imported
    assert len(marker_notes(env.state, mr)) == 1 and "no review history" not in marker_notes(env.state, mr)[0].body


# --- labels given after the forget: each learned once ------------------------------------------------------------
async def labels_learned_after_a_forget(storage: Storage, *, history: bool) -> list[int]:
    """How many labels a running engine has learned of project `PID` since its three labels were forgotten and two
    given anew, at each of three looks (the labels forgotten were the newest rows of the table: SQLite gives a new
    row the largest id in it plus one, and the engine's recommender learns the rows above its mark)."""
    now = [0.0]
    engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
    if history:
        await store_history(storage)
    await rejections(storage, 3)
    async with engine.use(PID, SETTINGS) as held:
        assert held.feedback.labels == 3
    await forget_project(storage.engine, PID)
    if history:
        await store_history(storage)  # the next event imports it again
    await rejections(storage, 2, first_event=10, mr_iid=901)
    learned = []
    for _ in range(3):
        now[0] += engine.refresh_seconds
        async with engine.use(PID, SETTINGS) as rec:  # the forgotten labels do not count, if it still holds them
            learned.append(rec.feedback.labels - (3 if rec is held else 0))
    return learned


async def test_labels_given_after_a_forget_are_learned_once_by_an_engine_that_held_the_project(database_url):
    """The engine finds the project forgotten (its history rows are gone) and learns its labels from the start."""
    storage = Storage(database_url)
    try:
        assert await labels_learned_after_a_forget(storage, history=True) == [2, 2, 2]
    finally:
        await storage.close()


async def test_labels_given_after_a_forget_are_learned_once_by_an_engine_that_held_a_project_without_history(
        database_url):
    """A project without merged MRs yet: no history row before the forget nor after. The engine finds the forget by
    the newest label it learned, gone, and learns the labels given after it once: before 0014 SQLite gave them the
    forgotten labels' ids, under the mark, and none was ever learned."""
    storage = Storage(database_url)
    try:
        assert await labels_learned_after_a_forget(storage, history=False) == [2, 2, 2]
    finally:
        await storage.close()


@pytest.mark.parametrize("then", ["refresh", "new labels"])
async def test_a_forgotten_project_without_history_is_dropped_with_the_labels_it_had_learned(database_url, then):
    """No merged MR yet, so no history row tells the forget: the newest label the recommender learned, read with the
    history's row count, is gone. Its rejection streak and the rest of what it learned go (at the next look, or at
    once when this process stores new feedback), and the labels given since are learned alone."""
    storage = Storage(database_url)
    now, forgotten = [0.0], []
    engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
    engine.on_forgotten.append(forgotten.append)
    try:
        await rejections(storage, 3)
        async with engine.use(PID, SETTINGS) as held:
            assert held.feedback.labels == 3 and engine.changes_seen(PID) == 0
        await forget_project(storage.engine, PID)
        if then == "refresh":
            now[0] += engine.refresh_seconds
        else:
            await rejections(storage, 2, first_event=10, mr_iid=901)
            await engine.learn_new(PID, SETTINGS)
        async with engine.use(PID, SETTINGS) as rec:
            assert rec is not held and rec.feedback.labels == (0 if then == "refresh" else 2)
        assert forgotten == [PID]
    finally:
        await storage.close()


async def test_a_project_without_history_whose_newest_label_learned_was_pruned_is_rebuilt_from_what_is_stored(
        storage, clock, caplog):
    """`reviewbot prune` deleted the rows of a merge request closed long ago, the newest the recommender had learned
    among them (another project's row is newer: prune keeps the table's newest). The engine cannot tell that from a
    forget; it builds the project again from the labels stored, as a restarted process would (no history: cheap)."""
    now = [0.0]
    engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
    await rejections(storage, 3)
    await storage.feedback.record(PID, 900, "ann", "closed", source_event_id=4)
    clock.advance(86400)
    await storage.feedback.record(PID + 1, 1, "bob", "accepted", source_event_id=5)
    async with engine.use(PID, SETTINGS) as held:
        assert held.feedback.labels == 3
    clock.advance(400 * 86400)
    assert (await storage.retention.prune(timedelta(days=365)))["feedback"] == 4
    now[0] += engine.refresh_seconds
    with caplog.at_level(logging.INFO, logger="bot.engine"):
        async with engine.use(PID, SETTINGS) as rec:
            assert rec is not held and rec.feedback.labels == 0
    assert "newest label it learned is gone (reviewbot forget, or prune's retention)" in caplog.text
