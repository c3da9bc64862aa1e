"""The code-ownership graph: files, their ancestor directories and people, joined by who wrote and who
reviewed what, with counts, last times and time-decayed weights.

Nodes (one NetworkX DiGraph):
  - a path node ``"/" + path``; directories end with ``"/"`` (``"/drivers/net/"``), files do not;
  - a person node ``"@" + name``.
Edges:
  - path → person: ``rc``/``rw``/``rt`` (reviews: count, decayed weight, last time) and ``ac``/``aw``/``at``
    (authorship, same three);
  - author → reviewer (both person nodes): ``fc``/``fw``/``ft``, how often the reviewer reviewed this author.
Co-reviews are kept beside the graph, in `OwnershipGraph.coreview` (person node → person node →
``[count, scaled weight, last time]``, one list shared by both directions): two people who reviewed the same
change. They are not edges of `G`, whose person → person edges are all author → reviewer ones.

Decayed weights are kept in a scaled form so an update never touches old edges: an event at time t adds
``2 ** ((t - t0) / half_life)``; reading at time ``now`` multiplies by ``2 ** (-(now - t0) / half_life)``
(`OwnershipGraph.decay`). When the scale grows too large the reference time moves and every weight is
rescaled once.

The graph only ever grows by `add_change`, one change at a time in time order, so a replay never looks into
the future; `add_changes` takes a whole history at once (`graph.ingest`) to exactly the same state. A change
that renames files first moves each old file node's edges onto the new path (`OwnershipGraph.move_history`):
a file's history follows it, while directories keep what was done under them.

Reading many paths and people at once (`graph.features`) goes through numpy copies of the graph's figures,
`OwnershipGraph.people_table` and `OwnershipGraph.edge_block`: they are derived data, rebuilt on demand and
never pickled (`_Derived`). A long-running process should call `gc.freeze()` once its history is loaded: the
graph is millions of small dicts, and a full collection over them (up to half a second) otherwise lands in
whichever request happens to trigger it.
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Iterable, NamedTuple

import networkx as nx
import numpy as np

from graph.model import Change

__all__ = ["OwnershipGraph", "PeopleTable", "ReviewTimes", "ancestors", "path_node", "person_node", "DAY",
           "EDGE_COLUMNS", "MAX_DEPTH", "MAX_DIR_CHARS"]

DAY = 86400.0
_BOT_NAMES = frozenset({"ghost", "gitlab-bot", "dependabot", "renovate"})
# What NetworkX's add_node/add_edge do after each call (converted-graph caches); here once per change.
_clear_cache = getattr(nx, "_clear_cache", lambda G: None)
# The columns of an `OwnershipGraph.edge_block`: person id and the path → person edge's figures.
EDGE_COLUMNS = ("person", "rw", "aw", "rt", "at")


def path_node(path: str) -> str:
    """The node of a file (``"src/a.c"`` → ``"/src/a.c"``) or directory (``"src/"`` → ``"/src/"``)."""
    return "/" + path


def person_node(name: str) -> str:
    return "@" + name


# The directories a path counts: the first `MAX_DEPTH` levels, within its first `MAX_DIR_CHARS` characters.
# Real trees stay far inside (the public histories: 14 levels, 200 characters); without a bound one merge
# request of deep made-up paths costs quadratic time and memory (2,000 levels of 4 KB paths: 1.2 GB).
MAX_DEPTH = 32
MAX_DIR_CHARS = 1024


def ancestors(path: str) -> list[str]:
    """Directory paths above a file, deepest first (the root is not a directory here); deeper or longer
    ones than `MAX_DEPTH` / `MAX_DIR_CHARS` count as the deepest ancestor within those bounds.

    >>> ancestors("drivers/net/eth.c")
    ['drivers/net/', 'drivers/']
    >>> len(ancestors("d/" * 2000 + "f.c")), max(map(len, ancestors("a" * 5000 + "/b/c.py")), default=0)
    (32, 0)
    """
    parts = path[:MAX_DIR_CHARS].split("/", MAX_DEPTH)[:-1]
    return ["/".join(parts[:i]) + "/" for i in range(len(parts), 0, -1)]


class PeopleTable:
    """Every person node's figures as numpy columns, one row per person (`index` maps a node to its row).

    Columns: ``rw``/``sw`` (scaled review weights, long and short half-life), ``lr`` (last review, -inf if
    none), ``last`` (last seen), ``first`` (first seen), ``bot``. Rows follow the people's first appearance
    and are refreshed from the graph only for people touched since the last read.
    """

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.nodes: list[str] = []
        self._data = np.zeros((5, 64))  # rw, sw, lr, last, first
        self._bot = np.zeros(64, dtype=bool)
        self._bots: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.nodes)

    rw = property(lambda self: self._data[0, : len(self.nodes)])
    sw = property(lambda self: self._data[1, : len(self.nodes)])
    lr = property(lambda self: self._data[2, : len(self.nodes)])
    last = property(lambda self: self._data[3, : len(self.nodes)])
    first = property(lambda self: self._data[4, : len(self.nodes)])

    @property
    def bot(self) -> np.ndarray:
        return self._bot[: len(self.nodes)]

    def refresh(self, og: OwnershipGraph, people: Iterable[str]) -> None:
        """Copy the figures of `people` (person nodes) from the graph, adding rows for new ones."""
        node, index, data, bot = og.G._node, self.index, self._data, self._bot
        for p in people:
            i = index.get(p)
            if i is None:
                i = index[p] = len(self.nodes)
                self.nodes.append(p)
                if i >= data.shape[1]:
                    data = self._data = np.concatenate([data, np.zeros_like(data)], axis=1)
                    bot = self._bot = np.concatenate([bot, np.zeros_like(bot)])
                bot[i] = og.is_bot(p[1:])
            d = node[p]
            lr = d["lr"]
            data[:, i] = (d["rw"], d["sw"], -math.inf if lr is None else lr, d["last"], d["first"])
        if self._bots != og.bots:  # someone became a bot (or the set was edited): check everyone again
            self._bots = frozenset(og.bots)
            bot[: len(self.nodes)] = [og.is_bot(p[1:]) for p in self.nodes]


class ReviewTimes(NamedTuple):
    """The last-review times an early review moved (see `OwnershipGraph.add_review`): the person's ``lr``,
    the author → person edge's ``ft`` and each path → person edge's ``rt`` (None: there was none)."""

    lr: float | None
    ft: float | None
    rt: dict[str, float | None]


class _Block:
    """A cached `OwnershipGraph.edge_block`: its rows, the row of each person (made when first needed), and
    whether it holds every edge of the path (files and small directories) or only a directory's heads."""

    __slots__ = ("data", "rows", "whole")

    def __init__(self, data: np.ndarray, rows: dict[str, int] | None, whole: bool) -> None:
        self.data, self.rows, self.whole = data, rows, whole


class _Derived:
    """Caches derived from the graph for fast reading; pickled empty (`__reduce__`), so a snapshot or a copy
    rebuilds them on first use from the graph it restored.

    ``path_nodes``: a file → its path nodes; ``dirty``: person nodes touched since `people` was refreshed;
    ``blocks``: path node → its `edge_block`, kept current by `add_change` (or dropped when its rows change);
    ``reasons``: what `graph.reasons` looked up for the last change it explained.
    """

    def __init__(self) -> None:
        self.path_nodes: dict[str, list[str]] = {}
        self.dirty: dict[str, None] = {}
        self.people: PeopleTable | None = None
        self.blocks: dict[str, _Block] = {}
        self.block_rows = 0
        self.reasons: tuple | None = None  # graph.reasons: the paths of the last change explained
        self.warm_order: list[str] | None = None  # `OwnershipGraph.warm_blocks`: paths, busiest first
        self.warm_next = 0  # ... and the next one to build

    def __reduce__(self) -> tuple[type, tuple]:
        return (_Derived, ())

    def drop(self, p: str) -> None:
        self.block_rows -= len(self.blocks.pop(p).data)


class OwnershipGraph:
    """Who knows which code, built incrementally from reviewed changes.

    >>> g = OwnershipGraph(half_life_days=90)
    >>> g.add_change(Change("1", 0, "ann", ("bob",), ("src/a.c",)))
    >>> g.G["/src/"]["@bob"]["rc"], g.G["@ann"]["@bob"]["fc"]
    (1, 1)
    """

    # rows of all cached edge blocks together (2M rows: 80 MB of float64); beyond, the cache starts afresh
    BLOCK_ROWS = 2_000_000
    WARM_ROWS = BLOCK_ROWS * 3 // 4  # what `warm_blocks` builds at most: room is left for the paths it skips

    def __init__(self, half_life_days: float = 180.0, short_half_life_days: float = 30.0, bots: Iterable[str] = ()):
        if half_life_days <= 0 or short_half_life_days <= 0:
            raise ValueError("half-lives must be positive numbers of days")
        self.G = nx.DiGraph()
        self.half_life = half_life_days * DAY
        self.short_half_life = short_half_life_days * DAY
        self.t0: float | None = None
        self.now = 0.0
        self.changes = 0
        self.bots: set[str] = set(bots)
        self._dirs_of: dict[str, list[str]] = {}
        self._top: tuple[int, list[str]] = (-1, [])
        self._heads: dict[str, tuple[int, list[tuple[str, dict]]]] = {}
        self.coreview: dict[str, dict[str, list]] = {}
        self._derived = _Derived()

    # -- decay ---------------------------------------------------------------------------------------
    def scale(self, t: float, short: bool = False) -> float:
        """The scaled weight of an event at time t (see the module docstring)."""
        hl = self.short_half_life if short else self.half_life
        return 2.0 ** ((t - self.t0) / hl)

    def decay(self, now: float, short: bool = False) -> float:
        """Multiply a stored weight by this to read it at time `now`."""
        hl = self.short_half_life if short else self.half_life
        return 2.0 ** (-(now - self.t0) / hl)

    def needs_rebase(self, t: float) -> bool:
        """Whether an event at time t must move the reference time first: its scaled weight, long or short,
        would pass 2 ** 400 (2 ** 1024 overflows a float)."""
        return (t - self.t0) / min(self.half_life, self.short_half_life) > 400

    def _rebase(self, t: float) -> None:
        """Move the reference time to t, rescaling every stored weight (rare: once per ~400 half-lives)."""
        f_long, f_short = self.decay(t), self.decay(t, short=True)
        for _, data in self.G.nodes(data=True):
            for key in ("rw", "aw", "nw"):
                if key in data:
                    data[key] *= f_long
            if "sw" in data:
                data["sw"] *= f_short
        for _, _, data in self.G.edges(data=True):
            for key in ("rw", "aw", "fw"):
                if key in data:
                    data[key] *= f_long
        for a, others in self.coreview.items():
            for b, pair in others.items():
                if a < b:  # each pair's list once
                    pair[1] *= f_long
        self.t0 = t
        self._derived = _Derived()

    # -- building ------------------------------------------------------------------------------------
    def dirs_of(self, path: str) -> list[str]:
        """`ancestors`, cached for the graph's own files (paths repeat a lot across a history; the paths of
        open merge requests that never merge are not kept)."""
        dirs = self._dirs_of.get(path)
        if dirs is None:
            dirs = ancestors(path)
            if "/" + path in self.G:
                self._dirs_of[path] = dirs
        return dirs

    def path_nodes(self, path: str) -> list[str]:
        """The nodes of a file and of its directories, deepest first (cached for the graph's own files: built
        once per file).

        >>> OwnershipGraph().path_nodes("drivers/net/eth.c")
        ['/drivers/net/eth.c', '/drivers/net/', '/drivers/']
        """
        cache = self._derived.path_nodes
        nodes = cache.get(path)
        if nodes is None:
            nodes = ["/" + path, *("/" + d for d in self.dirs_of(path))]
            if nodes[0] in self.G:
                cache[path] = nodes
        return nodes

    def paths_of(self, files: Iterable[str]) -> list[str]:
        """The path nodes of a change: its files and every ancestor directory, each once."""
        known, make = self._derived.path_nodes.get, self.path_nodes
        return list(dict.fromkeys(chain.from_iterable(known(f) or make(f) for f in files)))

    def people_on(self, files: Iterable[str]) -> set[str]:
        """Everyone the history links to these files or their directories (wrote or reviewed there), author or
        not, without the "@".

        >>> og = OwnershipGraph()
        >>> og.add_change(Change("1", 0.0, "ann", ("bob",), ("src/a.py",)))
        >>> sorted(og.people_on(["src/b.py"])), sorted(og.people_on(["doc/x.md"]))
        (['ann', 'bob'], [])
        """
        return {p[1:] for node in self.paths_of(files) if node in self.G
                for p in self.G.successors(node) if p.startswith("@")}

    def _weights(self, t: float) -> tuple[float, float]:
        """The scaled (long, short) weights of an event at time t, rebasing first when they grow too large."""
        if self.t0 is None:
            self.t0 = t
        if self.needs_rebase(t):
            self._rebase(t)
        w = self.scale(t)
        self.now = max(self.now, t)
        return w, self.scale(t, short=True)

    def add_change(self, change: Change, *, allow_author: bool = False, reviewed: Iterable[str] = ()) -> None:
        """Add one reviewed change (must not be older than the last one added).

        `reviewed`: people whose review of this change `add_review` already recorded (they only count in
        its co-reviews here). The files it renamed take their old paths' history along first (`move_history`).
        """
        t = float(change.time)
        w, ws = self._weights(t)
        if change.renames:
            self.move_history(change.renames)
        self.changes += 1
        if change.bot_author:
            self.bots.add(change.author)
        # sorted: a set's order changes with the interpreter's string hashing, and with it the order of edges,
        # float sums and near-ties, so replays differed from run to run
        everyone = ["@" + p for p in sorted(change.truth(allow_author=allow_author))]
        done = {"@" + p for p in reviewed}
        reviewers = [r for r in everyone if r not in done] if done else everyone
        author = "@" + change.author
        self._touch_people(author, reviewers, t, w, ws)
        if len(everyone) > 1:
            self._touch_coreview(author, everyone, t, w)
        paths = self.paths_of(change.files)
        self._touch_paths(paths, author, reviewers, t, w)
        self._update_blocks(paths, (author, *reviewers))
        _clear_cache(self.G)

    def move_history(self, renames: Iterable[tuple[str, str]]) -> None:
        """Credit renamed files' history to their new paths: ``(old path, new path)`` pairs, as a change renamed
        them (`Change.renames`, moved by `add_change` before the change's own reviews count).

        The old file node's edges (reviews and authorship: counts, scaled weights, last times) and its figures
        join the new path's, adding to any history the new path has (a change that touched both counts twice
        there), and the old node goes: a file created later under the old path starts afresh, and renaming
        back moves everything again. The pairs move together, so a swap (a → b, b → a) or a chain within one
        change (a → b, b → c) moves each history one step; across changes a chain carries it all along.
        Directories keep what they counted: those changes were made under them (and one that touched several
        of a directory's files counts once there, which file it was no longer known).

        >>> g = OwnershipGraph()
        >>> g.add_change(Change("1", 0, "ann", ("bob",), ("old/a.c",)))
        >>> g.move_history([("old/a.c", "new/b.c")])
        >>> g.G["/new/b.c"]["@bob"]["rc"], "/old/a.c" in g.G, g.G["/old/"]["@bob"]["rc"]
        (1, False, 1)
        """
        node_of, succ, pred = self.G._node, self.G._succ, self.G._pred
        moving = []
        for old, new in renames:
            p = "/" + old
            if old == new or p not in node_of or p.endswith("/"):
                continue
            moving.append(("/" + new, node_of.pop(p), succ.pop(p)))
            del pred[p]  # a path has no incoming edges
            for q in moving[-1][2]:
                del pred[q][p]
            self._moved(p)
        for p, node, nbrs in moving:
            self._merge_path(p, node, nbrs)
            self._moved(p)
        if moving:
            _clear_cache(self.G)

    def _merge_path(self, p: str, node: dict, nbrs: dict[str, dict]) -> None:
        """Join a file node's figures and edges (taken out of the graph) to path node `p`."""
        node_of, succ, pred = self.G._node, self.G._succ, self.G._pred
        into = node_of.get(p)
        if into is None:  # the new path had no history: the node itself moves
            node_of[p], succ[p], pred[p] = node, nbrs, {}
            for q, e in nbrs.items():
                pred[q][p] = e
            return
        for key in ("n", "nw", "rc", "rw", "aw"):
            into[key] += node[key]
        mine = succ[p]
        for q, e in nbrs.items():
            f = mine.get(q)
            if f is None:
                mine[q] = pred[q][p] = e
                continue
            for key in ("rc", "rw", "ac", "aw"):
                f[key] += e[key]
            for key in ("rt", "at"):
                if e[key] is not None and (f[key] is None or e[key] > f[key]):
                    f[key] = e[key]

    def _moved(self, p: str) -> None:
        """Forget what was cached about path node `p` (its edge block, its heads): its rows changed."""
        self._heads.pop(p, None)
        if p in self._derived.blocks:
            self._derived.drop(p)

    def add_review(self, change: Change, person: str, time: float) -> ReviewTimes | None:
        """`person` took the review of the still open `change`: the reviewer's part of `add_change` now, at
        `time` (pass them in `reviewed` when the change is added at its merge). The history alone learns
        who reviews what only at the merges, days later; a review taken says it at once.

        Returns the last-review times it moved (for `retract_review`), None when there was nothing to add.
        """
        author, r = "@" + change.author, "@" + person
        if r == author or not change.files:
            return None
        t = float(time)
        w, ws = self._weights(t)
        paths = self.paths_of(change.files)
        before = self._review_times(author, r, paths)
        self._touch_people(author, [r], t, w, ws, authored=False)
        self._touch_paths(paths, author, [r], t, w, authored=False)
        self._update_blocks(paths, (author, r))
        _clear_cache(self.G)
        return before

    def _review_times(self, author: str, r: str, paths: list[str]) -> ReviewTimes:
        node_of, succ = self.G._node, self.G._succ
        person, fam = node_of.get(r), succ.get(author, {}).get(r)
        return ReviewTimes(None if person is None else person["lr"], None if fam is None else fam["ft"],
                           {p: e["rt"] for p in paths if (e := succ.get(p, {}).get(r)) is not None})

    def retract_review(self, change: Change, person: str, time: float, before: ReviewTimes | None = None) -> None:
        """Take back what `add_review(change, person, time)` added: the person was removed from the
        reviewers before the merge. Counts and weights return to what they were; so do the last-review
        times with `before` (what `add_review` returned) unless a later review moved them since, else a
        last-review time stays where it moved unless no review is left to date it (a comment must not
        say "last today" of a review taken back)."""
        author, r = "@" + change.author, "@" + person
        node_of, succ = self.G._node, self.G._succ
        if r == author or not change.files or r not in node_of or author not in node_of:
            return
        t = float(time)
        w, ws = self.scale(t), self.scale(t, short=True)
        data = node_of[r]
        data["rc"] -= 1
        data["rw"] -= w
        data["sw"] -= ws
        if data["rc"] <= 0:
            data["lr"] = None
        elif before is not None and data["lr"] == t:
            data["lr"] = before.lr
        self._derived.dirty[r] = None
        e = succ[author].get(r)
        if e is not None:
            e["fc"] -= 1
            e["fw"] -= w
            if e["fc"] <= 0:
                del succ[author][r], self.G._pred[r][author]
            elif before is not None and e["ft"] == t and before.ft is not None:
                e["ft"] = before.ft
        paths = self.paths_of(change.files)
        for p in paths:
            node, e = node_of.get(p), succ.get(p, {}).get(r)
            if node is None or e is None:
                continue
            node["rc"] -= 1
            node["rw"] -= w
            e["rc"] -= 1
            e["rw"] -= w
            if e["rc"] <= 0:
                e["rw"], e["rt"] = 0.0, None
            elif before is not None and e["rt"] == t:
                e["rt"] = before.rt.get(p)
        self._update_blocks(paths, (author, r))
        _clear_cache(self.G)

    def _update_blocks(self, paths: list[str], people: tuple[str, ...]) -> None:
        blocks = self._derived.blocks
        if blocks:
            for p in paths:
                if p in blocks:
                    self._update_block(p, people)

    def add_changes(self, changes: Iterable[Change], *, allow_author: bool = False) -> None:
        """Add many changes (in time order) at once: the same state as `add_change` on each in turn, built
        several times faster (see `graph.ingest`). For loading a whole stored history.

        >>> one, bulk = OwnershipGraph(), OwnershipGraph()
        >>> history = [Change("1", 0, "ann", ("bob",), ("src/a.c",)), Change("2", 9, "bob", ("ann",), ("a.c",))]
        >>> for c in history:
        ...     one.add_change(c)
        >>> bulk.add_changes(history)
        >>> list(bulk.G.edges(data=True)) == list(one.G.edges(data=True))
        True
        """
        from graph.ingest import add_changes

        add_changes(self, changes if isinstance(changes, (list, tuple)) else list(changes), allow_author=allow_author)

    def _touch_coreview(self, author: str, reviewers: list[str], t: float, w: float) -> None:
        """Every pair of the change's reviewers (not its author) reviewed together once more."""
        co = self.coreview
        people = [r for r in reviewers if r != author]
        if len(people) < 2:
            return
        for i, a in enumerate(people):
            mine = co.get(a)
            if mine is None:
                mine = co[a] = {}
            for b in people[i + 1:]:
                pair = mine.get(b)
                if pair is None:
                    theirs = co.get(b)
                    if theirs is None:
                        theirs = co[b] = {}
                    mine[b] = theirs[a] = [1, w, t]
                else:
                    pair[0] += 1
                    pair[1] += w
                    pair[2] = t

    # Nodes and edges are written straight into the DiGraph's dicts (what add_node/add_edge do, without their
    # per-call checks and cache clearing): this is the hot path of ingestion. Attribute dicts keep their key
    # order, which snapshots and float sums rely on.
    def _touch_people(self, author: str, reviewers: list[str], t: float, w: float, ws: float,
                      authored: bool = True) -> None:
        node_of, succ, pred, dirty = self.G._node, self.G._succ, self.G._pred, self._derived.dirty
        for p in (author, *reviewers):
            data = node_of.get(p)
            if data is None:
                data = node_of[p] = {"kind": "person", "first": t, "last": t, "rc": 0, "rw": 0.0, "sw": 0.0,
                                     "ac": 0, "lr": None}
                succ[p], pred[p] = {}, {}
            if authored:
                data["last"] = t
            elif p != author:  # a review taken may date before the last merge
                data["last"] = max(data["last"], t)
            dirty[p] = None
        if authored:
            node_of[author]["ac"] += 1
        for r in reviewers:
            data = node_of[r]
            data["rc"] += 1
            data["rw"] += w
            data["sw"] += ws
            data["lr"] = t if authored or data["lr"] is None else max(data["lr"], t)
            if r == author:
                continue
            e = succ[author].get(r)
            if e is None:
                succ[author][r] = pred[r][author] = {"fc": 1, "fw": w, "ft": t}
            else:
                e["fc"] += 1
                e["fw"] += w
                e["ft"] = t if authored else max(e["ft"], t)  # a review taken may date before the last merge

    def _touch_paths(self, paths: list[str], author: str, reviewers: list[str], t: float, w: float,
                     authored: bool = True) -> None:
        node_of, succ, pred, n_reviews = self.G._node, self.G._succ, self.G._pred, len(reviewers)
        for p in paths:
            node = node_of.get(p)
            if node is None:
                node = node_of[p] = {"kind": "path", "n": 0, "nw": 0.0, "rc": 0, "rw": 0.0, "aw": 0.0}
                succ[p], pred[p] = {}, {}
            node["rc"] += n_reviews
            nbrs = succ[p]
            if authored:
                node["n"] += 1
                node["nw"] += w
                node["aw"] += w
                e = nbrs.get(author)
                if e is None:
                    nbrs[author] = pred[author][p] = {"rc": 0, "rw": 0.0, "rt": None, "ac": 1, "aw": w, "at": t}
                else:
                    e["ac"] += 1
                    e["aw"] += w
                    e["at"] = t
            for r in reviewers:
                node["rw"] += w  # once per reviewer: the same float sums as always
                e = nbrs.get(r)
                if e is None:
                    nbrs[r] = pred[r][p] = {"rc": 1, "rw": w, "rt": t, "ac": 0, "aw": 0.0, "at": None}
                else:
                    e["rc"] += 1
                    e["rw"] += w
                    e["rt"] = t if authored or e["rt"] is None else max(e["rt"], t)  # as `lr`

    # -- reading -------------------------------------------------------------------------------------
    def people(self) -> list[str]:
        """Every person seen (names without the node prefix)."""
        return [n[1:] for n, d in self.G.nodes(data=True) if d.get("kind") == "person"]

    def is_bot(self, name: str) -> bool:
        """Bots never review: authors of bot changes and the usual bot account names."""
        if name in self.bots:
            return True
        low = name.lower()
        return low.endswith(("-bot", "[bot]", "_bot")) or low in _BOT_NAMES

    def heads(self, p: str, m: int = 40) -> list[tuple[str, dict]]:
        """The `m` people with most (decayed) reviews or authorship on path node `p`, with their live edges.

        Directories near the root have hundreds of people whose share there is tiny; walking only the
        heads bounds the work per change. The membership is refreshed when the path has seen 10 % more
        changes; the edge data read through it is always current.
        """
        nbrs = self.G._succ[p]
        if len(nbrs) <= m:
            return list(nbrs.items())
        n = self.G._node[p]["n"]
        cached = self._heads.get(p)
        if cached is None or n > cached[0] * 1.1 + 5:
            ranked = sorted(nbrs.items(), key=lambda kv: -(kv[1]["rw"] + kv[1]["aw"]))[:m]
            cached = self._heads[p] = (n, ranked)
        return cached[1]

    @property
    def block_rows(self) -> int:
        """Rows of all cached edge blocks together."""
        return self._derived.block_rows

    def warm_blocks(self, limit: int | None = None) -> int:
        """Build the edge blocks of the busiest paths before the first suggestions need them, up to `limit`
        rows (default `WARM_ROWS`); returns the rows cached. A suggestion on paths never
        read costs several times one on read paths (500 files on a 200k-MR history: p99 65-80 ms cold,
        18 ms warm), so a bot warms them once after loading a large history.

        >>> g = OwnershipGraph()
        >>> g.add_change(Change("1", 0, "ann", ("bob",), ("src/a.c", "doc/b.md")))
        >>> g.warm_blocks(), sorted(g._derived.blocks)
        (8, ['/doc/', '/doc/b.md', '/src/', '/src/a.c'])
        """
        derived, node = self._derived, self.G._node
        cap = self.WARM_ROWS if limit is None else limit
        if derived.warm_order is None:  # sorted once: a caller warming in steps continues where it stopped
            paths = [p for p, d in node.items() if d.get("kind") != "person"]
            paths.sort(key=lambda p: -node[p].get("n", 0))
            derived.warm_order, derived.warm_next = paths, 0
        paths = derived.warm_order
        while derived.warm_next < len(paths) and derived.block_rows < cap:
            self.edge_block(paths[derived.warm_next])
            derived.warm_next += 1
        return derived.block_rows

    def people_table(self) -> PeopleTable:
        """Every person's figures as numpy columns, current as of the last change added."""
        derived = self._derived
        table = derived.people
        if table is None:
            table = derived.people = PeopleTable()
            derived.dirty.clear()
            table.refresh(self, [n for n, d in self.G._node.items() if d.get("kind") == "person"])
        elif derived.dirty:
            table.refresh(self, derived.dirty)
            derived.dirty.clear()
        return table

    def edge_block(self, p: str) -> np.ndarray | None:
        """The edges of path node `p` as rows of `EDGE_COLUMNS` (None if the path is unknown).

        A file gives all its people; a directory only its `heads`. Times are NaN where the person never
        reviewed (``rt``) or wrote (``at``) there. Person ids are rows of `people_table()`. Cached, and kept
        current by `add_change`; never pickled (a copy rebuilds it from the graph, to the same values).

        >>> g = OwnershipGraph()
        >>> g.add_change(Change("1", 0, "ann", ("bob",), ("src/a.c",)))
        >>> g.people_table().nodes, g.edge_block("/src/a.c").tolist()  # ann wrote it, bob reviewed it
        (['@ann', '@bob'], [[0.0, 0.0, 1.0, nan, 0.0], [1.0, 1.0, 0.0, 0.0, nan]])
        >>> g.add_change(Change("2", 60, "ann", ("bob",), ("src/a.c",)))  # updates the cached rows in place
        >>> import pickle
        >>> fresh = pickle.loads(pickle.dumps(g))
        >>> all(np.array_equal(fresh.edge_block(p), g.edge_block(p), equal_nan=True) for p in ("/src/a.c", "/src/"))
        True
        """
        derived = self._derived
        cached = derived.blocks.get(p)
        if cached is not None:
            return cached.data
        if p not in self.G._node:
            return None
        index, flat = self.people_table().index, []
        add = flat.extend
        edges = self.heads(p) if p.endswith("/") else self.G._succ[p].items()
        for q, e in edges:
            add((index[q], e["rw"], e["aw"], e["rt"], e["at"]))
        data = np.array(flat, dtype=float).reshape(-1, len(EDGE_COLUMNS))  # None becomes NaN
        if derived.block_rows + len(data) > self.BLOCK_ROWS:
            derived.blocks.clear()
            derived.block_rows = 0
        derived.blocks[p] = _Block(data, None, len(data) == len(self.G._succ[p]))
        derived.block_rows += len(data)
        return data

    def _update_block(self, p: str, people: tuple[str, ...]) -> None:
        """After a change touched `p`: rewrite the cached block's rows of `people`, or drop the block when its
        set of rows changes (a new person where it holds every edge; the directory's heads due for a refresh)."""
        block, nbrs = self._derived.blocks[p], self.G._succ[p]
        if block.whole:
            if len(nbrs) != len(block.data):
                return self._derived.drop(p)
        else:
            heads = self._heads.get(p)
            if heads is None or self.G._node[p]["n"] > heads[0] * 1.1 + 5:  # the test of `heads`
                return self._derived.drop(p)
        rows = block.rows
        if rows is None:  # built on the first update: many blocks are read once and never updated
            keys = nbrs if block.whole else (q for q, _ in self._heads[p][1])
            rows = block.rows = {q: i for i, q in enumerate(keys)}
        nan = math.nan
        for q in people:
            i = rows.get(q)
            if i is not None:
                e, row = nbrs[q], block.data[i]
                rt, at = e["rt"], e["at"]
                row[1], row[2], row[3], row[4] = e["rw"], e["aw"], nan if rt is None else rt, nan if at is None else at

    def top_reviewers(self, n: int = 5, every: int = 200) -> list[str]:
        """The person nodes reviewing most these weeks (short half-life), refreshed every `every` changes.

        They are candidates for any change, so that a change in new code still gets suggestions.
        """
        if self._top[0] < 0 or self.changes - self._top[0] >= every:
            people = [(d["sw"], n_) for n_, d in self.G.nodes(data=True) if d.get("kind") == "person" and d["rc"]]
            people.sort(reverse=True)
            self._top = (self.changes, [p for _, p in people[:n]])
        return self._top[1]

    def days_since(self, t: float | None, now: float) -> float:
        return math.inf if t is None else max(0.0, (now - t) / DAY)
