"""The backtest convention: time order, no future, author excluded, Top-k and MRR exact."""
from graph.backtest import backtest, gini
from graph.model import Change


class Script:
    """Returns a fixed ranking per change id and records what it was shown."""

    name = "script"

    def __init__(self, rankings):
        self.rankings, self.seen = rankings, []

    def recommend(self, change, k):
        assert change.id not in self.seen, "recommend must come before observe"
        return self.rankings[change.id][:k]

    def observe(self, change):
        self.seen.append(change.id)


CHANGES = [
    Change("1", 1, "ann", ("bob",), ("a",)),
    Change("2", 2, "ann", ("cid",), ("a",)),
    Change("3", 3, "bob", ("dan",), ("a",), ackers=("eve",)),
    Change("4", 4, "bob", ("zed",), ("a",)),
]


def test_topk_and_mrr_exact():
    rec = Script({"1": ["bob"], "2": ["bob", "cid"], "3": ["ann", "x", "eve"], "4": ["bob", "ann"]})
    r = backtest(CHANGES, rec)
    assert (r.records, r.evaluated) == (4, 4)
    assert r.top(1) == 0.25 and r.top(3) == 0.75 and r.top(10) == 0.75
    assert r.mrr == (1 + 0.5 + 1 / 3 + 0) / 4
    assert rec.seen == ["1", "2", "3", "4"]


def test_author_never_proposed_unless_allowed():
    changes = [Change("1", 1, "ann", ("ann", "bob"), ("a",))]
    plain = backtest(changes, Script({"1": ["ann", "cid", "bob"]}))
    assert (plain.top(1), plain.mrr) == (0.0, 0.5)
    assert backtest(changes, Script({"1": ["ann", "cid", "bob"]}), allow_author=True).top(1) == 1.0


def test_gini_over_the_same_people():
    assert gini([]) == 0.0
    assert gini([5, 5]) == 0.0
    assert round(gini([0, 0, 0, 1]), 3) == 0.75
    turns = [Change(str(i), i, "ann", (p,), ("a",)) for i, p in enumerate(["bob", "cid", "bob", "cid"])]
    d = backtest(turns, Script({c.id: ["bob"] for c in turns})).as_dict()
    # over {bob, cid}: first places 4/0; repeat reviews 1/1 (first reviews ever are left out)
    assert (d["gini_suggested"], d["gini_actual"]) == (0.5, 0.0)
    assert set(d) >= {"records", "evaluated", "top1", "top3", "top5", "top10", "mrr", "seconds"}


def _series() -> list[Change]:
    """Five changes reviewed by `old`, then a series of three applied in one second, reviewed by `new`."""
    base = [Change(str(i), 1000 * i, "ann", ("old",), ("src/a.c",)) for i in range(5)]
    return base + [Change(f"s{i}", 10_000, "cid", ("new",), ("src/a.c",)) for i in range(3)]


class _Logged:
    """A recommender that records what it ranked, for each change."""

    def __init__(self, rec):
        self.rec, self.name, self.ranks = rec, rec.name, {}

    def recommend(self, change, k):
        self.ranks[change.id] = tuple(self.rec.recommend(change, k))
        return list(self.ranks[change.id])

    def observe(self, change):
        self.rec.observe(change)

    def learn(self, *args, **kw):
        self.rec.learn(*args, **kw)


def test_changes_in_the_same_second_are_ranked_without_each_other():
    from graph.baselines import MostFrequent

    log = _Logged(MostFrequent())
    backtest(_series(), log)
    assert "new" not in log.ranks["s1"] + log.ranks["s2"]


def test_the_truth_of_a_change_in_the_same_second_moves_no_ranking():
    from dataclasses import replace

    from graph.recommend import make_recommender

    h = _series()
    a, b = _Logged(make_recommender("default")), _Logged(make_recommender("default"))
    backtest(h, a)
    backtest([*h[:5], replace(h[5], reviewers=("zzz",)), *h[6:]], b)
    assert a.ranks == b.ranks
