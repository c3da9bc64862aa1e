"""The ownership graph on tiny hand-made histories, with exact expected values."""
import math

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
