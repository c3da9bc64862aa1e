"""`reviewbot migrate` on a new SQLite file: creates the schema, then reports it current."""
from __future__ import annotations

import argparse

import pytest

from bot.cli import migrate as migrate_cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    migrate_cli.register(parser.add_subparsers())
    args = parser.parse_args(["migrate", *argv])
    return args.func(args)


@pytest.fixture
def new_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)


def test_migrate_then_check(new_database, capsys):
    assert run("--check") == 1
    assert "needs `reviewbot migrate`" in capsys.readouterr().out
    assert run() == 0
    assert "at revision" in capsys.readouterr().out
    assert run("--check") == 0 and "up to date" in capsys.readouterr().out


def test_a_bad_database_url_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    assert run() == 2
    assert "setting database.url (from environment variable DATABASE_URL)" in capsys.readouterr().err
