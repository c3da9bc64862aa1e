"""Early reviews: a review taken on an open merge request enters the ownership graph at once
(`OwnershipGraph.add_review`), a removal takes it back (`retract_review`), and the merge adds only the rest.
Tiny hand-made histories, exact expected values."""
import pickle
import warnings

import numpy as np
import pytest

from graph.features import FEATURES, candidates
from graph.model import Change
from graph.ownership import DAY, OwnershipGraph
from graph.recommend import LearnedRecommender, RecommenderSettings

D = int(DAY)
HISTORY = [
    Change("1", 0 * D, "ann", ("bob",), ("src/a.c",)),
    Change("2", 5 * D, "cid", ("bob", "dan"), ("src/a.c", "doc/x.md")),
]
# bob has reviewed src/a.c before, eve is new; src/new/b.c is a file nobody has touched yet
MERGE = Change("3", 10 * D, "ann", ("bob", "eve"), ("src/a.c", "src/new/b.c"))
COUNTS = ("rc", "ac", "n", "fc")
WEIGHTS = ("rw", "aw", "nw", "sw", "fw")


def history_graph() -> OwnershipGraph:
    og = OwnershipGraph(half_life_days=10)  # t0 = 0: a review at day d weighs 2 ** (d / 10) scaled
    for c in HISTORY:
        og.add_change(c)
    return og


def figures(og: OwnershipGraph, keys: tuple[str, ...]) -> dict[tuple, float]:
    """Every node's and edge's figures named in `keys`, flat: (node, key) and (u, v, key)."""
    out = {(n, k): d[k] for n, d in og.G.nodes(data=True) for k in keys if k in d}
    out.update({(u, v, k): d[k] for u, v, d in og.G.edges(data=True) for k in keys if k in d})
    return out


def assert_same_figures(got: OwnershipGraph, want: OwnershipGraph, *, weights: bool = True) -> None:
    """Counts equal and weights equal to float rounding; a node or edge one graph lacks counts as zeros
    (a retracted review may leave an empty edge behind)."""
    for keys, approx in ((COUNTS, False), (WEIGHTS, True))[: 2 if weights else 1]:
        a, b = figures(got, keys), figures(want, keys)
        union = a.keys() | b.keys()
        a, b = {k: a.get(k, 0) for k in union}, {k: b.get(k, 0) for k in union}
        assert a == (pytest.approx(b, abs=1e-12) if approx else b)


def edges(og: OwnershipGraph) -> dict[tuple[str, str], dict]:
    return {(u, v): d for u, v, d in og.G.edges(data=True)}


# -- add_review, then the merge ---------------------------------------------------------------------------
@pytest.mark.parametrize("early", [["eve"], ["bob"], ["bob", "eve"]])
def test_reviews_recorded_at_the_merge_time_give_the_graph_of_a_plain_merge(early):
    plain, og = history_graph(), history_graph()
    plain.add_change(MERGE)
    for person in early:
        og.add_review(MERGE, person, MERGE.time)
    og.add_change(MERGE, reviewed=early)
    assert dict(og.G.nodes(data=True)) == dict(plain.G.nodes(data=True))
    assert edges(og) == edges(plain)
    assert og.coreview == plain.coreview
    assert og.coreview["@bob"]["@eve"] == [1, 2.0, 10 * D]  # they still reviewed this change together
    assert og.changes == plain.changes == 3


def test_a_review_taken_before_the_merge_counts_the_same_and_weighs_at_its_own_time():
    plain, og = history_graph(), history_graph()
    plain.add_change(MERGE)
    og.add_review(MERGE, "eve", 8 * D)
    og.add_change(MERGE, reviewed=["eve"])
    assert figures(og, COUNTS) == figures(plain, COUNTS)
    G = og.G
    for p in ("/src/a.c", "/src/", "/src/new/b.c", "/src/new/"):
        assert G[p]["@eve"]["rw"] == pytest.approx(2**0.8)  # day 8, not the merge's day 10
        assert G[p]["@eve"]["rt"] == 8 * D
        assert G[p]["@bob"]["rt"] == 10 * D
        assert G.nodes[p]["rw"] == pytest.approx(plain.G.nodes[p]["rw"] - 2.0 + 2**0.8)
        assert G.nodes[p]["nw"] == plain.G.nodes[p]["nw"]  # the authorship part is the merge's
    assert G["@ann"]["@eve"] == {"fc": 1, "fw": pytest.approx(2**0.8), "ft": 8 * D}
    assert G.nodes["@eve"]["lr"] == 8 * D and G.nodes["@bob"]["lr"] == 10 * D
    assert G.nodes["@ann"]["ac"] == 2 and G.nodes["@ann"]["last"] == 10 * D
    assert og.coreview["@bob"]["@eve"] == [1, 2.0, 10 * D]


def test_add_review_records_only_the_reviewers_part():
    og = history_graph()
    og.add_review(MERGE, "eve", 8 * D)
    G = og.G
    assert G.nodes["/src/new/b.c"] == {"kind": "path", "n": 0, "nw": 0.0, "rc": 1, "rw": 2**0.8, "aw": 0.0}
    assert list(G["/src/new/b.c"]) == ["@eve"]  # no authorship edge before the merge
    assert G.nodes["/src/a.c"]["n"] == 2 and G.nodes["/src/a.c"]["rc"] == 4
    assert G["/src/a.c"]["@ann"]["ac"] == 1 and G.nodes["@ann"]["ac"] == 1
    assert G.nodes["@ann"]["last"] == 0  # ann last wrote at day 0; an open merge request is not a change yet
    assert og.changes == 2 and og.coreview.get("@eve") is None
    og.add_review(MERGE, "ann", 8 * D)  # the author never reviews their own change
    og.add_review(Change("4", 9 * D, "ann", (), ()), "bob", 9 * D)  # nor is a change without files reviewed
    assert G.nodes["@ann"]["rc"] == 0 and G.nodes["@bob"]["rc"] == 2


def test_a_review_dated_before_the_last_merge_moves_no_last_time_back():
    """Labels can be learned after a later merge (they are stored, then read in batches)."""
    og = history_graph()
    og.add_review(Change("9", 4 * D, "ann", (), ("src/a.c",)), "bob", 4 * D)  # bob last reviewed on day 5
    G = og.G
    assert (G["/src/a.c"]["@bob"]["rt"], G["@ann"]["@bob"]["ft"], G.nodes["@bob"]["lr"]) == (5 * D, 4 * D, 5 * D)
    assert G["/src/a.c"]["@bob"]["rc"] == 3 and G["/src/a.c"]["@bob"]["rw"] == pytest.approx(1 + 2**0.5 + 2**0.4)


# -- retract_review ---------------------------------------------------------------------------------------
def test_retracting_the_review_of_an_earlier_reviewer_restores_every_figure():
    og, before = history_graph(), history_graph()
    og.add_review(MERGE, "bob", 8 * D)
    assert og.G["/src/a.c"]["@bob"]["rc"] == 3
    og.retract_review(MERGE, "bob", 8 * D)
    assert_same_figures(og, before)
    G = og.G
    assert G["@ann"]["@bob"]["fc"] == 1 and G["/src/a.c"]["@bob"]["rc"] == 2
    assert G.nodes["@bob"]["lr"] is not None and G["/src/a.c"]["@bob"]["rt"] is not None  # reviews remain
    assert G["/src/new/b.c"].get("@bob", {}).get("rt") is None


def test_retracting_with_the_times_add_review_moved_puts_the_last_review_times_back():
    og = history_graph()
    before = og.add_review(MERGE, "bob", 8 * D)
    assert before.lr == 5 * D and before.ft == 0 and before.rt == {"/src/a.c": 5 * D, "/src/": 5 * D}
    og.retract_review(MERGE, "bob", 8 * D, before)
    G = og.G
    assert G.nodes["@bob"]["lr"] == 5 * D and G["@ann"]["@bob"]["ft"] == 0
    assert G["/src/a.c"]["@bob"]["rt"] == G["/src/"]["@bob"]["rt"] == 5 * D


def test_a_later_review_keeps_its_time_when_an_earlier_one_is_taken_back():
    og = history_graph()
    before = og.add_review(MERGE, "bob", 8 * D)
    og.add_change(Change("4", 9 * D, "cid", ("bob",), ("src/a.c",)))
    og.retract_review(MERGE, "bob", 8 * D, before)
    assert og.G.nodes["@bob"]["lr"] == og.G["/src/a.c"]["@bob"]["rt"] == 9 * D


def test_retracting_the_review_of_a_new_reviewer_takes_back_all_its_figures():
    og, before = history_graph(), history_graph()
    og.add_review(MERGE, "eve", 8 * D)
    og.retract_review(MERGE, "eve", 8 * D)
    assert_same_figures(og, before)
    G = og.G
    assert G.nodes["@eve"]["rc"] == 0 and G.nodes["@eve"]["lr"] is None
    assert "@eve" not in G["@ann"]
    for p in ("/src/a.c", "/src/", "/src/new/b.c", "/src/new/"):
        assert G[p].get("@eve", {}).get("rt") is None
    assert G.nodes["/src/a.c"]["rc"] == 3 and G.nodes["/src/new/b.c"]["rc"] == 0


def test_a_retracted_review_then_a_merge_without_it_counts_as_a_plain_merge():
    plain, og = history_graph(), history_graph()
    merge = Change("3", 10 * D, "ann", ("bob",), MERGE.files)
    plain.add_change(merge)
    og.add_review(merge, "eve", 8 * D)
    og.add_review(merge, "bob", 9 * D)
    og.retract_review(merge, "eve", 8 * D)
    og.add_change(merge, reviewed=["bob"])
    assert_same_figures(og, plain, weights=False)
    assert og.G["/src/a.c"]["@bob"]["rw"] == pytest.approx(plain.G["/src/a.c"]["@bob"]["rw"] - 2.0 + 2**0.9)


# -- cached edge blocks -----------------------------------------------------------------------------------
def assert_blocks_fresh(og: OwnershipGraph, paths) -> None:
    fresh = pickle.loads(pickle.dumps(og))  # derived data is not pickled: the copy builds its blocks anew
    for p in paths:
        assert np.array_equal(og.edge_block(p), fresh.edge_block(p), equal_nan=True), p


@pytest.mark.parametrize("person", ["bob", "eve"])  # rows updated in place; a new row (the block rebuilt)
def test_cached_edge_blocks_follow_add_review_and_retract_review(person):
    og = history_graph()
    og.add_change(Change("x", 6 * D, "dan", ("cid",), ("src/new/b.c",)))  # every path known and cached
    paths = og.paths_of(MERGE.files)
    assert og.warm_blocks() > 0 and all(p in og._derived.blocks for p in paths)
    og.add_review(MERGE, person, 8 * D)
    assert_blocks_fresh(og, paths)
    i = og.people_table().index["@" + person]
    row = og.edge_block("/src/new/b.c")[og.edge_block("/src/new/b.c")[:, 0] == i]
    assert np.array_equal(row, [[i, 2**0.8, 0.0, 8 * D, np.nan]], equal_nan=True)
    og.retract_review(MERGE, person, 8 * D)
    assert_blocks_fresh(og, paths)
    og.add_change(MERGE)  # a later merge still updates the blocks to the fresh values
    assert_blocks_fresh(og, paths)


def test_a_directorys_cached_heads_block_follows_add_review_and_retract_review():
    og = OwnershipGraph(half_life_days=10)
    for i in range(45):  # more people than a directory's heads (40): its block holds only the heads
        og.add_change(Change(str(i), i * D, f"p{i:02d}", ("bob",), (f"lib/f{i}.c",)))
    assert len(og.edge_block("/lib/")) == 40
    heads = {q for q, _ in og.heads("/lib/")}
    assert {"@bob", "@p44"} <= heads and "@p03" not in heads
    change = Change("open", 50 * D, "p03", (), ("lib/f7.c",))
    for person in ("bob", "p44", "zed"):  # a head who reviewed, a head who only wrote, someone new
        og.add_review(change, person, 50 * D)
        assert_blocks_fresh(og, ["/lib/", "/lib/f7.c"])
        og.retract_review(change, person, 50 * D)
        assert_blocks_fresh(og, ["/lib/", "/lib/f7.c"])


# -- features on a path only reviewed ---------------------------------------------------------------------
def test_candidates_on_a_file_reviewed_but_never_written_are_finite():
    og = history_graph()
    og.add_review(Change("open", 6 * D, "cid", (), ("lib/z.c",)), "bob", 6 * D)  # nobody has written lib/
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for files in (("lib/z.c",), ("lib/z.c", "src/a.c")):
            cands = candidates(og, Change("q", 7 * D, "dan", (), files))
            assert not np.isnan(cands.X).any()
    cands = candidates(og, Change("q", 7 * D, "dan", (), ("lib/z.c",)))
    bob = dict(zip(FEATURES, cands.X[cands.people.index("bob")]))
    assert (bob["file_review_share"], bob["file_reviewed"], bob["dir1_review_share"]) == (1.0, 1.0, 1.0)
    assert (bob["file_author_share"], bob["dir1_author_share"]) == (0.0, 0.0)


# -- LearnedRecommender -----------------------------------------------------------------------------------
# cid reviewed src/a.c; bob only ever reviewed doc/ (a candidate here as one of the top reviewers)
LEARN_HISTORY = [
    Change("1", 0 * D, "ann", ("cid",), ("src/a.c",)),
    Change("2", 1 * D, "dan", ("bob",), ("doc/x.md",)),
]
OPEN = Change("10", 2 * D, "ann", (), ("src/a.c",))
NEXT = Change("11", 3 * D, "dan", (), ("src/a.c",))  # another author, the same file, before OPEN merges
SHARE = FEATURES.index("file_review_share")


def learner(**settings) -> LearnedRecommender:
    rec = LearnedRecommender(settings=RecommenderSettings(**settings))
    rec.observe_history(LEARN_HISTORY)
    return rec


def share(rec: LearnedRecommender, person: str) -> float:
    cands = candidates(rec.og, NEXT)
    return float(cands.X[cands.people.index(person), SHARE])


@pytest.mark.parametrize("label", ["accepted", "assigned"])
def test_a_review_taken_ranks_the_reviewer_on_the_next_change_before_the_merge(label):
    rec, off = learner(), learner(early_reviews=False)
    assert rec.recommend(NEXT, 3) == off.recommend(NEXT, 3) == ["cid", "bob", "ann"]
    for r in (rec, off):
        r.recommend(OPEN, 3)
        r.learn(OPEN, "bob", label, time=2 * D + 3600)
    assert share(off, "bob") == 0.0
    assert share(rec, "bob") > share(rec, "cid") > 0.0  # one review each, bob's two days later
    assert rec.recommend(NEXT, 3) == ["bob", "cid", "ann"]
    assert off.recommend(NEXT, 3) == ["cid", "bob", "ann"]


def test_a_removal_takes_the_early_review_back():
    rec = learner()
    rec.recommend(OPEN, 3)
    rec.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
    rec.learn(OPEN, "bob", "removed", time=2 * D + 7200)
    assert share(rec, "bob") == 0.0 and share(rec, "cid") == pytest.approx(1.0)  # 1 less a float's rounding
    assert rec.og.G.nodes["/src/a.c"]["rc"] == 1 and "@bob" not in rec.og.G["@ann"]
    rec.learn(OPEN, "bob", "removed", time=2 * D + 7300)  # a second removal takes nothing more
    assert rec.og.G.nodes["@bob"]["rc"] == 1


def test_closing_without_a_merge_ends_its_reviews():
    """Closed unmerged, the MR never reaches the history: its review leaves the graph, its reviewer is no
    longer on duty for it, and its rows never become training rows."""
    from graph.feedback import FEEDBACK_FEATURES

    rec, never = learner(), learner()
    rec.recommend(OPEN, 3)
    rec.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
    on_duty = FEEDBACK_FEATURES.index("fb_open_reviews") - len(FEEDBACK_FEATURES)

    def duty(r) -> float:
        cands = r._candidates(NEXT)
        return float(cands.X[cands.people.index("bob"), on_duty])

    assert share(rec, "bob") > 0.0 and duty(rec) > 0.0
    rec.learn(Change(OPEN.id, OPEN.time, "", (), ()), "ann", "closed", time=3 * D)
    assert_same_figures(rec.og, never.og)
    assert share(rec, "bob") == 0.0 and duty(rec) == 0.0 and OPEN.id not in rec._pending


@pytest.mark.parametrize("removed", [True, False])
def test_at_the_merge_reviewers_who_left_are_taken_back_and_the_graph_is_as_without_early_reviews(removed):
    """bob took the review and left it (removed, or simply not among the final reviewers); cid reviewed."""
    rec, off = learner(), learner(early_reviews=False)
    merged = Change("10", 4 * D, "ann", ("cid",), ("src/a.c",))
    for r in (rec, off):
        r.recommend(OPEN, 3)
        r.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
        if removed:
            r.learn(OPEN, "bob", "removed", time=3 * D)
        r.observe(merged)
    assert_same_figures(rec.og, off.og)
    assert rec.og.G["/src/a.c"]["@cid"]["rc"] == 2 and rec.og.G.nodes["@bob"]["rc"] == 1
    assert share(rec, "bob") == share(off, "bob") == 0.0


def test_at_the_merge_an_early_reviewer_who_stayed_is_not_counted_twice():
    rec, off = learner(), learner(early_reviews=False)
    merged = Change("10", 4 * D, "ann", ("bob", "cid"), ("src/a.c",))
    for r in (rec, off):
        r.recommend(OPEN, 3)
        r.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
        r.observe(merged)
    assert figures(rec.og, COUNTS) == figures(off.og, COUNTS)
    assert rec.og.G["/src/a.c"]["@bob"]["rt"] == 2 * D + 3600  # dated when he took it
    assert rec.og.coreview == off.og.coreview


# -- labels that name only the change -----------------------------------------------------------------------
def test_a_label_naming_only_the_change_is_completed_from_the_suggested_change():
    rec = learner()
    label_only = Change("10", 2 * D + 3600, "", (), ())  # what the bot sends
    rec.learn(label_only, "bob", "accepted")  # never suggested: who wrote what is unknown, nothing to add
    assert rec.og.G.nodes["@bob"]["rc"] == 1
    rec.suggest(OPEN, 3)
    rec.learn(label_only, "eve", "accepted")
    G = rec.og.G
    assert G["/src/a.c"]["@eve"]["rc"] == 1 and G["/src/a.c"]["@eve"]["rt"] == 2 * D + 3600
    assert G["@ann"]["@eve"]["fc"] == 1
    rec.learn(label_only, "eve", "removed")
    assert G.nodes["/src/a.c"]["rc"] == 1 and "@eve" not in G["@ann"]


# -- a merge request whose files change while it is open ------------------------------------------------------
PUSHED = Change("10", 3 * D, "ann", (), ("src/a.c", "doc/x.md"))  # OPEN after a push added doc/x.md


def test_a_removal_after_a_push_takes_back_only_the_review_it_recorded():
    rec, before = learner(), learner()
    label_only = Change("10", 2 * D + 3600, "", (), ())
    rec.suggest(OPEN, 3)
    rec.learn(label_only, "bob", "accepted")
    rec.suggest(PUSHED, 3)  # the bot suggests again after the push
    rec.learn(label_only, "bob", "removed")
    assert rec.og.G["/doc/x.md"]["@bob"]["rc"] == 1  # bob's review of change 2, not taken back
    assert_same_figures(rec.og, before.og)


def test_an_early_reviewer_counts_on_files_pushed_after_the_review_was_taken():
    rec, off = learner(), learner(early_reviews=False)
    merged = Change("10", 4 * D, "ann", ("bob",), ("src/a.c", "src/c.c"))
    for r in (rec, off):
        r.suggest(OPEN, 3)
        r.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
        r.observe(merged)
    assert figures(rec.og, COUNTS) == figures(off.og, COUNTS)


# -- snapshots ---------------------------------------------------------------------------------------------
def test_a_snapshot_keeps_the_early_reviews_and_the_merge_settles_them_alike():
    from graph.snapshot import dumps, loads

    rec = learner()
    rec.suggest(OPEN, 3)
    rec.learn(Change("10", 2 * D + 3600, "", (), ()), "eve", "accepted")
    restored = loads(dumps(rec))
    assert restored._early.keys() == {"10"} and restored.og.G["/src/a.c"]["@eve"]["rc"] == 1
    merged = Change("10", 4 * D, "ann", ("eve",), ("src/a.c",))
    for r in (rec, restored):
        r.observe(merged)
    assert_same_figures(restored.og, rec.og)
    assert restored.og.G["/src/a.c"]["@eve"]["rc"] == 1 and not restored._early


def test_a_change_ranked_with_no_candidates_gets_no_training_rows_from_its_own_early_review():
    """Its rows as suggested were none; recomputed at the merge they would hold its own review."""
    rec = LearnedRecommender()
    change = Change("1", 100, "ann", ("bob",), ("src/a.c",))
    assert rec.recommend(change, 3) == []
    rec.learn(change, "bob", "assigned", time=50)
    rec.observe(change)
    assert rec._labelled == 0


RENAME = Change("12", 3 * D, "dan", ("cid",), ("src/b.c",), renames=(("src/a.c", "src/b.c"),))


@pytest.mark.parametrize("end", ["closed", "merged on the new path"])
def test_an_early_review_on_a_file_another_merge_renames_is_taken_back_or_settled_on_the_new_path(end):
    """bob took OPEN's review (on src/a.c); another merge request renamed src/a.c to src/b.c, which moved the
    review along. Taken back from the old path it stayed on src/b.c for ever; merged, it counted twice."""
    rec, off = learner(), learner(early_reviews=False)
    for r in (rec, off):
        r.recommend(OPEN, 3)
        r.learn(OPEN, "bob", "accepted", time=2 * D + 3600)
        r.observe(RENAME)
        if end == "closed":
            r.learn(Change(OPEN.id, OPEN.time, "", (), ()), "ann", "closed", time=4 * D)
        else:
            r.observe(Change(OPEN.id, 4 * D, "ann", ("bob",), ("src/b.c",)))
    assert_same_figures(rec.og, off.og, weights=False)
    bob = rec.og.G["/src/b.c"].get("@bob")
    assert (bob["rc"] if bob else 0) == (0 if end == "closed" else 1)


def test_a_review_taken_on_a_change_without_files_is_counted_at_its_merge():
    """`add_review` adds nothing for a change without files (an empty commit with a Reviewed-by trailer, a
    merge request with no diff): the merge must then count the review, as without early reviews."""
    rec, off = learner(), learner(early_reviews=False)
    empty = Change("10", 4 * D, "ann", ("bob",), ())
    for r in (rec, off):
        r.recommend(empty, 3)
        r.learn(empty, "bob", "accepted", time=2 * D)
        r.observe(empty)
    assert_same_figures(rec.og, off.og)
    assert rec.og.G.nodes["@bob"]["rc"] == 2 and rec.og.G["@ann"]["@bob"]["fc"] == 1
