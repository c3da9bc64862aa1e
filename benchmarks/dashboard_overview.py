"""The dashboard's pages on a large instance: how long `GET /` and `GET /projects/{id}` take.

Prints figures; it is not a test and asserts nothing. Run from the repository root (PostgreSQL at
127.0.0.1:5432 for `--db postgresql`):

    .venv/bin/python benchmarks/dashboard_overview.py [--projects 5] [--mrs 3000] [--db sqlite postgresql]
        [--rounds 5]

The data: `--projects` projects of `--mrs` merge requests each, spread over the 12 weeks the dashboard shows,
shaped as the bot stores them (a suggestion of three people with their reasons and the MR's files, a second
one on a third of them, the bot's `suggested` / `assigned` rows, team reviewers, approvals and some taken
back, comments, thumbs, and the merged ones in the history with their `final_reviewer` rows): about 8 rows of
feedback per merge request. It is inserted in bulk, not through the stores (seeding is not what is measured).

Timed, through the real aiohttp app and a client over HTTP, `--rounds` times each:

* `overview, first load`: `GET /` from a freshly started app (what the first operator after a restart waits);
* `overview, again`: `GET /` once more, nothing stored meanwhile;
* `overview, new feedback`: `GET /` after one feedback row was stored in one project (what a live bot sees);
* `project page`: `GET /projects/{id}` of one project.

Baseline, same round: the machine is shared and noisy, so each figure is also given as a ratio to the
reference measured just before it: reading every suggestion and feedback row of all the projects with one
plain `SELECT` each (SQLAlchemy Core, no dashboard code), which does not change with the dashboard's code.
Compare ratios between runs, not milliseconds.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from benchmarks.bench_support import machine, temporary_database  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.metrics import Metrics  # noqa: E402
from bot.storage import Storage  # noqa: E402
from bot.storage.tables import feedback, history, projects, suggestions  # noqa: E402
from bot.web import make_app  # noqa: E402

NOW = datetime(2025, 3, 19, 12, 0, tzinfo=timezone.utc)
TOKEN = "benchmark-dashboard-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PEOPLE = [f"dev{i:02d}" for i in range(40)]
REASONS = ("reviewed 12 changes to src/core/ (last 3 days ago)", "owns 40% of the lines of src/core/io.c",
           "reviewed 7 changes together with dev03 (last 9 days ago)")


def _mr_rows(rng: random.Random, project: int, iid: int, ids: dict[str, int]) -> tuple[list, list, list]:
    """The suggestion, feedback and history rows of one merge request."""
    start = NOW - timedelta(days=rng.uniform(0, 83))
    files = [f"src/area{rng.randrange(30)}/file{rng.randrange(400)}.c"
             for _ in range(min(60, int(rng.expovariate(0.2)) + 1))]
    author = rng.choice(PEOPLE)
    picks = rng.sample([p for p in PEOPLE if p != author], 4)
    sugg, fb, hist = [], [], []

    def suggest(when: datetime, people: list[str]) -> int:
        ids["s"] += 1
        sugg.append(dict(id=ids["s"], project_id=project, mr_iid=iid, created_at=when, model_version="v3",
                         people=[{"username": p, "score": 0.5, "reasons": list(REASONS)} for p in people],
                         event_id=None, author=author, files=files))
        return ids["s"]

    def label(when: datetime, person: str, name: str, sid: int, value: Any = None) -> None:
        ids["f"] += 1
        fb.append(dict(id=ids["f"], suggestion_id=sid, project_id=project, mr_iid=iid, person=person, label=name,
                       value=value, created_at=min(when, NOW), source_event_id=None))

    sid = suggest(start, picks[:3])
    label(start, picks[0], "suggested", sid)
    if rng.random() < 0.3:
        label(start, picks[1], "moved_down_spreading", sid)
    label(start, picks[0], "assigned", sid, {"by": "bot"})
    if rng.random() < 0.33:
        sid = suggest(start + timedelta(hours=5), [picks[1], picks[0], picks[3]])
        label(start + timedelta(hours=5), picks[1], "suggested", sid)
    reviewer = picks[1] if rng.random() < 0.6 else rng.choice(PEOPLE)
    label(start + timedelta(hours=6), reviewer, "accepted" if reviewer in picks else "assigned", sid)
    if rng.random() < 0.4:
        label(start + timedelta(hours=8), reviewer, "reviewed", sid)
    if rng.random() < 0.7:
        label(start + timedelta(hours=20), reviewer, "approved", sid)
        if rng.random() < 0.07:
            label(start + timedelta(hours=22), reviewer, "unapproved", sid)
    if rng.random() < 0.1:
        label(start + timedelta(hours=1), rng.choice(PEOPLE), "thumbs_up", sid)
    if start < NOW - timedelta(days=2) and rng.random() < 0.8:
        merged = start + timedelta(days=1)
        for person in {picks[0], reviewer}:
            label(merged, person, "final_reviewer", sid, {"reviewer": True, "approver": person == reviewer})
        ids["h"] += 1
        hist.append(dict(id=ids["h"], project_id=project, change_id=f"!{iid}", time=int(merged.timestamp()),
                         author=author, reviewers=[reviewer], ackers=[reviewer], files=files, title=f"MR {iid}",
                         committer=author, bot_author=False))
    return sugg, fb, hist


async def seed(url: str, n_projects: int, n_mrs: int) -> int:
    """Insert the projects' rows in bulk; return how many feedback rows."""
    rng, ids, total = random.Random(7), {"s": 0, "f": 0, "h": 0}, 0
    storage = Storage(url, clock=lambda: NOW)
    try:
        for project in range(1, n_projects + 1):
            rows: tuple[list, list, list] = ([], [], [])
            for iid in range(1, n_mrs + 1):
                for into, new in zip(rows, _mr_rows(rng, project, iid, ids)):
                    into.extend(new)
            async with storage.engine.begin() as conn:
                await conn.execute(sa.insert(projects), [dict(id=project, path=f"group/project-{project}",
                                                              backfill_done=True, settings={}, last_event_at=NOW)])
                for table, values in zip((suggestions, feedback, history), rows):
                    for i in range(0, len(values), 1000):
                        await conn.execute(sa.insert(table), values[i:i + 1000])
            total += len(rows[1])
            await storage.models.save(project, "v3", b"model", backtest_score=0.61)
        if not url.startswith("sqlite"):
            async with storage.engine.begin() as conn:
                for table in ("suggestions", "feedback", "history"):  # the ids above were given by hand
                    await conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                               f"(SELECT max(id) FROM {table}))"))
                for table in ("suggestions", "feedback", "history", "models", "projects"):
                    await conn.execute(sa.text(f"ANALYZE {table}"))
    finally:
        await storage.close()
    return total


async def reference(storage: Storage) -> None:
    """The baseline: every suggestion and feedback row of every project, one plain SELECT each."""
    async with storage.engine.connect() as conn:
        for table in (suggestions, feedback):
            (await conn.execute(sa.select(table))).all()


def settings() -> Settings:
    return Settings(gitlab={"url": "https://gitlab.example", "token": "glpat-benchmark"},
                    webhook_secrets=[{"secret": "benchmark-secret"}], dashboard={"enabled": True, "token": TOKEN})


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def get(client: TestClient, path: str) -> None:
    response = await client.get(path, headers=BEARER)
    assert response.status == 200, (path, response.status)
    await response.read()


async def one_round(url: str, figures: dict[str, list[tuple[float, float]]], tick: list[int]) -> None:
    """Each case once, each after its own reference read; the app is started afresh (empty caches)."""
    storage = Storage(url, clock=lambda: NOW)
    client = TestClient(TestServer(make_app(settings(), storage, Metrics())))
    await client.start_server()
    try:
        async def new_feedback() -> None:
            tick[0] += 1
            await storage.feedback.record(1, 1, PEOPLE[tick[0] % len(PEOPLE)], "thumbs_up")

        cases: list[tuple[str, Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]] | None]] = [
            ("overview, first load", lambda: get(client, "/"), None),
            ("overview, again", lambda: get(client, "/"), None),
            ("overview, new feedback", lambda: get(client, "/"), new_feedback),
            ("project page", lambda: get(client, "/projects/1"), None),
        ]
        for name, call, before in cases:
            base = await timed(lambda: reference(storage))
            if before is not None:
                await before()
            figures.setdefault(name, []).append((await timed(call), base))
    finally:
        await client.close()
        await storage.close()


def report(db: str, figures: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n{db}: case | median ms | min ms | median ratio to the reference read | reference median ms")
    for name, pairs in figures.items():
        times, bases = [t for t, _ in pairs], [b for _, b in pairs]
        ratios = [t / b for t, b in pairs]
        print(f"  {name:24s} | {statistics.median(times) * 1000:9.1f} | {min(times) * 1000:8.1f} | "
              f"{statistics.median(ratios):6.2f} | {statistics.median(bases) * 1000:8.1f}")


async def run(db: str, args: argparse.Namespace) -> None:
    async with temporary_database(db) as url:
        started = time.perf_counter()
        rows = await seed(url, args.projects, args.mrs)
        print(f"{db}: {args.projects} projects x {args.mrs} MRs, {rows:,} feedback rows, seeded in "
              f"{time.perf_counter() - started:.1f} s; {machine()}")
        figures: dict[str, list[tuple[float, float]]] = {}
        tick = [0]
        for _ in range(args.rounds):
            await one_round(url, figures, tick)
        report(db, figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--projects", type=int, default=5)
    parser.add_argument("--mrs", type=int, default=3000)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for db in args.db:
        asyncio.run(run(db, args))


if __name__ == "__main__":
    main()
