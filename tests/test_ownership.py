"""The ownership graph on tiny hand-made histories, with exact expected values."""
import math

import numpy as np
import pytest

from graph.model import Change
from graph.ownership import DAY, MAX_DEPTH, MAX_DIR_CHARS, OwnershipGraph, ancestors

HISTORY = [
    Change("1", 0, "ann", ("bob",), ("drivers/net/eth.c",)),
    Change("2", int(10 * DAY), "ann", ("bob", "cid"), ("drivers/net/eth.c", "drivers/usb/hub.c")),
    Change("3", int(20 * DAY), "cid", ("ann",), ("docs/index.md",)),
]


@pytest.fixture
def og():
    g = OwnershipGraph(half_life_days=10)
    for c in HISTORY:
        g.add_change(c)
    return g


def test_ancestors_deepest_first():
    assert ancestors("a/b/c/d.txt") == ["a/b/c/", "a/b/", "a/"]
    assert ancestors("README") == []


def test_ancestors_are_bounded_in_depth_and_length():
    """A made-up path 2,000 levels deep gave 2,000 directories of up to 4 KB each: quadratic in its depth."""
    deep = ancestors("d/" * 2000 + "f.py")
    assert len(deep) == MAX_DEPTH and deep[0] == "d/" * MAX_DEPTH and deep[-1] == "d/"
    long = ancestors("a/" + "b" * 2000 + "/c.py")
    assert long == ["a/"] and all(len(d) <= MAX_DIR_CHARS for d in ancestors("x/" * 600 + "y.py"))


def test_paths_of_changes_never_merged_are_not_kept(og):
    """Open merge requests are ranked on paths the graph does not hold; caching those kept every path anyone
    ever proposed (an outsider's MR of deep made-up paths pinned ~1.2 GB)."""
    before = (dict(og._dirs_of), dict(og._derived.path_nodes))
    nodes = og.paths_of(["drivers/net/eth.c", "made/up/" * 20 + "x.py"])
    assert "/drivers/net/eth.c" in nodes and "/made/up/" in nodes
    assert set(og._dirs_of) <= set(before[0]) | {"drivers/net/eth.c"}
    assert set(og._derived.path_nodes) <= set(before[1]) | {"drivers/net/eth.c"}


def test_counts_on_files_directories_and_people(og):
    G = og.G
    assert G["/drivers/net/eth.c"]["@bob"]["rc"] == 2
    assert G["/drivers/"]["@bob"]["rc"] == 2  # once per change, not once per file
    assert G["/drivers/"]["@cid"]["rc"] == 1
    assert G["/drivers/net/eth.c"]["@ann"]["ac"] == 2
    assert G["/drivers/net/eth.c"]["@ann"]["rc"] == 0
    assert G["@ann"]["@bob"]["fc"] == 2
    assert G["@cid"]["@ann"]["fc"] == 1
    assert G.nodes["@bob"]["rc"] == 2 and G.nodes["@ann"]["ac"] == 2


def test_decayed_weights_halve_every_half_life(og):
    e = og.G["/drivers/net/eth.c"]["@bob"]
    # reviews at day 0 and day 10, read at day 20 with a 10-day half-life: 1/4 + 1/2
    assert e["rw"] * og.decay(20 * DAY) == pytest.approx(0.75)


def test_rebase_keeps_decayed_values():
    g = OwnershipGraph(half_life_days=1)
    g.add_change(Change("1", 0, "ann", ("bob",), ("a.c",)))
    g.add_change(Change("2", int(500 * DAY), "ann", ("bob",), ("a.c",)))  # 2**500 would overflow the scale
    value = g.G["/a.c"]["@bob"]["rw"] * g.decay(500 * DAY)
    assert value == pytest.approx(1.0 + 2.0**-500)
    assert math.isfinite(g.G["/a.c"]["@bob"]["rw"])


def test_a_gap_of_a_thousand_short_half_lives_rebases_before_the_scale_overflows():
    """The rebase was decided on the long half-life alone: with a short one of a week, 21 years between two
    changes put 2 ** 1100 in the short scale (OverflowError)."""
    g = OwnershipGraph(half_life_days=180, short_half_life_days=7)
    g.add_change(Change("1", 0, "ann", ("bob",), ("a.c",)))
    g.add_change(Change("2", int(1100 * 7 * DAY), "ann", ("bob",), ("a.c",)))
    assert g.G.nodes["@bob"]["rc"] == 2 and math.isfinite(g.G.nodes["@bob"]["sw"])


def test_bots_and_author_self_review():
    g = OwnershipGraph()
    g.add_change(Change("1", 0, "renovate", ("bob",), ("a.c",), bot_author=True))
    assert g.is_bot("renovate") and g.is_bot("ci-bot") and not g.is_bot("bob")
    g.add_change(Change("2", 1, "ann", ("ann",), ("a.c",)), allow_author=False)
    assert "@ann" not in g.G["/a.c"] or g.G["/a.c"]["@ann"]["rc"] == 0


# --- renamed files: the history follows the file ----------------------------------------------------------
def reviews(og, path):
    """(person, rc, rw, rt, ac, aw, at) of every edge of a path node, as the graph holds them."""
    return [(q, e["rc"], e["rw"], e["rt"], e["ac"], e["aw"], e["at"]) for q, e in og.G._succ[path].items()]


def test_a_rename_moves_the_old_paths_history_to_the_new_path():
    """Weights at a 10-day half-life from day 0: a change on day d weighs 2 ** (d / 10)."""
    g = OwnershipGraph(half_life_days=10)
    g.add_change(Change("1", 0, "ann", ("bob",), ("src/old/a.py",)))
    g.add_change(Change("2", int(10 * DAY), "ann", ("cid",), ("src/old/a.py",)))
    g.add_change(Change("3", int(20 * DAY), "dan", ("eve",), ("src/new/b.py",),
                        renames=(("src/old/a.py", "src/new/b.py"),)))
    assert "/src/old/a.py" not in g.G and "/src/old/a.py" not in g.G._pred["@bob"]
    assert reviews(g, "/src/new/b.py") == [
        ("@ann", 0, 0.0, None, 2, 3.0, 10 * DAY), ("@bob", 1, 1.0, 0.0, 0, 0.0, None),
        ("@cid", 1, 2.0, 10 * DAY, 0, 0.0, None), ("@dan", 0, 0.0, None, 1, 4.0, 20 * DAY),
        ("@eve", 1, 4.0, 20 * DAY, 0, 0.0, None)]
    assert g.G.nodes["/src/new/b.py"] == {"kind": "path", "n": 3, "nw": 7.0, "rc": 3, "rw": 7.0, "aw": 7.0}
    assert g.G["/src/old/"]["@bob"]["rc"] == 1 and "@bob" not in g.G["/src/new/"]  # directories keep theirs
    assert g.G["/src/"]["@bob"]["rc"] == 1 and g.G.nodes["/src/"]["n"] == 3


def test_a_rename_chain_and_a_rename_back_carry_everything_along():
    g = OwnershipGraph(half_life_days=10)
    g.add_change(Change("1", 0, "ann", ("bob",), ("a.py",)))
    g.add_change(Change("2", int(10 * DAY), "ann", ("cid",), ("b.py",), renames=(("a.py", "b.py"),)))
    g.add_change(Change("3", int(20 * DAY), "ann", ("dan",), ("c.py",), renames=(("b.py", "c.py"),)))
    assert "/a.py" not in g.G and "/b.py" not in g.G
    assert [(q, rc, rw) for q, rc, rw, *_ in reviews(g, "/c.py")] == [
        ("@ann", 0, 0.0), ("@bob", 1, 1.0), ("@cid", 1, 2.0), ("@dan", 1, 4.0)]
    g.add_change(Change("4", int(30 * DAY), "ann", ("eve",), ("a.py",), renames=(("c.py", "a.py"),)))
    assert "/c.py" not in g.G and g.G.nodes["/a.py"]["n"] == 4
    assert [(q, rc, rt) for q, rc, _, rt, *_ in reviews(g, "/a.py")] == [
        ("@ann", 0, None), ("@bob", 1, 0.0), ("@cid", 1, 10 * DAY), ("@dan", 1, 20 * DAY), ("@eve", 1, 30 * DAY)]


def test_a_rename_onto_a_path_with_history_adds_both():
    g = OwnershipGraph(half_life_days=10)
    g.add_change(Change("1", 0, "ann", ("bob",), ("b.py",)))
    g.add_change(Change("2", int(10 * DAY), "ann", ("bob", "cid"), ("a.py",)))
    g.add_change(Change("3", int(20 * DAY), "dan", (), ("b.py",), renames=(("a.py", "b.py"),)))
    assert reviews(g, "/b.py") == [
        ("@ann", 0, 0.0, None, 2, 3.0, 10 * DAY), ("@bob", 2, 3.0, 10 * DAY, 0, 0.0, None),
        ("@cid", 1, 2.0, 10 * DAY, 0, 0.0, None), ("@dan", 0, 0.0, None, 1, 4.0, 20 * DAY)]
    assert g.G.nodes["/b.py"] == {"kind": "path", "n": 3, "nw": 7.0, "rc": 3, "rw": 5.0, "aw": 7.0}
    assert g.G._pred["@bob"]["/b.py"] is g.G._succ["/b.py"]["@bob"]


def test_renames_within_one_change_move_together():
    """A swap and a chain in one change: each history moves one step, none twice."""
    g = OwnershipGraph(half_life_days=10)
    g.add_change(Change("1", 0, "ann", ("bob",), ("a.py",)))
    g.add_change(Change("2", 0, "ann", ("cid",), ("b.py",)))
    g.add_change(Change("3", 0, "ann", ("dan",), ("c.py",)))
    g.add_change(Change("4", int(DAY), "eve", (), ("a.py", "b.py", "d.py"),
                        renames=(("a.py", "b.py"), ("b.py", "a.py"), ("c.py", "d.py"))))
    reviewers = {p: [q for q, rc, *_ in reviews(g, p) if rc] for p in ("/a.py", "/b.py", "/d.py")}
    assert reviewers == {"/a.py": ["@cid"], "/b.py": ["@bob"], "/d.py": ["@dan"]} and "/c.py" not in g.G


def test_a_rename_refreshes_the_cached_edge_blocks():
    g = OwnershipGraph(half_life_days=10)
    g.add_change(Change("1", 0, "ann", ("bob",), ("a.py",)))
    g.add_change(Change("2", 0, "ann", ("cid",), ("b.py",)))
    g.people_table()
    g.edge_block("/a.py"), g.edge_block("/b.py")
    g.add_change(Change("3", int(DAY), "eve", (), ("b.py",), renames=(("a.py", "b.py"),)))
    fresh = OwnershipGraph(half_life_days=10)
    fresh.add_changes([Change("1", 0, "ann", ("bob",), ("a.py",)), Change("2", 0, "ann", ("cid",), ("b.py",)),
                       Change("3", int(DAY), "eve", (), ("b.py",), renames=(("a.py", "b.py"),))])
    assert g.edge_block("/a.py") is None
    assert np.array_equal(g.edge_block("/b.py"), fresh.edge_block("/b.py"), equal_nan=True)
