"""Learning from feedback: the memory, the penalty for repeated rejections, and the simulated team."""
import json
import random
import subprocess

import numpy as np
import pytest

from bot.cli import main
from graph.features import FEATURES
from graph.feedback import FEEDBACK_FEATURES, FeedbackMemory
from graph.model import Change
from graph.ownership import DAY
from graph.recommend import RecommenderSettings, make_recommender
from graph.simulate import frequent_reviewer, simulate

D = int(DAY)


def history(n=60):
    """bob and cid share src/; bob reviews two changes in three until he leaves."""
    out = []
    for i in range(n):
        reviewer = "bob" if i % 3 else "cid"
        out.append(Change(str(i), i * D, "ann" if i % 2 else "dan", (reviewer,), (f"src/f{i % 4}.c",)))
    return out


def history_file(tmp_path, changes=None, name="h.jsonl"):
    """`changes` (by default `history()`) as a JSON Lines file, as `reviewbot simulate` reads it."""
    path = tmp_path / name
    path.write_text("\n".join(json.dumps({"id": c.id, "time": c.time, "author": c.author,
                                          "reviewers": list(c.reviewers), "files": list(c.files)})
                              for c in (history() if changes is None else changes)) + "\n")
    return path


def test_memory_streak_resets_on_a_review():
    m = FeedbackMemory()
    m.record("bob", "removed", time=0, rank=1)
    m.record("bob", "passed_over", time=1, rank=2)
    assert m.streak["bob"] == 1.5
    m.record("bob", "final_reviewer", time=2)
    assert m.streak["bob"] == 0.0
    m.record("bob", "why", time=3)
    assert m.labels == 3


def test_rejections_drop_a_person_from_the_first_place():
    rec = make_recommender("default")
    for c in history(30):
        rec.observe(c)
    query = Change("q", 31 * D, "ann", (), ("src/f1.c",))
    assert rec.recommend(query, 1) == ["bob"]
    for i in range(3):  # turned down daily: a few rejections within a day or two do not count
        rec.learn(Change(f"r{i}", 31 * D + i * D, "ann", (), ("src/f1.c",)), "bob", "removed", rank=1)
        assert rec.recommend(Change(f"q{i}", 31 * D + i * D, "ann", (), ("src/f1.c",)), 1) == ["bob"]
    rec.learn(Change("r3", 34 * D, "ann", (), ("src/f1.c",)), "bob", "removed", rank=1)
    assert rec.recommend(Change("q3", 34 * D, "ann", (), ("src/f1.c",)), 1) == ["cid"]  # three days: gone


def test_a_whole_series_turned_down_in_a_row_counts_at_once():
    """Within days a streak counts only once it is `rejection_burst` long; one review taken brings them back.
    Turned down on merge requests of several authors within the hour: `burst` occasions; passed over as a
    second choice on one author's series (`series_seconds`): one; as the first choice: half each after it."""
    rec = make_recommender("default")
    for c in history(30):
        rec.observe(c)
    burst = int(rec.settings.rejection_burst)

    def query(i: int, author: str | None = None) -> Change:
        return Change(f"s{i}", 31 * D + 60 * i, author or f"a{i}", (), ("src/f1.c",))

    for i in range(3 * burst):  # one author's series, bob second: one occasion
        rec.learn(query(i, "ann"), "bob", "removed", rank=2, time=query(i).time)
    assert rec.feedback.streak["bob"] == 0.5 and rec.recommend(query(burst), 1) == ["bob"]
    first = FeedbackMemory()
    for i in range(5):  # the first choice turned down on each MR of a series
        first.record("bob", "removed", rank=1, time=60.0 * i, author="ann")
    assert first.streak["bob"] == 3.0
    for i in range(burst - 1):  # several authors within the hour: busy, not gone (0.5 + 11 < 12)
        rec.learn(query(i), "bob", "removed", rank=1, time=query(i).time)
    assert rec.recommend(query(burst), 1) == ["bob"]
    rec.learn(query(burst), "bob", "removed", rank=1, time=query(burst).time)
    assert "bob" not in rec.recommend(query(burst + 1), 3)
    rec.learn(Change("t", 31 * D + 7200, "dan", (), ("src/f2.c",)), "bob", "assigned", time=31 * D + 7200)
    assert rec.recommend(query(burst + 2), 1) == ["bob"]


def test_a_change_only_the_leaver_would_have_reviewed_rejects_nobody_else():
    """After bob leaves, src/a has no reviewer: the team removes bob there, and nobody else."""
    changes = [Change(str(i), i * D, "ann", ("bob" if i % 2 else "cid",), (f"src/{'a' if i % 2 else 'b'}.c",))
               for i in range(40)]
    labels = []

    def make():
        rec = make_recommender("default")
        learn = rec.learn

        def spied(change, person, label, **kw):  # the real `learn`, its calls kept
            labels.append((int(change.id), person, label))
            learn(change, person, label, **kw)

        rec.learn = spied
        return rec

    simulate(changes, make, learning=True, leaver="bob", leave_at=20, k=2)
    after = [(person, label) for i, person, label in labels if i >= 20 and i % 2]
    assert after and set(after) == {("bob", "removed")}  # cid was suggested there too, and not held against it


def rotation(n=600, seed=1):
    """Four reviewers take the merge requests in turn (a team on a strict rotation); merge requests come
    every 1.4 hours on average, so a dozen or more are open at once."""
    rnd = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rnd.expovariate(1 / 5000)
        out.append(Change(str(i), int(t), f"a{rnd.randrange(3)}", (f"r{i % 4}",), (f"x/{rnd.randrange(5)}",)))
    return out


def test_learning_picks_up_a_rotation_the_merged_history_learns_too_late():
    """Whose turn it is depends on who took the last reviews: the team's labels say it at once, the merged
    history days later, when the turn has gone round many times."""
    changes = rotation()
    on = simulate(changes, lambda: make_recommender("default"), learning=True, k=3)
    off = simulate(changes, lambda: make_recommender("default"), learning=False, k=3)
    assert on.top1_hits / on.evaluated > off.top1_hits / off.evaluated + 0.3
    assert on.as_dict()["top1_over_time"][-1] >= 0.9 > 0.5 > off.as_dict()["top1_over_time"][-1]


def test_simulated_team_with_a_leaver():
    changes = history()
    assert frequent_reviewer(changes, 30) == "bob"
    on = simulate(changes, lambda: make_recommender("default"), learning=True, leaver="bob", leave_at=30, k=1)
    off = simulate(changes, lambda: make_recommender("default"), learning=False, leaver="bob", leave_at=30, k=1)
    assert on.leaver_former_changes == off.leaver_former_changes == 20
    assert on.as_dict()["leaver_changes_until_dropped"] < off.as_dict()["leaver_changes_until_dropped"]
    assert on.top1_hits > off.top1_hits
    assert [sum(t[0] for t in r.tenths) for r in (on, off)] == [on.evaluated, off.evaluated]
    assert [sum(t[1] for t in r.tenths) for r in (on, off)] == [on.top1_hits, off.top1_hits]


def test_cli_json(tmp_path, capsys):
    path = history_file(tmp_path)
    assert main(["simulate", str(path), "--json", "--jobs", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["learning"] for r in rows] == ["on", "off"]
    for r in rows:
        assert {"file", "records", "top1", "top3", "acceptance", "acceptance_last_third",
                "leaver_changes_until_dropped", "seconds", "top1_over_time", "acceptance_over_time"} <= set(r)
        assert len(r["top1_over_time"]) == len(r["acceptance_over_time"]) == 10
        assert all(x is None or 0 <= x <= 1 for x in r["top1_over_time"] + r["acceptance_over_time"])


def test_cli_table_says_the_lift_per_history(tmp_path, capsys):
    path = history_file(tmp_path)
    assert main(["simulate", str(path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "Simulated team" in out and "h.jsonl: learning lifts Top-1 by +" in out
    assert "the leaver dropped out of the top 3 after" in out


def test_cli_table_prints_a_file_name_like_rich_markup_as_written(tmp_path, capsys):
    named = tmp_path / "run[red]2.jsonl"
    named.write_text(history_file(tmp_path).read_text())
    assert main(["simulate", str(named), "--jobs", "1"]) == 0
    assert "run[red]2.jsonl: learning lifts Top-1" in capsys.readouterr().out


def test_cli_reads_a_git_checkout_with_unreviewed_commits(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    for i in range(6):
        (repo / "a.c").write_text(str(i))
        git("add", "a.c")
        trailer = "\n\nReviewed-by: Bob <bob@x.org>" if i % 2 else ""  # every other commit unreviewed
        git("-c", "user.name=Ann", "-c", "user.email=ann@x.org", "commit", "-q", "-m", f"change {i}{trailer}")
    assert main(["simulate", "--git", str(repo), "--json", "--jobs", "1", "--leaver-rank", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["learning"], r["records"], r["evaluated"]) for r in rows] == [("on", 6, 3), ("off", 6, 3)]


def test_cli_open_days(tmp_path, capsys):
    path = history_file(tmp_path)
    assert main(["simulate", str(path), "--json", "--jobs", "1", "--open-days", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["open_days"] for r in rows] == [0.0, 0.0]
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it (tests/test_cli_evaluate.py has the rest)
        main(["simulate", str(path), "--open-days", "-1"])
    assert exit_.value.code == 2 and "--open-days" in capsys.readouterr().err


def test_memory_stays_finite_over_decades():
    m = FeedbackMemory(half_life_days=60)
    m.record("bob", "accepted", time=0, author="ann")
    m.record("bob", "accepted", time=20 * 365 * D, author="ann")
    row = m.features(["bob"], author="ann", now=20 * 365 * D)[0]
    assert all(x == x and abs(x) < 1e9 for x in row)
    assert row[4] > 0.6  # the fresh review counts, the old one has faded


def test_open_reviews_count_until_the_merge():
    """Who took an open merge request counts (overall, same author, same directory, same file) until it
    merges; a removal takes it back; the merge request being ranked does not count for itself."""
    rec = make_recommender("default")
    for c in history(10):
        rec.observe(c)
    opened = Change("o1", 12 * D, "ann", ("cid",), ("src/f1.c",))
    rec.recommend(opened, 3)
    rec.learn(Change("o1", 12 * D, "ann", (), ()), "cid", "assigned", time=10 * D)  # files from the suggestion
    rec.learn(Change("o1", 12 * D, "ann", (), ()), "bob", "accepted", time=10 * D)
    rec.learn(Change("o1", 12 * D, "ann", (), ()), "bob", "removed", time=10 * D)
    cols = [FEEDBACK_FEATURES.index(f"fb_open_{k}") for k in ("reviews", "author", "dirs", "files")]
    m = rec.feedback
    same = m.features(["cid", "bob"], author="ann", now=13 * D, files=["src/f1.c"])[:, cols]
    assert np.allclose(same, [[np.log1p(0.5)] * 4, [0.0] * 4])  # 3 days after, at the 3-day half-life
    other = m.features(["cid"], author="dan", now=10 * D, files=["doc/x.md"])[:, cols]
    assert other.tolist() == [[np.log1p(1.0), 0.0, 0.0, 0.0]]
    assert not m.features(["cid"], author="ann", now=10 * D, files=["src/f1.c"], change_id="o1")[:, cols].any()
    rec.observe(opened)
    assert not m.open and not m.features(["cid"], author="ann", now=13 * D, files=["src/f1.c"])[:, cols].any()


def test_duty_boost_adds_the_open_reviews_column():
    rec = make_recommender("default", settings=RecommenderSettings(duty_boost=(1.0, 0.5, 0.0, 0.0)))
    X = np.zeros((2, len(FEATURES) + len(FEEDBACK_FEATURES)))
    first = len(FEATURES) + FEEDBACK_FEATURES.index("fb_open_reviews")
    X[0, first:first + 2] = [2.0, 1.0]
    assert rec._on_duty(X).tolist() == [2.5, 0.0]
    assert make_recommender("default")._on_duty(X).tolist() == [2.0, 0.0]


class _Logged:
    """A recommender that records what it ranked for each change."""

    def __init__(self, rec):
        self.rec, self.ranks = rec, []

    def recommend(self, change, k):
        self.ranks.append((change.id, tuple(self.rec.recommend(change, k))))
        return list(self.ranks[-1][1])

    def observe(self, change):
        self.rec.observe(change)

    def learn(self, *args, **kw):
        self.rec.learn(*args, **kw)


def test_labels_of_a_change_opened_in_the_same_second_come_after_its_siblings_are_ranked():
    from dataclasses import replace

    history = [Change(str(i), 86400 * i, "ann", ("old",), ("src/a.c",)) for i in range(1, 6)]
    history += [Change(f"s{i}", 86400 * 20, "cid", ("new",), ("src/a.c",)) for i in range(3)]
    runs = []
    for h in (history, [*history[:5], replace(history[5], reviewers=("zzz",)), *history[6:]]):
        logged = _Logged(make_recommender("default"))
        simulate(h, lambda: logged, learning=True, open_days=2.0)
        runs.append(logged.ranks)
    assert runs[0] == runs[1]


def test_a_change_only_the_leaver_would_have_reviewed_counts_as_a_miss():
    """From the half on, `bob` has left: the change only he reviewed has nobody, and counts as a miss."""
    history = [Change(str(i), 86400 * i, "ann", ("bob",), ("src/a.c",)) for i in range(1, 7)]
    history += [Change("7", 86400 * 7, "ann", ("bob",), ("src/a.c",)), Change("8", 86400 * 8, "ann", ("cy",), ("b.c",))]
    res = simulate(history, lambda: make_recommender("default"), learning=True, open_days=0.0, leaver="bob",
                   leave_at=6)
    assert (res.records, res.evaluated) == (8, 8)
    unreviewed = [*history[:7], Change("8", 86400 * 8, "ann", (), ("b.c",))]
    res = simulate(unreviewed, lambda: make_recommender("default"), learning=True, open_days=0.0)
    assert (res.records, res.evaluated) == (8, 7)  # a change nobody reviewed at all has no truth to score


def test_cli_says_when_the_leaver_never_dropped_out(tmp_path, capsys):
    """"dropped after 20 of 20" read as dropping at the last change: the leaver was still in the top 3 at their
    last one. The JSON keeps its meaning: `leaver_changes_until_dropped` is then `leaver_former_changes`."""
    from bot.cli.simulate import lift_lines

    path = history_file(tmp_path)
    assert main(["simulate", str(path), "--json", "--jobs", "1"]) == 0
    on, off = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert off["leaver_changes_until_dropped"] == off["leaver_former_changes"] == 20
    assert on["leaver_changes_until_dropped"] < 20
    assert main(["simulate", str(path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "20 of 20" not in out and "never (20)" in out
    assert f"the leaver dropped out of the top 3 after {on['leaver_changes_until_dropped']} of their 20 changes " \
           "(off: never)" in out
    stayed = {**on, "leaver_changes_until_dropped": 20}
    assert lift_lines([stayed, off])[0].endswith("; the leaver never dropped out of the top 3 (20 changes, off: never)")


def test_a_change_is_ranked_at_its_open_not_at_its_merge():
    """The bot suggests when a merge request opens, and its ranker's clock is then: ranked as at the merge
    (five days later here), bob's streak of rejections counted within hours, where it must last
    `rejection_days` (or reach `rejection_burst`) first. bob reviews until change 40, cid from then on; a
    change every six hours, by five authors in turn."""
    hours = 3600
    changes = [Change(str(i), 100 * D + i * 6 * hours, f"a{i % 5}", ("bob" if i < 40 else "cid",), ("src/a.c",))
               for i in range(50)]
    logged = _Logged(make_recommender("default"))
    clocks = []
    recommend = logged.recommend

    def ranked(change, k):
        clocks.append(change.time)
        return recommend(change, k)

    logged.recommend = ranked
    simulate(changes, lambda: logged, learning=True, k=3, open_days=5.0)
    assert clocks == [c.time - 5 * D for c in changes]
    first = dict(logged.ranks)
    assert [first[str(i)][:1] for i in range(40, 46)] == [("bob",)] * 6  # turned down for 30 hours: busy, not gone


def test_each_reviewer_is_a_final_reviewer_at_the_merge_with_learning_on():
    """The bot records a `final_reviewer` label for every reviewer of a merged merge request and learns it
    after the merge (`bot.learning.interleave`): it resets a streak of rejections that grew meanwhile. The
    replay's team gives the same labels; with learning off, none."""
    changes = [Change(str(i), i * D, "ann" if i % 2 else "dan", ("bob", "cid") if i == 3 else ("cid",),
                      ("src/a.c",)) for i in range(8)]
    for learning in (True, False):
        events = []

        class Spy(_Logged):
            def observe(self, change):
                events.append(("observe", change.id, change.time))
                super().observe(change)

            def learn(self, change, person, label, **kw):
                if label == "final_reviewer":
                    events.append((label, change.id, kw["time"], person))
                super().learn(change, person, label, **kw)

        simulate(changes, lambda: Spy(make_recommender("default")), learning=learning, open_days=2.0)
        merged = [e for c in changes for e in [("observe", c.id, c.time)] +
                  [("final_reviewer", c.id, c.time, p) for p in sorted(c.truth()) if learning]]
        assert events == merged


def test_a_tenth_without_a_reviewed_change_is_no_zero(tmp_path, capsys):
    """A project whose review moved elsewhere has late commits without reviewers: its last tenth has nothing
    to score. It read 0 in both modes, and the line under the table said "+0.0 over the last tenth"."""
    changes = history()
    late = [Change(f"late{i}", changes[-1].time + (i + 1) * D, "ann", (), ("src/f1.c",)) for i in range(40)]
    on = simulate(changes + late, lambda: make_recommender("default"), learning=True, k=1).as_dict()
    assert on["top1_over_time"][-1] is None and on["acceptance_over_time"][-1] is None
    assert on["top1_over_time"][0] is not None
    path = history_file(tmp_path, changes + late, "moved.jsonl")
    assert main(["simulate", str(path), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "over the last tenth" not in out and "the last with a reviewed change)" in out


def test_a_streak_of_rejections_is_dated_at_the_opens_that_gave_it():
    """bob reviews daily, then nobody asks him for a week and cid reviews every eight hours from then on. The
    team turns bob down at each open: the streak counts once it has lasted `rejection_days` (3) by the opens'
    clock, from the tenth change (72 hours) on. Ranked on a clock at the merges (five days later), it counted
    at once, and bob lost the first place at the sixth change, 40 hours into the streak. (The replay's merges
    of bob's changes are over first: each is a `final_reviewer` label that resets his streak.)"""
    hours = 3600
    bobs = [Change(str(i), 100 * D + i * D, f"a{i % 5}", ("bob",), ("src/a.c",)) for i in range(30)]
    start = 137 * D
    cids = [Change(str(30 + j), start + j * 8 * hours, f"a{j % 5}", ("cid",), ("src/a.c",)) for j in range(15)]
    logged = _Logged(make_recommender("default"))
    simulate(bobs + cids, lambda: logged, learning=True, k=3, open_days=5.0)
    first = dict(logged.ranks)
    assert [first[c.id][0] for c in cids] == ["bob"] * 9 + ["cid"] * 6
