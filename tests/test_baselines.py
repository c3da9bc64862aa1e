"""Tests for graph.baselines: tiny hand-made histories with exact expected rankings.

RevFinder's fast path is also checked against a literal transcription of the paper's formula (visit every
past change, every pair of files) on generated histories, where file names and directory names collide.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph.backtest import backtest
from graph.baselines import (
    BASELINES,
    AuthorsReviewers,
    Frequency,
    MostFrequent,
    RandomReviewer,
    RevFinder,
    borda_count,
    longest_common_prefix,
    longest_common_subsequence,
    longest_common_substring,
    longest_common_suffix,
    path_similarity,
)
from graph.model import Change
from tests.shared_samples import DATA

_ids = itertools.count()


def change(
    author: str, reviewers: tuple[str, ...], files: tuple[str, ...], ackers: tuple[str, ...] = ()
) -> Change:
    n = next(_ids)
    return Change(str(n), n, author, reviewers, files, ackers=ackers)


def replay(recommender, history):  # noqa: ANN001, ANN201 - any Recommender
    for past in history:
        recommender.observe(past)
    return recommender


# --- comparators and Borda -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("src/net/a.c", "src/net/b.c", (2, 0, 2, 2)),
        ("a/b/c/d", "x/b/c/y/d", (0, 1, 2, 3)),
        ("drivers/net/phy.c", "lib/net/phy.c", (0, 2, 2, 2)),
        ("doc/index.md", "doc/index.md", (2, 2, 2, 2)),
        ("doc/index.md", "src/main.c", (0, 0, 0, 0)),
        ("Makefile", "board/Makefile", (0, 1, 1, 1)),
        ("a/b/a/b", "b/a/b/a", (0, 0, 3, 3)),
    ],
)
def test_comparators_count_path_components(a: str, b: str, expected: tuple[int, int, int, int]) -> None:
    pa, pb = tuple(a.split("/")), tuple(b.split("/"))
    got = (
        longest_common_prefix(pa, pb),
        longest_common_suffix(pa, pb),
        longest_common_substring(pa, pb),
        longest_common_subsequence(pa, pb),
    )
    assert got == expected


def test_comparators_compare_whole_components_not_characters() -> None:
    assert longest_common_prefix(("net.c",), ("net.h",)) == 0
    assert longest_common_subsequence(("src", "netdev"), ("src", "net")) == 1


def test_path_similarity_divides_by_the_longer_path() -> None:
    assert path_similarity("a/b/c.py", "a/c.py") == (1 / 3, 1 / 3, 1 / 3, 2 / 3)
    assert path_similarity("x", "x") == (1.0, 1.0, 1.0, 1.0)


def test_borda_count_gives_m_points_to_the_first_of_m() -> None:
    points = borda_count([["ann", "bob", "cid"], ["bob", "ann"], ["cid"]])
    assert points == {"ann": 3 + 1, "bob": 2 + 2, "cid": 1 + 1}


# --- RevFinder -------------------------------------------------------------------------------------------


def revfinder_history() -> list[Change]:
    """Scores for a new change to `drivers/usb/phy.c` (worked out by hand below)."""
    return [
        change("ann", ("rita",), ("drivers/net/phy.c",)),
        change("ann", ("rob",), ("drivers/usb/host.c", "drivers/usb/core.c")),
        change("bea", ("ray",), ("lib/net/phy.c",)),
        change("bea", ("ron",), ("doc/howto.md",)),
    ]


def test_revfinder_scores_match_the_paper_formula_by_hand() -> None:
    rec = replay(RevFinder(), revfinder_history())
    lcp, lcsuff, lcsubstr, lcsubseq = rec.comparator_scores(change("cid", (), ("drivers/usb/phy.c",)))
    # rita: drivers/net/phy.c -> (1, 1, 1, 2) / 3; rob: two files with (2, 0, 2, 2) / 3, over |P| = 2;
    # ray: lib/net/phy.c -> (0, 1, 1, 1) / 3; ron shares no component.
    assert lcp == pytest.approx({"rita": 1 / 3, "rob": 2 / 3})
    assert lcsuff == pytest.approx({"rita": 1 / 3, "ray": 1 / 3})
    assert lcsubstr == pytest.approx({"rita": 1 / 3, "rob": 2 / 3, "ray": 1 / 3})
    assert lcsubseq == pytest.approx({"rita": 2 / 3, "rob": 2 / 3, "ray": 1 / 3})


def test_revfinder_fuses_by_borda_and_leaves_out_people_with_no_similarity() -> None:
    rec = replay(RevFinder(), revfinder_history())
    # LCP: rob 2, rita 1. LCSuff: rita 2, ray 1 (tie: rita reviewed first). LCSubstr: rob 3, rita 2, ray 1.
    # LCSubseq: rita 3 (tie with rob), rob 2, ray 1. Totals: rita 8, rob 7, ray 3; ron scores nothing.
    assert rec.recommend(change("cid", (), ("drivers/usb/phy.c",)), 10) == ["rita", "rob", "ray"]
    assert rec.recommend(change("cid", (), ("drivers/usb/phy.c",)), 2) == ["rita", "rob"]


def test_revfinder_excludes_the_author_unless_allowed() -> None:
    new = change("rita", (), ("drivers/usb/phy.c",))
    # Without rita: LCP rob 1; LCSuff ray 1; LCSubstr rob 2, ray 1; LCSubseq rob 2, ray 1.
    assert replay(RevFinder(), revfinder_history()).recommend(new, 10) == ["rob", "ray"]
    assert replay(RevFinder(allow_author=True), revfinder_history()).recommend(new, 10) == ["rita", "rob", "ray"]


def test_revfinder_credits_self_approvals_only_when_allowed() -> None:
    history = [change("ann", ("ann",), ("src/a.c",))]
    new = change("bob", (), ("src/b.c",))
    assert replay(RevFinder(), history).recommend(new, 5) == []
    assert replay(RevFinder(allow_author=True), history).recommend(new, 5) == ["ann"]


def test_revfinder_with_nothing_to_go_on_returns_nobody() -> None:
    assert RevFinder().recommend(change("ann", (), ("a.c",)), 5) == []
    rec = replay(RevFinder(), revfinder_history())
    assert rec.recommend(change("ann", (), ()), 5) == []
    assert rec.recommend(change("ann", (), ("unrelated/path.txt",)), 5) == []


def naive_revfinder_scores(history: list[Change], new: Change) -> list[dict[str, float]]:
    """The paper's formula, literally: every past change, every pair of files."""
    maps: list[dict[str, float]] = [{}, {}, {}, {}]
    for past in history:
        people = past.truth()
        if not people or not past.files or not new.files:
            continue
        pairs = [path_similarity(f, g) for f in new.files for g in past.files]
        for c in range(4):
            score = sum(p[c] for p in pairs) / (len(new.files) * len(past.files))
            for person in people:
                maps[c][person] = maps[c].get(person, 0.0) + score
    return [{p: v for p, v in m.items() if v > 0} for m in maps]


_paths = st.lists(st.sampled_from(["a", "b", "net", "Makefile", "a.c", "b"]), min_size=1, max_size=5).map("/".join)
_changes = st.tuples(
    st.sampled_from(["ann", "bob", "cid", "dan"]),
    st.lists(st.sampled_from(["ann", "bob", "cid", "dan", "eve"]), max_size=3, unique=True),
    st.lists(_paths, min_size=1, max_size=4, unique=True),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_changes, min_size=1, max_size=8), st.sampled_from([0, 1, 64]))
def test_revfinder_fast_path_equals_the_paper_formula(raw_history, cache_size) -> None:  # noqa: ANN001
    rec, seen = RevFinder(cache_size=cache_size), []
    for author, reviewers, files in raw_history:
        new = change(author, tuple(reviewers), tuple(files))
        expected = naive_revfinder_scores(seen, new)
        for got, want in zip(rec.comparator_scores(new), expected, strict=True):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        rec.observe(new)
        seen.append(new)


# --- counting baselines ----------------------------------------------------------------------------------


def frequency_history() -> list[Change]:
    return [
        change("ann", ("r1",), ("src/net/a.c",)),
        change("ann", ("r2",), ("src/net/a.c",)),
        change("ann", ("r2",), ("src/net/a.c",)),
        change("bea", ("r3",), ("src/usb/b.c",)),
        change("bea", ("r4",), ("src/net/c.c",)),
        change("bea", ("r5",), ("doc/x.md",), ackers=("r5",)),
    ]


def test_frequency_ranks_files_then_directories_walking_up_then_overall() -> None:
    rec = replay(Frequency(), frequency_history())
    new = change("cid", (), ("src/net/a.c",))
    # a.c: r2 twice, r1 once; then src/net/: r4; then src/: r3; then overall: r5.
    assert rec.recommend(new, 10) == ["r2", "r1", "r4", "r3", "r5"]
    assert rec.recommend(new, 3) == ["r2", "r1", "r4"]


def test_frequency_sums_file_counts_over_the_change_files() -> None:
    history = [
        change("ann", ("r1",), ("a.c", "b.c")),
        change("ann", ("r2",), ("a.c",)),
        change("ann", ("r2",), ("a.c",)),
    ]
    # r1 reviewed one change touching both files: it counts for each, 2 = r2's 2; r1 was seen first.
    assert replay(Frequency(), history).recommend(change("cid", (), ("a.c", "b.c")), 2) == ["r1", "r2"]


def test_frequency_excludes_the_author_unless_allowed() -> None:
    new = change("r2", (), ("src/net/a.c",))
    assert replay(Frequency(), frequency_history()).recommend(new, 10) == ["r1", "r4", "r3", "r5"]
    allowed = replay(Frequency(allow_author=True), frequency_history()).recommend(new, 10)
    assert allowed == ["r2", "r1", "r4", "r3", "r5"]


def test_authors_reviewers_ranks_the_authors_past_reviewers_then_overall() -> None:
    history = [
        change("ann", ("r1",), ("a",)),
        change("ann", ("r2",), ("a",)),
        change("ann", ("r2",), ("a",)),
        change("bea", ("r3",), ("a",)),
        change("bea", ("r3",), ("a",)),
        change("bea", ("r3",), ("a",)),
    ]
    assert replay(AuthorsReviewers(), history).recommend(change("ann", (), ("b",)), 5) == ["r2", "r1", "r3"]
    assert replay(AuthorsReviewers(), history).recommend(change("new", (), ("b",)), 5) == ["r3", "r2", "r1"]
    assert replay(AuthorsReviewers(), history).recommend(change("r3", (), ("b",)), 5) == ["r2", "r1"]


def test_most_frequent_counts_ackers_and_breaks_ties_by_first_seen() -> None:
    history = [
        change("ann", ("r2",), ("a",)),
        change("ann", ("r1",), ("a",), ackers=("r3",)),
        change("ann", (), ("a",), ackers=("r3",)),
        change("ann", ("r1",), ("a",)),
    ]
    assert replay(MostFrequent(), history).recommend(change("bea", (), ("b",)), 5) == ["r1", "r3", "r2"]
    assert replay(MostFrequent(), history).recommend(change("r1", (), ("b",)), 5) == ["r3", "r2"]
    assert replay(MostFrequent(allow_author=True), history).recommend(change("r1", (), ("b",)), 1) == ["r1"]


def test_random_reviewer_is_reproducible_and_draws_past_reviewers_only() -> None:
    history = [change("ann", (f"r{i}",), ("a",)) for i in range(8)]
    new = change("r0", (), ("a",))
    first = replay(RandomReviewer(random_state=7), history).recommend(new, 5)
    again = replay(RandomReviewer(random_state=7), history).recommend(new, 5)
    assert first == again
    assert len(set(first)) == 5 and set(first) <= {f"r{i}" for i in range(1, 8)}
    assert sorted(replay(RandomReviewer(), history).recommend(new, 50)) == [f"r{i}" for i in range(1, 8)]
    assert RandomReviewer().recommend(new, 5) == []


# --- the registry and the harness ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_is_registered_under_its_name_and_replays(name: str) -> None:
    rec = BASELINES[name]()
    assert rec.name == name
    result = backtest(frequency_history() + [change("cid", ("r2",), ("src/net/a.c",))], rec)
    assert result.evaluated == 7


@pytest.mark.shared_data
@pytest.mark.skipif(not (DATA / "bench" / "gerrit.jsonl.gz").is_file(), reason="shared data not present")
def test_revfinder_fast_path_equals_the_paper_formula_on_real_paths() -> None:
    from bot.history_files import read_changes

    history = list(itertools.islice(read_changes(DATA / "bench" / "gerrit.jsonl.gz"), 60))
    rec = RevFinder()
    for i, new in enumerate(history):
        expected = naive_revfinder_scores(history[:i], new)
        for got, want in zip(rec.comparator_scores(new), expected, strict=True):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
        rec.observe(new)
