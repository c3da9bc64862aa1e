"""The load spreading learns from the team: where it changed who came first, the team's choice between the
one it moved up and the one it moved down is a vote, and the share of spreading applied follows the votes.

On the research benchmarks the fixed spreading cost scikit-learn 4.8 and React 3.5 points of Top-1 in
`reviewbot evaluate` (one or two people review most of these projects): the team keeps taking the one the
spreading moved down. Learning the share, `reviewbot simulate` with learning on went from 55.9 to 61.2
(scikit-learn) and 55.4 to 56.9 (React); with learning off nothing changes."""
from __future__ import annotations

import pickle
from dataclasses import replace

from graph.model import Change
from graph.recommend import DEFAULT_SETTINGS, LearnedRecommender, make_recommender
from graph.synthetic import synthetic_history


def _history(n: int = 900) -> list[Change]:
    return list(synthetic_history(n, 60, 8, seed=3, leaver_share=0.0))


def _replay(rec: LearnedRecommender, take: str | None) -> tuple[int, int]:
    """Recommend and observe the history; where the spreading changed the first place, the team takes the
    one it moved down (`take="down"`), up (`"up"`) or says nothing (None). Returns (pairs seen, votes given)."""
    pairs = votes = 0
    for change in _history():
        rec.recommend(change, 3)
        pair = rec._spread.get(change.id)
        if pair is not None:
            pairs += 1
            if take is not None:
                person = pair[0] if take == "down" else pair[1]
                rec.learn(replace(change, reviewers=()), person, "accepted", time=change.time)
                rec.learn(replace(change, reviewers=()), person, "assigned", time=change.time)  # once only
                votes += 1
        rec.observe(change)
    return pairs, votes


def test_a_team_taking_whom_the_spreading_moved_down_turns_it_down():
    rec = make_recommender("default")
    pairs, votes = _replay(rec, "down")
    assert pairs > 5 and votes == pairs
    assert rec._balance_level < 1.0
    assert rec._balance_level >= DEFAULT_SETTINGS.balance_floor
    people = sorted(rec._suggested)
    weaker = rec._imbalance(people)
    rec._balance_level = 1.0
    assert abs(weaker).sum() < abs(rec._imbalance(people)).sum()


def test_one_vote_per_person_and_merge_request():
    rec = make_recommender("default")
    _replay(rec, None)
    rec._spread["!1"] = ["ann", "bob", set()]
    for label in ("accepted", "assigned", "accepted"):
        rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "ann", label, time=10**9)
    assert rec._balance_level == 1 / DEFAULT_SETTINGS.balance_step
    rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "bob", "accepted", time=10**9)
    assert rec._balance_level == 1.0  # one each way: back where it was (and never above 1)
    rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "dee", "accepted", time=10**9)  # not one of the pair
    rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "ann", "removed", time=10**9)  # not a review taken
    assert rec._balance_level == 1.0


def test_a_team_taking_whom_it_moved_up_keeps_it_and_silence_changes_nothing():
    up, silent = make_recommender("default"), make_recommender("default")
    assert _replay(up, "up")[1] > 5
    _replay(silent, None)
    assert up._balance_level == silent._balance_level == 1.0


def test_the_pair_is_the_first_place_with_and_without_the_spreading():
    rec, checked = make_recommender("default"), 0
    for change in _history(600):
        top = rec.recommend(change, 3)
        pair = rec._spread.get(change.id)
        if pair is not None:
            checked += 1
            down, up, _ = pair
            cands = rec._candidates(change)
            idx = rec._top(cands)
            people = [cands.people[i] for i in idx]
            model = rec.ranking_model.decision_function(rec.model_input(cands.X[idx], cands.score[idx]))
            spread, rejected, duty = rec._terms(people, cands.X[idx])
            plain = model + rejected + duty
            assert top[0] == up != down == people[int(plain.argmax())]
        rec.observe(change)
    assert checked > 5  # the synthetic project has some


def test_off_when_the_setting_says_so_and_kept_in_snapshots():
    rec = LearnedRecommender(settings=replace(DEFAULT_SETTINGS, balance_learns=False))
    _replay(rec, "down")
    assert rec._balance_level == 1.0
    learning = make_recommender("default")
    _replay(learning, "down")
    from graph.snapshot import dumps, loads
    assert loads(dumps(learning))._balance_level == learning._balance_level < 1.0
    assert pickle.loads(pickle.dumps(learning))._balance_level == learning._balance_level


def test_the_bot_path_a_moved_down_label_after_the_first_place_makes_the_pair():
    """The bot ranks with `suggest`, stores who it showed first (`suggested`) and, when the spreading
    changed the first place, who it moved down (`moved_down`); any process learning those labels votes."""
    from graph.feedback import MOVED_DOWN, PUT_FIRST
    rec, seen = make_recommender("default"), 0
    for change in _history(600):
        shown = [s.person for s in rec.suggest(change, 3, explain=False)]
        pair = rec.moved_down(change)
        if shown:
            bare = replace(change, reviewers=())
            rec.learn(bare, shown[0], PUT_FIRST, time=change.time, rank=1)
            if pair is not None and pair[1] == shown[0]:
                rec.learn(bare, pair[0], MOVED_DOWN, time=change.time)
                assert rec._spread[change.id][:2] == list(pair)
                rec.learn(bare, pair[0], "accepted", time=change.time)
                seen += 1
        rec.observe(change)
    assert seen > 5 and rec._balance_level < 1.0
    assert rec.feedback.labels == seen  # only the acceptances are evidence about a person


def test_a_closed_or_merged_merge_request_forgets_its_pair():
    rec = make_recommender("default")
    _replay(rec, None)
    rec._spread["!1"] = ["ann", "bob", set()]
    rec._spread["!2"] = ["ann", "bob", set()]
    rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "", "closed", time=10**9)
    rec.observe(Change("!2", 10**9, "cy", ("bob",), ("a.c",)))
    assert "!1" not in rec._spread and "!2" not in rec._spread
