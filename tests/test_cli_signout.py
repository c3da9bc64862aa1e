"""`reviewbot signout-all`: every dashboard sign-in made until it ran ends, in every process (SQLite and
PostgreSQL); the token itself, and sign-ins made after, still work."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.cli import build_parser
from bot.config import Settings
from bot.dashboard import COOKIE, SESSION_COOKIE, cookie_value
from bot.dashboard_session import Session, derive_key, encode_session
from bot.metrics import Metrics
from bot.storage import Storage, utcnow
from bot.web import make_app
from tests.storage_fixtures import run_in_thread

TOKEN = "dashboard-token-0123456789abcdef"
SECRET = "gloas-application-secret-0123"
SETTINGS = Settings(gitlab={"url": "https://gitlab.example", "token": "glpat-never-shown-0000"},
                    webhook_secrets=[{"secret": "webhook-secret-never-shown-1111"}],
                    dashboard={"token": TOKEN, "gitlab_app_id": "app-id", "gitlab_app_secret": SECRET,
                               "public_url": "https://bot.example"})
AHEAD = 5  # seconds the dashboard's clock is put ahead, to sign in after the command without sleeping


def run(*argv: str) -> int:
    args = build_parser().parse_args(["signout-all", *argv])
    return args.func(args)


def cookies(issued: int) -> dict[str, str]:
    """The token's cookie and ann's GitLab session, both issued at `issued` (unix seconds)."""
    return {COOKIE: cookie_value(TOKEN.encode(), issued),
            SESSION_COOKIE: encode_session(derive_key(SECRET), Session(1, "ann", frozenset(), issued))}


async def statuses(url: str, sent: dict[str, str], headers: dict[str, str] | None = None) -> list[int]:
    """What a `serve` process on `url` answers to each cookie alone (then to `headers` alone, if given)."""
    storage = Storage(url, clock=lambda: utcnow() + timedelta(seconds=AHEAD))
    try:
        async with TestClient(TestServer(make_app(SETTINGS, storage, Metrics()))) as client:
            asked = [{"Cookie": f"{name}={value}"} for name, value in sent.items()] + ([headers] if headers else [])
            return [(await client.get("/", headers=h, allow_redirects=False)).status for h in asked]
    finally:
        await storage.close()


@pytest.fixture
def database(database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    return database_url


def test_signout_all_ends_every_sign_in_made_until_it_ran(database, capsys):
    before = cookies(int(time.time()) - 60)
    assert run_in_thread(lambda: statuses(database, before)) == [200, 200]
    assert run() == 0
    out = capsys.readouterr().out
    assert "every dashboard sign-in made until now is ended" in out and "token" in out
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert run_in_thread(lambda: statuses(database, before, bearer)) == [401, 401, 200]
    after = cookies(int(time.time()) + AHEAD - 1)
    assert run_in_thread(lambda: statuses(database, after)) == [200, 200]  # signed in after it ran


def test_signout_all_on_an_unmigrated_database_names_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'old.sqlite3'}")
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    (tmp_path / "old.sqlite3").touch()
    assert run() == 1
    assert "reviewbot migrate" in capsys.readouterr().err
