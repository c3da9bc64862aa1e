"""Replay a real history with a simulated team that reacts to the suggestions, learning on or off.

At each change the recommender suggests `k` people. The team accepts the suggested people who really
reviewed, removes the others, and assigns the real reviewers the bot missed; those labels flow back to
the recommender (with learning on) exactly as the bot's handlers pass GitLab events on: `learn(change,
person, label)` at the open, then at the merge `observe(change)` and a `final_reviewer` label for each of
its reviewers (`bot.handlers.merge_requests.record_final`, learned after the merge: `bot.learning.interleave`).
With learning off the same ranker sees the history alone.

A leaver can be injected: from `leave_at` on, one frequent reviewer stops reviewing (and writing), and the
replay counts how many of the changes that person would have reviewed pass until they are out of the
top `k` for good.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

from graph.model import Change

__all__ = ["SimulationResult", "simulate", "frequent_reviewer", "TENTHS"]

TENTHS = 10  # the replay's curves over time: Top-1 and acceptance per tenth of the changes


@dataclass
class SimulationResult:
    learning: bool
    records: int = 0
    evaluated: int = 0
    top1_hits: int = 0
    top3_hits: int = 0
    suggested: int = 0
    accepted: int = 0
    last_third_suggested: int = 0
    last_third_accepted: int = 0
    leaver: str | None = None
    leaver_former_changes: int = 0
    leaver_last_in_top: int = 0  # the leaver's former changes until their last appearance in the top k
    leaver_first_on_former: int = 0  # ... on which the leaver was still put first
    seconds: float = 0.0
    # per tenth of the replay, in order: [evaluated, top-1 hits, suggested, accepted] (the curves over time)
    tenths: list[list[int]] = field(default_factory=lambda: [[0, 0, 0, 0] for _ in range(TENTHS)])

    def as_dict(self) -> dict:
        ev = self.evaluated or 1
        return {
            "learning": "on" if self.learning else "off",
            "records": self.records,
            "evaluated": self.evaluated,
            "top1": round(self.top1_hits / ev, 4),
            "top3": round(self.top3_hits / ev, 4),
            "acceptance": round(self.accepted / (self.suggested or 1), 4),
            "acceptance_last_third": round(self.last_third_accepted / (self.last_third_suggested or 1), 4),
            "leaver": self.leaver,
            "leaver_former_changes": self.leaver_former_changes,
            "leaver_changes_until_dropped": self.leaver_last_in_top if self.leaver else None,
            "leaver_still_first": self.leaver_first_on_former,
            # None for a tenth with nothing to score: a 0 there read as a real zero (a history whose last
            # tenth had no reviewed change showed "+0.0 over the last tenth")
            "top1_over_time": [round(h / e, 4) if e else None for e, h, _, _ in self.tenths],
            "acceptance_over_time": [round(a / s, 4) if s else None for _, _, s, a in self.tenths],
            "seconds": round(self.seconds, 2),
        }


def frequent_reviewer(changes: Sequence[Change], upto: int, rank: int = 1) -> str | None:
    """The `rank`-th most frequent reviewer among the first `upto` changes."""
    counts = Counter(p for c in changes[:upto] for p in c.truth())
    ranked = sorted(counts, key=lambda p: (-counts[p], p))[:rank]  # ties by name: the same on every run
    return ranked[rank - 1] if len(ranked) >= rank else None


def _without(change: Change, person: str) -> Change:
    return replace(change, reviewers=tuple(p for p in change.reviewers if p != person),
                   ackers=tuple(p for p in change.ackers if p != person))


def simulate(changes: Sequence[Change], make: Callable[[], object], *, learning: bool, k: int = 3,
             leaver: str | None = None, leave_at: int | None = None, open_days: float = 2.0,
             progress: Callable[[int], None] | None = None) -> SimulationResult:
    """Run the replay; `make()` builds a fresh recommender with `recommend`, `learn` and `observe`.

    Each change is opened (and suggested for, ranked as at that time) `open_days` before its merge time,
    and enters the history at its merge: merge requests overlap, as they do on GitLab. Feedback, when
    learning, comes at the open, when the team sets the reviewers. Only what happened strictly before an
    open is known when suggesting for it: changes opened in the same second (a series) are all suggested
    for before the labels of any of them, and a merge in that very second is not yet in the history.
    """
    rec = make()
    res = SimulationResult(learning=learning, leaver=leaver)
    leave_at = len(changes) // 2 if leave_at is None else leave_at
    third = len(changes) - len(changes) // 3
    open_for = open_days * 86400.0
    in_review: deque[Change] = deque()
    held: list[tuple] = []  # labels of the changes opened this second: given once all of them are ranked
    start = time.perf_counter()
    for i, change in enumerate(changes):
        if held and held[0][1].time != change.time - open_for:
            for gone, *args in held:
                _feed_back(rec, *args, gone=gone)
            held.clear()
        while in_review and in_review[0].time < change.time - open_for:
            _merge(rec, in_review.popleft(), learning)
        if leaver is not None and i >= leave_at:
            if change.author == leaver:
                continue
            former = leaver in change.truth()
            change = _without(change, leaver)
        else:
            former = False
        opened = _opened(change, open_for)
        top = rec.recommend(opened, k)
        _score(res, change, top, i >= third, res.tenths[i * TENTHS // len(changes)], left=former)
        if former:
            res.leaver_former_changes += 1
            res.leaver_first_on_former += bool(top[:1] == [leaver])
            if leaver in top:
                res.leaver_last_in_top = res.leaver_former_changes
        if learning:
            gone = leaver if leaver is not None and i >= leave_at else None
            held.append((gone, opened, top, opened.time))
        in_review.append(change)
        if progress is not None:
            progress(1)
    for gone, *args in held:
        _feed_back(rec, *args, gone=gone)
    while in_review:
        _merge(rec, in_review.popleft(), learning)
    res.seconds = time.perf_counter() - start
    return res


def _opened(change: Change, open_for: float) -> Change:
    """`change` as it stands at its open, `open_for` seconds before its merge: the time the bot suggests
    for it (a merge request's suggestion carries the time it is made, `bot.suggesting`) and the team's
    labels carry. Ranked at the merge time instead, the ranker's clock ran `open_for` ahead of what it
    knew: a rejection streak counted `open_for` before it had lasted `rejection_days` (at once with
    `--open-days 5`), and the recent reviews, open reviews and first places were dated at the merge."""
    return replace(change, time=change.time - open_for) if open_for else change


def _score(res: SimulationResult, change: Change, top: list[str], last_third: bool, tenth: list[int], *,
           left: bool = False) -> None:
    """Score one suggestion. A record without reviewers has no ground truth and is not evaluated (a commit
    nobody reviewed, in a git history), unless the injected leaver alone would have reviewed it (`left`):
    every such record counts, as a miss, its suggestions not taken."""
    res.records += 1
    truth = change.truth()
    if not truth and not left:
        return
    res.evaluated += 1
    hit = bool(top[:1] and top[0] in truth)
    res.top1_hits += hit
    res.top3_hits += any(p in truth for p in top[:3])
    taken = sum(p in truth for p in top)
    res.suggested += len(top)
    res.accepted += taken
    tenth[0] += 1
    tenth[1] += hit
    tenth[2] += len(top)
    tenth[3] += taken
    if last_third:
        res.last_third_suggested += len(top)
        res.last_third_accepted += taken


def _merge(rec, change: Change, learning: bool) -> None:
    """The merge: the change joins the history, and (learning) each of its reviewers is a `final_reviewer`
    label at the merge time, as the bot records them on GitLab's merge event and learns them after the
    merge. The team's own labels at the open do not make these redundant: the bot learns both."""
    rec.observe(change)
    if learning:
        for p in sorted(change.truth()):
            rec.learn(change, p, "final_reviewer", time=change.time)


def _feed_back(rec, change: Change, top: Iterable[str], at: float, *, gone: str | None = None) -> None:
    """The simulated team: keep who really reviewed, remove the others, add the missing reviewers.

    A change nobody reviewed (one the leaver alone would have reviewed) says nothing about the people
    suggested for it: the team only removes the one who has left (`gone`), if suggested.
    """
    truth = change.truth()
    top = list(top)
    if not truth:
        if gone in top:
            rec.learn(change, gone, "removed", rank=top.index(gone) + 1, time=at)
        return
    for rank, p in enumerate(top, start=1):
        rec.learn(change, p, "accepted" if p in truth else "removed", rank=rank, time=at)
    for p in sorted(truth - set(top)):
        rec.learn(change, p, "assigned", time=at)
