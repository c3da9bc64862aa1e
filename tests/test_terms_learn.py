"""The hand-set terms learn from the team: where one of them (load spreading, the rejection streak's penalty,
the lift for people on duty) changed who came first, the team's choice between the one it moved up and the one
it moved down is a vote, and the share of that term applied follows the votes.

On the research benchmarks the fixed load spreading cost scikit-learn 4.8 and React 3.5 points of Top-1 in
`reviewbot evaluate` (one or two people review most of these projects): the team keeps taking the one the
spreading moved down. Learning the shares, `reviewbot simulate` with learning on went from 55.9 to 61.1
(scikit-learn), 55.4 to 57.2 (React), 68.5 to 69.4 (golang-tools); with learning off nothing changes."""
from __future__ import annotations

import pickle
from dataclasses import replace

from graph.feedback import MOVED_DOWN, PUT_FIRST, TERMS
from graph.model import Change
from graph.recommend import DEFAULT_SETTINGS, LearnedRecommender, make_recommender
from graph.snapshot import dumps, loads
from graph.synthetic import synthetic_history

STEP = DEFAULT_SETTINGS.term_step


def _history(n: int = 900) -> list[Change]:
    return list(synthetic_history(n, 60, 8, seed=3, leaver_share=0.0))


def _replay(rec: LearnedRecommender, take: str | None, n: int = 900) -> int:
    """Recommend and observe the history; where the spreading changed the first place, the team takes the one
    it moved down (`take="down"`), up (`"up"`) or says nothing (None). Returns the changes where it did."""
    moved = 0
    for change in _history(n):
        rec.recommend(change, 3)
        pair = rec._moved.get(change.id, {}).get("spreading")
        if pair is not None:
            moved += 1
            if take is not None:
                person = pair[0] if take == "down" else pair[1]
                bare = replace(change, reviewers=())
                rec.learn(bare, person, "accepted", time=change.time)
                rec.learn(bare, person, "assigned", time=change.time)  # the same review: no second vote
        rec.observe(change)
    return moved


def test_a_team_taking_whom_the_spreading_moved_down_turns_it_down():
    rec = make_recommender("default")
    assert _replay(rec, "down") > 5
    assert DEFAULT_SETTINGS.term_floor <= rec.levels["spreading"] < 1.0
    people = sorted(rec._suggested)
    weaker = rec._imbalance(people)
    rec.levels["spreading"] = 1.0
    assert abs(weaker).sum() < abs(rec._imbalance(people)).sum()


def test_a_team_taking_whom_it_moved_up_keeps_it_and_silence_changes_nothing():
    up, silent = make_recommender("default"), make_recommender("default")
    assert _replay(up, "up") > 5
    _replay(silent, None)
    assert up.levels == silent.levels == dict.fromkeys(TERMS, 1.0)


def test_one_vote_per_person_merge_request_and_term():
    rec = make_recommender("default")
    _replay(rec, None, 300)
    change = Change("!1", 10**9, "cy", (), ("a.c",))
    rec._moved["!1"] = {"spreading": ["ann", "bob", set()], "duty": ["ann", "dee", set()]}
    for label in ("accepted", "assigned", "accepted"):
        rec.learn(change, "ann", label, time=10**9)
    assert rec.levels["spreading"] == rec.levels["duty"] == 1 / STEP and rec.levels["streak"] == 1.0
    rec.learn(change, "bob", "accepted", time=10**9)
    assert rec.levels["spreading"] == 1.0  # one each way: back where it was (and never above 1)
    rec.learn(change, "cy", "accepted", time=10**9)  # not one of a pair
    rec.learn(change, "dee", "removed", time=10**9)  # not a review taken
    assert rec.levels == {"spreading": 1.0, "streak": 1.0, "duty": 1 / STEP}


def test_each_pair_is_the_first_place_with_and_without_its_term():
    rec, checked = make_recommender("default"), 0
    for change in _history(600):
        top = rec.recommend(change, 3)
        for term, (down, up, _) in rec._moved.get(change.id, {}).items():
            checked += 1
            cands = rec._candidates(change)
            idx = rec._top(cands)
            people = [cands.people[i] for i in idx]
            model = rec.ranking_model.decision_function(rec.model_input(cands.X[idx], cands.score[idx]))
            terms = dict(zip(TERMS, rec._terms(people, cands.X[idx])))
            without = model + sum(v for k, v in terms.items() if k != term)
            assert top[0] == up != down == people[int(without.argmax())]
        rec.observe(change)
    assert checked > 5  # the synthetic project has some


def test_the_bot_path_a_moved_down_label_after_the_first_place_makes_the_pair():
    """The bot ranks with `suggest`, stores who it showed first (`suggested`) and, for each term that changed
    the first place, who it moved down (`moved_down_<term>`); any process learning those labels votes."""
    rec, seen = make_recommender("default"), 0
    for change in _history(600):
        shown = [s.person for s in rec.suggest(change, 3, explain=False)]
        moved = rec.moved_down(change)
        if shown:
            bare = replace(change, reviewers=())
            rec.learn(bare, shown[0], PUT_FIRST, time=change.time, rank=1)
            for term, down, up in moved:
                assert up == shown[0] != down
                rec.learn(bare, down, MOVED_DOWN[term], time=change.time)
                assert rec._moved[change.id][term][:2] == [down, up]
            if moved:
                rec.learn(bare, moved[0][2], "accepted", time=change.time)
                seen += 1
        rec.observe(change)
    assert seen > 5 and rec.levels["spreading"] == 1.0  # the team took whom the spreading moved up
    assert rec.feedback.labels == seen  # only the acceptances are evidence about a person


def test_off_when_the_setting_says_so_and_kept_in_snapshots():
    rec = LearnedRecommender(settings=replace(DEFAULT_SETTINGS, terms_learn=False))
    _replay(rec, "down")
    assert rec.levels["spreading"] == 1.0
    learning = make_recommender("default")
    _replay(learning, "down")
    assert loads(dumps(learning)).levels == learning.levels and learning.levels["spreading"] < 1.0
    assert pickle.loads(pickle.dumps(learning)).levels == learning.levels


def test_a_closed_or_merged_merge_request_forgets_its_pairs():
    rec = make_recommender("default")
    _replay(rec, None, 300)
    rec._moved["!1"] = {"spreading": ["ann", "bob", set()]}
    rec._moved["!2"] = {"streak": ["ann", "bob", set()]}
    rec.learn(Change("!1", 10**9, "cy", (), ("a.c",)), "", "closed", time=10**9)
    rec.observe(Change("!2", 10**9, "cy", ("bob",), ("a.c",)))
    assert "!1" not in rec._moved and "!2" not in rec._moved


def test_why_says_how_much_of_a_term_the_team_left():
    from bot.comment import render_why
    from graph.terms import TERM_WORDS

    rec = make_recommender("default")
    _replay(rec, "down")
    level = rec.levels["spreading"]
    last = _history()[-1]
    suggestion = rec.suggest(Change("next", last.time + 60, last.author, (), last.files), 3)[0]
    words = f"{TERM_WORDS[0]} (hand-set rule, at {level:.0%} after the team's choices)"
    assert level < 1.0 and any(c.signal == words for c in suggestion.contributions)
    assert words in render_why(suggestion.person, suggestion, rank=1)


def test_a_review_the_bot_requested_itself_is_no_vote():
    """In `assign` mode the bot requests review from its own first choice: that is not the team taking it;
    that person doing the review is. Each of the pair votes once, by whichever label comes first."""
    from datetime import datetime, timezone

    from bot.backfill import BOT_PICK
    from bot.learning import Label, _label, replay
    from bot.storage import FeedbackRow

    rec = make_recommender("default")
    _replay(rec, None, 300)
    rec.levels["spreading"] = 0.5
    rec._moved["!1"] = {"spreading": ["ann", "bob", set()]}
    row = FeedbackRow(1, None, 7, 1, "bob", "assigned", BOT_PICK, datetime(2026, 1, 1, tzinfo=timezone.utc), None)
    assert _label(row, None, False).automated
    replay(rec, [_label(row, None, False)], {1: "cy"})
    assert rec.levels["spreading"] == 0.5  # the bot's own request: no vote
    replay(rec, [Label(2, 1, "bob", "approved", 1.8e9, None)], {1: "cy"})
    assert rec.levels["spreading"] == 0.5 * STEP  # bob did the review the bot asked for: the team took him
    replay(rec, [Label(3, 1, "ann", "assigned", 1.8e9, None), Label(4, 1, "ann", "approved", 1.8e9, None)], {1: "cy"})
    assert rec.levels["spreading"] == 0.5  # the team also took the one the spreading moved down (once)


def test_with_the_spreading_off_the_bots_labels_still_pair_for_the_other_terms():
    """The bot's `moved_down_streak` label pairs with its `suggested` row whatever `balance` is (the replays
    pair them directly): both paths must learn alike."""
    rec = LearnedRecommender(settings=replace(DEFAULT_SETTINGS, balance=0.0))
    _replay(rec, None, 300)
    change = Change("!1", 10**9, "cy", (), ("a.c",))
    rec.learn(change, "bob", PUT_FIRST, time=10**9, rank=1)
    rec.learn(change, "ann", MOVED_DOWN["streak"], time=10**9)
    assert rec._moved["!1"] == {"streak": ["ann", "bob", set()]}
    assert not any(rec._suggested.values())  # no first places counted for a spreading that is off
