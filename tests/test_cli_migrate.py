"""`reviewbot migrate` on a new SQLite file: creates the schema, then reports it current."""
from __future__ import annotations

import os
import stat

import pytest

from bot.cli import build_parser


def run(*argv: str) -> int:
    args = build_parser().parse_args(["migrate", *argv])
    return args.func(args)


@pytest.fixture
def new_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    return monkeypatch


def test_migrate_then_check(new_database, tmp_path, capsys):
    assert run("--check") == 1
    assert "no such file yet: run `reviewbot migrate`" in capsys.readouterr().out
    assert not (tmp_path / "bot.sqlite3").exists()  # a check leaves nothing behind (it created an empty file)
    assert run() == 0
    assert ": created at revision " in capsys.readouterr().out
    assert run("--check") == 0 and "up to date" in capsys.readouterr().out
    assert run() == 0 and "nothing to do" in capsys.readouterr().out


def test_an_invalid_port_does_not_stop_migrate(new_database, monkeypatch, capsys):
    """PORT is the web process's (a platform sets it for every process of the app); migrate opens no port."""
    monkeypatch.setenv("PORT", "not-a-port")
    assert run() == 0 and ": created at revision " in capsys.readouterr().out


def test_database_failures_exit_1_in_one_line(tmp_path, monkeypatch, capsys):
    """As `serve`, `worker` and `events`: 2 is a wrong setting, 1 a database that fails (it was 2 here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x")
    for argv in ([], ["--check"]):
        assert run(*argv) == 1
        err = capsys.readouterr().err
        assert "127.0.0.1:1/x is unreachable" in err and len(err.strip().splitlines()) == 1


def test_an_unreachable_postgresql_names_what_to_check(tmp_path, monkeypatch, capsys):
    """Nothing listening there, or the server refusing the role: the line said only the driver's error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x")
    assert run() == 1
    assert "check the host, port, user and password in DATABASE_URL" in capsys.readouterr().err


def test_a_missing_postgresql_database_says_to_create_it(tmp_path, monkeypatch, capsys):
    """The server answers that the database is not there: "unreachable" sent operators the wrong way."""
    from tests.storage_fixtures import _reachable_admin_url

    admin = _reachable_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", admin.rsplit("/", 1)[0] + "/reviewbot_no_such_db")
    assert run() == 1
    assert "does not exist on its server: create it (createdb reviewbot_no_such_db" in capsys.readouterr().err


def test_a_bad_database_url_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    assert run() == 2
    assert "setting database.url (from environment variable DATABASE_URL)" in capsys.readouterr().err


def test_a_database_migrated_by_a_later_release_is_not_sent_to_migrate(new_database, tmp_path, capsys):
    """After a rollback the database is at a revision this code does not know: `reviewbot migrate` cannot
    help (alembic "Can't locate revision"), so neither `--check` nor the start-up check may advise it."""
    import asyncio
    import sqlite3

    from bot.storage import Storage

    assert run() == 0
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    capsys.readouterr()
    for argv in (["--check"], []):
        assert run(*argv) == 1  # the database cannot be used by this version, as `serve` and `events` say
        err = capsys.readouterr().err
        assert "at 9999, which this version of reviewbot does not know" in err and "a later reviewbot" in err

    async def start() -> str:
        storage = Storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}")
        try:
            await storage.check_schema()
        except Exception as exc:  # noqa: BLE001 - the message is the point
            return str(exc)
        finally:
            await storage.close()
        return ""
    said = asyncio.run(start())
    assert "a later reviewbot migrated it" in said and "run `reviewbot migrate`" not in said


def test_a_refused_login_is_said_as_one_not_as_an_unreachable_database(tmp_path, monkeypatch, capsys):
    """PostgreSQL answered and refused the role: "is unreachable" sent people to check the host and the network
    (and `serve` and `worker` stop on it at once, as on any database that answers but cannot be used)."""
    from tests.storage_fixtures import _reachable_admin_url

    admin = _reachable_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    from sqlalchemy.engine import make_url

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    url = make_url(admin).set(username="reviewbot_no_such_role", password="Zq9w-secret")
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    assert run() == 1
    err = capsys.readouterr().err
    assert "refused the login" in err and 'role "reviewbot_no_such_role" does not exist' in err
    assert "unreachable" not in err and "Zq9w" not in err and len(err.strip().splitlines()) == 1
    assert "user and password in DATABASE_URL" in err


def test_libpq_parameters_of_a_postgresql_url_are_read_or_refused_by_name(tmp_path, monkeypatch, capsys):
    """`?connect_timeout=10` and `?application_name=...`, libpq's spellings, failed every command as
    "unreachable: TypeError: connect() got an unexpected keyword argument"; now they work, and a parameter the
    driver has no use for is a wrong setting (exit 2) that names it."""
    from tests.storage_fixtures import _reachable_admin_url

    admin = _reachable_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    query = "connect_timeout=10&application_name=reviewbot-test&sslmode=disable&command_timeout=30"
    monkeypatch.setenv("DATABASE_URL", f"{admin}?{query}")
    assert run("--check") in (0, 1)
    assert "is unreachable" not in capsys.readouterr().err
    monkeypatch.setenv("DATABASE_URL", f"{admin}?options=-csearch_path%3Dbot&sslmode=require")
    assert run("--check") == 2
    err = capsys.readouterr().err
    assert "`options`" in err and "connect_timeout" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("DATABASE_URL", f"{admin}?sslrootcert=/etc/ca.pem&sslmode=verify-full")
    assert run("--check") == 2 and "give sslrootcert as PGSSLROOTCERT in the environment" in capsys.readouterr().err


def test_migrate_prints_what_revision_0010_repaired(new_database, tmp_path, capsys):
    """A table an early 0005 or 0007 created is repaired, and the processes of that release still running fail
    on it: the operator reads it in the output of the run that repairs it."""
    import asyncio
    import sqlite3

    from bot.storage import migrate

    asyncio.run(migrate(f"sqlite:///{tmp_path / 'bot.sqlite3'}", "0009"))
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:  # `people` as the first 0007 created it
        db.executescript("DROP INDEX ix_people_username_key; DROP TABLE people; CREATE TABLE people (user_id "
                         "BIGINT, username VARCHAR(255), seen_at DATETIME NOT NULL, PRIMARY KEY (user_id, username))")
    assert run() == 0
    out = capsys.readouterr().out.splitlines()
    assert "upgrading from 0009 to 0015..." in out[0] and len(out) == 3
    assert "upgraded from 0009 to 0015" in out[1]
    assert "`people` had the shape of an early 0007" in out[2] and "stop them" in out[2]


def test_migrate_says_what_it_runs_before_the_upgrade(new_database, tmp_path, capsys, monkeypatch):
    """On a large SQLite file 0014 runs for tens of seconds: the line comes before the run, not after."""
    import asyncio

    from bot.cli import migrate as cli
    from bot.storage import migrate

    asyncio.run(migrate(f"sqlite:///{tmp_path / 'bot.sqlite3'}", "0013"))
    seen, real = [], cli.upgrade

    async def upgrade(url):
        seen.append(capsys.readouterr().out)  # what was printed when the run began
        return await real(url)
    monkeypatch.setattr(cli, "upgrade", upgrade)
    assert run() == 0
    assert seen[0].endswith(": upgrading from 0013 to 0015...\n")
    assert "upgraded from 0013 to 0015" in capsys.readouterr().out
    assert run() == 0 and "upgrading" not in capsys.readouterr().out  # nothing to do: no such line


def test_a_new_database_file_is_readable_by_its_owner_only(new_database, tmp_path):
    """The file holds every stored webhook: internal (confidential) notes and private projects' merge requests.
    SQLite created it, and its `-wal` (which takes the file's mode), by the umask: 0644 on most systems, readable
    by every account on the machine. The spool's files were kept 0600 for the same reason."""
    old = os.umask(0o022)
    try:
        assert run() == 0
    finally:
        os.umask(old)
    for path in tmp_path.glob("bot.sqlite3*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name
    existing = tmp_path / "kept.sqlite3"
    existing.touch(mode=0o640)
    os.chmod(existing, 0o640)
    new_database.setenv("DATABASE_URL", f"sqlite:///{existing}")
    assert run() == 0
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640  # a file the operator made keeps the mode they chose
