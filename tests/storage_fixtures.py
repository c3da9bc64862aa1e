"""Database fixtures: every storage test runs on SQLite (a temporary file) and on PostgreSQL.

Load with `pytest_plugins = ["storage_fixtures"]` in tests/conftest.py. PostgreSQL is the server at
127.0.0.1:5432 (user postgres, then root; trust auth; admin database `test`), or the URL in
REVIEWBOT_TEST_POSTGRES. One database, migrated once, is created per test session and dropped at the
end; each test starts from empty tables. When the server is unreachable the PostgreSQL cases skip.

Fixtures: `database_url` (parametrised sqlite/postgresql), `storage` (a `Storage` on it, with the
`clock`), `clock` (a `FakeClock` the stores read), `postgres_url` (PostgreSQL only), `sqlite_url`,
`blank_database_url` (parametrised, never migrated: for the migrations' own tests).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import pytest

from bot.storage import Storage, migrate
from bot.storage.tables import metadata

ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def run_in_thread(make: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion on a private loop in another thread.

    Session fixtures are synchronous; a private thread keeps their loop away from pytest-asyncio's.
    """
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class FakeClock:
    """A clock the stores read instead of the wall clock, moved by hand (no sleeping in tests)."""

    def __init__(self, start: datetime = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


async def _pg_execute(url: str, *sql: str) -> None:
    import asyncpg

    # A server that is not there refuses at once; the time is for a loaded one: with 3 s, a slow probe skipped
    # every PostgreSQL test of that test process without a word, and a slow one before a TRUNCATE errored the test.
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=30)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def _reachable_admin_url() -> str | None:
    candidates = [os.environ["REVIEWBOT_TEST_POSTGRES"]] if os.environ.get("REVIEWBOT_TEST_POSTGRES") else ADMIN_URLS
    for url in candidates:
        try:
            run_in_thread(lambda: _pg_execute(url, "SELECT 1"))
            return url
        except Exception:  # noqa: BLE001 - any failure means "no usable server": skip, don't error
            continue
    return None


@pytest.fixture(scope="session")
def _postgres_admin() -> str | None:
    return _reachable_admin_url()


@pytest.fixture(scope="session")
def _postgres_database(_postgres_admin: str | None) -> Iterator[str | None]:
    admin = _postgres_admin
    if admin is None:
        yield None
        return
    name = f"reviewbot_test_{uuid.uuid4().hex[:10]}"
    run_in_thread(lambda: _pg_execute(admin, f'CREATE DATABASE "{name}"'))
    url = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    try:
        run_in_thread(lambda: migrate(url))
        yield url
    finally:
        run_in_thread(lambda: _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    run_in_thread(lambda: migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh, migrated SQLite database file for this test."""
    path = tmp_path / "reviewbot.sqlite3"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def postgres_url(_postgres_database: str | None) -> str:
    """The session's PostgreSQL database with every table emptied; skips without a server."""
    if _postgres_database is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (set REVIEWBOT_TEST_POSTGRES to another server)")
    tables = ", ".join(t.name for t in metadata.sorted_tables)
    run_in_thread(lambda: _pg_execute(_postgres_database, f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return _postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database: once SQLite, once PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, never migrated (a PostgreSQL one of its own, dropped after the test)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'blank.sqlite3'}"
        return
    admin = request.getfixturevalue("_postgres_admin")
    if admin is None:
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (set REVIEWBOT_TEST_POSTGRES to another server)")
    name = f"reviewbot_blank_{uuid.uuid4().hex[:10]}"
    run_in_thread(lambda: _pg_execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        run_in_thread(lambda: _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> FakeClock:
    """The time the stores see; advance it to expire leases or reach a retry."""
    return FakeClock()


@pytest.fixture
async def storage(database_url: str, clock: FakeClock) -> AsyncIterator[Storage]:
    """A `Storage` on the test's database, reading `clock`."""
    store = Storage(database_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()
