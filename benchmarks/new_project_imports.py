"""New projects arriving together: how long an already imported project's suggestion waits behind their imports.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/new_project_imports.py [--new 0 6 20] [--database sqlite|postgresql]

Per count of new projects, in a fresh GitLab simulator and database: one project whose history is imported
beforehand, and that many projects the bot has never seen, whose history listing GitLab does not answer until
the measurement is over (an import that outlasts the bot's wait for it, `bot.handlers.BACKFILL_WAIT`, 20 s, as a
large project's does). The bot runs as `reviewbot serve` does (webhook app and worker, `[worker] concurrency` 2,
the real handlers). One MR is opened in each new project and their events stored; then an MR is opened in the
imported project, and the clock runs until the bot's suggestion comment is on it. The listings are then
answered, and every new project's MR must get its comment too (counted).

The count 0 is the baseline, measured in the same run: the ratio is each figure over it.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_support import machine, temporary_database  # noqa: E402
from bot.backfill import backfill_project  # noqa: E402
from bot.gitlab.client import GitLabClient, RetryPolicy  # noqa: E402
from bot.gitlab.simulator import SeededProject, SimState, run_simulator  # noqa: E402
from bot.gitlab.sim_model import SimProject  # noqa: E402
from bot.handlers import BACKFILL_WAIT  # noqa: E402
from bot.storage import Storage  # noqa: E402
from tests.bot_harness import SECRET, bot_settings, marker_notes, running_bot, seed_recent  # noqa: E402
from tests.gitlab_fixtures import FAST_RETRY  # noqa: E402

TIMEOUT = 900.0  # seconds: give up on a comment (printed as such)


def new_project(state: SimState, seeded: SeededProject, i: int) -> SimProject:
    """A project with a short merged history by the imported project's people (the bot has not seen it)."""
    project = state.add_project(f"acme/new-{i}")
    people = seeded.people[:6]
    for person in people:
        state.add_member(project, person, 30)
    now = datetime.now(timezone.utc)
    for k in range(5):
        state.add_merged_mr(project, people[k % 3], [f"src/m{k % 2}.py"], reviewers=[people[3 + k % 3]],
                            approvers=[people[3 + k % 3]], merged_at=now - timedelta(days=20 - k))
    return project


async def comment_on(state: SimState, mrs: list, deadline: float) -> bool:
    """Wait until every MR of `mrs` has the bot's suggestion comment; False at `deadline` (monotonic)."""
    while time.monotonic() < deadline:
        if all(marker_notes(state, mr) for mr in mrs):
            return True
        await asyncio.sleep(0.05)
    return False


async def one_run(n_new: int, database: str) -> tuple[float, int]:
    """Seconds until the imported project's comment, and how many new projects got theirs afterwards."""
    async with run_simulator() as (state, url), temporary_database(database) as db_url:
        seeded = seed_recent(state)
        storage = Storage(db_url)
        try:
            async with aiohttp.ClientSession() as session:
                client = GitLabClient(session, url=url, token=state.token, retry=FAST_RETRY)
                await backfill_project(client, storage, seeded.project.id)
            fresh = [new_project(state, seeded, i) for i in range(n_new)]
            gates = [state.hold_path(f"/projects/{p.id}/merge_requests", state="merged") for p in fresh]
            async with running_bot(bot_settings(state, url, db_url), storage, backfill_wait=BACKFILL_WAIT,
                                   retry=RetryPolicy()) as bot:
                for project in (seeded.project, *fresh):
                    state.add_hook(project, bot.url, token=SECRET)
                waiting = [state.open_mr(p, seeded.people[0], ["src/m0.py"]) for p in fresh]
                await state.flush_hooks()
                dirs = list(seeded.owners)
                mr = state.open_mr(seeded.project, seeded.people[0], [f"{dirs[0]}/main1.py"])
                started = time.monotonic()
                await state.flush_hooks()
                done = await comment_on(state, [mr], started + TIMEOUT)
                took = time.monotonic() - started if done else float("inf")
                for gate in gates:
                    gate.set()
                await comment_on(state, waiting, time.monotonic() + TIMEOUT)
                served = sum(bool(marker_notes(state, m)) for m in waiting)
        finally:
            await storage.close()
    return took, served


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", type=int, nargs="+", default=[0, 6, 20], help="counts of new projects")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    counts = [0, *(n for n in args.new if n != 0)]
    print(f"# {machine()}, database {args.database}, backfill wait {BACKFILL_WAIT:g} s, worker concurrency 2")
    print(f"{'new projects':>12s} {'imported MR comment s':>22s} {'ratio':>7s} {'new MRs commented':>18s}")
    baseline = None
    for n in counts:
        took, served = await one_run(n, args.database)
        baseline = baseline if baseline is not None else took
        print(f"{n:12d} {took:22.2f} {took / baseline:7.1f} {served:>14d}/{n}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
