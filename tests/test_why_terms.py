"""`/reviewers why` counts the terms the learned ranker adds to its model's score — load spreading, a streak of
rejections, being on duty — as it counts the model's own signals: the person's term against the other
candidates' average, with the figure behind it."""
from __future__ import annotations

import math
import re

import numpy as np

from bot.comment import render_why
from graph.model import Change
from graph.recommend import LearnedRecommender, make_recommender
from graph.synthetic import synthetic_history

DAY = 86400
# the load spreading's counts in words, whole and rounded ("about 25"), never a fading "0.2"
_SPREAD = (r"put first on (no|hardly any|(about )?\d+) merge requests? lately, did (no|hardly any|(about )?\d+) "
           r"reviews?")


def _trained() -> tuple[LearnedRecommender, Change]:
    rec = make_recommender("default")
    history = list(synthetic_history(400, 60, 8, seed=3, leaver_share=0.0))
    for change in history:
        rec.recommend(change, 3)
        rec.observe(change)
    last = history[-1]
    return rec, Change("next", last.time + 3600, last.author, (), last.files)


def _term(suggestion, words: str):
    return next((c for c in suggestion.contributions if c.signal == words), None)


def _words(rec: LearnedRecommender, term: int) -> str:
    return rec._term_words()[term]


def test_load_spreading_is_explained_with_first_places_and_reviews():
    rec, change = _trained()
    suggestions = rec.suggest(change, 3)
    cands = rec._candidates(change)
    idx = list(rec._top(cands))
    spread = -rec._imbalance([cands.people[i] for i in idx])
    for s in suggestions:
        me = idx.index(cands.people.index(s.person))
        term = _term(s, _words(rec, 0))
        assert term is not None and re.fullmatch(_SPREAD, term.value)
        assert term.effect == float(spread[me] - np.delete(spread, me).mean())
    first = _term(suggestions[0], _words(rec, 0))
    assert first.effect < 0  # the synthetic project's first choice was put first more often than it reviewed
    text = render_why(suggestions[0].person, suggestions[0], rank=1)
    assert "| load spreading: first places given against reviews done (hand-set rule) | " in text
    assert first.value in text


def test_a_streak_of_rejections_is_explained_as_pushed_down():
    rec, change = _trained()
    top = rec.suggest(change, 3)[0].person
    for day in range(4):  # four rejections at rank 1 over six days: two beyond the grace of two
        rec.learn(Change(f"r{day}", change.time, change.author, (), change.files), top, "removed", rank=1,
                  time=change.time - 6 * DAY + 2 * day * DAY)
    later = Change("after", change.time + 60, change.author, (), change.files)
    mine = {s.person: s for s in rec.suggest(later, 20)}[top]
    term = _term(mine, _words(rec, 1))
    # the figure the penalty multiplies: four rejections, grown by the streak's six days (4 x (1 + 6/30) = 4.8),
    # past the grace of two (2.8), in words; not the raw count of four, which is the model's own signal
    assert _words(rec, 1) == "penalty for rejections in a row for days, past the first 2 (hand-set rule)"
    assert term is not None and round(term.effect, 3) == -2.8
    assert (term.value, term.others) == ("about 3 rejections in a row counted", "no rejections in a row counted")
    learned = _term(mine, "times turned down since they last took a review")
    assert learned is None or learned.value == "4"


def test_taking_another_open_merge_request_is_explained_as_lifted():
    rec, change = _trained()
    third = rec.suggest(change, 3)[2].person
    rec.learn(Change("open-1", change.time, "someone", (), ("elsewhere/x.c",)), third, "accepted", rank=1,
              time=change.time - 600)
    mine = {s.person: s for s in rec.suggest(change, 20)}[third]
    term = _term(mine, _words(rec, 2))
    assert term is not None
    assert (term.value, term.others) == ("reviewing 1 open merge request", "reviewing no open merge requests")
    assert 0.69 < term.effect <= math.log(2)  # duty_boost 1.0 on log(1 + one open review, taken 10 min ago)


def test_the_other_candidates_figure_behind_a_term_keeps_its_fraction():
    """One of the other candidates took an open merge request: their average is a fraction of one review, and
    "0" against "0" with an effect of -0.2 read as a contradiction; in words it is "hardly any" (or "about 1")."""
    rec, change = _trained()
    top = rec.suggest(change, 3)
    rec.learn(Change("open-1", change.time, "someone", (), ("elsewhere/x.c",)), top[2].person, "accepted", rank=1,
              time=change.time - 600)
    first = {s.person: s for s in rec.suggest(change, 20)}[top[0].person]
    term = _term(first, _words(rec, 2))
    assert term is not None and term.value == "reviewing no open merge requests" and term.effect < 0
    assert term.others in ("reviewing hardly any open merge requests", "reviewing about 1 open merge request")


def test_the_models_streak_signal_and_the_hand_set_penalty_read_apart():
    """Side by side in one answer they read "turned down several times in a row lately" and "turned down in a
    row lately (pushed down)", with different figures: now each says what it counts."""
    from graph.features import FEATURE_WORDS

    rec, _ = _trained()
    assert FEATURE_WORDS["fb_streak"] == "times turned down since they last took a review"
    assert rec._term_words() == ["load spreading: first places given against reviews done (hand-set rule)",
                                 "penalty for rejections in a row for days, past the first 2 (hand-set rule)",
                                 "lift for other open merge requests they took (hand-set rule)"]
