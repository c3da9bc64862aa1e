"""Candidates, graph ranking, reasons and the learned ranker on a tiny hand-made history."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone

from graph.features import FEATURES, candidates
from graph.model import Change
from graph.ownership import DAY
from graph.ranker import ReviewerRanker
from graph.recommend import GraphRecommender, LearnedRecommender, RecommenderSettings, make_recommender

D = int(DAY)
HISTORY = [
    Change("1", 0 * D, "ann", ("bob",), ("drivers/net/eth.c",)),
    Change("2", 1 * D, "ann", ("bob",), ("drivers/net/phy.c",)),
    Change("3", 2 * D, "cid", ("dan",), ("drivers/usb/hub.c",)),
    Change("4", 3 * D, "eve", ("cid",), ("docs/index.md",)),
]
QUERY = Change("q", 4 * D, "ann", (), ("drivers/net/eth.c",))


def replayed(rec):
    for c in HISTORY:
        rec.observe(c)
    return rec


def test_graph_ranking_exact():
    rec = replayed(GraphRecommender())
    assert rec.recommend(QUERY, 10) == ["bob", "dan", "cid"]


def test_author_and_bots_are_never_candidates():
    rec = replayed(GraphRecommender())
    rec.observe(Change("5", 3 * D, "dep-bot", ("ann",), ("drivers/net/eth.c",), bot_author=True))
    query = Change("q", 4 * D, "bob", (), ("drivers/net/eth.c",))
    people = rec.recommend(query, 10)
    assert "bob" not in people and "dep-bot" not in people
    assert "ann" in people


def test_allow_author_lets_the_author_in():
    rec = replayed(GraphRecommender(allow_author=True))
    query = Change("q", 4 * D, "bob", (), ("drivers/net/eth.c",))
    assert rec.recommend(query, 1) == ["bob"]


def test_inactive_people_are_not_proposed():
    rec = replayed(GraphRecommender(settings=RecommenderSettings(inactive_days=30)))
    late = Change("q", 40 * D, "ann", (), ("drivers/net/eth.c",))
    assert rec.recommend(late, 10) == []


def test_reasons_in_plain_words():
    rec = replayed(GraphRecommender())
    (top,) = rec.suggest(QUERY, k=1)
    assert top.person == "bob"
    assert top.reasons == (
        "reviewed `drivers/net/eth.c` once (last 4 days ago)",
        "reviewed 2 changes under `drivers/net/` (last 3 days ago)",
        "reviewed 2 of this author's changes",
    )
    assert top.contributions[0][:2] == ("reviews of these very files", top.contributions[0].effect)
    assert top.contributions[0].effect > 0 and top.contributions[0].value.endswith("%")


def test_suggest_respects_allowed():
    rec = replayed(GraphRecommender())
    assert [s.person for s in rec.suggest(QUERY, k=2, allowed=lambda p: p != "bob")] == ["dan", "cid"]


def test_an_open_change_renaming_a_file_is_ranked_with_the_old_paths_history():
    """Moved out of `drivers/`, `eth.c` has no history under its new path: bob, who reviewed it, comes first."""
    rec = replayed(GraphRecommender())
    moving = Change("q", 4 * D, "eve", (), ("net/eth.c",), renames=(("drivers/net/eth.c", "net/eth.c"),))
    assert rec.recommend(moving, 10) == ["bob", "cid", "ann", "dan"]
    assert [(s.person, s.reasons) for s in rec.suggest(moving, 3)] == [
        ("bob", ("reviewed `drivers/net/eth.c` once (last 4 days ago)",)),
        ("cid", ("reviewed 1 of this author's changes",)), ("ann", ("wrote `drivers/net/eth.c`",))]


@pytest.mark.parametrize("files, renames", [
    (("net/eth.c",), (("drivers/net/eth.c", "net/eth.c"),)),
    (("drivers/net/phy.c",), (("drivers/net/eth.c", "drivers/net/phy.c"),)),  # onto a file with history
    (("drivers/net/eth.c", "drivers/usb/hub.c"),  # a swap
     (("drivers/net/eth.c", "drivers/usb/hub.c"), ("drivers/usb/hub.c", "drivers/net/eth.c"))),
    (("drivers/net/phy.c", "docs/phy.md"),  # a chain
     (("drivers/net/eth.c", "drivers/net/phy.c"), ("drivers/net/phy.c", "docs/phy.md"))),
])
def test_an_open_change_with_renames_reads_the_graph_as_it_will_be_once_merged(files, renames):
    """Its candidate rows are those of the same change without renames on the graph the merge will leave."""
    rec = replayed(GraphRecommender())
    rec.observe(Change("5", 3 * D, "dan", ("eve",), ("drivers/net/phy.c",)))  # phy.c: not the people of eth.c
    merged = pickle.loads(pickle.dumps(rec.og))
    merged.move_history(renames)
    now, then = (candidates(og, Change("q", 4 * D, "eve", (), files, renames=r))
                 for og, r in ((rec.og, renames), (merged, ())))
    assert now.people == then.people and np.allclose(now.X, then.X, rtol=1e-12, atol=0)


def test_candidates_never_look_into_the_future():
    rec = GraphRecommender()
    rec.observe(HISTORY[0])
    cands = candidates(rec.og, Change("q", 1, "ann", (), ("drivers/usb/hub.c",)))
    assert "dan" not in cands.people
    assert cands.X.shape[1] == len(FEATURES)


def test_learned_recommender_trains_on_past_only():
    settings = RecommenderSettings(min_train_changes=3)
    rec = LearnedRecommender(settings=settings, estimator=ReviewerRanker(max_iter=5, min_samples_leaf=1))
    for i in range(8):
        rec.recommend(Change(str(i), i * D, "ann", ("bob",), ("a/x.c",)), 3)
        rec.observe(Change(str(i), i * D, "ann", ("bob",), ("a/x.c",)))
        rec.observe(Change(f"c{i}", i * D, "ann", ("cid",), ("b/y.c",)))
    assert rec.model_ is not None
    assert rec.recommend(Change("q", 9 * D, "ann", (), ("a/x.c",)), 1) == ["bob"]
    assert make_recommender("default").name == "default"


def test_ranker_is_a_proper_estimator():
    X = np.random.default_rng(0).random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    r = ReviewerRanker(max_iter=5, min_samples_leaf=2, random_state=1).fit(X, y)
    assert clone(r).get_params() == r.get_params()
    again = pickle.loads(pickle.dumps(r))
    np.testing.assert_allclose(again.decision_function(X), r.decision_function(X))


def test_model_explanations_in_words():
    settings = RecommenderSettings(min_train_changes=3)
    rec = LearnedRecommender(settings=settings, estimator=ReviewerRanker(max_iter=5, min_samples_leaf=1))
    for i in range(12):
        for c in (Change(str(i), i * D, "ann", ("bob",), ("src/x.c",)),
                  Change(f"c{i}", i * D, "dan", ("cid",), ("src/y.c",))):
            rec.recommend(c, 3)
            rec.observe(c)
    (top,) = rec.suggest(Change("q", 13 * D, "ann", (), ("src/x.c",)), k=1)
    assert top.person == "bob" and rec.model_ is not None
    words = [c.signal for c in top.contributions]
    assert words and all(" " in w or w.isalpha() for w in words)
    assert top.contributions[0].effect > 0
    assert all(c.value and c.others for c in top.contributions)  # both sides in plain units


def test_every_model_column_has_plain_units_for_why():
    from graph.explain import UNITS
    from graph.feedback import FEEDBACK_FEATURES

    assert set(UNITS) == {*FEATURES, *FEEDBACK_FEATURES, "graph_score"}


def test_why_compares_a_person_with_the_other_candidates_only():
    """Only bob reviewed `eth.c`: the other candidates' share of its reviews is 0%, not an average with bob."""
    rec = replayed(GraphRecommender())
    (top,) = rec.suggest(QUERY, k=1)
    very = next(c for c in top.contributions if c.signal == "reviews of these very files")
    assert (very.value, very.others) == ("100%", "0%")


def test_the_candidate_limit_keeps_the_best_by_graph_score():
    """81 reviewers of a file from long ago each hold a larger share of it than the one who reviewed it last
    week; the pre-selection summed the shares only and cut the recent one, whom the graph score puts first."""
    rec, t = GraphRecommender(), 0
    for p in range(81):
        for _ in range(4):
            rec.observe(Change(f"s{p}-{t}", t, "w", (f"old{p:02d}",), ("f.c",)))
            t += 1
    rec.observe(Change("x", int(290 * DAY), "w", ("xia",), ("f.c",)))
    query = Change("q", int(291 * DAY), "quinn", (), ("f.c",))
    unlimited = GraphRecommender(settings=RecommenderSettings(candidate_limit=10_000))
    unlimited.og = rec.og
    assert unlimited.recommend(query, 1) == rec.recommend(query, 1) == ["xia"]



def _closed_and_reopened(labels: list[tuple[str, str]]) -> LearnedRecommender:
    """bob reviewed src/a.c five times; !9 is suggested for, then `labels` come (all on day 11)."""
    rec = LearnedRecommender()
    for i in range(5):
        rec.observe(Change(f"h{i}", int(i * DAY), "ann", ("bob",), ("src/a.c",)))
    opened = Change("!9", int(10 * DAY), "ann", (), ("src/a.c",))
    rec.suggest(opened, 3)
    for person, label in labels:
        rec.learn(opened, person, label, time=11 * DAY)
    return rec


def test_closing_then_reopening_an_mr_puts_back_its_reviews_and_its_rows():
    """Reopened, the reviews taken on an MR count again (on duty, in the graph), a second close before it
    loses nothing, and its training rows at the merge are those from when it was suggested: recomputed,
    they would see cy's own early review (a leak)."""
    merged = Change("!9", int(12 * DAY), "ann", ("cy",), ("src/a.c",))
    for labels in ([("", "closed"), ("", "reopened")], [("", "closed"), ("", "closed"), ("", "reopened")]):
        plain, again = _closed_and_reopened([("cy", "assigned")]), _closed_and_reopened([("cy", "assigned"), *labels])
        assert "cy" in again.feedback.open["!9"].people and "!9" in again._early
        assert sorted(again.og.G.edges()) == sorted(plain.og.G.edges())
        plain.observe(merged)
        again.observe(merged)
        assert len(again._rows) == len(plain._rows)
        assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(again._rows, plain._rows))


class _ByAcceptance:
    """A ranker reading `fb_acceptance` alone: its effect in `/reviewers why` is never zero."""

    def decision_function(self, X, groups=None):
        return 4.0 * np.asarray(X)[:, len(FEATURES)]


def test_why_says_a_share_of_suggestions_taken_is_assumed_without_feedback():
    """bob has no feedback at all: his `fb_acceptance` is the prior's 50%, not a measured one."""
    rec = replayed(LearnedRecommender())
    rec.prior = _ByAcceptance()
    rec.learn(Change("7", 4 * D - 60, "eve", (), ("docs/index.md",)), "dan", "removed", time=4 * D - 60)
    said = {s.person: next(c for c in s.contributions if c.signal == "share of their suggestions the team took")
            for s in rec.suggest(QUERY, k=3)}
    assert (said["bob"].value, said["bob"].others) == ("no feedback yet: 50% assumed", "33%")
    assert said["bob"].effect > 0.6 and said["dan"].value == "33%"


def test_why_says_someone_outside_the_models_shortlist_is_ranked_by_ownership_alone():
    """Ranked below the model's shortlist, a person's score is a placement and their signals the ownership
    score's parts: the answer says so rather than read like the model's own verdict."""
    from bot.comment import render_why

    rec = replayed(LearnedRecommender(settings=RecommenderSettings(rerank=1)))
    rec.prior = _ByAcceptance()
    ranked = rec.suggest(QUERY, k=3)
    assert ranked[0].basis == ""
    last = ranked[1]
    assert render_why(last.person, last, rank=2).splitlines()[:3] == [
        f"**Why `@{last.person}`?**",
        f"`@{last.person}` ranked 2.",
        "The model ranks only the candidate with the highest ownership score: this person is not among them, "
        "so they rank below by that score alone, and the signals below are its parts."]


def test_why_someone_the_history_knows_is_no_candidate():
    """"They have no review history on the files" was said of people who have some: idle too long, or past
    the candidate limit."""
    idle = replayed(GraphRecommender(settings=RecommenderSettings(inactive_days=30)))
    late = Change("q", 40 * D, "ann", (), ("drivers/net/eth.c",))
    assert idle.absent(late, lambda p: p == "bob") == (
        "no review or change of theirs in this project's history for 39 days (people inactive for over 30 days "
        "are not suggested)")
    full = replayed(GraphRecommender(settings=RecommenderSettings(candidate_limit=2)))
    assert full.recommend(QUERY, 10) == ["bob", "dan"]
    assert full.absent(QUERY, lambda p: p == "cid") == "not among the 2 candidates with the highest ownership score"
    assert full.absent(QUERY, lambda p: p == "bob") == full.absent(QUERY, lambda p: p == "zed") == ""


def test_someone_without_evidence_on_the_files_is_not_said_to_be_past_the_candidate_limit():
    """eve only wrote the docs: with a full candidate list she was "not among the 2 candidates with the highest
    ownership score", as if she had some on these files; she has none, which the answer says when `absent` is
    empty ("They have no review history on the files this merge request touches.")."""
    full = replayed(GraphRecommender(settings=RecommenderSettings(candidate_limit=2)))
    assert full.absent(QUERY, lambda p: p == "eve") == ""
    assert full.absent(QUERY, lambda p: p == "cid") == "not among the 2 candidates with the highest ownership score"
