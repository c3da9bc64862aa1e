"""Pieces the queue benchmarks share: a throw-away database, percentiles, a line of figures.

Not a benchmark itself. The scripts beside it put the repository root on `sys.path` and import this module as
`benchmarks.bench_support`.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import tempfile
import uuid
from pathlib import Path
from typing import AsyncIterator, Sequence

from bot.storage import migrate

__all__ = ["temporary_database", "percentile", "machine", "POSTGRES_ADMIN"]

POSTGRES_ADMIN = os.environ.get("REVIEWBOT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(kind: str = "postgresql") -> AsyncIterator[str]:
    """A migrated database that is dropped afterwards: a new PostgreSQL database, or a SQLite file."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="reviewbot-bench-") as folder:
            url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.sqlite3'}"
            await migrate(url)
            yield url
        return
    name = f"reviewbot_bench_{uuid.uuid4().hex[:10]}"
    try:
        await _pg(POSTGRES_ADMIN, f'CREATE DATABASE "{name}"')
    except OSError as exc:
        raise SystemExit(f"PostgreSQL is not reachable at {POSTGRES_ADMIN} ({exc}): start it (see .ci/run) "
                         "or set REVIEWBOT_TEST_POSTGRES") from None
    url = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    try:
        await migrate(url)
        yield url
    finally:
        await _pg(POSTGRES_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) by the nearest-rank method; nan when there are no values.

    >>> percentile([1, 2, 3, 4], 0.5), percentile([1, 2, 3, 4], 0.99)
    (2, 4)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def machine() -> str:
    """What the figures were measured on (they mean little without it)."""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, load {load}"
