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
