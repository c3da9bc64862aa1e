"""Bulk ingest (`OwnershipGraph.add_changes`) reaches exactly the state of `add_change` one change at a time."""
import math
import pickle

import pytest

from graph.model import Change
from graph.ownership import DAY, OwnershipGraph
from graph.recommend import GraphRecommender
from graph.synthetic import synthetic_history

HISTORY = [
    Change("1", 0, "ann", ("bob",), ("drivers/net/eth.c",)),
    Change("2", int(10 * DAY), "ann", ("bob", "cid"), ("drivers/net/eth.c", "drivers/usb/hub.c")),
    Change("3", int(20 * DAY), "cid", ("ann",), ("docs/index.md",)),
    Change("4", int(20 * DAY), "dependabot", (), ("drivers/net/eth.c",), bot_author=True),
    Change("5", int(25 * DAY), "bob", ("bob", "ann", "cid"), ("README", "drivers/usb/hub.c")),
    Change("6", int(26 * DAY), "eve", (), ()),
]


def state(og: OwnershipGraph) -> tuple:
    """Everything `add_change` writes, with insertion orders and value types."""
    G = og.G

    def typed(d):
        return [(k, type(v).__name__, v) for k, v in d.items()]

    nodes = [(n, typed(d)) for n, d in G._node.items()]
    succ = [(u, [(v, typed(e)) for v, e in nbrs.items()]) for u, nbrs in G._succ.items()]
    pred = [(u, list(nbrs)) for u, nbrs in G._pred.items()]
    shared = all(G._succ[u][v] is G._pred[v][u] for u, nbrs in G._succ.items() for v in nbrs)
    co = [(a, [(b, list(p)) for b, p in others.items()]) for a, others in og.coreview.items()]
    co_shared = all(og.coreview[b][a] is p for a, others in og.coreview.items() for b, p in others.items())
    rest = (og.t0, og.now, og.changes, sorted(og.bots), og.half_life, og.short_half_life)
    return nodes, succ, pred, shared, co, co_shared, rest


def one_by_one(changes, **kw) -> OwnershipGraph:
    og = OwnershipGraph(half_life_days=10, short_half_life_days=3)
    for c in changes:
        og.add_change(c, **kw)
    return og


def bulk(changes, **kw) -> OwnershipGraph:
    og = OwnershipGraph(half_life_days=10, short_half_life_days=3)
    og.add_changes(changes, **kw)
    return og


@pytest.mark.parametrize("allow_author", [False, True])
def test_hand_made_history_same_state(allow_author):
    a, b = one_by_one(HISTORY, allow_author=allow_author), bulk(HISTORY, allow_author=allow_author)
    assert state(b) == state(a)
    assert b.G["/drivers/usb/"]["@cid"] == {"rc": 2, "rw": b.G["/drivers/usb/"]["@cid"]["rw"], "rt": 25 * DAY,
                                             "ac": 0, "aw": 0.0, "at": None}
    assert b.coreview["@bob"]["@cid"][0] == 1  # change 2 (in 5, bob is the author)
    assert b.coreview["@ann"]["@cid"][0] == 1 and "@eve" not in b.coreview


def test_bulk_after_one_by_one_and_in_pieces():
    """On a graph that already has edges, with cached blocks: the sums go on from the stored values."""
    changes = list(synthetic_history(600, 80, 12, seed=3))
    a = one_by_one(changes)
    b = one_by_one(changes[:200])
    b.people_table()
    for p in list(b.G._node)[:30]:
        if p.startswith("/"):
            b.edge_block(p)
    b.add_changes(changes[200:450])
    b.add_changes(changes[450:])
    assert state(b) == state(a)
    for p in [n for n in a.G._node if n.startswith("/")][:40]:
        x, y = a.edge_block(p), b.edge_block(p)
        assert x.shape == y.shape and ((x == y) | (x != x) & (y != y)).all()


def test_synthetic_history_same_state_and_suggestions():
    changes = list(synthetic_history(3000, 400, 60, seed=1))
    past, new = changes[:-20], changes[-20:]
    one, many = GraphRecommender(), GraphRecommender()
    for c in past:
        one.observe(c)
    many.og.add_changes(past)
    assert state(many.og) == state(one.og)
    for c in new:
        assert many.suggest(c, k=5) == one.suggest(c, k=5)
    assert pickle.dumps(many.og.G._node) == pickle.dumps(one.og.G._node)


def test_rebase_inside_a_bulk_load():
    """A change 400 half-lives later moves the reference time: added on its own, the rest in bulk."""
    far = int(5000 * DAY)
    changes = [*HISTORY, Change("7", far, "ann", ("bob", "cid"), ("drivers/net/eth.c",)),
               Change("8", far + 5, "bob", ("ann",), ("docs/index.md",))]
    a, b = one_by_one(changes), bulk(changes)
    assert a.t0 == far and state(b) == state(a)
    assert math.isclose(b.G["/drivers/net/eth.c"]["@bob"]["rw"], 1.0)


def test_bulk_loads_that_add_no_new_edge():
    """A merged MR with no file and no reviewer, a second piece that only adds to existing edges, and a piece
    after a rebase that does: `add_changes` indexed an empty array (IndexError) where `add_change` is fine."""
    empty = [Change("!1", 1_700_000_000, "ann", (), ())]
    bulk = OwnershipGraph()
    bulk.add_changes(empty)
    assert bulk.changes == 1
    first = Change("1", 0, "ann", ("bob",), ("src/a.c",))
    again = Change("2", int(DAY), "ann", ("bob",), ("src/a.c",))
    one, pieces = OwnershipGraph(), OwnershipGraph()
    for c in (first, again):
        one.add_change(c)
        pieces.add_changes([c])
    assert state(pieces) == state(one)
    history = [Change(str(i), int(t * DAY), "ann", ("bob",), ("src/a.c",)) for i, t in enumerate((0, 401, 402))]
    one, bulk = OwnershipGraph(half_life_days=10, short_half_life_days=1), OwnershipGraph(half_life_days=10,
                                                                                            short_half_life_days=1)
    for c in history:
        one.add_change(c)
    bulk.add_changes(history)
    assert state(bulk) == state(one)


RENAMING = [
    *HISTORY,
    Change("7", int(27 * DAY), "ann", ("cid",), ("net/eth.c",), renames=(("drivers/net/eth.c", "net/eth.c"),)),
    Change("8", int(28 * DAY), "cid", ("bob",), ("net/eth.c", "docs/index.md")),
    Change("9", int(28 * DAY), "bob", ("ann",), ("README", "net/phy.c"),  # onto a path with history, and a chain
           renames=(("drivers/usb/hub.c", "README"), ("net/eth.c", "net/phy.c"))),
    Change("10", int(29 * DAY), "ann", ("eve",), ("README", "docs/index.md"),  # a swap
           renames=(("README", "docs/index.md"), ("docs/index.md", "README"))),
    Change("11", int(5000 * DAY), "eve", ("bob",), ("net/eth.c",), renames=(("net/phy.c", "net/eth.c"),)),  # rebases
    Change("12", int(5001 * DAY), "ann", ("cid",), ("a.c",), renames=(("gone.c", "a.c"),)),  # nothing to move
]


@pytest.mark.parametrize("cut", [0, 6, 7, 9])
def test_renames_in_a_bulk_load_same_state(cut):
    """Each change that renames files moves the history before it: the bulk load breaks its batches there."""
    a = one_by_one(RENAMING)
    b = bulk(RENAMING[:cut])
    b.add_changes(RENAMING[cut:])
    assert state(b) == state(a)
    assert [n for n in a.G._node if n.startswith("/") and not n.endswith("/")] == \
        ["/docs/index.md", "/README", "/net/eth.c", "/a.c"]
    assert a.G["/net/eth.c"]["@cid"]["rc"] == 2  # changes 2 and 7
    assert a.G["/docs/index.md"]["@ann"]["rc"] == 3  # 5 on README and on hub.c (both counted), then 9
