"""Crash safety at full size: 1,000 webhook deliveries (10 % re-sent) while worker processes are SIGKILLed.

Prints figures; it is not a test. Run from the repository root (PostgreSQL at 127.0.0.1:5432, or --database sqlite):

    .venv/bin/python benchmarks/crash_safety.py [--deliveries 1000] [--workers 2] [--kills 20]

What it does (the suite's `tests/test_worker_crash.py` does the same with 40 deliveries):

1. the reference: the GitLab simulator (seeded) plays a burst of real-shaped deliveries over 250 merge requests
   (opens, drafts made ready, pushes, approvals, merges, `/reviewers` commands and plain comments, awards),
   re-sends 10 % of them, and an in-process worker that is never interrupted runs them (SQLite);
2. the crash run: the same deliveries into a fresh database, run by `--workers` processes of `reviewbot worker`
   with 3 s leases; after each random share of the events still to do one worker is killed with SIGKILL,
   preferably in the middle of an event (one that holds a lease), and restarted at once;
3. the comparison: every MR has exactly one bot comment, the one the database names; the suggestion and
   feedback rows about people the scenario names (approvals, merges, commands, thumbs given on the bot's comments
   while the kills go on), acknowledgements and replies match the reference; rows about ranked people match the
   run's own GitLab state (every reviewer the bot set has its `assigned` row, every suggestion its one
   `suggested` row); no event is queued, running, failed or dead.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_support import machine, temporary_database  # noqa: E402
from tests.crash_run import CRASH_WORKER, crash_run, reference_run  # noqa: E402


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deliveries", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    p.add_argument("--seed", type=int, default=5)
    return p.parse_args()


async def main(args: argparse.Namespace) -> int:
    print(f"crash safety: {args.deliveries} deliveries + 10 % re-sent, {args.workers} worker processes on "
          f"{args.database}, {args.kills} SIGKILLs; {machine()}")
    started = time.monotonic()
    async with temporary_database("sqlite") as reference_url:
        scenario, expected = await reference_run(reference_url, args.deliveries, timeout=1800)
    print(f"reference (in-process, never interrupted): {time.monotonic() - started:.0f} s, "
          f"{sum(expected.queue.values())} events, {sum(expected.comments.values())} comments on "
          f"{len(expected.comments)} MRs, {sum(expected.suggestions.values())} suggestion rows, "
          f"{sum(expected.feedback.values())} feedback rows, {len(expected.acks)} commands")
    with tempfile.TemporaryDirectory(prefix="reviewbot-crash-") as folder:
        async with temporary_database(args.database) as url:
            _, got, stats = await crash_run(url, Path(folder), args.deliveries, workers=args.workers,
                                            kills=args.kills, seed=args.seed, timeout=1800)
    return report(scenario, expected, got, stats)


def _by_label(outcome) -> dict[str, int]:
    """How many (MR, label, event) rows about ranked people a run left, per label."""
    return dict(sorted(Counter(label for _, label, _ in outcome.ranked).items()))


def report(scenario, expected, got, stats) -> int:
    """Print the crash run's figures and the verdict; the exit code is 1 when a bar is missed."""
    print(f"crash run: {stats.seconds:.0f} s, {stats.kills} SIGKILLs ({stats.kills_mid_event} in the middle of "
          f"an event), {stats.events} events, {stats.retried_events} claimed more than once (max "
          f"{stats.max_attempts} attempts), lease {CRASH_WORKER['lease_seconds']:g} s")
    print(f"deliveries: {len(scenario.deliveries)} + {len(scenario.resent)} re-sent, all acknowledged 200")
    wanted = scenario.expected_comments()  # one on each MR still open, none on those merged before
    once = sum(1 for iid, n in got.comments.items() if n == wanted[iid])
    print(f"MRs with the bot comments they must have (one if still open, none if merged before the bot "
          f"heard of them): {once}/{len(got.comments)}; database agrees: "
          f"{sum(got.comment_rows.values())}/{len(got.comment_rows)}")
    print(f"suggestion rows {sum(got.suggestions.values())} (reference {sum(expected.suggestions.values())}), "
          f"feedback rows about named people {sum(got.feedback.values())} (reference "
          f"{sum(expected.feedback.values())}), of them thumbs on the bot's comments sent during the kills "
          f"{len(scenario.thumbs)}")
    print(f"ranked rows by label: {_by_label(got)} (reference {_by_label(expected)})")
    print(f"(MR, label, event) rows about ranked people: {len(got.ranked)} (reference {len(expected.ranked)}, "
          f"{got.ranked_differences(expected)} differ: who ranks first depends on the processing order); "
          f"MRs whose GitLab reviewers and `assigned` rows disagree: {len(got.unrecorded)} (reference "
          f"{len(expected.unrecorded)}); suggestions without their one `suggested` row: {len(got.unshown)} "
          f"(reference {len(expected.unshown)})")
    print(f"`/reviewers assign` commands: {len(got.ranked_replies)}, {got.ranked_reply_differences(expected)} "
          f"replied to in one run only (nobody could be asked: who has room depends on the processing order)")
    print(f"queue: {got.queue}; workers that exited on their own: {stats.worker_exits or 'none'}; "
          f"tracebacks in worker logs: {stats.tracebacks}")
    problems = got.differences(expected) + got.unrecorded + got.unshown
    if once != len(got.comments) or not all(got.comment_rows.values()):
        problems.append("not every MR has the bot comments it must have, named by the database")
    if got.queue["queued"] + got.queue["running"] + got.queue["failed"] + got.queue["dead"]:
        problems.append(f"events stuck or dead: {got.queue}")
    print("RESULT: " + ("PASS, nothing lost, nothing doubled" if not problems else "FAIL\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(_args())))
