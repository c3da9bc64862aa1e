"""`bot.learning` with `bot.engine.Engine`: stored feedback reaches the recommender (live, after a restart, after
a snapshot, never twice), the ranker is retrained in the background after N labels and a model replaces the
active one only when it is not worse."""
from __future__ import annotations

import asyncio
import contextlib
import pickle
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from bot.config import ProjectSettings
from bot.engine import Engine
from bot.learning import Label, adopt, interleave, new_labels, replay
from bot.storage import Storage
from bot.storage.db import MODEL_LOCK, lock_project
from graph.model import Change
from graph.recommend import LearnedRecommender
from graph.synthetic import synthetic_history
from tests.bot_harness import handler_env, marker_notes  # noqa: F401 - fixture
from tests.test_retrain import Backwards

SETTINGS = ProjectSettings()
HISTORY = [c for c in synthetic_history(240, 120, 25, seed=5)]
PID = 3


async def store_history(storage: Storage) -> None:
    """HISTORY as the project's merged MRs !1, !2, ..."""
    await storage.history.upsert(PID, [Change(f"!{i + 1}", c.time, c.author, c.reviewers, c.files, ackers=c.ackers)
                                       for i, c in enumerate(HISTORY)])


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    await store_history(storage)
    yield storage
    await storage.close()


async def rejections(store: Storage, n: int, *, first_event: int = 1, mr_iid: int = 900) -> None:
    """`n` "removed" labels about `bob`, who was second in the suggestion they judge."""
    sid = await store.suggestions.add(PID, mr_iid, [{"username": "ann"}, {"username": "bob"}], "test")
    for event in range(first_event, first_event + n):
        await store.feedback.record(PID, mr_iid, "bob", "removed", suggestion_id=sid, source_event_id=event)


def test_labels_come_before_the_merge_of_their_change_and_final_reviewers_after():
    merged = Change("!4", 100, "ann", ("bob",), ("a",))
    items = interleave([merged], [Label(1, 4, "bob", "final_reviewer", 90.0, None),
                                  Label(2, 4, "cy", "removed", 500.0, 2), Label(3, 9, "dee", "accepted", 50.0, 1)])
    assert [getattr(x, "label", x.id) for x in items] == ["accepted", "removed", "!4", "final_reviewer"]


def test_retraining_runs_in_its_own_thread_below_the_suggesting_threads():
    import os
    import threading

    from bot import learning

    def where() -> tuple[str, int]:
        return threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    name, nice = learning._RETRAINING.submit(where).result()
    assert name.startswith("reviewbot-retrain")
    assert nice == min(19, os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + learning.RETRAIN_NICE)


def test_replay_learns_with_the_author_of_the_merge_and_marks_hard_negatives():
    rec = LearnedRecommender()
    merged = Change("!4", 100, "ann", ("bob",), ("a",))
    replay(rec, interleave([merged], [Label(1, 4, "cy", "removed", 500.0, 2)]), {})
    assert rec.feedback.streak["cy"] == 0.5 and rec.feedback.author_neg[("cy", "ann")] > 0
    assert not adopt(rec, Backwards())  # never fitted: no input width to trust


async def test_labels_carry_their_mr_from_storage_read_in_three_statements(store):
    """Each label's MR (author, files) is the one stored with the suggestion it judges, or the MR's latest
    suggestion when the row names none: what any process reads alike, whatever it suggested itself."""
    sid = await store.suggestions.add(PID, 900, [{"username": "ann"}, {"username": "bob"}], "t", author="eve",
                                      files=["a.c"])
    await store.suggestions.add(PID, 901, [], "t", author="old", files=["old.c"])
    await store.suggestions.add(PID, 901, [], "t", author="fay", files=["b.c"])
    await store.feedback.record(PID, 900, "bob", "accepted", suggestion_id=sid, source_event_id=1)
    await store.feedback.record(PID, 901, "cy", "approved", source_event_id=2)  # names no suggestion
    await store.feedback.record(PID, 902, "dee", "approved", source_event_id=3)  # an MR never suggested for
    await store.feedback.record(PID, 1, "ann", "final_reviewer", source_event_id=4)  # !1 is in the history
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    labels, mark = await new_labels(store, PID, 0)
    assert [(x.mr_iid, x.rank, x.author, x.files, x.merged) for x in labels] == [
        (900, 2, "eve", ("a.c",), False), (901, None, "fay", ("b.c",), False), (902, None, "", (), False),
        (1, None, "", (), True)]
    assert len(statements) == 3  # the feedback rows, the suggestions they judge, which of their MRs merged


async def test_a_thumb_is_evidence_only_about_a_suggested_person_who_gave_it(store):
    sid = await store.suggestions.add(PID, 903, [{"username": "bob"}, {"username": "cy"}], "t", author="ann",
                                      files=["a.c"])
    for event, (person, label) in enumerate([("ann", "thumbs_down"), ("bob", "thumbs_down"), ("cy", "thumbs_up"),
                                             ("zed", "thumbs_up")], start=1):
        await store.feedback.record(PID, 903, person, label, suggestion_id=sid, source_event_id=event)
    labels, mark = await new_labels(store, PID, 0)
    assert [(x.person, x.label, x.rank) for x in labels] == [("bob", "thumbs_down", 1), ("cy", "thumbs_up", 2)]
    assert mark == max(r.id for r in await store.feedback.list(PID))


async def test_stored_labels_reach_the_recommender_once_and_survive_a_restart(store):
    engine = Engine(store, retrain_labels=None)
    async with engine.use(PID, SETTINGS) as rec:
        assert rec.feedback.labels == 0
    await rejections(store, 3)
    await store.feedback.record(PID, 900, "ann", "why", source_event_id=99)  # no evidence: not learned
    await engine.learn_new(PID, SETTINGS)
    await engine.learn_new(PID, SETTINGS)
    assert rec.feedback.labels == 3 and rec.feedback.streak["bob"] == 1.5  # rank 2: each counts 1/2
    assert rec.label_mark == max(r.id for r in await store.feedback.list(PID))
    async with Engine(store, retrain_labels=None).use(PID, SETTINGS) as again:
        assert again is not rec and again.feedback.labels == 3 and again.feedback.streak == rec.feedback.streak


async def test_a_warm_start_learns_only_the_labels_stored_after_its_snapshot(store):
    writer = Engine(store, snapshot_every=100, retrain_labels=None)
    await rejections(store, 2)
    async with writer.use(PID, SETTINGS):
        pass
    await writer.close()
    assert await store.snapshots.latest(PID) is not None
    await rejections(store, 1, first_event=50, mr_iid=901)
    async with Engine(store, retrain_labels=None).use(PID, SETTINGS) as warm:
        assert warm.feedback.labels == 3


async def test_retraining_after_n_labels_stores_and_activates_a_model_unless_it_is_worse(store):
    engine = Engine(store, retrain_labels=4, holdout=60, snapshot_every=None)
    async with engine.use(PID, SETTINGS) as rec:
        rec.estimator.set_params(min_samples_leaf=20)
        rec.model_ = None  # the first new model is compared with the graph score
    await rejections(store, 3)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    assert await store.models.list(PID) == []  # 3 labels: not yet
    await rejections(store, 1, first_event=10, mr_iid=901)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    [first] = await store.models.list(PID)
    assert first.active and first.backtest_score is not None
    assert rec.model_ is not None and pickle.dumps(rec.model_, 5) == first.blob

    rec.estimator = Backwards()  # the next model ranks upside down
    await rejections(store, 4, first_event=20, mr_iid=902)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    rows = await store.models.list(PID)
    assert [r.active for r in rows] == [True, False] and rows[1].backtest_score < first.backtest_score
    assert (await store.models.active(PID)).version == first.version
    assert pickle.dumps(rec.model_, 5) == first.blob

    async with Engine(store, retrain_labels=None).use(PID, SETTINGS) as rebuilt:
        same = pickle.dumps(pickle.loads(first.blob), 5)
        assert pickle.dumps(rebuilt.model_, 5) == same  # a new process adopts the active model
        assert rebuilt.model_version == first.version  # and names it (suggestions record it)


async def test_a_project_retraining_is_not_dropped_as_idle_until_it_is_done(store):
    now = [1000.0]
    engine = Engine(store, retrain_labels=4, holdout=60, snapshot_every=None, idle_seconds=3600,
                    clock=lambda: now[0])
    async with engine.use(PID, SETTINGS) as rec:
        rec.estimator.set_params(min_samples_leaf=20)
    await rejections(store, 4)
    await engine.learn_new(PID, SETTINGS)  # starts the retraining in the background
    now[0] += 2 * 3600
    await engine.evict_idle()
    assert PID in engine
    await engine.wait_background()
    assert len(await store.models.list(PID)) == 1
    await engine.evict_idle()
    assert PID not in engine


async def test_who_was_shown_first_does_not_count_toward_retraining(store):
    engine = Engine(store, retrain_labels=4, holdout=60, snapshot_every=None)
    async with engine.use(PID, SETTINGS) as rec:
        rec.model_ = None
    sid = await store.suggestions.add(PID, 900, [{"username": "ann"}, {"username": "bob"}], "test")
    for event in range(1, 6):
        await store.feedback.record(PID, 900, "ann", "suggested", suggestion_id=sid, source_event_id=event)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    assert await store.models.list(PID) == [] and rec.label_mark == max(r.id for r in await store.feedback.list(PID))
    assert rec._first == {"!900": ("ann", rec._first["!900"][1])} and rec.feedback.labels == 0


async def test_retraining_on_a_schedule_when_labels_came_in(store):
    now = [1000.0]
    engine = Engine(store, retrain_labels=None, retrain_seconds=3600, holdout=60, snapshot_every=None,
                    clock=lambda: now[0])

    async def an_hour_later(labels: int) -> int:
        now[0] += 3600
        await rejections(store, labels, first_event=int(now[0]), mr_iid=int(now[0]))
        await engine.learn_new(PID, SETTINGS)
        await engine.wait_background()
        return len(await store.models.list(PID))

    async with engine.use(PID, SETTINGS) as rec:
        rec.estimator.set_params(min_samples_leaf=20)
    await rejections(store, 1)
    await engine.learn_new(PID, SETTINGS)
    await engine.wait_background()
    assert await store.models.list(PID) == []  # a label, but the hour since the project was loaded is not over
    assert await an_hour_later(0) == 1  # the hour is over and a label came in during it
    assert await an_hour_later(0) == 1  # no label since the last retraining: nothing to learn
    assert await an_hour_later(1) == 1  # a label, but no merge since: the same training data, not fitted again


async def test_a_scheduled_retraining_comes_without_another_event(store):
    """The schedule was only checked when the project was next used: a quiet project never retrained. The
    dispatch's timer calls `retrain_due`."""
    now = [1000.0]
    engine = Engine(store, retrain_labels=None, retrain_seconds=3600, holdout=60, snapshot_every=None,
                    clock=lambda: now[0])
    async with engine.use(PID, SETTINGS) as rec:
        rec.estimator.set_params(min_samples_leaf=20)
    await rejections(store, 1)
    await engine.learn_new(PID, SETTINGS)
    engine.retrain_due()
    await engine.wait_background()
    assert await store.models.list(PID) == []  # not due yet
    now[0] += 3600  # an hour of quiet: no event, no label, no suggestion
    engine.retrain_due()
    await engine.wait_background()
    assert len(await store.models.list(PID)) == 1


async def test_the_schedule_counts_from_the_stored_models_time_not_from_a_restart(store):
    """A platform restarting its processes daily (Heroku) restarted the schedule with them: with
    `retrain_hours = 24` a scheduled retraining never came. A new process counts from the active model."""
    from datetime import timedelta

    import sqlalchemy as sa

    from bot.storage.tables import models

    await store.models.save(PID, "v-old", b"x", backtest_score=0.5)
    async with store.engine.begin() as conn:
        day_ago = (await store.models.active(PID)).created_at - timedelta(hours=25)
        await conn.execute(sa.update(models).where(models.c.version == "v-old").values(created_at=day_ago))
    now = [1000.0]
    engine = Engine(store, retrain_labels=None, retrain_seconds=24 * 3600, holdout=60, snapshot_every=None,
                    clock=lambda: now[0])
    async with engine.use(PID, SETTINGS) as rec:
        rec.estimator.set_params(min_samples_leaf=20)
    await rejections(store, 1)
    await engine.learn_new(PID, SETTINGS)  # the process has just started; a label came in
    await engine.wait_background()
    assert len(await store.models.list(PID)) == 2  # due at once: the last model is a day old


# --- through the real handlers -------------------------------------------------------------------------------
async def test_reviewer_changes_and_commands_reach_the_engines_recommender(handler_env):
    env = await handler_env()
    engine = env.dispatch.args[0].engine
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/engine.py"])
    await env.run()
    assert marker_notes(env.state, mr)
    shown = (await env.storage.suggestions.latest(env.pid, mr.iid)).people
    env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)  # someone else: the suggested are passed over
    env.state.add_note(mr, env.tiny.cy, "/reviewers help")
    await env.run()
    rows = await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
    assert {r.label for r in rows} >= {"passed_over", "command"}
    async with engine.use(env.pid, env.settings.project_settings(env.pid, None)) as rec:
        assert rec.label_mark == max(r.id for r in rows)
        passed = {r.person for r in rows if r.label == "passed_over"}
        assert passed and all(rec.feedback.streak.get(p, 0) > 0 for p in passed)
        first = shown[0]["username"]
        if first in passed:
            assert rec.feedback.streak[first] == 1.0  # rank 1: a full rejection
        assert f"!{mr.iid}" in rec._rejected  # hard negatives when it merges


async def test_who_the_comment_puts_first_reaches_every_process_once_per_mr(handler_env):
    """The bot ranks with `suggest` (several calls per MR); the load spreading counts first places through the
    stored `suggested` row, so a process that never suggested for the MR counts it too, and a second
    suggestion on the same MR replaces the first instead of adding one."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/engine.py"])
    await env.run()
    first = (await env.storage.suggestions.latest(env.pid, mr.iid)).people[0]["username"]
    env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude @{first}")
    await env.run()
    second = (await env.storage.suggestions.latest(env.pid, mr.iid)).people[0]["username"]
    rows = [(r.person, r.label) for r in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
            if r.label == "suggested"]
    assert rows == [(first, "suggested"), (second, "suggested")] and second != first
    async with Engine(env.storage, retrain_labels=None).use(env.pid, SETTINGS) as other:
        assert dict(other._first) == {f"!{mr.iid}": (second, other._first[f"!{mr.iid}"][1])}
        assert abs(other._suggested.get(first, 0.0)) < 1e-12 < other._suggested[second]


async def test_a_stored_prior_ranks_a_project_without_a_model_of_its_own(sqlite_url):
    from bot.learning import PRIOR_PROJECT
    from tests.test_retrain import trained

    storage = Storage(sqlite_url)
    try:
        prior = trained().model_
        await storage.models.save(PRIOR_PROJECT, "prior-test", pickle.dumps(prior, 5))
        await storage.history.upsert(7, [Change("!1", 100, "ann", ("bob",), ("src/a.py",))])
        engine = Engine(storage, prior=True)
        async with engine.use(7, SETTINGS):
            pass
        await engine.wait_background()
        async with engine.use(7, SETTINGS) as rec:
            assert rec.model_ is None and rec.prior is not None and rec.ranking_model is rec.prior
            assert [s.person for s in rec.suggest(Change("!2", 200, "cy", (), ("src/a.py",)), 2)] == ["bob", "ann"]
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_a_label_whose_write_commits_late_is_not_passed_over(postgres_url):
    """Another worker's row took the lower id but commits after a higher one: a reader waits for it, so the
    watermark it returns never passes a row still to commit."""
    from bot.storage.db import FEEDBACK_LOCK
    from bot.storage.tables import feedback

    storage = Storage(postgres_url)
    try:
        async with storage.engine.connect() as slow:  # a `record` in flight: locked, inserted, not committed
            tx = await slow.begin()
            await lock_project(slow, FEEDBACK_LOCK, PID)
            await slow.execute(sa.insert(feedback).values(project_id=PID, mr_iid=1, person="ann", label="accepted",
                                                          created_at=storage.feedback.clock(), source_event_id=1))
            other = asyncio.create_task(storage.feedback.record(PID, 2, "bob", "accepted", source_event_id=2))
            read = asyncio.create_task(new_labels(storage, PID, 0))
            await asyncio.sleep(0.3)
            assert not read.done() and not other.done()
            await tx.commit()
        await other
        labels, mark = await read
        later, _ = await new_labels(storage, PID, mark)
        assert sorted(x.person for x in [*labels, *later]) == ["ann", "bob"]
    finally:
        await storage.close()


class GraphScore(Backwards):
    """A model that ranks by the graph score (better than `Backwards`)."""

    def decision_function(self, X, groups=None):
        return -super().decision_function(X, groups)


async def test_a_process_compares_its_model_with_the_one_another_process_activated(sqlite_url):
    """Two processes share v1; B stores and activates a better model; A's candidate, better than v1 but worse
    than B's, is compared with B's (adopted from storage first) and stays inactive."""
    from bot.learning import retrain_and_store
    from tests.test_retrain import trained

    storage = Storage(sqlite_url)
    try:
        rec_a, rec_b = trained(), trained()
        v1 = Backwards().fit(*rec_a.training_data()[:2])
        await storage.models.save(PID, "v1", pickle.dumps(v1, 5), backtest_score=0.1)
        for rec in (rec_a, rec_b):
            rec.model_, rec.model_version = v1, "v1"
        rec_b.estimator = GraphScore()
        seen = SimpleNamespace(count=260, last_time=None, boundary=())
        good = await retrain_and_store(storage, PID, rec_b, asyncio.Lock(), holdout=60, history=seen)
        assert good.better_or_equal and rec_b.model_version != "v1"
        rec_a.estimator.set_params(min_samples_leaf=20)
        worse = await retrain_and_store(storage, PID, rec_a, asyncio.Lock(), holdout=60, history=seen)
        assert worse.score < good.score and not worse.better_or_equal
        active = await storage.models.active(PID)
        assert active.version == rec_b.model_version == rec_a.model_version  # A ranks with B's model now
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_two_processes_activating_at_once_leave_one_active_model(postgres_url):
    storage = Storage(postgres_url)
    try:
        await storage.models.save(PID, "v0", b"0")
        held, other = asyncio.Event(), asyncio.Event()

        async def slow_save() -> None:  # process A: locked, deactivated v0, inserted vA; commits later
            async with storage.engine.begin() as conn:
                await lock_project(conn, MODEL_LOCK, PID)
                await storage.models._insert(conn, PID, "vA", b"a", None, True)
                held.set()
                await other.wait()

        a = asyncio.create_task(slow_save())
        await held.wait()
        b = asyncio.create_task(storage.models.save(PID, "vB", b"b"))  # process B
        await asyncio.sleep(0.3)
        assert not b.done()  # waits for A's lock
        other.set()
        await asyncio.gather(a, b)
        assert [r.version for r in await storage.models.list(PID) if r.active] == ["vB"]
    finally:
        await storage.close()


async def test_a_process_ranks_with_the_model_another_process_activated_since(sqlite_url):
    """Every process learns every label, so their retrainings start together; the one whose model lost (or
    was fitted before the other's was stored) kept ranking with its own until its next retraining."""
    storage = Storage(sqlite_url)
    try:
        await store_history(storage)
        now = [1000.0]
        engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
        async with engine.use(PID, SETTINGS) as rec:
            mine = rec.model_version
        theirs = Backwards().fit(*rec.training_data()[:2])
        await storage.models.save(PID, "theirs", pickle.dumps(theirs, 5), backtest_score=0.9)
        now[0] += 60  # the next look at the history
        async with engine.use(PID, SETTINGS) as rec:
            assert (mine, rec.model_version) != ("theirs", "theirs") and rec.model_version == "theirs"
            assert isinstance(rec.model_, Backwards)
    finally:
        await storage.close()


@pytest.mark.postgres
async def test_two_engines_reaching_the_label_threshold_together_rank_with_one_model(postgres_url):
    """Both fit the same window; the one whose insert lost (IntegrityError) ranked with no model at all."""
    storage = Storage(postgres_url)
    try:
        await store_history(storage)
        engines = [Engine(storage, retrain_labels=4, holdout=60, snapshot_every=None) for _ in range(2)]
        recs = []
        for engine in engines:
            async with engine.use(PID, SETTINGS) as rec:
                rec.model_ = None
                recs.append(rec)
        await rejections(storage, 4)
        await asyncio.gather(*(e.learn_new(PID, SETTINGS) for e in engines))
        await asyncio.gather(*(e.wait_background() for e in engines))
        active = await storage.models.active(PID)
        assert [r.model_version for r in recs] == [active.version] * 2 and all(r.model_ is not None for r in recs)
    finally:
        await storage.close()


async def test_a_timed_out_event_lets_go_of_the_recommender_only_when_its_thread_is_done(sqlite_url, monkeypatch):
    """A dispatch timeout during a catch-up: the replay thread cannot be stopped, so the event waits for it
    (holding the project's lock) and records what it observed; the next event neither runs beside it nor
    observes the same rows again."""
    import threading
    import time

    storage = Storage(sqlite_url)
    try:
        await storage.history.upsert(PID, [Change(f"!{i + 1}", c.time, c.author, c.reviewers, c.files)
                                           for i, c in enumerate(HISTORY[:200])])
        now = [1000.0]
        engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
        async with engine.use(PID, SETTINGS):
            pass
        observed, running, overlap, guard = [], [0], [0], threading.Lock()

        def slow_replay(rec, items, authors):
            items = list(items)
            with guard:
                running[0] += 1
                overlap[0] = max(overlap[0], running[0])
            time.sleep(0.5)
            observed.extend(c.id for c in items if isinstance(c, Change))
            with guard:
                running[0] -= 1
            return replay(rec, items, authors)

        monkeypatch.setattr("bot.learning.replay", slow_replay)
        last = HISTORY[199]
        await storage.history.upsert(PID, [Change("!1000", last.time + 60, "ann", ("bob",), ("x.c",))])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(engine.learn_new(PID, SETTINGS), 0.1)
        now[0] += 5
        await storage.history.upsert(PID, [Change("!1001", last.time + 120, "ann", ("bob",), ("y.c",))])
        await engine.learn_new(PID, SETTINGS)
        assert overlap[0] == 1 and observed.count("!1000") == 1 and observed.count("!1001") == 1
        assert engine.changes_seen(PID) == 202
    finally:
        await storage.close()


async def test_a_history_fitted_once_is_not_fitted_and_stored_again(sqlite_url):
    """Every process counts the labels it replays and retrains on the same history: one stored model per
    history (and estimator), whichever process fits it first, even when their windows differ; a merge changes
    the history."""
    from bot.learning import model_version, retrain_and_store
    from tests.test_retrain import trained

    storage = Storage(sqlite_url)
    try:
        first, second = trained(), trained(250)  # windows of their own (here: of another length)
        seen = SimpleNamespace(count=300, last_time=1_700_000_000, boundary={7, 3})
        same = SimpleNamespace(count=300, last_time=1_700_000_000, boundary=[3, 7])
        assert model_version(first, seen) == model_version(second, same)
        assert await retrain_and_store(storage, PID, first, asyncio.Lock(), holdout=60, history=seen) is not None
        assert await retrain_and_store(storage, PID, second, asyncio.Lock(), holdout=60, history=seen) is None
        assert await retrain_and_store(storage, PID, first, asyncio.Lock(), holdout=60, history=seen) is None
        assert len(await storage.models.list(PID)) == 1 and second.model_version == first.model_version
        second.estimator.set_params(min_samples_leaf=20)  # another estimator: another model
        assert await retrain_and_store(storage, PID, second, asyncio.Lock(), holdout=60, history=seen) is not None
        merged = SimpleNamespace(count=301, last_time=1_700_000_060, boundary={8})
        assert await retrain_and_store(storage, PID, first, asyncio.Lock(), holdout=60, history=merged) is not None
        assert len(await storage.models.list(PID)) == 3
    finally:
        await storage.close()


async def test_processes_that_suggested_for_other_mrs_fit_one_model_per_history(database_url):
    """Measured on PostgreSQL with 3 processes: three models stored at the same 315 changes, one per process. A
    change's training rows are its candidates as ranked when the process last suggested for it, or at its
    merge on a process that did not: the same history and labels gave each process a window, and a version,
    of its own."""
    storage = Storage(database_url)
    try:
        await storage.history.upsert(PID, [Change(f"!{i + 1}", c.time, c.author, c.reviewers, c.files, ackers=c.ackers)
                                           for i, c in enumerate(HISTORY[:200])])
        engines = [Engine(storage, retrain_labels=4, holdout=60, snapshot_every=None, refresh_seconds=0)
                   for _ in range(2)]
        for engine in engines:
            async with engine.use(PID, SETTINGS):
                pass
        for iid, c in enumerate(HISTORY[200:], start=201):  # the first process handles these MRs' events
            async with engines[0].use(PID, SETTINGS) as rec:
                rec.suggest(Change(f"!{iid}", c.time - 3600, c.author, (), c.files), 3)
            await storage.history.upsert(PID, [Change(f"!{iid}", c.time, c.author, c.reviewers, c.files,
                                                      ackers=c.ackers)])
        await rejections(storage, 4)
        for engine in engines:
            await engine.learn_new(PID, SETTINGS)
            await engine.wait_background()
        [model] = await storage.models.list(PID)
        assert model.version.startswith(f"{len(HISTORY)}c-")
        for engine in engines:
            async with engine.use(PID, SETTINGS) as rec:
                assert rec.model_version == model.version
    finally:
        await storage.close()


def test_an_adopted_model_is_not_replaced_by_the_recommenders_own_refit():
    """The recommender refits itself when the history grows 1.5x; in the bot that swapped the adopted,
    held-out-checked model for an unchecked one. After `adopt` only `retrain_and_store` replaces it."""
    from graph.synthetic import synthetic_history
    from tests.test_retrain import trained

    history = list(synthetic_history(700, 120, 25, seed=5))
    rec, free = trained(), trained()
    adopted = Backwards().fit(*rec.training_data()[:2])
    assert adopt(rec, adopted)
    for change in history[260:]:  # 260 -> 700 changes: past 1.5x
        rec.observe(change)
        free.observe(change)
    assert rec.model_ is adopted
    assert free.model_ is not None and free._trained_at > 260  # without adopt it refits, as in the replays


async def test_an_active_model_that_cannot_be_adopted_is_read_once(sqlite_url, monkeypatch):
    """Another code version's model (another input width, a rolling deploy) was unpickled at every look."""
    from bot import learning

    storage = Storage(sqlite_url)
    try:
        await store_history(storage)
        now = [1000.0]
        engine = Engine(storage, retrain_labels=None, snapshot_every=None, clock=lambda: now[0])
        async with engine.use(PID, SETTINGS):
            pass
        await storage.models.save(PID, "other-width", pickle.dumps(Backwards(), 5), backtest_score=0.9)
        reads = []
        real = learning.stored_model
        monkeypatch.setattr(learning, "stored_model", lambda *a: reads.append(1) or real(*a))
        for _ in range(3):
            now[0] += 60
            async with engine.use(PID, SETTINGS) as rec:
                assert rec.model_version != "other-width"
        assert len(reads) == 1
    finally:
        await storage.close()


async def test_someone_who_left_drops_from_first_place_where_the_team_reviews_without_the_reviewers_field(
        handler_env):
    """`assign` off and GitLab's reviewers left empty: bob, first on src/core, has left; dee approves and
    merges each MR. Each merge turns down the suggested people who did nothing (`passed_over`), so bob's
    rejection streak grows and he leaves the first place; the team's choice was never recorded as turning
    anyone down, and he stayed first for good."""
    env = await handler_env()
    firsts = []
    for i in range(10):
        mr = env.state.open_mr(env.tiny.project, env.tiny.ann, [f"src/core/m{i % 4}.py"])
        await env.run()
        firsts.append((await env.storage.suggestions.latest(env.pid, mr.iid)).people[0]["username"])
        env.state.approve(mr, env.tiny.dee)
        env.state.merge_mr(mr, by=env.tiny.dee)
        await env.run()
    assert firsts[0] == "bob" and firsts[-1] != "bob"
    rows = await env.storage.feedback.list(env.pid)
    assert sum(r.person == "bob" and r.label == "passed_over" for r in rows) == len(firsts)  # once per MR


@contextlib.asynccontextmanager
async def tiny_bot(simulator, sqlite_url: str, gitlab_client, **learning):
    """The tiny project (12 merged MRs) imported into SQLite, and the real dispatch with these `[learning]`
    settings: yields (simulator state, project, storage, dispatch, settings)."""
    from bot.config import Settings
    from tests.bot_harness import SECRET, dispatching, imported_tiny

    state, url = simulator
    async with contextlib.AsyncExitStack() as stack:
        tiny, storage = await imported_tiny(state, gitlab_client, sqlite_url, stack)
        settings = Settings(gitlab={"url": url, "token": state.token}, webhook_secrets=[{"secret": SECRET}],
                            database={"url": sqlite_url}, learning=learning)
        async with dispatching(settings, storage) as dispatch:
            yield state, tiny, storage, dispatch, settings


async def test_a_project_with_too_little_history_is_not_retrained_into_a_model(simulator, sqlite_url,
                                                                               gitlab_client):
    """Under 150 merged MRs a project is ranked by the graph score (or the prior): the recommender's own refit
    waits for them, and so must the retraining that labels trigger, else a model fitted on a dozen changes and
    compared on four replaces the graph score (or the prior) for good."""
    from tests.bot_harness import dispatch_outbox

    async with tiny_bot(simulator, sqlite_url, gitlab_client, retrain_labels=2) as (state, tiny, storage,
                                                                                    dispatch, settings):
        engine = dispatch.args[0].engine
        for i in range(3):
            mr = state.open_mr(tiny.project, tiny.ann, [f"src/core/m{i}.py"])
            await dispatch_outbox(state, dispatch)
            state.set_reviewers(mr, [tiny.cy], by=tiny.ann)
            state.approve(mr, tiny.cy)
            await dispatch_outbox(state, dispatch)
        await engine.wait_background()
        taken = ("approved", "assigned", "accepted")
        labels = [r for r in await storage.feedback.list(tiny.project.id) if r.label in taken]
        assert len(labels) >= 2  # the retraining threshold was reached
        assert await storage.models.list(tiny.project.id) == []
        async with engine.use(tiny.project.id, settings.project_settings(tiny.project.id, None)) as rec:
            assert rec.ranking_model is None  # the graph score ranks


async def test_a_project_ranked_by_the_prior_says_so_in_its_suggestions_and_on_the_dashboard(simulator, sqlite_url,
                                                                                              gitlab_client):
    """With `prior = true` a new project is ranked by the prior, yet its suggestions were stored as the graph's
    (`default@12`) and the dashboard called it "history-trained (no stored model)"."""
    from datetime import datetime, timezone

    from bot.dashboard import load_stats
    from bot.learning import PRIOR_PROJECT
    from tests.bot_harness import dispatch_outbox
    from tests.test_retrain import trained

    async with tiny_bot(simulator, sqlite_url, gitlab_client, prior=True) as (state, tiny, storage, dispatch, _):
        await storage.models.save(PRIOR_PROJECT, "prior-test", pickle.dumps(trained().model_, 5))
        engine = dispatch.args[0].engine
        state.open_mr(tiny.project, tiny.ann, ["src/core/m0.py"])
        await dispatch_outbox(state, dispatch)
        await engine.wait_background()  # the prior is read in the background at the first build
        mr = state.open_mr(tiny.project, tiny.ann, ["src/core/m1.py"])
        await dispatch_outbox(state, dispatch)
        shown = await storage.suggestions.latest(tiny.project.id, mr.iid)
        assert shown.model_version.endswith("/prior"), shown.model_version
        project = await storage.projects.get(tiny.project.id)
        stats = await load_stats(storage, project, now=datetime.now(timezone.utc))
        assert "prior" in stats.model_label and "no stored model" not in stats.model_label
