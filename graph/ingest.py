"""Bulk ingest: a whole history into an `OwnershipGraph` at once, to the very state `add_change` reaches.

Why: adding changes one at a time costs a handful of dict updates per (path, person) pair, each a cache miss
on a graph of millions of edges. Loading a stored history does not need the intermediate states, so here a
Python pass over the changes only lists node ids (people and paths, cached per file), and numpy does the
rest: one row per (path, person) event of every change, grouped by edge with `np.unique`, summed with
`np.bincount` in event order. Each edge and node is then written once.

Exactly the state of `add_change` on each change in turn: the same nodes, edges and attribute dicts, in
the same insertion order (node and edge order follow first appearance, as they do one at a time), the same
value types, and the same floats: every decayed weight is summed in the order of the events, starting from
the value already in the graph (`np.bincount` and `np.add.at` add in index order, like `+=`). The scale of
each change is computed by the graph itself (`OwnershipGraph.scale`), and a change that would move the
reference time (`OwnershipGraph._rebase`) is added on its own.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graph.model import Change

__all__ = ["add_changes"]


def add_changes(og, changes: Sequence[Change], *, allow_author: bool = False) -> None:
    """Add `changes` (in time order) to `og`: the same as ``og.add_change(c)`` for each, faster.

    A change that renames files starts a new batch: the history written so far moves first
    (`OwnershipGraph.move_history`), as `add_change` moves it before adding the change itself."""
    start = 0
    while start < len(changes):
        if og.t0 is None:
            og.t0 = float(changes[start].time)
        if og.needs_rebase(float(changes[start].time)):
            og.add_change(changes[start], allow_author=allow_author)  # rebases first
            start += 1
            continue
        end, ws = start, []
        while end < len(changes) and not og.needs_rebase(float(changes[end].time)) and \
                (end == start or not changes[end].renames):
            ws.append(og.scale(float(changes[end].time)))
            end += 1
        if changes[start].renames:
            og.move_history(changes[start].renames)
        _Batch(og, changes[start:end], ws, allow_author).write()
        start = end


class _Batch:
    """One run of changes with no rebase inside: node ids and events, then the graph written once."""

    def __init__(self, og, changes: Sequence[Change], ws: list[float], allow_author: bool) -> None:
        self.og, self.changes = og, changes
        self.t = np.array([float(c.time) for c in changes])
        self.w = np.array(ws)
        self.ws = np.array([og.scale(t, short=True) for t in self.t.tolist()])
        self.names: list[str] = []
        self._list(allow_author)

    def _list(self, allow_author: bool) -> None:
        """Node ids (in order of first appearance: a change's people, then its paths) and, per change, its
        people (author first) and paths; the co-review pairs go straight to the graph (few, sequential)."""
        og, names = self.og, self.names
        ids: dict[str, int] = {}
        by_file: dict[str, list[int]] = {}
        people_flat: list[int] = []
        paths_flat: list[int] = []
        n_people, n_paths = [], []
        path_nodes = og.path_nodes

        def node_id(n: str) -> int:
            i = ids.get(n)
            if i is None:
                i = ids[n] = len(names)
                names.append(n)
            return i

        person: dict[str, int] = {}  # name (without "@") → id

        def person_id(name: str) -> int:
            i = person[name] = node_id("@" + name)
            return i

        known = person.get
        for c, t, w in zip(self.changes, self.t.tolist(), self.w.tolist()):
            if c.bot_author:
                og.bots.add(c.author)
            truth = sorted(c.truth(allow_author=allow_author))  # as `add_change`: the same order on every run
            a = known(c.author)
            people = [person_id(c.author) if a is None else a]
            for r in truth:
                i = known(r)
                people.append(person_id(r) if i is None else i)
            if len(truth) > 1:
                og._touch_coreview("@" + c.author, ["@" + r for r in truth], t, w)
            files = c.files
            if len(files) == 1:
                f = files[0]
                pids = by_file.get(f)
                if pids is None:
                    pids = by_file[f] = list(map(node_id, path_nodes(f)))
            else:
                parts = []
                for f in files:
                    p = by_file.get(f)
                    if p is None:
                        p = by_file[f] = list(map(node_id, path_nodes(f)))
                    parts.extend(p)
                pids = list(dict.fromkeys(parts))
            people_flat.extend(people)
            paths_flat.extend(pids)
            n_people.append(len(people))
            n_paths.append(len(pids))
        self.people = np.array(people_flat, dtype=np.int64)
        self.paths = np.array(paths_flat, dtype=np.int64)
        self.n_people = np.array(n_people, dtype=np.int64)
        self.n_paths = np.array(n_paths, dtype=np.int64)

    # -- events ----------------------------------------------------------------------------------------
    def _path_events(self) -> tuple[np.ndarray, ...]:
        """(change, path, person, is_author) of every (path, person) pair, in the order `add_change` visits
        them: change by change, path by path, the author then the reviewers."""
        touch_change = np.repeat(np.arange(len(self.changes)), self.n_paths)
        start = np.cumsum(self.n_people) - self.n_people
        rep = self.n_people[touch_change]
        touch = np.repeat(np.arange(len(touch_change)), rep)
        j = np.arange(len(touch)) - np.repeat(np.cumsum(rep) - rep, rep)
        change = touch_change[touch]
        return change, self.paths[touch], self.people[start[change] + j], j == 0

    def _fam_events(self) -> tuple[np.ndarray, ...]:
        """(change, author, reviewer) of every author → reviewer pair (not the author reviewing themself)."""
        start = np.cumsum(self.n_people) - self.n_people
        n_rev = self.n_people - 1
        change = np.repeat(np.arange(len(self.changes)), n_rev)
        j = np.arange(len(change)) - np.repeat(np.cumsum(n_rev) - n_rev, n_rev) + 1
        author, reviewer = self.people[start[change]], self.people[start[change] + j]
        keep = author != reviewer
        return change[keep], author[keep], reviewer[keep]

    # -- writing ---------------------------------------------------------------------------------------
    def write(self) -> None:
        og = self.og
        G = og.G
        self.fresh = not G._node  # an empty graph: every edge is new
        self._nodes()
        n = len(self.names)
        pc, pp, pq, pa = self._path_events()
        fc, fa, fr = self._fam_events()
        path_edges = _Edges(pp * n + pq)
        fam_edges = _Edges(fa * n + fr)
        # the order `add_change` creates edges in: change by change, its familiarity edges, then its paths'
        fam_per = np.bincount(fc, minlength=len(self.changes))
        path_per = np.bincount(pc, minlength=len(self.changes))
        offset = np.cumsum(fam_per + path_per) - fam_per - path_per
        fam_rank = offset[fc] + (np.arange(len(fc)) - (np.cumsum(fam_per) - fam_per)[fc])
        path_rank = offset[pc] + fam_per[pc] + (np.arange(len(pc)) - (np.cumsum(path_per) - path_per)[pc])
        path_edges.rank, fam_edges.rank = path_rank[path_edges.first], fam_rank[fam_edges.first]
        for edges in (path_edges, fam_edges):
            edges.look_up(og, self.names, self.fresh)
        new_paths = self._path_edge_dicts(path_edges, pc, pa)
        new_fam = self._fam_edge_dicts(fam_edges, fc)
        self._link(path_edges, new_paths, fam_edges, new_fam)
        self._node_figures(pc, pp, pq, pa)
        og.changes += len(self.changes)
        og.now = max(og.now, float(self.t.max()))
        derived = og._derived
        derived.dirty.update(dict.fromkeys(self.names[i] for i in np.flatnonzero(np.bincount(self.people)).tolist()))
        if derived.blocks:
            for p in (self.names[i] for i in np.flatnonzero(np.bincount(self.paths)).tolist()):
                if p in derived.blocks:
                    derived.drop(p)
        from graph.ownership import _clear_cache

        _clear_cache(G)

    def _nodes(self) -> None:
        """Create the nodes not in the graph yet, in order of first appearance (people before the paths of
        the same change, as `add_change` does), with their figures at zero."""
        G = self.og.G
        node_of, succ, pred = G._node, G._succ, G._pred
        change_of_person = np.repeat(np.arange(len(self.changes)), self.n_people)
        first_seen = np.full(len(self.names), len(self.changes), dtype=np.int64)
        np.minimum.at(first_seen, self.people, change_of_person)
        first = self.t[np.minimum(first_seen, len(self.changes) - 1)].tolist()
        for i, name in enumerate(self.names):
            if name in node_of:
                continue
            if name[0] == "@":
                node_of[name] = {"kind": "person", "first": first[i], "last": first[i], "rc": 0, "rw": 0.0,
                                 "sw": 0.0, "ac": 0, "lr": None}
            else:
                node_of[name] = {"kind": "path", "n": 0, "nw": 0.0, "rc": 0, "rw": 0.0, "aw": 0.0}
            succ[name], pred[name] = {}, {}

    def _path_edge_dicts(self, edges: _Edges, change: np.ndarray, is_author: np.ndarray) -> list[dict]:
        """Update the path → person edges already in the graph; the new ones' dicts, in creation order."""
        w, t = self.w[change], self.t[change]
        rev = ~is_author
        cols = (edges.count(rev), edges.sum(w * rev, "rw"), edges.last(t, rev),
                edges.count(is_author), edges.sum(w * is_author, "aw"), edges.last(t, is_author))
        if len(edges.old_index):
            rc, rw, rt, ac, aw, at = (_values(col, edges.old_index) for col in cols)
            for i, d in enumerate(edges.old_at(edges.old_index)):
                d["rc"] += rc[i]
                d["rw"] = rw[i]
                if rt[i] is not None:
                    d["rt"] = rt[i]
                d["ac"] += ac[i]
                d["aw"] = aw[i]
                if at[i] is not None:
                    d["at"] = at[i]
        rc, rw, rt, ac, aw, at = (_values(col, edges.new_order) for col in cols)
        return [{"rc": a, "rw": b, "rt": c, "ac": d, "aw": e, "at": f}
                for a, b, c, d, e, f in zip(rc, rw, rt, ac, aw, at)]

    def _fam_edge_dicts(self, edges: _Edges, change: np.ndarray) -> list[dict]:
        """Update the author → reviewer edges already in the graph; the new ones' dicts, in creation order."""
        every = np.ones(len(change), dtype=bool)
        cols = (edges.count(every), edges.sum(self.w[change], "fw"), edges.last(self.t[change], every))
        if len(edges.old_index):
            fc, fw, ft = (_values(col, edges.old_index) for col in cols)
            for i, d in enumerate(edges.old_at(edges.old_index)):
                d["fc"] += fc[i]
                d["fw"] = fw[i]
                d["ft"] = ft[i]
        fc, fw, ft = (_values(col, edges.new_order) for col in cols)
        return [{"fc": a, "fw": b, "ft": c} for a, b, c in zip(fc, fw, ft)]

    def _link(self, path_edges: _Edges, path_dicts: list[dict], fam_edges: _Edges, fam_dicts: list[dict]) -> None:
        """Insert the new edges into the successor and predecessor dicts in the order `add_change` would:
        grouped by node, each group in creation order, one `dict.update` per node. The new dicts were made
        grouped by source node (the successors' order), so only the predecessors take them out of order."""
        G, names, n = self.og.G, self.names, len(self.names)
        keys = np.concatenate([path_edges.keys[path_edges.new_order], fam_edges.keys[fam_edges.new_order]])
        if not len(keys):  # the batch only added to edges that exist (or touched no file)
            return
        ranks = np.concatenate([path_edges.rank[path_edges.new_order], fam_edges.rank[fam_edges.new_order]])
        dicts = path_dicts + fam_dicts
        src, dst = keys // n, keys % n
        for adjacency, node, other, order in ((G._succ, src, dst, None), (G._pred, dst, src, np.lexsort((ranks, dst)))):
            if order is None:
                values, others = dicts, list(map(names.__getitem__, other.tolist()))
                node_sorted = node
            else:
                values = list(map(dicts.__getitem__, order.tolist()))
                others = list(map(names.__getitem__, other[order].tolist()))
                node_sorted = node[order]
            cut = np.flatnonzero(np.r_[True, node_sorted[1:] != node_sorted[:-1]])
            ends = np.r_[cut[1:], len(node_sorted)].tolist()
            for u, a, b in zip(node_sorted[cut].tolist(), cut.tolist(), ends):
                adjacency[names[u]].update(zip(others[a:b], values[a:b]))

    def _node_figures(self, pc: np.ndarray, pp: np.ndarray, pq: np.ndarray, pa: np.ndarray) -> None:
        """Paths: n, nw, aw, rc, rw; people: last, rc, rw, sw, ac, lr; each summed in event order."""
        G, names, n = self.og.G, self.names, len(self.names)
        node_of = G._node
        t, w, ws = self.t, self.w, self.ws
        touch_change = np.repeat(np.arange(len(self.changes)), self.n_paths)
        person_change = np.repeat(np.arange(len(self.changes)), self.n_people)
        role = np.arange(len(self.people)) - np.repeat(np.cumsum(self.n_people) - self.n_people, self.n_people)
        rev = role > 0
        paths = np.flatnonzero(np.bincount(self.paths, minlength=n))
        people = np.flatnonzero(np.bincount(self.people, minlength=n))
        dicts = [node_of[names[i]] for i in range(n)]
        count_t = np.bincount(self.paths, minlength=n)
        nw = _sum(self.paths, w[touch_change], n, [d.get("nw", 0.0) for d in dicts])
        aw = _sum(self.paths, w[touch_change], n, [d.get("aw", 0.0) for d in dicts])
        prc = np.bincount(self.paths, (self.n_people - 1)[touch_change], n)
        rev_ev = ~pa
        prw = _sum(pp[rev_ev], w[pc[rev_ev]], n, [d["rw"] for d in dicts])
        nw_l, aw_l, prw_l, cnt_l, prc_l = nw.tolist(), aw.tolist(), prw.tolist(), count_t.tolist(), prc.tolist()
        for i in paths.tolist():
            d = dicts[i]
            d["n"] += cnt_l[i]
            d["nw"], d["aw"], d["rw"] = nw_l[i], aw_l[i], prw_l[i]
            d["rc"] += int(prc_l[i])
        who, wch = self.people[rev], person_change[rev]
        rc = np.bincount(who, minlength=n).tolist()
        rw = _sum(who, w[wch], n, [d["rw"] for d in dicts]).tolist()
        sw = _sum(who, ws[wch], n, [d.get("sw", 0.0) for d in dicts]).tolist()
        ac = np.bincount(self.people[~rev], minlength=n).tolist()
        last = _values(_last(self.people, t[person_change], n), np.arange(n))
        lr = _values(_last(who, t[wch], n), np.arange(n))
        for i in people.tolist():
            d = dicts[i]
            d["last"] = last[i]
            d["rc"] += rc[i]
            d["rw"], d["sw"] = rw[i], sw[i]
            d["ac"] += ac[i]
            if lr[i] is not None:
                d["lr"] = lr[i]


class _Edges:
    """The distinct edges among some events (`keys`: source id × n + target id), in key order, with the
    event → edge map, each edge's first event and, once `look_up` ran, the graph's dict of each old edge."""

    def __init__(self, event_keys: np.ndarray) -> None:
        self.keys, self.first, self.of = np.unique(event_keys, return_index=True, return_inverse=True)
        self.of = self.of.ravel()
        self.rank = np.zeros(0, dtype=np.int64)  # creation order (set by the caller)

    def look_up(self, og, names: list[str], fresh: bool) -> None:
        """Find the edges already in the graph (none when it was empty); `new_order`: the others, in
        creation order."""
        n, succ = len(names), og.G._succ
        if fresh:
            self.old: list[dict | None] = [None] * len(self.keys)
            self.old_index = np.zeros(0, dtype=np.intp)
        else:
            self.old = [None if (nbrs := succ.get(names[k // n])) is None else nbrs.get(names[k % n])
                        for k in self.keys.tolist()]
            self.old_index = np.flatnonzero([d is not None for d in self.old])
        new = np.ones(len(self.keys), dtype=bool)
        new[self.old_index] = False
        idx = np.flatnonzero(new)  # in key order: grouped by source node
        self.new_order = idx[np.lexsort((self.rank[idx], self.keys[idx] // n))]

    def old_at(self, index: np.ndarray) -> list[dict]:
        return [self.old[i] for i in index.tolist()]

    def count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.of[mask], minlength=len(self.keys))

    def sum(self, values: np.ndarray, key: str) -> np.ndarray:
        """Per edge: its value in the graph (0.0 when new) plus `values`, added one event at a time."""
        start = [0.0 if d is None else d[key] for d in self.old] if len(self.old_index) else [0.0] * len(self.keys)
        return _sum(self.of, values, len(self.keys), start)

    def last(self, t: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time of each edge's last event among `mask`, whether there is one)."""
        return _last(self.of[mask], t[mask], len(self.keys))


def _values(col: np.ndarray | tuple[np.ndarray, np.ndarray], index: np.ndarray) -> list:
    """Python values of a column at `index`: ints stay ints; a `last` column gives None where no event."""
    if isinstance(col, tuple):
        t, has = col
        return [v if h else None for v, h in zip(t[index].tolist(), has[index].tolist())]
    return col[index].tolist()


def _sum(index: np.ndarray, values: np.ndarray, n: int, start: list[float]) -> np.ndarray:
    """start[i] + every value at i, added in order (as repeated ``+=`` would): bincount when all start at 0."""
    init = np.array(start, dtype=float)
    if not init.any():
        return np.bincount(index, values, n) if len(index) else init
    np.add.at(init, index, values)
    return init


def _last(index: np.ndarray, t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(the time of the last event at each i, whether there is one): the later of two events wins."""
    at = np.full(n, -1, dtype=np.int64)
    np.maximum.at(at, index, np.arange(len(index)))
    has = at >= 0
    return (t[np.maximum(at, 0)] if len(t) else np.zeros(n)), has
