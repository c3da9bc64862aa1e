"""The chronological backtest: how accurate a recommender would have been on a real history.

The field's convention (see the README): replay changes in time order; for each, rank candidates using only
the changes strictly before it; the author is never proposed (unless `allow_author`, which replicates the
classic Gerrit benchmarks where self-approvals count). Ground truth is reviewers ∪ ackers. Top-k is the share
of changes with a true reviewer among the first k; MRR the mean of 1/rank of the first hit (0 when none).
Every change counts, early ones included.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from graph.model import Change

__all__ = ["Recommender", "BacktestResult", "backtest", "gini"]

KS = (1, 3, 5, 10)


class Recommender(Protocol):
    """Anything the backtest can replay: it ranks a change, then is shown what really happened."""

    name: str

    def recommend(self, change: Change, k: int) -> list[str]:
        """Up to `k` people, best first, using only changes observed so far."""

    def observe(self, change: Change) -> None:
        """Learn from a change once its review is done (called after `recommend` on it)."""


@dataclass
class BacktestResult:
    """Figures of one (history, method) replay; accuracies are fractions 0..1."""

    method: str
    records: int = 0
    evaluated: int = 0
    hits: dict[int, int] = field(default_factory=lambda: {k: 0 for k in KS})
    rr_sum: float = 0.0
    seconds: float = 0.0
    suggested_top1: Counter = field(default_factory=Counter)
    actual: Counter = field(default_factory=Counter)  # one unit per change, split among its reviewers
    actual_known: Counter = field(default_factory=Counter)  # the same, by people who had reviewed before
    _reviewers_seen: set = field(default_factory=set)

    def top(self, k: int) -> float:
        return self.hits[k] / self.evaluated if self.evaluated else 0.0

    @property
    def mrr(self) -> float:
        return self.rr_sum / self.evaluated if self.evaluated else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        """The figures; `gini_suggested` and `gini_actual` are over the same people (see `gini`)."""
        people = set(self.suggested_top1) | set(self.actual_known)
        everyone = people | set(self.actual)
        return {
            "method": self.method,
            "records": self.records,
            "evaluated": self.evaluated,
            **{f"top{k}": round(self.top(k), 4) for k in KS},
            "mrr": round(self.mrr, 4),
            "seconds": round(self.seconds, 2),
            "gini_suggested": round(gini([self.suggested_top1[p] for p in people]), 4),
            "gini_actual": round(gini([self.actual_known[p] for p in people]), 4),
            "gini_actual_all": round(gini([self.actual[p] for p in everyone]), 4),
        }

    def add(self, ranked: Sequence[str], truth: frozenset[str]) -> None:
        """Score one change's ranking against its ground truth."""
        self.records += 1
        if not truth:
            return
        self.evaluated += 1
        share = 1.0 / len(truth)
        for person in truth:
            self.actual[person] += share
            if person in self._reviewers_seen:
                self.actual_known[person] += share
        self._reviewers_seen |= truth
        if ranked:
            self.suggested_top1[ranked[0]] += 1
        for rank, person in enumerate(ranked[: max(KS)], start=1):
            if person in truth:
                self.rr_sum += 1.0 / rank
                for k in KS:
                    if rank <= k:
                        self.hits[k] += 1
                break


def gini(counts: Iterable[float]) -> float:
    """Gini coefficient of non-negative counts: 0 when spread evenly, towards 1 when piled on one.

    In `BacktestResult.as_dict` both sides are counted over the same people: everyone put first at least
    once, and everyone who reviewed a change after having reviewed before. A person's first review ever
    is left out of `gini_actual` because no method that learns from history can predict it (on GitHub
    projects hundreds of one-time commenters would otherwise dominate the figure); `gini_actual_all`
    keeps every review, over every person.

    >>> gini([1, 1, 1, 1])
    0.0
    >>> round(gini([0, 0, 0, 4]), 2)
    0.75
    """
    xs = sorted(counts)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return 0.0
    weighted = sum((i + 1) * x for i, x in enumerate(xs))
    return (2.0 * weighted) / (n * total) - (n + 1.0) / n


def backtest(
    changes: Iterable[Change],
    recommender: Recommender,
    *,
    top: int = 10,
    allow_author: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Replay `changes` (in time order) through `recommender` and score every ranking.

    Each change is ranked on the changes strictly before it (the field's convention): those sharing its
    second (a series applied at once) are observed together once all of them are ranked.

    >>> class Fixed:
    ...     name = "fixed"
    ...     def recommend(self, change, k): return ["bob"]
    ...     def observe(self, change): pass
    >>> r = backtest([Change("1", 1, "ann", ("bob",), ("a",))], Fixed())
    >>> r.top(1), r.mrr
    (1.0, 1.0)
    """
    result = BacktestResult(method=recommender.name)
    start = time.perf_counter()
    same_second: list[Change] = []  # ranked, not yet observed: "strictly before" means an earlier time
    for change in changes:
        if same_second and change.time != same_second[0].time:
            for done in same_second:
                recommender.observe(done)
            same_second.clear()
        ranked = recommender.recommend(change, max(top, max(KS)))
        if not allow_author:
            ranked = [p for p in ranked if p != change.author]
        result.add(ranked[:top], change.truth(allow_author=allow_author))
        same_second.append(change)
        if progress is not None:
            progress(1)
    for done in same_second:
        recommender.observe(done)
    result.seconds = time.perf_counter() - start
    return result
