"""The load spreading counts a review as done when it is taken (a `TAKEN` label), not only at the merge two
days later: meanwhile the person kept being put first as if they did nothing. The merge settles the early
counts, so that in the end each reviewer is counted as the merge alone counts them (`_settle_taken`).

Tiny hand-made histories with a one-day half-life from day 0 (`at(0)`, the first change), so that a count at
day d is stored as 2 ** d: exact expected values."""
from __future__ import annotations

import pytest

from graph.model import Change
from graph.ownership import DAY
from graph.recommend import LearnedRecommender, RecommenderSettings

D = int(DAY)


def at(day: float) -> int:
    return int(1_700_000_000 + day * D)


HISTORY = [Change("1", at(0), "ann", ("bob",), ("src/a.c",))]  # bob has one review, at day 0: counted 1
OPEN = Change("10", at(1), "ann", (), ("src/a.c",))


def learner(balance: float = 3.0, **settings) -> LearnedRecommender:
    rec = LearnedRecommender(settings=RecommenderSettings(balance=balance, balance_half_life_days=1.0, **settings))
    rec.observe_history(HISTORY)
    rec.suggest(OPEN, 3)
    return rec


def counts(rec: LearnedRecommender) -> dict[str, float]:
    """The spreading's reviews done per person, as stored (scaled to time 0), zeros left out."""
    return {p: round(v, 9) for p, v in rec._reviewed.items() if round(v, 9)}


@pytest.mark.parametrize("label", ["accepted", "assigned"])
def test_a_review_taken_counts_at_once_at_its_time(label):
    rec = learner()
    rec.learn(OPEN, "cid", label, time=at(1))
    assert counts(rec) == {"bob": 1.0, "cid": 2.0}
    rec.learn(OPEN, "cid", "assigned", time=at(2))  # the same person again: once per change
    assert counts(rec) == {"bob": 1.0, "cid": 2.0}


def test_the_spreading_weighs_the_taker_down_before_the_merge():
    rec = learner()
    rec.put_first(OPEN.id, "cid", at(1))
    before = rec._imbalance(["cid"])[0]
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    assert before > 0 and rec._imbalance(["cid"])[0] == pytest.approx(0.0)  # first once, reviewed once


def test_the_author_taking_their_own_review_counts_nothing():
    rec = learner()
    rec.learn(OPEN, "ann", "assigned", time=at(1))
    rec.learn(OPEN, "cid", "assigned", time=at(1))
    assert counts(rec) == {"bob": 1.0, "cid": 2.0}  # cid alone took it: counts whole


def test_each_person_who_took_a_change_counts_a_whole_review_until_the_merge():
    rec = learner()
    rec.learn(OPEN, "bob", "accepted", time=at(1))
    assert counts(rec) == {"bob": 1.0 + 2.0}
    rec.learn(OPEN, "cid", "assigned", time=at(2))
    assert counts(rec) == {"bob": 1.0 + 2.0, "cid": 4.0}


def test_a_removal_takes_the_count_back():
    rec = learner()
    rec.learn(OPEN, "bob", "accepted", time=at(1))
    rec.learn(OPEN, "cid", "assigned", time=at(2))
    rec.learn(OPEN, "cid", "removed", time=at(3))
    assert counts(rec) == {"bob": 1.0 + 2.0}
    assert rec._taken[OPEN.id].keys() == {"bob"}
    rec.learn(OPEN, "dan", "passed_over", time=at(3))  # never took it: nothing to take back
    rec.learn(OPEN, "bob", "removed", time=at(3))
    assert counts(rec) == {"bob": 1.0} and OPEN.id not in rec._taken


@pytest.mark.parametrize("taken", [[], ["bob"], ["cid"], ["bob", "cid"], ["cid", "eve"]])
def test_the_merge_counts_each_reviewer_once_as_without_early_counts(taken):
    """Merged with bob and dan at day 3: each counts 1/2 at day 3 (2 ** 3 / 2 = 4), whoever took it early;
    cid and eve, who took it but are not among the reviewers, count nothing."""
    rec = learner()
    for i, person in enumerate(taken):
        rec.learn(OPEN, person, "accepted", time=at(1 + i))
    if taken:
        assert counts(rec) != {"bob": 1.0}
    rec.observe(Change(OPEN.id, at(3), "ann", ("bob", "dan"), OPEN.files))
    assert counts(rec) == {"bob": 1.0 + 4.0, "dan": 4.0} and not rec._taken


def test_closing_takes_the_counts_back_and_reopening_restores_them():
    rec = learner()
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    closed = Change(OPEN.id, at(2), "", (), ())
    rec.learn(closed, "ann", "closed", time=at(2))
    assert counts(rec) == {"bob": 1.0} and not rec._taken
    rec.learn(closed, "ann", "closed", time=at(2))  # closed twice: the first close's counts are kept
    rec.learn(closed, "ann", "reopened", time=at(3))
    assert counts(rec) == {"bob": 1.0, "cid": 2.0}
    rec.observe(Change(OPEN.id, at(3), "ann", ("cid",), OPEN.files))
    assert counts(rec) == {"bob": 1.0, "cid": 8.0}


def test_a_closed_change_merged_without_reopening_is_counted_once():
    rec = learner()
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    assert counts(rec) == {"bob": 1.0, "cid": 2.0}
    rec.learn(Change(OPEN.id, at(2), "", (), ()), "ann", "closed", time=at(2))
    rec.observe(Change(OPEN.id, at(3), "ann", ("cid",), OPEN.files))
    assert counts(rec) == {"bob": 1.0, "cid": 8.0}


def test_past_the_pending_limit_the_oldest_changes_counts_are_taken_back():
    """Still open after `pending_limit` newer ones: counted at its merge, if it comes, as without labels."""
    rec = learner(pending_limit=1)
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    rec.learn(Change("11", at(2), "ann", (), ("src/b.c",)), "dan", "accepted", time=at(2))
    assert counts(rec) == {"bob": 1.0, "dan": 4.0} and list(rec._taken) == ["11"]
    rec.observe(Change(OPEN.id, at(3), "ann", ("cid",), OPEN.files))
    assert counts(rec) == {"bob": 1.0, "cid": 8.0, "dan": 4.0}


def test_without_spreading_nothing_is_counted_early():
    rec = learner(balance=0.0)
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    assert not rec._taken


def test_a_snapshot_keeps_the_early_counts_and_the_merge_settles_them_alike():
    from graph.snapshot import dumps, loads

    rec = learner()
    rec.learn(OPEN, "cid", "accepted", time=at(1))
    rec.learn(OPEN, "eve", "accepted", time=at(2))
    restored = loads(dumps(rec))
    assert restored._taken == rec._taken and counts(restored) == counts(rec) == {"bob": 1.0, "cid": 2.0, "eve": 4.0}
    restored.learn(OPEN, "eve", "removed", time=at(2))
    assert counts(restored) == {"bob": 1.0, "cid": 2.0}
    merged = Change(OPEN.id, at(3), "ann", ("cid",), OPEN.files)
    for r in (rec, restored):
        r.observe(merged)
    assert counts(restored) == counts(rec) == {"bob": 1.0, "cid": 8.0}
