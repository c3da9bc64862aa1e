"""`reviewbot prune`: what a year leaves in the database (SQLite and PostgreSQL), deleted by age and kind."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.cli import build_parser
from bot.storage import Storage, utcnow
from bot.storage.tables import models
from graph.model import Change
from tests.storage_fixtures import run_in_thread

DAY = timedelta(days=1)


def run(*argv: str) -> int:
    args = build_parser().parse_args(["prune", *argv])
    return args.func(args)


async def seed(url: str) -> int:
    """Events done, dead and failed 400 days ago and one done 2 days ago; !1 merged and !2 closed 400 days
    ago, !3 merged 100 days ago, !4 open; eight model versions of project 1 as a database from before kept
    them. Returns the failed event's id."""
    now = utcnow()
    at = [now - 400 * DAY]
    storage = Storage(url, clock=lambda: at[0])
    try:
        ids = [(await storage.events.store_event(dedupe_key=key, kind="Note Hook", headers={}, body={}, project_id=1,
                                                 mr_iid=iid))[0] for key, iid in (("a", 11), ("b", 12), ("c", 13))]
        await storage.events.claim("w", 60, 3)
        await storage.events.complete(ids[0])
        await storage.events.dead_letter(ids[1], "broken")
        await storage.events.retry_later(ids[2], "GitLab said 502", 500 * 86400, max_attempts=6)
        await storage.history.upsert(1, [Change("!1", int(at[0].timestamp()), "ann", ("bob",), ("a.c",))])
        for iid, label in ((1, "accepted"), (2, "closed")):
            sid = await storage.suggestions.add(1, iid, [{"username": "bob"}], "v", files=["a.c"])
            await storage.feedback.record(1, iid, "bob", label, suggestion_id=sid)
        at[0] = now - 100 * DAY
        await storage.history.upsert(1, [Change("!3", int(at[0].timestamp()), "ann", ("bob",), ("a.c",))])
        sid = await storage.suggestions.add(1, 3, [{"username": "bob"}], "v")
        await storage.feedback.record(1, 3, "bob", "accepted", suggestion_id=sid)
        at[0] = now - 2 * DAY
        recent, _ = await storage.events.store_event(dedupe_key="d", kind="Note Hook", headers={}, body={},
                                                     project_id=1, mr_iid=14)
        await storage.events.claim("w", 60, 1)
        await storage.events.complete(recent)
        open_mr = await storage.suggestions.add(1, 4, [{"username": "bob"}], "v")
        await storage.feedback.record(1, 4, "bob", "accepted", suggestion_id=open_mr)
        async with storage.engine.begin() as conn:
            await conn.execute(sa.insert(models), [
                dict(project_id=1, version=f"v{n}", created_at=at[0], blob=b"x", active=n == 1) for n in range(8)])
        return ids[2]
    finally:
        await storage.close()


async def left(url: str) -> dict[str, list]:
    storage = Storage(url)
    try:
        return {"events": [(e.id, e.status) for e in await storage.events.list_events()],
                "models": [(m.version, m.active) for m in await storage.models.list(1)],
                "suggestions": [s.mr_iid for s in await storage.suggestions.list(1)],
                "feedback": [(f.mr_iid, f.label) for f in await storage.feedback.list(1)]}
    finally:
        await storage.close()


@pytest.fixture
def aged(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url, run_in_thread(lambda: seed(database_url))


def test_prune_deletes_what_is_past_its_retention_and_nothing_within(aged, capsys):
    url, failed = aged
    assert run() == 0
    assert capsys.readouterr().out.splitlines() == [
        "deleted 1 done event, 1 dead event, 2 model versions, 0 comment records, 0 approval or reviewer "
        "times, 2 suggestions, 2 feedback rows"]
    after = run_in_thread(lambda: left(url))
    assert [status for _, status in after["events"]] == ["done", "failed"]  # 2 days old; still retried
    assert after["models"] == [("v1", True), *((f"v{n}", False) for n in range(3, 8))]
    assert after["suggestions"] == [3, 4] and after["feedback"] == [(3, "accepted"), (4, "accepted")]
    assert run("--mr-days", "90", "--events-days", "1") == 0  # the newest event stays: its id is not given again
    assert "1 suggestion, 1 feedback row" in capsys.readouterr().out
    after = run_in_thread(lambda: left(url))
    assert after["suggestions"] == [4] and after["feedback"] == [(4, "accepted")]
    assert after["events"][1] == (failed, "failed")


def test_a_retention_of_zero_in_the_settings_keeps_those_rows(aged, tmp_path, capsys):
    config = tmp_path / "bot.toml"
    config.write_text("[worker]\ndead_retention_days = 0\nmr_retention_days = 0\n")
    assert run("--config", str(config)) == 0
    out = capsys.readouterr().out
    assert "0 dead events" not in out and "suggestions" not in out
    assert "kept (retention 0 in [worker]): dead events, finished merge requests' rows" in out
    assert run_in_thread(lambda: left(aged[0]))["suggestions"] == [1, 2, 3, 4]


def test_rows_within_ninety_days_are_never_asked_for(aged, capsys):
    with pytest.raises(SystemExit):
        run("--mr-days", "30")
    assert "must be a number of days from 90 to 36525, got '30'" in capsys.readouterr().err
