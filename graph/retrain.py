"""Retraining the learned ranker away from the live recommender, and deciding whether the new model is better.

Why a separate step: the bot retrains in the background (a thread) on a copy of the training window taken
under the project's lock, so suggestions keep being served by the current model meanwhile. A new model only
replaces the current one if it ranks the most recent changes at least as well: both are scored by Top-1 on
the last `holdout` changes of the window (the candidate rows as they were when each change was suggested or
merged), the new one having been fitted on the changes before them only. When the current model is the
project's own, only changes it was not trained on are held out (those since its fit), so neither model is
scored on its own training rows; with fewer than `MIN_FRESH` such changes the last ones are held out anyway,
which favours the current model (the comparison stays conservative). The model kept is then refitted on the
whole window.

    >>> from graph.recommend import LearnedRecommender
    >>> rec = LearnedRecommender()
    >>> window = training_window(rec)        # under the lock: a copy  # doctest: +SKIP
    >>> result = retrain(window, holdout=200)   # in a thread           # doctest: +SKIP
    >>> result.better_or_equal, result.score, result.current_score     # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from graph.recommend import LearnedRecommender

__all__ = ["Window", "Retrained", "training_window", "retrain", "top1"]

MIN_FRESH = 30   # held-out changes needed for a fair comparison with the project's own current model
GRAPH_SCORE = -1  # the last model input column is the graph score (see `LearnedRecommender.model_input`)


@dataclass(frozen=True)
class Window:
    """A copy of a recommender's training rows and what is needed to fit and compare models on them."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    estimator: Any          # unfitted; cloned before fitting
    current: Any | None     # the model ranking now (None: the graph score)
    half_life: float | None  # in changes, as `RecommenderSettings.train_half_life`
    fresh: int | None = None  # changes at the end the current model was not trained on (None: all of them)


@dataclass(frozen=True)
class Retrained:
    """A model fitted on the whole window, its Top-1 on the held-out recent changes and the current one's."""

    model: Any | None
    score: float
    current_score: float
    changes: int  # held-out changes both were scored on

    @property
    def better_or_equal(self) -> bool:
        return self.model is not None and self.score >= self.current_score


def training_window(rec: LearnedRecommender) -> Window | None:
    """The recommender's training rows, copied (call it while nothing else uses `rec`); None when empty."""
    if not len(rec._rows):
        return None
    X, y, groups = rec.training_data()
    fresh = rec._labelled - rec._trained_at if rec.model_ is not None else None
    return Window(X, y, groups, rec.estimator, rec.ranking_model, rec.settings.train_half_life, fresh)


def top1(model: Any | None, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Share of groups (changes) whose best-scored row is a real reviewer; `model` None: the graph score.

    >>> X = np.array([[0.0, 2.0], [0.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    >>> top1(None, X, np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1]))
    0.5
    """
    if not len(y):
        return 0.0
    scores = X[:, GRAPH_SCORE] if model is None else model.decision_function(X, groups=groups)
    hits = total = 0
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        total += 1
        hits += int(y[rows[np.argmax(scores[rows])]] > 0)
    return hits / total


def _fit(window: Window, keep: np.ndarray) -> Any | None:
    X, y, groups = window.X[keep], window.y[keep], window.groups[keep]
    if len(np.unique(y)) < 2:
        return None
    weight = None
    if window.half_life:
        weight = 0.5 ** ((groups.max() - groups) / window.half_life)
    return clone(window.estimator).fit(X, y, groups=groups, sample_weight=weight)


def retrain(window: Window, *, holdout: int = 200) -> Retrained:
    """Fit on all but the last `holdout` changes, score it and the current model on those, refit on all.

    At most a third of the window is held out; with the project's own current model, at most the changes
    since its fit (when there are `MIN_FRESH` of them).
    """
    n = int(window.groups.max()) + 1 if len(window.groups) else 0
    held = min(holdout, max(1, n // 3))
    if window.fresh is not None and window.fresh >= MIN_FRESH:
        held = min(held, window.fresh)
    recent = window.groups >= n - held
    trial = _fit(window, ~recent)
    args = (window.X[recent], window.y[recent], window.groups[recent])
    current_score = top1(window.current, *args)
    if trial is None:
        return Retrained(None, 0.0, current_score, held)
    score = top1(trial, *args)
    model = _fit(window, np.ones(len(window.y), dtype=bool)) if score >= current_score else trial
    return Retrained(model, score, current_score, held)
