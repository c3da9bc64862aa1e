"""`reviewbot events`: list, show, requeue and prune against a real (SQLite) queue."""
from __future__ import annotations

import json

import pytest

from bot.cli import build_parser
from bot.cli import events as events_cli
from bot.storage import Storage
from tests.storage_fixtures import run_in_thread


def run(*argv: str) -> int:
    args = build_parser().parse_args(["events", *argv])
    return args.func(args)


@pytest.fixture
def queue(sqlite_url, tmp_path, monkeypatch):
    """Two events: #1 done, #2 dead after a failure."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        for key, iid in (("a", 1), ("b", 2)):
            await storage.events.store_event(dedupe_key=key, kind="Note Hook", headers={}, body={"k": key},
                                             project_id=5, mr_iid=iid)
        await storage.events.claim("w", 60, 2)
        await storage.events.complete(1)
        await storage.events.retry_later(2, "RuntimeError: GitLab said 502", 10, max_attempts=1)
        await storage.close()

    run_in_thread(seed)
    return sqlite_url


def test_list_failed_as_json(queue, capsys):
    assert run("list", "--failed", "--json") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["id"], e["status"], e["last_error"]) for e in lines] == [(2, "dead", "RuntimeError: GitLab said 502")]


def test_list_as_a_table_with_counts(queue, capsys):
    assert run("list") == 0
    out = capsys.readouterr().out
    assert "Note Hook" in out and "done=1" in out and "dead=1" in out
    assert "received (UTC)" in out  # the times are UTC, whatever the machine's zone
    assert "--limit" not in out  # every event is shown


def test_a_list_cut_at_its_limit_says_so(queue, capsys):
    """Past --limit (50) the oldest events were left out without a word: the counts below the table read as
    though the table held them all."""
    assert run("list", "--limit", "1") == 0
    out = capsys.readouterr().out
    assert "showing the newest event only (--limit 1): give a larger --limit for more" in out, out
    assert run("list", "--limit", "2") == 0
    assert "--limit" not in capsys.readouterr().out


def test_no_action_lists_and_piped_output_keeps_whole_rows(queue, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert run() == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "Note Hook" in line]
    assert [line.split()[1] for line in rows] == ["2", "1"] and "GitLab said 502" in rows[0]


def test_show_and_requeue(queue, capsys):
    assert run("show", "2") == 0
    assert json.loads(capsys.readouterr().out)["body"] == {"k": "b"}
    assert run("show", "9") == 1
    assert run("requeue", "2", "9") == 1
    assert "requeued 1 event\n" in capsys.readouterr().out
    run("list", "--status", "queued", "--json")
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [2]


def test_prune_keeps_recent_events(queue, capsys):
    assert run("prune", "--older-than-days", "0") == 0
    assert "deleted 0 done events\n" in capsys.readouterr().out


def test_an_unmigrated_database_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert run("list") == 1  # a runtime failure, as serve and worker say it (2 is for a wrong setting)
    assert "run `reviewbot migrate`" in capsys.readouterr().err


def test_config_after_the_action(queue, tmp_path, capsys, monkeypatch):
    """`events list --config X`, as with every other command (it was "unrecognized arguments")."""
    monkeypatch.delenv("DATABASE_URL")
    config = tmp_path / "bot.toml"
    config.write_text(f'[gitlab]\nurl = "https://gitlab.example"\n[database]\nurl = "{queue}"\n'
                      '[worker]\nretention_days = 30\n')
    assert run("list", "--json", "--config", str(config)) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_the_database_echo_goes_to_stderr_not_into_the_json(queue, tmp_path, capfd, monkeypatch):
    """`[database] echo = true`: SQLAlchemy's own echo printed every statement on stdout, between the JSON
    lines of `events list --json`."""
    import logging

    monkeypatch.delenv("DATABASE_URL")
    config = tmp_path / "bot.toml"
    config.write_text(f'[gitlab]\nurl = "https://gitlab.example"\n[database]\nurl = "{queue}"\necho = true\n')
    engine_log = logging.getLogger("sqlalchemy.engine.Engine")
    monkeypatch.setattr(engine_log, "handlers", [])  # restored after the test: no SQL log for the others
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    level = engine_log.level
    try:
        assert run("--config", str(config), "list", "--json") == 0
    finally:
        engine_log.setLevel(level)
    out, err = capfd.readouterr()
    assert [json.loads(line)["id"] for line in out.splitlines()] == [2, 1] and "SELECT" in err


def test_stored_text_that_looks_like_markup_is_listed_as_it_is(sqlite_url, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        await storage.events.store_event(dedupe_key="m", kind="Merge Request Hook", action="[/]", headers={},
                                         body={}, project_id=5, mr_iid=1)
        await storage.events.claim("w", 60, 1)
        await storage.events.retry_later(1, "ConfigError: [projects.42] bad", 10, max_attempts=1)
        await storage.events.store_event(dedupe_key="esc", kind="Note Hook", action="\x1b[2Jcleared", headers={},
                                         body={}, project_id=5, mr_iid=2)  # an escape sequence: spelled out
        await storage.close()

    run_in_thread(seed)
    assert run("list") == 0
    out = capsys.readouterr().out
    assert "[/]" in out and "[projects.42] bad" in out
    assert "\x1b[2J" not in out and "\\x1b[2Jcleared" in out


def test_eight_bit_controls_and_bidi_overrides_in_stored_text_reach_no_terminal(sqlite_url, tmp_path, monkeypatch,
                                                                                capsys):
    """Anyone who may comment puts text in a stored body. U+009B (CSI) and U+009D (OSC: "\x9d52;c;...\x9c" writes
    the clipboard) are terminal controls as ESC [ and ESC ] are, where a terminal takes 8-bit controls (xterm
    does in UTF-8); `events show` printed them as they were (and DEL, and a right-to-left override, which turns
    the rest of the line). They are spelled out as escapes, and the JSON still reads back to the stored text."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    note = "a\x9b2Jb \x9d52;c;aGk=\x9c \x7f \u202eevil caf\u00e9"

    async def seed() -> None:
        storage = Storage(sqlite_url)
        await storage.events.store_event(dedupe_key="c1", kind="Note Hook", action="\x9b2J\u202e", headers={},
                                         body={"object_attributes": {"note": note}}, project_id=5, mr_iid=1)
        await storage.close()

    run_in_thread(seed)
    for argv in (["show", "1"], ["list"], ["list", "--json"]):
        assert run(*argv) == 0
        out = capsys.readouterr().out
        assert not set("\x9b\x9c\x9d\x7f\u202e") & set(out), (argv, out)
        if argv[0] == "show":
            assert json.loads(out)["body"]["object_attributes"]["note"] == note and "caf\u00e9" in out
        elif argv == ["list", "--json"]:
            assert json.loads(out)["action"] == "\x9b2J\u202e"


def test_a_running_event_whose_lease_ran_out_can_be_requeued(sqlite_url, tmp_path, monkeypatch, capsys):
    """Its worker is gone: it was refused as "running right now"; one under a live lease still is."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        for key, lease in (("live", 600), ("gone", -1)):  # #1 under a live lease, #2's already over
            await storage.events.store_event(dedupe_key=key, kind="Note Hook", headers={}, body={}, project_id=5,
                                             mr_iid=lease)
            await storage.events.claim(f"{key}-worker", lease, 1)
        await storage.close()

    run_in_thread(seed)
    assert run("requeue", "2") == 0 and run("requeue", "1") == 1
    err = capsys.readouterr().err
    assert "event 1 is running in live-worker, its lease until " in err and " UTC" in err
    assert "runs again by itself" in err and len(err.strip().splitlines()) == 1


def test_requeue_says_which_events_are_unknown(queue, capsys):
    """"not requeued (unknown, or running under a live lease): 9" left the operator to guess which."""
    assert run("requeue", "9", "2") == 1
    err = capsys.readouterr().err
    assert err.strip() == "reviewbot events: no event 9: see `reviewbot events list`"


def test_a_database_refusing_writes_is_one_line_and_exit_1(queue, capsys):
    """A read-only replica or file: a raw SQLAlchemy traceback (with the SQL) came out before."""
    async def refuse_updates() -> None:
        storage = Storage(queue)
        async with storage.engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TRIGGER no_updates BEFORE UPDATE ON events "
                                       "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END")
        await storage.close()

    run_in_thread(refuse_updates)
    assert run("requeue", "2") == 1
    err = capsys.readouterr().err
    assert err.startswith("reviewbot events: requeue failed in the database (") and "readonly" in err
    assert "Traceback" not in err and "UPDATE" not in err and len(err.splitlines()) == 1



def test_a_done_event_that_waited_for_the_history_does_not_read_as_waiting(sqlite_url, tmp_path, monkeypatch,
                                                                           capsys):
    """Its "last error" still said "waiting for the project's history import" once it was done."""
    from bot.handlers.context import AwaitingHistory

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        for key in ("done", "parked"):
            await storage.events.store_event(dedupe_key=key, kind="Merge Request Hook", headers={}, body={},
                                             project_id=5, mr_iid=1 if key == "done" else 2)
        await storage.events.claim("w", 60, 2)
        for event_id in (1, 2):
            await storage.events.park(event_id, str(AwaitingHistory(5, 20, None)), 0)
        await storage.events.claim("w", 60, 1)
        await storage.events.complete(1)
        await storage.close()

    run_in_thread(seed)
    assert run("list") == 0
    rows = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if "Merge Request" in line}
    assert "waited for the project's history import" in rows["1"] and "waiting" not in rows["1"]
    assert "waiting for the project's history import" in rows["2"]
    assert run("show", "1") == 0
    assert json.loads(capsys.readouterr().out)["last_error"].startswith("waited for the project's history import")


def test_an_event_that_finished_while_requeue_ran_is_not_said_to_be_running():
    """`requeue` refuses an event under a live lease, then reads it to say why: a worker that finished it in
    between left no owner and no lease, which read "running in None, its lease until ?"."""
    from datetime import datetime

    from bot.storage import EventRow

    now = datetime(2026, 1, 5, 12, 0)
    row = EventRow(7, "k", 5, 1, "Merge Request Hook", "open", {}, {}, "done", 1, now, None, None, None, now, now)
    said = events_cli._not_requeued(7, row)
    assert "None" not in said and "?" not in said and "event 7 is done now" in said and "requeue" in said


def test_the_retries_an_outage_took_are_shown_apart_from_the_attempts(sqlite_url, tmp_path, monkeypatch, capsys):
    """`tries` are what `max_attempts` limits; an event held through a GitLab outage says how often it was
    retried for it (it was shown with dozens of tries, as though one more failure had not buried it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        await storage.events.store_event(dedupe_key="o", kind="Note Hook", headers={}, body={}, project_id=5,
                                         mr_iid=1)
        for _ in range(3):
            await storage.events.claim("w", 60, 1)
            await storage.events.retry_later(1, "GitLabFailure: 502", 0, max_attempts=2, outage=True)
        await storage.events.claim("w", 60, 1)
        await storage.events.retry_later(1, "RuntimeError: boom", 0, max_attempts=2)
        await storage.close()

    run_in_thread(seed)
    assert run("list", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["attempts"], shown["outage_attempts"]) == ("failed", 1, 3)
    assert run("list") == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if "tries" in line).split("┃")
    row = next(line for line in out if "Note Hook" in line).split("│")
    cells = dict(zip((h.strip() for h in header), (c.strip() for c in row)))
    assert (cells["tries"], cells["outage"]) == ("1", "3")


def test_an_event_reclaimed_alone_after_a_crash_says_so(sqlite_url, tmp_path, monkeypatch, capsys):
    """`alone`: the event's last run had no other event beside it, so a crash under it counts in `tries`; the one
    that crashed beside it is still at the try the crash took, given back when it runs again."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)

    async def seed() -> None:
        storage = Storage(sqlite_url)
        for key in "ab":
            await storage.events.store_event(dedupe_key=key, kind="Note Hook", headers={}, body={}, project_id=5,
                                             mr_iid=ord(key))
        await storage.events.claim("killed", 0, 2)  # its lease expires at once: the worker is gone
        await storage.events.claim("w", 60, 2)  # event 1 again, alone
        await storage.close()

    run_in_thread(seed)
    assert run("list", "--json") == 0
    shown = {row["id"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert [(shown[i]["attempts"], shown[i]["ran_alone"]) for i in (1, 2)] == [(1, True), (1, False)]
    assert run("list") == 0
    out = capsys.readouterr().out.splitlines()
    header = [h.strip() for h in next(line for line in out if "tries" in line).split("┃")]
    rows = [[c.strip() for c in line.split("│")] for line in out if "Note Hook" in line]
    assert sorted((cells[header.index("id")], cells[header.index("alone")]) for cells in rows) == [("1", "yes"),
                                                                                                    ("2", "")]


@pytest.mark.parametrize("argv", [["events"], ["events", "requeue", "1"], ["prune"], ["signout-all"],
                                  ["backfill", "--project", "1"]])
def test_a_sqlite_file_that_is_not_there_is_named_and_not_created(tmp_path, monkeypatch, capsys, argv):
    """Run where the bot's database is not (another directory, a mistyped path), these created an empty SQLite
    file there and then asked for `reviewbot migrate` as if the database were the bot's, never migrated."""
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-not-used")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"no SQLite database file at {tmp_path / 'reviewbot.sqlite3'}" in err, err
    assert "working directory" in err and "reviewbot migrate" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
