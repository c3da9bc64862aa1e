"""Crash safety: 40 webhook deliveries (10 % re-sent) through two `reviewbot worker` processes that are killed
with SIGKILL at random moments and restarted. Afterwards the run must match a calm in-process run of the same
deliveries: every MR has exactly one bot comment (the one the database names), every suggestion and feedback
row is there once (including the feedback of thumbs given on the bot's comments while workers were being
killed, and of approvals, merges and commands), every command got one acknowledgement, and no event is stuck,
failed or dead.

The full-size run (1,000 deliveries) is `benchmarks/crash_safety.py`.
"""
from __future__ import annotations

import shutil
from collections import Counter
from typing import Iterator

import pytest

from tests.crash_run import crash_run, reference_run
from tests.replay import Outcome, Scenario
from tests.worker_procs import Zygote
from tests.storage_fixtures import run_in_thread

DELIVERIES = 40


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    """One pre-imported parent for both databases' worker processes (it imports while the reference runs)."""
    parent = Zygote()
    try:
        yield parent
    finally:
        parent.close()


@pytest.fixture(scope="module")
def reference(zygote, _sqlite_template, tmp_path_factory) -> tuple[Scenario, Outcome]:
    """The calm run, once for both databases (on a private loop: it brings its own simulator)."""
    path = tmp_path_factory.mktemp("reference") / "reference.sqlite3"
    shutil.copyfile(_sqlite_template, path)
    return run_in_thread(lambda: reference_run(f"sqlite+aiosqlite:///{path}", DELIVERIES))


def test_a_reply_to_assign_may_differ_between_correct_runs_but_never_come_twice():
    """`/reviewers assign` replies when nobody (or fewer than asked) could be asked, which depends on who still has
    room for a review when it runs, so on the order the workers took the events: in the 1,000-delivery run the
    calm and the killed runs differed on one to three of its 56 such commands, both ways, none of them retried."""
    def run(replies: dict[int, int], assign: dict[int, int]) -> Outcome:
        return Outcome(comments={}, comment_rows={}, suggestions=Counter(), feedback=Counter(), acks={},
                       replies=replies, queue={}, ranked={}, unrecorded=[], ranked_replies=assign)

    calm = run({5: 1, 6: 0}, {7: 0, 8: 1})
    assert run({5: 1, 6: 0}, {7: 1, 8: 0}).differences(calm) == []
    assert run({5: 1, 6: 0}, {7: 1, 8: 0}).ranked_reply_differences(calm) == 2
    assert run({5: 1, 6: 0}, {7: 2, 8: 1}).differences(calm) == ["replies to /reviewers assign, more than one: {7: 2}"]
    assert run({5: 1, 6: 1}, {7: 0, 8: 1}).differences(calm) == ["replies: expected {6: 0}, got {6: 1}"]


def test_the_reference_run_is_complete(reference):
    scenario, expected = reference
    assert len(scenario.deliveries) == DELIVERIES and len(scenario.resent) == DELIVERIES // 10
    assert expected.comments == scenario.expected_comments() and all(expected.comment_rows.values())
    assert 0 in expected.comments.values()  # some MRs were merged before the bot heard of them
    assert expected.suggestions and expected.feedback and expected.acks
    thumbs = Counter((iid, label, "thumb on the bot's comment", who) for iid, label, who in scenario.thumbs)
    assert len(thumbs) == sum(expected.comments.values()) and all(expected.feedback[k] == 1 for k in thumbs)
    assert expected.queue["dead"] == expected.queue["failed"] == 0
    assert expected.unrecorded == []  # every reviewer the bot set has its `assigned` row
    assert expected.unshown == []  # every suggestion's first person has its `suggested` row


async def test_killed_workers_lose_nothing_and_double_nothing(database_url, reference, zygote, tmp_path):
    _, expected = reference
    _, got, stats = await crash_run(database_url, tmp_path / "crash", DELIVERIES, kills=3, zygote=zygote)
    print(stats)
    assert stats.kills_mid_event >= 2, stats  # the kills hit workers in the middle of events
    assert stats.worker_exits == [] and stats.tracebacks == 0, stats
    assert got.differences(expected) == []
    assert got.comments == expected.comments and all(got.comment_rows.values())
    assert got.queue == {"queued": 0, "running": 0, "failed": 0, "dead": 0, "done": stats.events}
    assert got.unrecorded == []  # every reviewer the bot set has its `assigned` row, kills or not
    assert got.unshown == []  # ... and every suggestion's first person its `suggested` row
