"""Candidate features for a new change, read off the ownership graph.

`candidates(og, change)` walks the change's files, their directories and the author's reviewers once,
accumulating per-person evidence, and returns a small matrix: one row per candidate, one column per
feature in `FEATURES`. Shares (a person's part of all reviews on a path) need no decay factor: numerator and
denominator are scaled alike. Only the state of the graph at call time is used, so a replay that calls this
before `OwnershipGraph.add_change` never looks into the future.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from graph.model import Change
from graph.ownership import DAY, OwnershipGraph

__all__ = ["FEATURES", "Candidates", "candidates", "graph_score", "GRAPH_WEIGHTS"]

FEATURES = (
    "file_review_share",   # mean over files of the person's share of (decayed) reviews of that file
    "file_reviewed",       # share of the files the person has reviewed at least once
    "file_author_share",   # mean over files of the person's share of (decayed) authorship
    "dir1_review_share",   # same as file_review_share, on each file's parent directory
    "dir2_review_share",   # ... grandparent
    "dir3_review_share",   # ... every directory above, averaged
    "dir1_author_share",   # authorship share on the parent directories
    "author_familiarity",  # share of the author's past reviews done by this person (decayed)
    "author_reviews",      # log(1 + number of this author's changes the person reviewed)
    "reciprocity",         # log(1 + number of the person's changes the author reviewed)
    "activity",            # the person's decayed review weight (long half-life), relative to the busiest
    "recent_activity",     # same with the short half-life: who reviews these weeks
    "days_since_review",   # log(1 + days since the person last reviewed anything)
    "days_since_seen",     # log(1 + days since the person last authored or reviewed)
    "days_since_here",     # log(1 + days since the person last reviewed or wrote one of these paths)
    "tenure",              # log(1 + days since first seen)
    "is_author",           # only ever 1 with allow_author (self-approval benchmarks)
    "n_files",             # log(1 + files in the change): context for the other features
)
F = {name: i for i, name in enumerate(FEATURES)}

# The features in words, for `/reviewers why`.
FEATURE_WORDS = {
    "file_review_share": "reviews of these very files",
    "file_reviewed": "how many of these files they have reviewed",
    "file_author_share": "wrote these files",
    "dir1_review_share": "reviews in these files' directories",
    "dir2_review_share": "reviews one directory up",
    "dir3_review_share": "reviews further up the tree",
    "dir1_author_share": "wrote code in these directories",
    "author_familiarity": "reviews this author's work",
    "author_reviews": "number of this author's changes reviewed",
    "reciprocity": "the author reviews their work",
    "activity": "reviews a lot overall",
    "recent_activity": "reviews a lot these weeks",
    "days_since_review": "time since their last review",
    "days_since_seen": "time since they were last active",
    "days_since_here": "time since they last touched these paths",
    "tenure": "time on the project",
    "is_author": "is the author",
    "n_files": "size of the change",
    "fb_acceptance": "how often the team took them when suggested",
    "fb_rejections": "times the team turned them down",
    "fb_streak": "turned down several times in a row lately",
    "fb_author_rejections": "turned down on this author's merge requests",
    "fb_recent_reviews": "reviews taken these last days",
    "fb_recent_author": "took this author's merge requests these last days",
    "graph_score": "overall ownership score",
}

# Hand-set weights of the graph score: the ranking used before a model is trained and to pre-select
# candidates for it. Tuned once on the public histories; see the README's "How it scores".
GRAPH_WEIGHTS = {
    "file_review_share": 1.0,
    "file_author_share": 0.35,
    "dir1_review_share": 0.7,
    "dir2_review_share": 0.35,
    "dir3_review_share": 0.15,
    "dir1_author_share": 0.1,
    "author_familiarity": 0.8,
    "recent_activity": 0.15,
}


@dataclass
class Candidates:
    """Feature rows for the people who could review a change, in `FEATURES` column order."""

    people: list[str]
    X: np.ndarray
    score: np.ndarray | None = None  # graph_score(X), computed once

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = graph_score(self.X) if len(self.X) else np.zeros(0)

    def __len__(self) -> int:
        return len(self.people)


def graph_score(X: np.ndarray) -> np.ndarray:
    """The hand-weighted score of each row, damped for people who have not been seen for long."""
    s = np.zeros(len(X))
    for name, w in GRAPH_WEIGHTS.items():
        s += w * X[:, F[name]]
    return s / (1.0 + 0.15 * X[:, F["days_since_review"]])


class _Acc:
    """Per-person sums for one change (plain dicts: this is the hot loop)."""

    def __init__(self) -> None:
        self.cols: dict[str, defaultdict[str, float]] = {n: defaultdict(float) for n in FEATURES}
        self.last_here: dict[str, float] = {}

    def touch(self, person: str, t: float | None) -> None:
        if t is not None and t > self.last_here.get(person, -math.inf):
            self.last_here[person] = t


def _files(og: OwnershipGraph, files: tuple[str, ...], acc: _Acc) -> None:
    node, succ, inv = og.G._node, og.G._succ, 1.0 / len(files)
    rs, rv, au = acc.cols["file_review_share"], acc.cols["file_reviewed"], acc.cols["file_author_share"]
    for f in files:
        p = "/" + f
        attrs = node.get(p)
        if attrs is None:
            continue
        rw, aw = attrs["rw"], attrs["aw"]
        for person, e in succ[p].items():
            if e["rc"]:
                rs[person] += inv * e["rw"] / rw
                rv[person] += inv
                acc.touch(person, e["rt"])
            if e["ac"]:
                au[person] += inv * e["aw"] / aw
                acc.touch(person, e["at"])


def _dir_weights(og: OwnershipGraph, files: tuple[str, ...]) -> dict[tuple[int, str], float]:
    """(level, directory) → weight: each file spreads 1/|files| over its parent, grandparent, and the rest."""
    inv = 1.0 / len(files)
    weights: dict[tuple[int, str], float] = defaultdict(float)
    for f in files:
        dirs = og.dirs_of(f)
        for level, d in enumerate(dirs[:2]):
            weights[(level, d)] += inv
        rest = dirs[2:]
        for d in rest:
            weights[(2, d)] += inv / len(rest)
    return weights


def _dirs(og: OwnershipGraph, weights: dict[tuple[int, str], float], acc: _Acc, levels: tuple[int, ...]) -> None:
    """Directory shares of everyone who reviewed there, for the given levels (0 = parent)."""
    node = og.G._node
    cols = [acc.cols["dir1_review_share"], acc.cols["dir2_review_share"], acc.cols["dir3_review_share"]]
    dir_author = acc.cols["dir1_author_share"]
    for (level, d), w in weights.items():
        if level not in levels:
            continue
        p = "/" + d
        attrs = node.get(p)
        if attrs is None:
            continue
        rw, aw, col = attrs["rw"], attrs["aw"], cols[level]
        for person, e in og.heads(p):
            if e["rc"]:
                col[person] += w * e["rw"] / rw
                acc.touch(person, e["rt"])
            if level == 0 and e["ac"]:
                dir_author[person] += w * e["aw"] / aw


def _author(og: OwnershipGraph, author: str, acc: _Acc) -> None:
    edges = og.G._succ.get(author)
    if not edges:
        return
    total = sum(e["fw"] for e in edges.values())
    fam, cnt = acc.cols["author_familiarity"], acc.cols["author_reviews"]
    for person, e in edges.items():
        fam[person] = e["fw"] / total if total else 0.0
        cnt[person] = math.log1p(e["fc"])


def candidates(
    og: OwnershipGraph,
    change: Change,
    *,
    allow_author: bool = False,
    inactive_days: float = 365.0,
    limit: int = 40,
) -> Candidates:
    """Everyone with evidence for `change`, minus the author, bots and people inactive for too long.

    At most `limit` rows are returned: the best by `graph_score`.
    """
    files = tuple(change.files)
    author = "@" + change.author
    if not files or og.t0 is None:
        return Candidates([], np.zeros((0, len(FEATURES))))
    acc = _Acc()
    weights = _dir_weights(og, files)
    _files(og, files, acc)
    _dirs(og, weights, acc, levels=(0, 1, 2))
    _author(og, author, acc)
    pool = set().union(*(c.keys() for c in acc.cols.values()))
    pool |= set(og.top_reviewers())
    if allow_author and author in og.G:
        pool.add(author)
    elif not allow_author:
        pool.discard(author)
    return _matrix(og, change, acc, _precut(og, acc, pool, float(change.time), inactive_days, 2 * limit),
                   limit)


def _precut(og: OwnershipGraph, acc: _Acc, pool: set[str], now: float, inactive_days: float, keep: int) -> list[str]:
    """Drop bots and inactive people, then keep the `keep` best by the evidence summed so far."""
    node = og.G._node
    horizon = now - inactive_days * DAY
    people = sorted(p for p in pool if node[p]["last"] >= horizon and not og.is_bot(p[1:]))
    if len(people) <= keep:
        return people
    weighted = [(acc.cols[name], w) for name, w in GRAPH_WEIGHTS.items() if name in acc.cols]
    rough = {p: sum(w * col.get(p, 0.0) for col, w in weighted) for p in people}
    return sorted(people, key=lambda p: (-rough[p], p))[:keep]


def _matrix(og: OwnershipGraph, change: Change, acc: _Acc, kept: list[str], limit: int) -> Candidates:
    """The feature rows of the kept people, then the best `limit` of them by graph score."""
    now = float(change.time)
    node, succ = og.G._node, og.G._succ
    author = "@" + change.author
    X = np.zeros((len(kept), len(FEATURES)))
    for name, col in acc.cols.items():
        if col:
            X[:, F[name]] = [col.get(p, 0.0) for p in kept]
    attrs = [node[p] for p in kept]
    never = now - 1e6 * DAY  # "never" reads as a very long time ago, capped below
    X[:, F["activity"]] = [a["rw"] for a in attrs]
    X[:, F["recent_activity"]] = [a["sw"] for a in attrs]
    X[:, F["days_since_review"]] = [a["lr"] if a["lr"] is not None else never for a in attrs]
    X[:, F["days_since_seen"]] = [a["last"] for a in attrs]
    X[:, F["days_since_here"]] = [acc.last_here.get(p, never) for p in kept]
    X[:, F["tenure"]] = [a["first"] for a in attrs]
    X[:, F["is_author"]] = [p == author for p in kept]
    X[:, F["reciprocity"]] = [succ[p][author]["fc"] if author in succ[p] else 0 for p in kept]
    _finish(X, now, og.decay(now), og.decay(now, short=True), len(change.files))
    score = graph_score(X)
    if len(kept) > limit:
        best = np.argsort(-score, kind="stable")[:limit]
        kept, X, score = [kept[i] for i in best], X[best], score[best]
    return Candidates([p[1:] for p in kept], X, score)


def _finish(X: np.ndarray, now: float, long_decay: float, short_decay: float, n_files: int) -> None:
    """Turn the raw columns (times, scaled weights, counts) into features, in place."""
    for name, decay in (("activity", long_decay), ("recent_activity", short_decay)):
        col = X[:, F[name]] * decay
        top = col.max() if len(col) else 0.0
        X[:, F[name]] = col / top if top > 0 else col
    for name, cap in (("days_since_review", 12.0), ("days_since_seen", None), ("days_since_here", 12.0),
                      ("tenure", None)):
        days = np.log1p(np.maximum(0.0, now - X[:, F[name]]) / DAY)
        X[:, F[name]] = days if cap is None else np.minimum(days, cap)
    X[:, F["reciprocity"]] = np.log1p(X[:, F["reciprocity"]])
    X[:, F["n_files"]] = math.log1p(n_files)
