"""Compact, versioned snapshots of a recommender, so a worker can start warm instead of replaying history.

Why not plain `pickle.dumps(rec)`: the ownership graph is a NetworkX graph of hundreds of thousands of small
attribute dicts, which pickle writes key by key. Here the graph is stored as columns instead: node names, the
out-degree of each node and the target index of each edge, and one numpy array per attribute for each group of
dicts sharing the same keys (ints as int64, floats as float64 with a mask for `None`, repeated strings as codes).
The co-review pairs beside the graph (`OwnershipGraph.coreview`) are pickled as they are, each pair's list once for
both directions. Everything else in the recommender (settings, counters, the fitted model, the balancing tables,
the feedback memory) is small and pickled as it is; the learned ranker's training window is stacked into two
arrays. The whole is pickled (protocol 5) and compressed with zlib.

It restores *exactly*: nodes, edges and attribute dicts in their insertion order (the ranking iterates them
and sums floats in that order), the value types (int stays int, `None` stays `None`), and the caches whose
content steers the ranking (`OwnershipGraph._heads`, re-linked to the restored edge dicts, and `_top`). A
restored recommender fed the rest of a history ranks like one fed all of it. Caches that are pure functions
of their key (`OwnershipGraph._dirs_of`, the candidate cache) are dropped. Predecessor dicts are rebuilt in
source-node order (nothing in `graph/` reads them). A model shared by all projects (`prior`) is not stored:
the caller sets it again after `loads`.

A snapshot starts with a header: a magic string, `FORMAT_VERSION` and a `fingerprint()` of the code that
gives the state its meaning (the graph and ranker modules' source and the versions of scikit-learn, numpy and
NetworkX). `loads` refuses a snapshot whose version or fingerprint differ, with `SnapshotError`: the caller
rebuilds from history, and the next snapshot is written in the current format.

    >>> from graph.model import Change
    >>> from graph.recommend import make_recommender
    >>> rec = make_recommender("graph")
    >>> rec.observe(Change("1", 0, "ann", ("bob",), ("src/a.c",)))
    >>> loads(dumps(rec)).recommend(Change("2", 60, "cy", (), ("src/a.c",)), 3)
    ['bob', 'ann']
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import inspect
import operator
import pickle
import platform
import struct
import zlib
from collections import deque
from functools import lru_cache
from itertools import chain, islice, repeat
from typing import Any, Callable, Iterator

import networkx as nx
import numpy as np

from graph.ownership import OwnershipGraph
from graph.recommend import GraphRecommender

__all__ = [
    "dumps", "loads", "state_of", "encode", "header", "fingerprint", "SnapshotError", "FORMAT_VERSION",
    "STATE_MODULES",
]

FORMAT_VERSION = 2  # 2: OwnershipGraph.coreview
MAGIC = b"RBSNAP"
_HEAD = struct.Struct(">6sHH")  # magic, format version, fingerprint length
# The modules whose code decides what the stored state means: a change to any of them may change the graph
# or the model a history produces, so their snapshots are rebuilt rather than trusted.
STATE_MODULES = ("graph.model", "graph.ownership", "graph.features", "graph.ranker", "graph.recommend",
                 "graph.feedback", "graph.terms")
_DROPPED_REC = ("og", "_cache", "_rows", "_pick")
# Models shared by every project (not the project's own state): stored as None, the caller sets them again.
_SHARED_REC = ("prior",)
_DROPPED_GRAPH = ("G", "_heads", "_dirs_of")


class SnapshotError(ValueError):
    """The bytes are not a snapshot this code can restore (other format or code version, or damaged):
    rebuild the recommender from the history instead."""


@lru_cache(maxsize=1)
def fingerprint() -> str:
    """A short text naming the format version and the code and libraries the state depends on.

    Snapshots are only restored by code with the same fingerprint; store it beside a snapshot to find a
    usable one without reading its bytes.
    """
    import sklearn

    digest = hashlib.sha256()
    for name in STATE_MODULES:
        try:
            source = inspect.getsource(importlib.import_module(name))
        except ImportError:  # an optional module that does not exist in this version
            source = ""
        digest.update(name.encode() + b"\0" + source.encode() + b"\0")
    versions = f"py{platform.python_version()} sklearn{sklearn.__version__} numpy{np.__version__} nx{nx.__version__}"
    digest.update(versions.encode())
    return f"v{FORMAT_VERSION}-{digest.hexdigest()[:16]}"


# --- columns of attribute dicts -------------------------------------------------------------------------------
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of containers are made: each collection would walk
    them all, for nothing (none of them is garbage yet). Reference counting goes on as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _column(values: list[Any]) -> tuple[Any, ...]:
    """One attribute over many dicts, in the most compact form that gives the same Python values back."""
    kinds = set(map(type, values))
    if kinds == {int}:
        try:
            return ("i", np.array(values, dtype=np.int64))
        except OverflowError:
            return ("o", values)
    if kinds and kinds <= {float, type(None)} and float in kinds:
        missing = None
        if type(None) in kinds:
            missing = np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=len(values))
        return ("f", np.array(values, dtype=np.float64), missing)  # numpy reads None as NaN; `missing` tells
    if kinds == {type(None)}:
        return ("n", len(values))
    if kinds == {str}:
        codes = {s: i for i, s in enumerate(dict.fromkeys(values))}
        if len(codes) <= 255:
            return ("c", list(codes), np.fromiter(map(codes.__getitem__, values), dtype=np.uint8, count=len(values)))
    return ("o", values)


def _values(column: tuple[Any, ...]) -> list[Any]:
    """The Python values of a `_column`."""
    kind = column[0]
    if kind == "i":
        return column[1].tolist()  # type: ignore[no-any-return]
    if kind == "f":
        if column[2] is None:
            return column[1].tolist()  # type: ignore[no-any-return]
        values = column[1].astype(object)  # Python floats
        values[column[2]] = None
        return values.tolist()  # type: ignore[no-any-return]
    if kind == "n":
        return [None] * column[1]
    if kind == "c":
        return list(map(column[1].__getitem__, column[2].tolist()))
    return list(column[1])


@lru_cache(maxsize=64)
def _maker(keys: tuple[Any, ...]) -> Callable[..., dict[Any, Any]]:
    """A function making a dict of `keys` from positional values. With string keys it is a dict display
    compiled once (about twice as fast as `dict(zip(keys, values))`, which matters for millions of edges)."""
    if not all(type(k) is str for k in keys):
        return lambda *values: dict(zip(keys, values))
    args = ", ".join(f"v{i}" for i in range(len(keys)))
    display = ", ".join(f"{k!r}: v{i}" for i, k in enumerate(keys))  # the repr of a str is a str literal
    return eval(f"lambda {args}: {{{display}}}")  # type: ignore[no-any-return]  # noqa: S307 - built from reprs


def _table(dicts: list[dict[Any, Any]]) -> dict[str, Any]:
    """Attribute dicts as columns: dicts with the same keys (in the same order) form one group."""
    signatures = list(map(tuple, dicts))
    index = {keys: g for g, keys in enumerate(dict.fromkeys(signatures))}
    which = np.fromiter(map(index.__getitem__, signatures), dtype=np.int32, count=len(signatures))
    del signatures
    groups = []
    for keys, g in index.items():
        rows = dicts if len(index) == 1 else list(map(dicts.__getitem__, np.flatnonzero(which == g).tolist()))
        groups.append((keys, [_column(list(map(operator.itemgetter(k), rows))) for k in keys], len(rows)))
    return {"group": which.astype(np.uint8) if len(index) <= 256 else which, "groups": groups}


def _dicts(table: dict[str, Any]) -> list[dict[Any, Any]]:
    """The attribute dicts of a `_table`, in their original order."""
    made: list[dict[Any, Any]] = []
    for keys, columns, n in table["groups"]:
        if keys:
            made.extend(map(_maker(keys), *map(_values, columns)))
        else:  # attribute-less dicts: only their number is stored
            made.extend({} for _ in range(n))
    if len(table["groups"]) <= 1:
        return made
    order = np.argsort(table["group"], kind="stable")  # original position of each made dict
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    return list(map(made.__getitem__, where.tolist()))


# --- the ownership graph ----------------------------------------------------------------------------------------
def _graph_state(og: OwnershipGraph) -> dict[str, Any]:
    G = og.G
    names = list(G._node)
    index = {n: i for i, n in enumerate(names)}
    adjacency = list(map(G._succ.__getitem__, names))
    degree = np.fromiter(map(len, adjacency), dtype=np.int64, count=len(names))
    target = np.fromiter(map(index.__getitem__, chain.from_iterable(adjacency)), dtype=np.int32,
                         count=int(degree.sum()))
    heads = [(p, n, [person for person, _ in ranked]) for p, (n, ranked) in og._heads.items()]
    rest = {k: v for k, v in vars(og).items() if k not in _DROPPED_GRAPH}
    return {
        "names": names, "nodes": _table(list(G._node.values())), "degree": degree, "target": target,
        "edges": _table(list(chain.from_iterable(map(dict.values, adjacency)))),
        "graph": pickle.dumps(G.graph, 5), "heads": heads, "attrs": pickle.dumps(rest, 5),
    }


def _adjacency(names: list[str], degree: np.ndarray, others: list[str],
               edges: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """(node, {other: edge}) for each node, taking `degree[i]` items of `others` and `edges` in turn."""
    other, edge = iter(others), iter(edges)
    return ((u, dict(zip(islice(other, k), islice(edge, k)))) for u, k in zip(names, degree.tolist()))


def _graph_from(state: dict[str, Any]) -> OwnershipGraph:
    og = OwnershipGraph.__new__(OwnershipGraph)
    vars(og).update(pickle.loads(state["attrs"]))
    G = og.G = nx.DiGraph()
    G.graph.update(pickle.loads(state["graph"]))
    names: list[str] = state["names"]
    G._node.update(zip(names, _dicts(state["nodes"])))
    target, degree, edges = state["target"], state["degree"], _dicts(state["edges"])
    G._succ.update(_adjacency(names, degree, list(map(names.__getitem__, target.tolist())), edges))
    # predecessors: the same edge dicts grouped by target, each group in source order
    by_target = np.argsort(target, kind="stable")
    sources = np.repeat(np.arange(len(names)), degree)[by_target]
    G._pred.update(_adjacency(names, np.bincount(target, minlength=len(names)),
                              list(map(names.__getitem__, sources.tolist())),
                              list(map(edges.__getitem__, by_target.tolist()))))
    succ = G._succ
    og._heads = {p: (n, [(person, succ[p][person]) for person in people]) for p, n, people in state["heads"]}
    og._dirs_of = {}
    return og


# --- the learned ranker's training window -----------------------------------------------------------------------
def _rows_state(rows: deque[tuple[np.ndarray, np.ndarray]] | None) -> dict[str, Any] | None:
    if rows is None:
        return None
    pairs = list(rows)
    lengths = np.array([len(y) for _, y in pairs], dtype=np.int64)
    X = np.vstack([x for x, _ in pairs]) if pairs else None
    y = np.concatenate([y for _, y in pairs]) if pairs else None
    return {"maxlen": rows.maxlen, "lengths": lengths, "X": X, "y": y}


def _rows_from(state: dict[str, Any]) -> deque[tuple[np.ndarray, np.ndarray]]:
    if state["X"] is None:
        return deque(maxlen=state["maxlen"])
    cuts = np.cumsum(state["lengths"])[:-1]
    return deque(zip(np.split(state["X"], cuts), np.split(state["y"], cuts)), maxlen=state["maxlen"])


# --- the recommender ----------------------------------------------------------------------------------------------
def state_of(rec: GraphRecommender) -> dict[str, Any]:
    """A copy of the recommender's state that later `observe` calls do not touch (the quick part of `dumps`).

    Call it while nothing else uses `rec` (it is not thread-safe); `encode` the result at leisure.
    """
    if not isinstance(rec, GraphRecommender):
        raise TypeError(f"can only snapshot a graph.recommend.GraphRecommender, got {type(rec).__name__}")
    cls = type(rec)
    rest = {k: None if k in _SHARED_REC else v for k, v in vars(rec).items() if k not in _DROPPED_REC}
    rows = getattr(rec, "_rows", None)
    with _gc_paused():
        return {
            "class": f"{cls.__module__}:{cls.__qualname__}", "attrs": pickle.dumps(rest, 5),
            "graph": _graph_state(rec.og), "rows": _rows_state(rows) if isinstance(rows, deque) else None,
        }


def encode(state: dict[str, Any], *, level: int = 1) -> bytes:
    """The snapshot bytes of a `state_of` result: header, then the compressed pickle."""
    mark = fingerprint().encode()
    payload = zlib.compress(pickle.dumps(state, protocol=5), level)
    return _HEAD.pack(MAGIC, FORMAT_VERSION, len(mark)) + mark + payload


def dumps(rec: GraphRecommender, *, level: int = 1) -> bytes:
    """The recommender as compact snapshot bytes (`loads` restores it); zlib `level` 1 favours speed."""
    return encode(state_of(rec), level=level)


def header(data: bytes) -> tuple[int, str]:
    """The (format version, fingerprint) a snapshot was written with; `SnapshotError` if it is none."""
    if len(data) < _HEAD.size or data[:len(MAGIC)] != MAGIC:
        raise SnapshotError("not a recommender snapshot (bad magic bytes): rebuild from the history")
    _, version, n = _HEAD.unpack_from(data)
    return version, bytes(data[_HEAD.size:_HEAD.size + n]).decode("ascii", "replace")


def _recommender_class(name: str) -> type[GraphRecommender]:
    module, _, qualname = name.partition(":")
    cls: Any = None
    if module == "graph" or module.startswith("graph."):
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, GraphRecommender)):
        raise SnapshotError(f"snapshot of unknown recommender class {name!r}: rebuild from the history")
    return cls


def loads(data: bytes) -> GraphRecommender:
    """The recommender a `dumps` wrote; `SnapshotError` for another format or code version, or damage."""
    version, mark = header(data)
    if version != FORMAT_VERSION or mark != fingerprint():
        raise SnapshotError(
            f"snapshot written by format {version} / code {mark}, this code reads {FORMAT_VERSION} / "
            f"{fingerprint()}: rebuild from the history")
    try:
        state = pickle.loads(zlib.decompress(memoryview(data)[_HEAD.size + len(mark.encode()):]))
    except (zlib.error, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise SnapshotError(f"damaged snapshot ({exc}): rebuild from the history") from exc
    cls = _recommender_class(state["class"])
    rec = cls.__new__(cls)
    vars(rec).update(pickle.loads(state["attrs"]))
    with _gc_paused():
        rec.og = _graph_from(state["graph"])
    rec._cache = None
    if state["rows"] is not None:
        rec._rows = _rows_from(state["rows"])  # type: ignore[attr-defined]
    return rec

