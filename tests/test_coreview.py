"""Co-reviews: pairs of people who reviewed the same change, and the reason naming them, on a tiny hand-made
history with exact expected values."""
import pickle

import pytest

from graph import snapshot
from graph.features import FEATURES
from graph.model import Change
from graph.ownership import DAY, OwnershipGraph
from graph.reasons import reasons
from graph.recommend import GraphRecommender

D = int(DAY)
HISTORY = [
    Change("1", 0 * D, "ann", ("bob", "cid"), ("src/a.c",)),
    Change("2", 1 * D, "dan", ("bob", "cid"), ("src/b.c",)),
    Change("3", 2 * D, "dan", ("bob", "eve"), ("lib/x.c",)),
]
QUERY = Change("q", 3 * D, "ann", (), ("src/a.c",))


@pytest.fixture
def rec():
    r = GraphRecommender()
    for c in HISTORY:
        r.observe(c)
    return r


def test_pairs_counted_once_per_change_with_decayed_weights(rec):
    og = rec.og
    w0, w1, w2 = og.scale(0), og.scale(D), og.scale(2 * D)
    assert og.coreview["@bob"]["@cid"] == [2, w0 + w1, 1 * D]
    assert og.coreview["@cid"]["@bob"] is og.coreview["@bob"]["@cid"]  # one list for both directions
    assert og.coreview["@bob"]["@eve"] == [1, w2, 2 * D]
    assert "@dan" not in og.coreview and "@ann" not in og.coreview  # authors are not co-reviewers


def test_author_reviewing_their_own_change_is_not_paired():
    og = OwnershipGraph()
    og.add_change(Change("1", 0, "ann", ("ann", "bob"), ("a",)), allow_author=True)
    assert og.coreview == {}


def test_graph_ranking_unchanged(rec):
    """Co-reviews explain; they do not rank (as a ranker feature they moved the backtests by noise only)."""
    assert "coreview" not in FEATURES
    assert rec.recommend(QUERY, 10) == ["bob", "cid", "eve", "dan"]


def test_reason_names_the_partner_suggested_beside(rec):
    bob, cid, eve = rec.suggest(QUERY, k=3)
    assert bob.reasons == (
        "reviewed `src/a.c` once (last 3 days ago)",
        "reviewed 2 changes under `src/` (last 2 days ago)",
        "reviewed 1 of this author's changes",
        "reviewed 2 changes together with `@cid` (last 2 days ago)",
    )
    assert cid.reasons[-1] == "reviewed 2 changes together with `@bob` (last 2 days ago)"  # named as in the table
    assert eve.reasons == ("active reviewer: 1 review, last 1 day ago",)  # one co-review is not "often"
    assert reasons(rec.og, QUERY, "cid") == list(cid.reasons[:-1])  # nobody named beside: no such reason


def test_someone_who_only_wrote_changes_still_has_a_reason(rec):
    """dan wrote two changes and reviewed none: ranked fourth, his row had no reason at all ("—")."""
    dan = rec.suggest(QUERY, k=4)[3]
    assert dan.person == "dan" and dan.reasons == ("wrote 2 changes in this project (last 1 day ago), reviewed "
                                                   "none yet",)


def test_rebase_and_snapshot_keep_co_reviews(rec):
    og = rec.og
    far = Change("4", 80000 * D, "ann", ("bob", "cid"), ("src/a.c",))
    rec.observe(far)
    assert og.coreview["@bob"]["@cid"][0] == 3 and og.coreview["@bob"]["@cid"][1] == pytest.approx(1.0)
    restored = snapshot.loads(snapshot.dumps(rec)).og
    assert restored.coreview == og.coreview
    assert restored.coreview["@cid"]["@bob"] is restored.coreview["@bob"]["@cid"]
    assert pickle.loads(pickle.dumps(og)).coreview == og.coreview


def test_someone_whose_only_review_was_taken_back_still_has_a_reason():
    og = OwnershipGraph()
    og.add_change(Change("1", 0, "ann", ("bob",), ("a.c",)))
    open_mr = Change("2", D, "ann", (), ("b.c",))
    og.retract_review(open_mr, "eve", D, og.add_review(open_mr, "eve", D))
    assert reasons(og, Change("q", 3 * D, "dan", (), ("c.c",)), "eve") == [
        "last seen in this project's history 2 days ago; no review or change of theirs counts now"]

