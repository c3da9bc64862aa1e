"""What explaining a learned ranking costs: each probe is scored alone against the other candidates' maxima,
and a signal where the person has the others' average already is not probed, with the very scores and words
that scoring every probe beside a row of maxima gave."""
from __future__ import annotations

import numpy as np

from graph.feedback import FEEDBACK_FEATURES
from graph.features import FEATURES
from graph.ranker import ReviewerRanker
from tests.test_why_terms import _trained

WIDTH = len(FEATURES) + len(FEEDBACK_FEATURES) + 1  # the model's input: the features and the graph score


class _Counting:
    """The fitted model, counting the rows it scores; `pairs` hides `decision_among` (a stand-in ranker)."""

    def __init__(self, model: ReviewerRanker, pairs: bool = False) -> None:
        self.model, self.rows = model, 0
        if not pairs:
            self.decision_among = self._among

    def decision_function(self, X, groups=None):
        self.rows += len(X)
        return self.model.decision_function(X, groups)

    def _among(self, X, others=None):
        self.rows += len(X)
        return self.model.decision_among(X, others)


def test_a_probe_alone_scores_as_in_a_pair_with_the_others_maxima():
    rng = np.random.default_rng(4)
    X = rng.random((400, 5)) * (rng.random((400, 5)) > 0.3)  # zeros too: a column whose maximum is 0
    y = (X[:, 0] + X[:, 1] > 0.8).astype(int)
    r = ReviewerRanker(max_iter=20, min_samples_leaf=5).fit(X, y, groups=np.arange(400) // 4)
    P, others = X[:50], X[50:100]
    pairs = np.stack([P, others], axis=1).reshape(-1, 5)
    paired = r.decision_function(pairs, groups=np.repeat(np.arange(50), 2))[::2]
    assert np.array_equal(r.decision_among(P, others), paired)
    assert np.array_equal(r.decision_among(P), r.decision_function(P, groups=np.arange(50)))


def test_explaining_scores_only_the_probes_that_can_move_a_score():
    rec, change = _trained()
    counting = rec.model_ = _Counting(rec.model_)
    shown = rec.suggest(change, 3)
    shortlist = min(rec.settings.rerank, len(rec._candidates(change)))
    assert len(shown) == 3 and shortlist > 3
    explained = counting.rows - shortlist  # the ranking scores the shortlist once
    assert 3 <= explained < 3 * (WIDTH + 1)  # at most one probe a column and the row itself, no row of maxima


def test_why_reads_the_same_whichever_way_the_probes_are_scored():
    rec, change = _trained()
    model = rec.model_
    alone = rec.suggest(change, 5)
    rec.model_ = _Counting(model, pairs=True)
    assert rec.suggest(change, 5) == alone
    assert [(c.signal, c.effect, c.value, c.others) for c in alone[0].contributions]
