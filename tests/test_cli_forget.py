"""`reviewbot forget`: one project's rows deleted from every table (SQLite and PostgreSQL), the others' kept."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.cli import build_parser
from bot.storage import Storage, utcnow
from bot.storage.forget import PROJECT_TABLES
from bot.storage.tables import (bot_comments, events, feedback, feedback_times, history, metadata, models, optouts,
                                people, projects, snapshots, suggestions)
from tests.storage_fixtures import run_in_thread


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


async def seed(url: str) -> None:
    now = utcnow()
    storage = Storage(url)
    try:
        async with storage.engine.begin() as conn:
            for pid in (1, 2):
                for table, row in rows_of(pid, now):
                    await conn.execute(sa.insert(table).values(**row))
                sid = (await conn.execute(sa.insert(suggestions).values(
                    project_id=pid, mr_iid=1, created_at=now, people=[], model_version="v1").returning(
                    suggestions.c.id))).scalar_one()
                await conn.execute(sa.insert(feedback).values(suggestion_id=sid, project_id=pid, mr_iid=1,
                                                              person="bob", label="accepted", created_at=now))
            await conn.execute(sa.insert(people).values(user_id=7, username="bob", username_key="bob", seen_at=now))
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
    assert "project 1: would delete 1 merged changes, 1 suggestions, 1 feedback rows" in out and "--yes" in out
    assert set(run_in_thread(lambda: counts(two_projects)).values()) == {(1, 1), 1}


def test_forget_deletes_one_project_s_rows_everywhere_and_keeps_the_others(two_projects, capsys):
    assert run("--project", "Group/App1", "--yes") == 0  # by its path, without case, as GitLab compares paths
    out = capsys.readouterr().out
    assert out.startswith("project 1: deleted 1 merged changes") and "restart the bot's processes" in out
    left = run_in_thread(lambda: counts(two_projects))
    assert left.pop("people") == 1  # usernames are the instance's, not a project's
    assert left == {name: (0, 1) for name, _, _ in PROJECT_TABLES}
    assert run("--project", "1", "--yes") == 1  # nothing left of it
    assert "holds nothing of project 1" in capsys.readouterr().err


def test_forget_names_a_project_the_database_does_not_hold(two_projects, capsys):
    assert run("--project", "group/nope") == 1
    err = capsys.readouterr().err
    assert "holds nothing of project group/nope" in err and "DATABASE_URL" in err
    assert set(run_in_thread(lambda: counts(two_projects)).values()) == {(1, 1), 1}
