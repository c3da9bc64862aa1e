"""graph.snapshot: a restored recommender is the same recommender; foreign or damaged bytes are refused."""
from __future__ import annotations

import math
import pickle
import struct
from dataclasses import replace

import numpy as np
import pytest

from graph.model import Change
from graph.recommend import GraphRecommender, make_recommender
from graph.snapshot import FORMAT_VERSION, SnapshotError, dumps, fingerprint, header, loads
from graph.synthetic import synthetic_history

HISTORY = list(synthetic_history(700, 150, 200, seed=5))  # enough people for `heads` to be cached
CUT = 450  # the learned ranker is fitted before the cut and refitted after it


def replay(rec: GraphRecommender, changes: list[Change], k: int = 5) -> list[list[str]]:
    """What a backtest does: rank each change, then learn from it."""
    ranked = []
    for change in changes:
        ranked.append(rec.recommend(change, k))
        rec.observe(change)
    return ranked


def assert_same_state(a: GraphRecommender, b: GraphRecommender) -> None:
    ga, gb = a.og.G, b.og.G
    assert list(ga.nodes(data=True)) == list(gb.nodes(data=True))
    assert list(ga.edges(data=True)) == list(gb.edges(data=True))
    assert [list(ga._succ[n]) for n in ga] == [list(gb._succ[n]) for n in gb]
    assert {v: dict(p) for v, p in ga._pred.items()} == {v: dict(p) for v, p in gb._pred.items()}
    assert all(gb._pred[v][u] is d for u, v, d in gb.edges(data=True))  # one dict per edge, as NetworkX keeps
    assert {p: (n, [q for q, _ in r]) for p, (n, r) in a.og._heads.items()} == \
        {p: (n, [q for q, _ in r]) for p, (n, r) in b.og._heads.items()}
    assert (a.og.t0, a.og.now, a.og.changes, a.og.bots, a.og._top) == (b.og.t0, b.og.now, b.og.changes, b.og.bots,
                                                                        b.og._top)
    assert a.settings == b.settings and a.name == b.name


@pytest.fixture(scope="module", params=["graph", "default"])
def trained(request: pytest.FixtureRequest) -> GraphRecommender:
    rec = make_recommender(request.param)
    replay(rec, HISTORY[:CUT])
    return rec


def test_a_restored_recommender_ranks_the_rest_like_one_fed_everything(trained):
    original = pickle.loads(pickle.dumps(trained))  # a private copy: the fixture is shared
    restored = loads(dumps(original))
    assert_same_state(original, restored)
    assert replay(restored, HISTORY[CUT:]) == replay(original, HISTORY[CUT:])
    assert_same_state(original, restored)
    query = Change("q", HISTORY[-1].time + 3600, HISTORY[-1].author, (), HISTORY[-1].files)
    assert restored.suggest(query, 10) == original.suggest(query, 10)


def moving(changes: list[Change], every: int = 25) -> list[Change]:
    """`changes` with every `every`-th one moving its first file under `moved/` (again and again: chains), and
    the later changes touching the file where it is then."""
    where: dict[str, str] = {}
    out = []
    for i, c in enumerate(changes):
        files, renames = [where.get(f, f) for f in c.files], ()
        if i % every == every - 1 and files:
            renames = ((files[0], "moved/" + files[0]),)
            files[0] = where[c.files[0]] = "moved/" + files[0]
        out.append(replace(c, files=tuple(files), renames=renames))
    return out


@pytest.mark.parametrize("method", ["graph", "default"])
def test_a_recommender_that_followed_renames_round_trips(method):
    history = moving(HISTORY[:400])
    original = make_recommender(method)
    replay(original, history[:300])
    restored = loads(dumps(original))
    assert_same_state(original, restored)
    gone = {"/" + old for c in history[:300] for old, _ in c.renames}
    assert gone and not gone & set(restored.og.G) and any(p.startswith("/moved/moved/") for p in restored.og.G)
    assert replay(restored, history[300:]) == replay(original, history[300:])
    assert_same_state(original, restored)


def test_the_learned_state_is_restored():
    rec = make_recommender("default")
    replay(rec, HISTORY[:CUT])
    assert rec.model_ is not None
    still_open = replace(HISTORY[CUT], id="open", reviewers=())
    rec.learn(still_open, HISTORY[CUT].reviewers[0], "accepted")  # counted by the spreading before its merge
    restored = loads(dumps(rec))
    for a, b in zip(rec.training_data(), restored.training_data()):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert rec._taken and (restored._labelled, restored._trained_at, restored._reviewed, restored._suggested,
                           restored._taken) == (rec._labelled, rec._trained_at, rec._reviewed, rec._suggested,
                                                rec._taken)
    assert restored._rows.maxlen == rec._rows.maxlen
    X = rec.training_data()[0][:50]
    assert np.array_equal(restored.model_.decision_function(X), rec.model_.decision_function(X))
    replay(restored, HISTORY[CUT:])
    assert restored._trained_at > rec._trained_at  # it went on learning


def test_a_shared_prior_model_is_not_stored():
    rec = make_recommender("default")
    replay(rec, HISTORY[:50])
    rec.prior = rec.estimator  # any model shared between projects
    restored = loads(dumps(rec))
    assert restored.prior is None and rec.prior is rec.estimator


def test_the_heads_cache_points_at_the_restored_edges(trained):
    restored = loads(dumps(trained))
    succ = restored.og.G._succ
    assert restored.og._heads
    for p, (_, ranked) in restored.og._heads.items():
        assert all(edge is succ[p][person] for person, edge in ranked)


def test_an_empty_recommender_round_trips():
    for method in ("graph", "default"):
        restored = loads(dumps(make_recommender(method)))
        assert restored.og.changes == 0 and restored.recommend(HISTORY[0], 3) == []
        replay(restored, HISTORY[:20])


ODD_VALUES = [None, 0.0, -0.0, math.inf, 1.5, 7, 2**70, True, "path", ("a", "b"), {"k": 1}]


def test_attribute_values_keep_their_exact_type_and_value():
    rec = make_recommender("graph")
    for i, value in enumerate(ODD_VALUES):
        rec.og.G.add_node(f"@odd{i}", x=value)
        rec.og.G.add_node(f"@pair{i}", x=value, y=i)
    rec.og.G.add_node("@nan", x=math.nan)
    rec.og.G.add_node("@float-or-none", x=None, y=0.5)
    rec.og.G.add_node("@bare")
    restored = loads(dumps(rec)).og.G
    for node, data in rec.og.G.nodes(data=True):
        again = restored.nodes[node]
        assert list(again) == list(data)
        for key, value in data.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(again[key])
            else:
                assert again[key] == value and type(again[key]) is type(value)
            if isinstance(value, float):
                assert math.copysign(1, again[key]) == math.copysign(1, value)


def test_many_distinct_strings_and_signatures():
    rec = make_recommender("graph")
    for i in range(300):
        rec.og.G.add_node(f"@n{i}", label=f"label {i}", **{f"k{i % 270}": i})
    restored = loads(dumps(rec)).og.G
    assert list(restored.nodes(data=True)) == list(rec.og.G.nodes(data=True))


def test_the_snapshot_is_smaller_than_a_pickle(trained):
    assert len(dumps(trained)) < len(pickle.dumps(trained, protocol=5)) / 2


def test_header_names_the_format_and_the_code():
    assert header(dumps(make_recommender("graph"))) == (FORMAT_VERSION, fingerprint())
    assert fingerprint().startswith(f"v{FORMAT_VERSION}-")


def with_version(blob: bytes, version: int) -> bytes:
    return blob[:6] + struct.pack(">H", version) + blob[8:]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"not a snapshot", "bad magic"),
    (lambda b: b"", "bad magic"),
    (lambda b: with_version(b, FORMAT_VERSION + 1), "rebuild from the history"),
    (lambda b: with_version(b, 0), "format 0"),
    (lambda b: b.replace(fingerprint().encode(), b"v1-0000000000000000"), "code v1-0000000000000000"),
    (lambda b: b[:len(b) // 2], "damaged snapshot"),
    (lambda b: b[:60] + bytes(len(b) - 60), "damaged snapshot"),
])
def test_foreign_or_damaged_bytes_are_refused_with_the_fix(damage, message):
    blob = dumps(make_recommender("graph"))
    with pytest.raises(SnapshotError, match=message) as caught:
        loads(damage(blob))
    assert "rebuild from the history" in str(caught.value)


def test_only_recommenders_can_be_snapshotted():
    with pytest.raises(TypeError, match="GraphRecommender"):
        dumps(object())  # type: ignore[arg-type]
