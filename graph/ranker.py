"""The learned ranker: a scikit-learn estimator scoring candidate rows (features from `graph.features`).

Pointwise learning to rank: each row is one candidate for one past change, labelled 1 if that person
really reviewed it. Besides the raw features, the estimator adds each row's value relative to the best
candidate of the same change (`groups`), which is what a ranking within one change needs.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.utils.validation import check_is_fitted

__all__ = ["ReviewerRanker", "relative_features", "scores_among"]


def relative_features(X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """X with, appended, each column divided by its maximum within the row's group (one change).

    >>> relative_features(np.array([[1.0, 2.0], [0.5, 4.0]]), np.array([0, 0]))[:, 2:].tolist()
    [[1.0, 0.5], [0.5, 1.0]]
    """
    if groups is None:
        groups = np.zeros(len(X), dtype=np.int64)
    rel = np.zeros_like(X)
    if len(X) == 0:
        return np.hstack([X, rel])
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    maxima = np.maximum.reduceat(X[order], starts, axis=0)
    counts = np.diff(np.r_[starts, len(g)])
    group_max = np.repeat(maxima, counts, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel[order] = np.where(group_max > 0, X[order] / group_max, 0.0)
    return np.hstack([X, rel])


def scores_among(ranker, X: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    """`ranker`'s score of each row of X in a group of two: the row and the same row of `others` (the other
    candidates' column maxima; None: each row alone). `ReviewerRanker.decision_among` scores the rows alone
    against those maxima; another ranker (a stand-in) gets the pairs.
    """
    among = getattr(ranker, "decision_among", None)
    if among is not None:
        return among(X, others)
    if others is None:
        return ranker.decision_function(X, groups=np.arange(len(X)))
    pairs = np.stack([X, others], axis=1).reshape(-1, X.shape[1])
    return ranker.decision_function(pairs, groups=np.repeat(np.arange(len(X)), 2))[::2]


class ReviewerRanker(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees over candidate features; `decision_function` gives ranking scores.

    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]] * 20); y = np.array([1, 0] * 20)
    >>> r = ReviewerRanker(max_iter=10, min_samples_leaf=5).fit(X, y, groups=np.arange(40) // 2)
    >>> s = r.decision_function(X[:2], groups=np.array([0, 0]))
    >>> bool(s[0] > s[1])
    True
    """

    def __init__(self, max_iter: int = 60, learning_rate: float = 0.15, max_leaf_nodes: int = 8,
                 min_samples_leaf: int = 200, l2_regularization: float = 1.0, random_state: int | None = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, X, y, groups=None, sample_weight=None):
        """Fit on candidate rows `X`, labels `y` (1 = reviewed), `groups` = the change each row belongs to."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            random_state=self.random_state, early_stopping=False,
        )
        self.model_.fit(relative_features(X, None if groups is None else np.asarray(groups)), y,
                        sample_weight=sample_weight)
        return self

    def decision_function(self, X, groups=None):
        """Higher is better; rows of one change are comparable (pass `groups` for several changes)."""
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=float)
        Z = relative_features(X, None if groups is None else np.asarray(groups))
        if len(self.classes_) < 2:
            return np.zeros(len(X))
        return self.model_.decision_function(Z)

    def decision_among(self, X, others=None):
        """`decision_function` of each row of X in a group with one more row, the same row of `others`,
        without scoring that row: a group is read through its column maxima (`relative_features`), here the
        two rows', with the same arithmetic, so each score is the very one the pair would get. (None: each
        row alone.) Explaining a row probes it with one signal changed at a time, each probe against the
        other candidates' maxima: half the rows of scoring the pairs."""
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=float)
        group_max = X if others is None else np.maximum(X, others)
        with np.errstate(divide="ignore", invalid="ignore"):
            Z = np.hstack([X, np.where(group_max > 0, X / group_max, 0.0)])
        if len(self.classes_) < 2:
            return np.zeros(len(X))
        return self.model_.decision_function(Z)

    def predict_proba(self, X, groups=None):
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(relative_features(np.asarray(X, dtype=float), groups))

    def predict(self, X, groups=None):
        return self.classes_[np.argmax(self.predict_proba(X, groups), axis=1)]
