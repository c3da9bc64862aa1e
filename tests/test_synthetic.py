"""graph.synthetic: deterministic, time-ordered, correctly sized and realistically skewed histories."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from graph.model import Change
from graph.synthetic import BOT_NAMES, synthetic_history

N_CHANGES, N_FILES, N_PEOPLE = 6000, 3000, 150


@pytest.fixture(scope="module")
def history() -> list[Change]:
    return list(synthetic_history(N_CHANGES, N_FILES, N_PEOPLE, seed=7))


def test_same_seed_same_history_other_seed_other_history(history):
    again = list(synthetic_history(N_CHANGES, N_FILES, N_PEOPLE, seed=7))
    assert again == history
    assert [c.committer for c in again] == [c.committer for c in history]
    other = list(itertools.islice(synthetic_history(N_CHANGES, N_FILES, N_PEOPLE, seed=8), 100))
    assert other != history[:100]


def test_time_order_and_span(history):
    times = [c.time for c in history]
    assert times == sorted(times)
    assert times[0] >= 1_600_000_000
    assert times[-1] <= 1_600_000_000 + 3 * 365 * 86400


def test_counts_ids_and_paths(history):
    assert len(history) == N_CHANGES
    assert len({c.id for c in history}) == N_CHANGES
    files = {f for c in history for f in c.files}
    assert len(files) <= N_FILES
    people = {c.author for c in history} | {r for c in history for r in c.reviewers}
    assert len(people) <= N_PEOPLE
    assert all(2 <= f.count("/") + 1 <= 6 for f in files)
    assert all(c.files and len(c.files) == len(set(c.files)) <= 2000 for c in history)


def test_author_never_reviews_and_reviewers_are_distinct(history):
    assert all(c.author not in c.reviewers for c in history)
    assert all(len(c.reviewers) == len(set(c.reviewers)) <= 3 for c in history)
    assert sum(bool(c.reviewers) for c in history) > 0.9 * N_CHANGES


def test_reviews_are_concentrated_on_a_few_people(history):
    reviews = sorted(Counter(r for c in history for r in c.reviewers).values(), reverse=True)
    top_tenth = sum(reviews[: max(1, len(reviews) // 10)])
    assert top_tenth > 0.4 * sum(reviews)


def test_change_sizes_are_heavy_tailed(history):
    sizes = [len(c.files) for c in history]
    assert sum(s <= 5 for s in sizes) > 0.75 * len(sizes)
    assert max(sizes) >= 100


def test_bots_author_a_small_share_and_never_review(history):
    bot_changes = [c for c in history if c.bot_author]
    assert 0.005 * N_CHANGES < len(bot_changes) < 0.05 * N_CHANGES
    assert {c.author for c in bot_changes} <= set(BOT_NAMES)
    assert not {r for c in history for r in c.reviewers} & set(BOT_NAMES)
    assert not any(c.bot_author for c in synthetic_history(500, 100, 10, bot_share=0.0))


def test_people_join_and_leave(history):
    first, last = history[: N_CHANGES // 5], history[-N_CHANGES // 5:]
    early = {c.author for c in first} | {r for c in first for r in c.reviewers}
    late = {c.author for c in last} | {r for c in last for r in c.reviewers}
    assert early - late and late - early


def test_authors_mostly_stay_in_their_areas(history):
    """Most of a frequent author's changes fall in their three most used top-two-level directories."""
    areas: dict[str, Counter] = {}
    for c in history:
        areas.setdefault(c.author, Counter()).update({"/".join(c.files[0].split("/")[:2])})
    busy = [counts for counts in areas.values() if counts.total() >= 50]
    assert busy and all(sum(n for _, n in counts.most_common(3)) > 0.6 * counts.total() for counts in busy)


@pytest.mark.parametrize("n_changes, n_files, n_people", [(1, 1, 3), (30, 2, 3), (200, 5000, 4)])
def test_tiny_and_lopsided_sizes(n_changes, n_files, n_people):
    changes = list(synthetic_history(n_changes, n_files, n_people))
    assert len(changes) == n_changes
    assert all(c.author not in c.reviewers for c in changes)


def test_empty_and_invalid_arguments():
    assert list(synthetic_history(0, 10, 5)) == []
    with pytest.raises(ValueError, match="n_people >= 3"):
        synthetic_history(10, 10, 2)
    with pytest.raises(ValueError, match="n_files >= 1"):
        synthetic_history(10, 0, 5)
    with pytest.raises(ValueError, match="bot_share"):
        synthetic_history(10, 10, 5, bot_share=1.5)
