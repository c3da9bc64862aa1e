"""`graph.retrain`: Top-1 on held-out changes decides whether a retrained model replaces the current one."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from graph.recommend import LearnedRecommender, RecommenderSettings
from graph.retrain import retrain, top1, training_window
from graph.synthetic import synthetic_history


class Backwards(BaseEstimator):
    """A model that ranks by the graph score upside down: worse than anything sensible."""

    def fit(self, X, y, groups=None, sample_weight=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def decision_function(self, X, groups=None):
        return -np.asarray(X)[:, -1]


def trained(n: int = 260) -> LearnedRecommender:
    rec = LearnedRecommender(settings=RecommenderSettings(min_train_changes=100))
    for change in synthetic_history(n, 120, 25, seed=5):
        rec.observe(change)
    return rec


def test_top1_counts_changes_whose_best_row_is_a_reviewer():
    X = np.array([[0.0, 2.0], [0.0, 1.0], [0.0, 1.0], [0.0, 3.0], [0.0, 5.0]])
    assert top1(None, X, np.array([1, 0, 1, 0, 1]), np.array([0, 0, 1, 1, 2])) == 2 / 3
    assert top1(None, X[:0], np.array([]), np.array([])) == 0.0


def test_a_sensible_model_beats_a_backwards_one_and_not_the_other_way():
    rec = trained()
    assert rec.model_ is not None
    window = training_window(rec)
    assert window is not None and len(np.unique(window.groups)) == len(rec._rows)
    good = retrain(window, holdout=60)
    assert good.model is not None and good.changes == 60
    assert good.score > top1(Backwards(), window.X[window.groups >= window.groups.max() - 59],
                             window.y[window.groups >= window.groups.max() - 59],
                             window.groups[window.groups >= window.groups.max() - 59])
    rec.estimator = Backwards()
    bad = retrain(training_window(rec), holdout=60)
    assert not bad.better_or_equal and bad.score < bad.current_score


def test_an_empty_window_gives_nothing_to_train():
    assert training_window(LearnedRecommender()) is None
