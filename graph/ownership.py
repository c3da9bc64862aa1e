"""The code-ownership graph: files, their ancestor directories and people, joined by who wrote and who
reviewed what, with counts, last times and time-decayed weights.

Nodes (one NetworkX DiGraph):
  - a path node ``"/" + path``; directories end with ``"/"`` (``"/drivers/net/"``), files do not;
  - a person node ``"@" + name``.
Edges:
  - path → person: ``rc``/``rw``/``rt`` (reviews: count, decayed weight, last time) and ``ac``/``aw``/``at``
    (authorship, same three);
  - author → reviewer (both person nodes): ``fc``/``fw``/``ft``, how often the reviewer reviewed this author.

Decayed weights are kept in a scaled form so an update never touches old edges: an event at time t adds
``2 ** ((t - t0) / half_life)``; reading at time ``now`` multiplies by ``2 ** (-(now - t0) / half_life)``
(`OwnershipGraph.decay`). When the scale grows too large the reference time moves and every weight is
rescaled once.

The graph only ever grows by `add_change`, one change at a time in time order, so a replay never looks into
the future.
"""
from __future__ import annotations

import math
from typing import Iterable

import networkx as nx

from graph.model import Change

__all__ = ["OwnershipGraph", "ancestors", "path_node", "person_node", "DAY"]

DAY = 86400.0
_RESCALE_AT = 2.0**400
_BOT_NAMES = frozenset({"ghost", "gitlab-bot", "dependabot", "renovate"})


def path_node(path: str) -> str:
    """The node of a file (``"src/a.c"`` → ``"/src/a.c"``) or directory (``"src/"`` → ``"/src/"``)."""
    return "/" + path


def person_node(name: str) -> str:
    return "@" + name


def ancestors(path: str) -> list[str]:
    """Directory paths above a file, deepest first (the root is not a directory here).

    >>> ancestors("drivers/net/eth.c")
    ['drivers/net/', 'drivers/']
    """
    parts = path.split("/")[:-1]
    return ["/".join(parts[:i]) + "/" for i in range(len(parts), 0, -1)]


class OwnershipGraph:
    """Who knows which code, built incrementally from reviewed changes.

    >>> g = OwnershipGraph(half_life_days=90)
    >>> g.add_change(Change("1", 0, "ann", ("bob",), ("src/a.c",)))
    >>> g.G["/src/"]["@bob"]["rc"], g.G["@ann"]["@bob"]["fc"]
    (1, 1)
    """

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

    # -- decay ---------------------------------------------------------------------------------------
    def scale(self, t: float, short: bool = False) -> float:
        """The scaled weight of an event at time t (see the module docstring)."""
        hl = self.short_half_life if short else self.half_life
        return 2.0 ** ((t - self.t0) / hl)

    def decay(self, now: float, short: bool = False) -> float:
        """Multiply a stored weight by this to read it at time `now`."""
        hl = self.short_half_life if short else self.half_life
        return 2.0 ** (-(now - self.t0) / hl)

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
        self.t0 = t

    # -- building ------------------------------------------------------------------------------------
    def dirs_of(self, path: str) -> list[str]:
        """Cached `ancestors` (paths repeat a lot across a history)."""
        dirs = self._dirs_of.get(path)
        if dirs is None:
            dirs = self._dirs_of[path] = ancestors(path)
        return dirs

    def paths_of(self, files: Iterable[str]) -> list[str]:
        """The path nodes of a change: its files and every ancestor directory, each once."""
        seen: dict[str, None] = {}
        for f in files:
            seen["/" + f] = None
            for d in self.dirs_of(f):
                seen["/" + d] = None
        return list(seen)

    def add_change(self, change: Change, *, allow_author: bool = False) -> None:
        """Add one reviewed change (must not be older than the last one added)."""
        t = float(change.time)
        if self.t0 is None:
            self.t0 = t
        if self.scale(t) > _RESCALE_AT:
            self._rebase(t)
        self.now = max(self.now, t)
        self.changes += 1
        if change.bot_author:
            self.bots.add(change.author)
        reviewers = [person_node(p) for p in change.truth(allow_author=allow_author)]
        author = person_node(change.author)
        w, ws = self.scale(t), self.scale(t, short=True)
        self._touch_people(author, reviewers, t, w, ws)
        for p in self.paths_of(change.files):
            self._touch_path(p, author, reviewers, t, w)

    def _touch_people(self, author: str, reviewers: list[str], t: float, w: float, ws: float) -> None:
        G = self.G
        for node in (author, *reviewers):
            if node not in G:
                G.add_node(node, kind="person", first=t, last=t, rc=0, rw=0.0, sw=0.0, ac=0, lr=None)
            G.nodes[node]["last"] = t
        G.nodes[author]["ac"] += 1
        succ = G._succ  # attribute dicts are updated in place: this is the hot path of ingestion
        for r in reviewers:
            data = G.nodes[r]
            data["rc"] += 1
            data["rw"] += w
            data["sw"] += ws
            data["lr"] = t
            if r == author:
                continue
            e = succ[author].get(r)
            if e is None:
                G.add_edge(author, r, fc=1, fw=w, ft=t)
            else:
                e["fc"] += 1
                e["fw"] += w
                e["ft"] = t

    def _touch_path(self, p: str, author: str, reviewers: list[str], t: float, w: float) -> None:
        G = self.G
        node = G._node.get(p)
        if node is None:
            G.add_node(p, kind="path", n=0, nw=0.0, rc=0, rw=0.0, aw=0.0)
            node = G._node[p]
        node["n"] += 1
        node["nw"] += w
        node["aw"] += w
        nbrs = G._succ[p]
        e = nbrs.get(author)
        if e is None:
            G.add_edge(p, author, rc=0, rw=0.0, rt=None, ac=1, aw=w, at=t)
        else:
            e["ac"] += 1
            e["aw"] += w
            e["at"] = t
        for r in reviewers:
            node["rc"] += 1
            node["rw"] += w
            e = nbrs.get(r)
            if e is None:
                G.add_edge(p, r, rc=1, rw=w, rt=t, ac=0, aw=0.0, at=None)
            else:
                e["rc"] += 1
                e["rw"] += w
                e["rt"] = t

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
