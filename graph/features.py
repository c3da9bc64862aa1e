"""Candidate features for a new change, read off the ownership graph.

`candidates(og, change)` reads the change's files, their directories and the author's reviewers once and
returns a small matrix: one row per candidate, one column per feature in `FEATURES`. Shares (a person's part
of all reviews on a path) need no decay factor: numerator and denominator are scaled alike. Only the state of
the graph at call time is used, so a replay that calls this before `OwnershipGraph.add_change` never looks
into the future.

The per-person sums are numpy work over the paths' edge blocks (`OwnershipGraph.edge_block`, cached and kept
current by the graph) and its per-person columns (`OwnershipGraph.people_table`): one `np.bincount` per
feature instead of a Python loop over every edge. Each term is computed as before, (weight × edge figure) /
path total, and added in path order, so the features are those of the per-edge loop to the last bit or two.
Directories are read through their `OwnershipGraph.heads` only (at most 40 people each).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graph.model import Change
from graph.ownership import DAY, OwnershipGraph, PeopleTable

__all__ = ["FEATURES", "Candidates", "candidates", "in_pool", "graph_score", "GRAPH_WEIGHTS"]

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

# The features in words, for `/reviewers why`: noun phrases, as they are read both in the table and in the
# sentence "Ranked up most by ... — 3, the others 0.5 (+0.40)".
FEATURE_WORDS = {
    "file_review_share": "reviews of these very files",
    "file_reviewed": "share of these files they have reviewed",
    "file_author_share": "their share of the code of these files",
    "dir1_review_share": "reviews in these files' directories",
    "dir2_review_share": "reviews one directory up",
    "dir3_review_share": "reviews further up the tree",
    "dir1_author_share": "their share of the code in these directories",
    "author_familiarity": "their share of this author's reviews",
    "author_reviews": "number of this author's changes reviewed",
    "reciprocity": "their changes this author reviewed",
    "activity": "reviews overall",
    "recent_activity": "reviews these weeks",
    "days_since_review": "time since their last review",
    "days_since_seen": "time since they were last active",
    "days_since_here": "time since they last touched these paths",
    "tenure": "time on the project",
    "is_author": "being the author",
    "n_files": "size of the change",
    "fb_acceptance": "share of their suggestions the team took",
    "fb_rejections": "times the team turned them down",
    "fb_streak": "times turned down since they last took a review",
    "fb_author_rejections": "times turned down on this author's merge requests",
    "fb_recent_reviews": "reviews they took these last days",
    "fb_recent_author": "this author's merge requests they took these last days",
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


DAYS_CAP = 12.0  # log(1 + days) at most: 160,000 days (about 450 years) reads as "never"
NEVER_DAYS = 1e6  # a time that never was reads as this many days ago


def graph_score(X: np.ndarray) -> np.ndarray:
    """The hand-weighted score of each row, damped for people who have not been seen for long."""
    s = np.zeros(len(X))
    for name, w in GRAPH_WEIGHTS.items():
        s += w * X[:, F[name]]
    return _damped(s, X[:, F["days_since_review"]])


def _damped(score: np.ndarray, idle: np.ndarray) -> np.ndarray:
    """`score` damped by `idle`, the `days_since_review` feature (log days since the person's last review)."""
    return score / (1.0 + 0.15 * idle)


def _log_days(now: float, times: np.ndarray, cap: float | None = None) -> np.ndarray:
    """How the features read a time: log(1 + days since it), capped at `cap` when given."""
    days = np.log1p(np.maximum(0.0, now - times) / DAY)
    return days if cap is None else np.minimum(days, cap)


# The features summed per person over the change's paths (the first seven, from the paths' edge blocks)
# and over the author's reviewers (the last two); see `_evidence`.
EVIDENCE = ("file_review_share", "file_reviewed", "file_author_share", "dir1_review_share", "dir2_review_share",
            "dir3_review_share", "dir1_author_share", "author_familiarity", "author_reviews")
_E = {name: i for i, name in enumerate(EVIDENCE)}
_E_COLUMNS = [F[name] for name in EVIDENCE]


def _path_weights(og: OwnershipGraph, files: tuple[str, ...]) -> dict[str, list[float]]:
    """Path node → [file, parent, grandparent, further-up] weights: each file spreads 1/|files| over
    itself, and again over its parent, its grandparent and (evenly) the directories above those."""
    inv = 1.0 / len(files)
    weights: dict[str, list[float]] = {}
    for f in files:
        nodes = og.path_nodes(f)
        for level, p in enumerate(nodes):
            w = weights.get(p)
            if w is None:
                w = weights[p] = [0.0, 0.0, 0.0, 0.0]
            if level < 3:
                w[level] += inv
            else:
                w[3] += inv / (len(nodes) - 3)
    return weights


def _path_rows(og: OwnershipGraph, files: tuple[str, ...],
               renames: tuple[tuple[str, str], ...] = ()) -> tuple[np.ndarray, np.ndarray] | None:
    """The edge blocks of the change's paths stacked, and for each row its path's four weights (see
    `_path_weights`) and review and authorship totals, as six rows (None if no path is known). A file the
    change renames reads as it will once merged: with its old path's history (`_renamed`)."""
    node = og.G._node
    merged = _renamed(renames) if renames else {}
    blocks, ws = [], []
    for p, w in _path_weights(og, files).items():
        if p in merged:
            found = _merged_block(og, merged[p])
            if found is not None:
                blocks.append(found[0])
                ws.append((*w, found[1] or 1.0, found[2] or 1.0))
            continue
        block = og.edge_block(p)
        if block is not None and len(block):
            attrs = node[p]
            blocks.append(block)
            ws.append((*w, attrs["rw"] or 1.0, attrs["aw"] or 1.0))  # none there: every such share is 0
    if not blocks:
        return None
    return np.concatenate(blocks), np.repeat(np.array(ws).T, [len(b) for b in blocks], axis=1)


def _renamed(renames: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """New file node → the file nodes whose history it holds once the change is merged
    (`OwnershipGraph.move_history`): its old paths', and its own unless the change renamed that away too.

    >>> _renamed((("a.c", "b.c"), ("b.c", "c.c")))
    {'/b.c': ['/a.c'], '/c.c': ['/b.c', '/c.c']}
    """
    merged: dict[str, list[str]] = {}
    for old, new in renames:
        if old != new:
            merged.setdefault("/" + new, []).append("/" + old)
    away = {"/" + old for old, new in renames if old != new}
    for p, nodes in merged.items():
        if p not in away:
            nodes.append(p)
    return merged


def _merged_block(og: OwnershipGraph, nodes: list[str]) -> tuple[np.ndarray, float, float] | None:
    """The `edge_block` the file nodes `nodes` would have as one node, with its review and authorship totals
    (None when none of them is known): each person's weights summed, their last times the latest."""
    node = og.G._node
    parts = [(og.edge_block(p), node[p]) for p in nodes if p in node]
    parts = [(block, attrs) for block, attrs in parts if len(block)]
    if not parts:
        return None
    rw, aw = sum(attrs["rw"] for _, attrs in parts), sum(attrs["aw"] for _, attrs in parts)
    if len(parts) == 1:
        return parts[0][0], rw, aw
    data = np.concatenate([block for block, _ in parts])
    people, row = np.unique(data[:, 0], return_inverse=True)
    row = row.ravel()
    out = np.full((len(people), data.shape[1]), np.nan)
    out[:, 0] = people
    for c in (1, 2):  # rw, aw
        out[:, c] = np.bincount(row, data[:, c], len(people))
    for c in (3, 4):  # rt, at: NaN (never) unless one of them has a time
        np.fmax.at(out[:, c], row, data[:, c])
    return out, rw, aw


def in_pool(og: OwnershipGraph, change: Change) -> set[str]:
    """The people (graph nodes, "@name") `candidates` chooses from for `change`, before the author, bots, the
    inactive and the limit are taken out: whoever has evidence for it, and the project's top reviewers. Why:
    someone outside it is no candidate for lack of evidence, not for the limit (`GraphRecommender.absent`)."""
    if not change.files or og.t0 is None:
        return set()
    table = og.people_table()
    return {table.nodes[i] for i in np.flatnonzero(_pool(og, change, table)[1])}


def _pool(og: OwnershipGraph, change: Change, table: PeopleTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_evidence`, with the project's top reviewers counted in the pool (`member`) whatever their evidence."""
    E, member, last_here = _evidence(og, change, table)
    member[[table.index[p] for p in og.top_reviewers()]] = True
    return E, member, last_here


def _evidence(og: OwnershipGraph, change: Change, table: PeopleTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(E, member, last_here) over the rows of `table`: E[i, person] is the `EVIDENCE` feature i; member marks
    whoever has any evidence (the pool before the cut); last_here is when the person last reviewed or wrote
    one of the paths (NaN: never). Files count every person, directories their `OwnershipGraph.heads`."""
    m = len(table)
    E, member, last_here = np.zeros((len(EVIDENCE), m)), np.zeros(m, dtype=bool), np.full(m, np.nan)
    rows = _path_rows(og, tuple(change.files), change.renames)
    if rows is not None:
        block, (wf, w1, w2, w3, rw_all, aw_all) = rows
        ids, rw, aw = block[:, 0].astype(np.intp), block[:, 1], block[:, 2]
        reviewed, authored = ~np.isnan(block[:, 3]), ~np.isnan(block[:, 4])
        for name, w, share in (("file_review_share", wf, True), ("file_author_share", wf, False),
                               ("dir1_review_share", w1, True), ("dir2_review_share", w2, True),
                               ("dir3_review_share", w3, True), ("dir1_author_share", w1, False)):
            E[_E[name]] = np.bincount(ids, w * rw / rw_all if share else w * aw / aw_all, m)  # as (w·x)/total
        E[_E["file_reviewed"]] = np.bincount(ids, wf * reviewed, m)
        in_file = (wf > 0) & ((rw > 0) | (aw > 0))  # a review taken back leaves an empty edge
        member[ids[in_file | reviewed | (authored & (w1 > 0))]] = True
        np.fmax.at(last_here, ids, np.where(in_file, np.fmax(block[:, 3], block[:, 4]), block[:, 3]))
    _author(og, "@" + change.author, table, E, member)
    return E, member, last_here


def _author(og: OwnershipGraph, author: str, table: PeopleTable, E: np.ndarray, member: np.ndarray) -> None:
    """The author's reviewers: their share of the author's (decayed) reviews, and how many they did."""
    edges = og.G._succ.get(author)
    if not edges:
        return
    ids = np.array([table.index[p] for p in edges], dtype=np.intp)
    fw = [e["fw"] for e in edges.values()]
    total = sum(fw)
    if total:
        E[_E["author_familiarity"], ids] = np.array(fw) / total
    E[_E["author_reviews"], ids] = [math.log1p(e["fc"]) for e in edges.values()]
    member[ids] = True


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
    author = "@" + change.author
    if not change.files or og.t0 is None:
        return Candidates([], np.zeros((0, len(FEATURES))))
    table = og.people_table()
    E, member, last_here = _pool(og, change, table)
    index = table.index
    if author in index:
        member[index[author]] = allow_author
    kept = _precut(table, E, member, float(change.time), inactive_days, 2 * limit)
    return _matrix(og, change, table, kept, E[:, kept], last_here[kept], limit)


def _precut(table: PeopleTable, E: np.ndarray, member: np.ndarray, now: float, inactive_days: float,
            keep: int) -> list[int]:
    """Drop bots and inactive people, then keep the `keep` best by the graph score read off the evidence and
    the people's columns (in name order when all are kept; ties by name). The whole score, damping for time
    since the last review included: by the evidence alone, dozens of long-idle reviewers of a file could
    push out the one who reviewed it last week, whom the graph score puts first."""
    horizon = now - inactive_days * DAY
    sel = np.flatnonzero(member & ~table.bot & (table.last >= horizon))
    names = table.nodes
    if len(sel) <= keep:
        return sorted(sel.tolist(), key=names.__getitem__)
    Es, rough = E[:, sel], np.zeros(len(sel))
    for name, w in GRAPH_WEIGHTS.items():
        if name in _E:
            rough = rough + w * Es[_E[name]]
    recent = table.sw[sel]  # `recent_activity` relative to the pool's busiest (the decay cancels out)
    rough = rough + GRAPH_WEIGHTS["recent_activity"] * (recent / recent.max() if recent.max() > 0 else recent)
    rough = _damped(rough, _log_days(now, np.maximum(table.lr[sel], now - NEVER_DAYS * DAY), DAYS_CAP))
    cut = np.partition(rough, len(rough) - keep)[len(rough) - keep]
    best = rough >= cut  # the `keep` best and whoever ties with the last of them
    ranked = sorted(zip((-rough[best]).tolist(), [names[i] for i in sel[best].tolist()], sel[best].tolist()))
    return [i for _, _, i in ranked[:keep]]


def _matrix(og: OwnershipGraph, change: Change, table: PeopleTable, kept: list[int], E: np.ndarray,
            last_here: np.ndarray, limit: int) -> Candidates:
    """The feature rows of the kept people (their `EVIDENCE` columns in E), then the best `limit` of them by
    graph score."""
    now = float(change.time)
    author = "@" + change.author
    X, rows = np.zeros((len(kept), len(FEATURES))), np.array(kept, dtype=np.intp)
    X[:, _E_COLUMNS] = E.T
    never = now - NEVER_DAYS * DAY  # "never" reads as a very long time ago, capped below
    X[:, F["activity"]] = table.rw[rows]
    X[:, F["recent_activity"]] = table.sw[rows]
    X[:, F["days_since_review"]] = np.maximum(table.lr[rows], never)
    X[:, F["days_since_seen"]] = table.last[rows]
    X[:, F["days_since_here"]] = np.fmax(last_here, never)
    X[:, F["tenure"]] = table.first[rows]
    people = [table.nodes[i] for i in kept]
    X[:, F["is_author"]] = [p == author for p in people]
    back = og.G._pred.get(author, {})  # person → author edges: the author reviewed their changes
    X[:, F["reciprocity"]] = [back[p]["fc"] if p in back else 0 for p in people]
    _finish(X, now, og.decay(now), og.decay(now, short=True), len(change.files))
    score = graph_score(X)
    if len(kept) > limit:
        best = np.argsort(-score, kind="stable")[:limit]
        people, X, score = [people[i] for i in best], X[best], score[best]
    return Candidates([p[1:] for p in people], X, score)


def _finish(X: np.ndarray, now: float, long_decay: float, short_decay: float, n_files: int) -> None:
    """Turn the raw columns (times, scaled weights, counts) into features, in place."""
    for name, decay in (("activity", long_decay), ("recent_activity", short_decay)):
        col = X[:, F[name]] * decay
        top = col.max() if len(col) else 0.0
        X[:, F[name]] = col / top if top > 0 else col
    for name, cap in (("days_since_review", DAYS_CAP), ("days_since_seen", None), ("days_since_here", DAYS_CAP),
                      ("tenure", None)):
        X[:, F[name]] = _log_days(now, X[:, F[name]], cap)
    X[:, F["reciprocity"]] = np.log1p(X[:, F["reciprocity"]])
    X[:, F["n_files"]] = math.log1p(n_files)
