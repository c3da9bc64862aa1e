"""`bot.handlers.make_dispatch`: wiring, error translation for the worker, metrics, project settings."""
from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

import pytest
from pydantic import SecretStr

from bot.config import ConfigError, Settings, WebhookSecret
from bot.gitlab.errors import GitLabError
from bot.handlers import make_dispatch
from bot.handlers.context import AwaitingHistory, GitLabFailure, PermanentFailure, RetryLater
from bot.metrics import Metrics
from bot.worker import retry_delay
from tests.bot_harness import (SECRET, bot_notes, dispatch_outbox, event_row, handler_env,  # noqa: F401 - fixture
                               marker_notes)
from tests.gitlab_fixtures import FAST_RETRY

FILES = ["src/core/m1.py"]


async def test_a_token_is_required(sqlite_url):
    from bot.storage import Storage

    storage = Storage(sqlite_url)
    try:
        with pytest.raises(ConfigError, match="GITLAB_TOKEN is not set"):
            async with make_dispatch(Settings(), storage, Metrics()):
                pass
    finally:
        await storage.close()


async def test_failed_calls_are_counted_and_rate_limits_carry_retry_after(handler_env, sqlite_url):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    metrics = Metrics()
    async with make_dispatch(env.settings, env.storage, metrics, retry=FAST_RETRY) as dispatch:
        env.state.fail_next(4, 429, retry_after=0)
        with pytest.raises(GitLabFailure) as failure:
            await dispatch(event_row(opened.event_name, opened.body))
    assert failure.value.status == 429 and failure.value.retry_after is not None and not failure.value.permanent
    assert retry_delay(failure.value, 1, 10, 3600) == failure.value.retry_after
    assert metrics.gitlab_api_errors.labels(status="429")._value.get() == 4
    assert marker_notes(env.state, mr) == []


async def test_a_rate_limited_event_waits_as_long_as_gitlabs_last_answer_asked(handler_env):
    """The client sleeps at most `max_retry_after` between its own tries; the event then waits what the last
    429 asked (here 90 s), not the client's cap."""
    env = await handler_env()
    env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    env.state.fail_next(FAST_RETRY.max_attempts - 1, 429, retry_after=0)
    env.state.fail_next(1, 429, retry_after=90)
    with pytest.raises(GitLabFailure) as failure:
        await env.dispatch(event_row(opened.event_name, opened.body))
    assert failure.value.retry_after == 90 and failure.value.outage


async def test_a_token_gitlab_refuses_holds_events_like_an_outage(handler_env):
    """GitLab tokens expire: with 401 on every call each event was dead after `max_attempts` (~5 minutes at
    the defaults), and each had to be requeued by hand once the token was renewed."""
    env = await handler_env()
    env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    env.state.fail_next(FAST_RETRY.max_attempts, 401)
    with pytest.raises(GitLabFailure) as failure:
        await env.dispatch(event_row(opened.event_name, opened.body))
    assert failure.value.status == 401 and failure.value.outage and not failure.value.permanent
    assert "GITLAB_TOKEN is wrong or expired" in str(failure.value)


async def test_a_token_without_the_api_scope_holds_events_like_an_outage(handler_env):
    """A read_api token reads but cannot comment (403 insufficient_scope): each event was retried until
    dead-lettered. It waits like a refused token, for one with the api scope."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    env.state.tokens[env.state.token].scopes = ("read_api",)
    with pytest.raises(GitLabFailure) as failure:
        await env.dispatch(event_row(opened.event_name, opened.body))
    assert failure.value.status == 403 and failure.value.outage and not failure.value.permanent
    assert "GITLAB_TOKEN lacks the api scope" in str(failure.value) and marker_notes(env.state, mr) == []


async def test_an_mr_on_a_gitlab_before_15_7_gets_its_suggestion(handler_env):
    """GitLab before 15.7 answers .../diffs with its catch-all 404 `{"error":"404 Not Found"}`: every MR event
    was dead-lettered at once, telling to check the project id. The files come from /changes."""
    env = await handler_env()
    env.state.version = (15, 6)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "`@bob`" in comment.body and env.state.calls("GET", f"/merge_requests/{mr.iid}/changes")


async def test_events_without_a_project_are_ignored(handler_env):
    env = await handler_env()
    calls = len(env.state.requests)
    await env.dispatch(event_row("Note Hook", {"object_kind": "note", "object_attributes": {}}))
    assert len(env.state.requests) == calls


async def test_invalid_project_overrides_are_permanent(handler_env):
    env = await handler_env()
    await env.storage.projects.set_overrides(env.pid, {"top_k": 0})
    env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    with pytest.raises(PermanentFailure, match="top_k"):
        await env.send(opened)
    env.state.outbox.clear()


@pytest.mark.parametrize("field, value, said", [
    ("object_attributes.id", None, "object_attributes.id is None, not an id"),
    ("merge_request.iid", "abc", "merge_request.iid is 'abc', not an id"),
    ("user", "root", "user is not an object with a username and an id"),
])
async def test_a_payload_field_of_the_wrong_type_is_dead_lettered_at_once(handler_env, field, value, said):
    """Retried, it held up the merge request's later events for minutes (a TypeError each time)."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.add_note(mr, env.tiny.cy, "/reviewers help")
    [note] = env.state.outbox[:]
    env.state.outbox.clear()
    where, _, name = field.partition(".")
    if name:
        note.body[where][name] = value
    else:
        note.body[where] = value
    calls = len(env.state.requests)
    with pytest.raises(PermanentFailure, match=f"Note Hook payload not as GitLab sends it: {said}"):
        await env.send(note)
    assert len(env.state.requests) == calls


async def test_project_overrides_from_the_database_apply(handler_env):
    env = await handler_env()
    await env.storage.projects.set_overrides(env.pid, {"top_k": 1})
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    latest = await env.storage.suggestions.latest(env.pid, mr.iid)
    assert [p["username"] for p in latest.people] == ["bob"]


async def test_a_comment_another_event_is_posting_is_retried_later(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    assert await env.storage.comments.reserve(env.pid, mr.iid, "event:someone-else")
    with pytest.raises(RetryLater) as later:
        await env.send(opened)
    assert later.value.retry_after and not later.value.permanent and marker_notes(env.state, mr) == []


def group_scoped(env, *more: WebhookSecret) -> Settings:
    """The settings with their webhook secret scoped to the test project's group, and `more` secrets."""
    group = env.tiny.project.path_with_namespace.split("/")[0]
    return env.settings.model_copy(update={"webhook_secrets": [
        env.settings.webhook_secrets[0].model_copy(update={"group": group}), *more]})


async def test_a_scoped_secret_cannot_act_on_a_project_outside_its_scope(handler_env):
    """The payload's path is checked on receipt; its project id is checked here, against GitLab's answer."""
    env = await handler_env(assign="top1")
    scoped = group_scoped(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    forged = {**opened.body, "project": {**opened.body["project"], "path_with_namespace": "team/anything"}}
    async with make_dispatch(scoped, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        with pytest.raises(PermanentFailure, match="'team/anything' but GitLab's project"):
            await dispatch(event_row(opened.event_name, forged))
        assert marker_notes(env.state, mr) == [] and not mr.reviewer_ids
        await dispatch(event_row(opened.event_name, opened.body))  # the true path: handled
    assert len(marker_notes(env.state, mr)) == 1
    assert (await env.storage.projects.get(env.pid)).path == env.tiny.project.path_with_namespace


@pytest.mark.parametrize("when", ["renamed after the event", "renamed before it, the old path cached"])
async def test_a_project_renamed_within_the_secrets_group_goes_on(handler_env, when):
    """A rename (or a move to a subgroup) keeps the project in the group its secret covers: its events are
    no attack. Refused, a late event or one met with the 30-second cached answer was dead-lettered."""
    env = await handler_env()
    scoped, group = group_scoped(env), env.tiny.project.path_with_namespace.split("/")[0]
    first = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [early] = env.state.outbox[:]
    env.state.outbox.clear()
    async with make_dispatch(scoped, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        if when == "renamed after the event":
            env.tiny.project.path_with_namespace = f"{group}/sub/renamed-app"
            await dispatch(event_row(early.event_name, early.body))
            assert len(marker_notes(env.state, first)) == 1
        else:
            await dispatch(event_row(early.event_name, early.body))  # GitLab's answer cached for 30 s
            env.tiny.project.path_with_namespace = f"{group}/renamed-app"
            later = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
            opened = next(e for e in env.state.outbox if e.body["object_attributes"].get("iid") == later.iid)
            await dispatch(event_row(opened.event_name, opened.body))
            assert len(marker_notes(env.state, later)) == 1


async def test_a_project_moved_to_a_group_another_secret_covers_goes_on(handler_env):
    """Moved from group A (its secret) to group B (another secret): the event signed with B's secret names
    the new path; GitLab's answer cached from before the move named A's, which B's secret does not cover."""
    env = await handler_env()
    scoped = group_scoped(env, env.settings.webhook_secrets[0].model_copy(
        update={"group": "elsewhere", "secret": SecretStr("another-secret-0123456789")}))
    first = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [early] = env.state.outbox[:]
    async with make_dispatch(scoped, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        await dispatch(event_row(early.event_name, early.body))  # GitLab's answer cached for 30 s
        assert len(marker_notes(env.state, first)) == 1
        env.tiny.project.path_with_namespace = "elsewhere/widgets"
        later = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
        opened = next(e for e in env.state.outbox if e.body["object_attributes"].get("iid") == later.iid)
        await dispatch(event_row(opened.event_name, opened.body))
        assert len(marker_notes(env.state, later)) == 1


async def test_a_new_projects_event_waits_once_for_its_history_then_goes_on(handler_env):
    """The first event of a project the bot has not seen is parked for its history import (`AwaitingHistory`:
    no failure; its wait bounded, woken by the import). Back from that wait, in this process or another one (the
    reason is on the row: a restart does not make it wait again), it goes on with the history there is."""
    env = await handler_env()
    project = env.state.add_project("acme/new")
    for person in (env.tiny.ann, env.tiny.bob):
        env.state.add_member(project, person)
    for i in range(3):
        env.state.add_merged_mr(project, env.tiny.ann, FILES, reviewers=[env.tiny.bob], approvers=[env.tiny.bob],
                                merged_at=env.state.now() - timedelta(days=10 - i))
    env.state.add_hook(project, "http://127.0.0.1:9/not-delivered", token=SECRET)
    gate = env.state.hold_path(f"/projects/{project.id}/merge_requests", state="merged")
    mr = env.state.open_mr(project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    slow = dataclasses.replace(FAST_RETRY, timeout=120.0)
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=slow, backfill_wait=600.0) as dispatch:
        row = event_row(opened.event_name, opened.body)
        with pytest.raises(AwaitingHistory) as parked:
            await dispatch(row)
        assert 0 < parked.value.park <= 600 and not parked.value.wakes.done()
        await dispatch(dataclasses.replace(row, last_error=str(parked.value)))
        assert len(marker_notes(env.state, mr)) == 1 and not parked.value.wakes.done()  # the import still blocked
        gate.set()
        await parked.value.wakes
    assert await env.storage.history.count(project.id) == 3


def listed_history(state, project_id: int) -> int:
    """How often the project's merged MRs were listed (the pages of its history imports)."""
    return sum(r.path.endswith("/merge_requests") and r.query.get("state") == "merged"
               for r in state.calls("GET", f"/projects/{project_id}/merge_requests"))


async def test_events_go_on_unparked_while_a_failed_history_import_waits_to_start_again(handler_env):
    """GitLab failing a new project's history listing: the first event is parked, woken by the failed import,
    and goes on with the history there is. The next events, within the import's delay before it starts again,
    are handled at once (not parked: no import runs to wake them), and start no import."""
    env = await handler_env()
    project = env.state.add_project("acme/down")
    for person in (env.tiny.ann, env.tiny.bob):
        env.state.add_member(project, person)
    env.state.add_hook(project, "http://127.0.0.1:9/not-delivered", token=SECRET)
    env.state.fail_path(f"/projects/{project.id}/merge_requests", 502)
    first = env.state.open_mr(project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=FAST_RETRY, backfill_wait=600.0) as dispatch:
        row = event_row(opened.event_name, opened.body)
        with pytest.raises(AwaitingHistory) as parked:
            await dispatch(row)
        with pytest.raises(GitLabError):
            await parked.value.wakes  # the import failed
        await dispatch(dataclasses.replace(row, last_error=str(parked.value)))
        listed = listed_history(env.state, project.id)
        later = env.state.open_mr(project, env.tiny.ann, FILES)
        await dispatch_outbox(env.state, dispatch)  # raises if parked
        assert listed_history(env.state, project.id) == listed
    assert len(marker_notes(env.state, first)) == 1 and len(marker_notes(env.state, later)) == 1


async def test_settings_keyed_by_the_old_path_are_named_in_a_warning_when_the_project_moves(handler_env, caplog):
    """[projects."acme/tiny"] stops applying once GitLab moves the project (settings follow the path, the id
    stays): that happened in silence. The move is logged once, naming the table and the id to key it by."""
    env = await handler_env()
    settings = env.settings.model_copy(update={"projects": {"acme/tiny": {"assign": "top1"}}})
    caplog.set_level(logging.INFO, logger="bot.handlers")
    async with make_dispatch(settings, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        before = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
        await dispatch_outbox(env.state, dispatch)
        env.tiny.project.path_with_namespace = "platform/tiny"  # transferred to another group
        for _ in range(2):
            env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
            await dispatch_outbox(env.state, dispatch)
    assert before.reviewer_ids and (await env.storage.projects.get(env.pid)).path == "platform/tiny"
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "'acme/tiny' to 'platform/tiny'" in warning and '[projects."acme/tiny"]' in warning
    assert f"[projects.{env.pid}]" in warning


async def test_an_archived_projects_events_are_skipped_without_a_write(handler_env, caplog):
    """GitLab refuses every write to an archived project (403): each event was retried six times over about
    five minutes, holding up the merge request's later events, and its hint asked for Developer access.
    Its events are done at once, without a call that writes; unarchived, the project is acted on again."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    env.state.add_note(mr, env.tiny.cy, "/reviewers")
    env.state.archive(env.tiny.project)
    caplog.set_level(logging.INFO, logger="bot.handlers")
    assert await env.run() == 2
    writes = [r for r in env.state.requests if r.method != "GET"]
    assert writes == [] and bot_notes(env.state, mr) == [] and not mr.reviewer_ids
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event skipped")]
    assert len(skipped) == 2 and all("is archived" in s for s in skipped)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    env.state.archive(env.tiny.project, archived=False)
    env.state.add_note(mr, env.tiny.cy, "/reviewers")
    async with make_dispatch(env.settings, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:  # nothing kept
        await dispatch_outbox(env.state, dispatch)
    assert len(marker_notes(env.state, mr)) == 1


@pytest.mark.parametrize("change", ["deleted", "archived"])
async def test_a_backlog_event_of_a_project_deleted_or_archived_since_it_was_asked_is_skipped(handler_env, caplog,
                                                                                            change):
    """GitLab's answer for a project is kept 30 s, so the events queued before the project was deleted or
    archived meet its 404s (or the 403s of its writes) inside the handlers: they were dead-lettered with a
    traceback, or retried for minutes, where the project's events are to finish as skipped. Asked again,
    GitLab says why: the event is skipped with that reason, as on arrival."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1  # GitLab's answer for the project is kept from here
    env.state.add_note(mr, env.tiny.cy, "/reviewers reroll")
    later = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    if change == "deleted":
        del env.state.projects[env.pid]
    else:
        env.state.archive(env.tiny.project)
    caplog.set_level(logging.INFO, logger="bot.handlers")
    assert await env.run() == 2
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event skipped")]
    said = "answers 404" if change == "deleted" else "is archived"
    assert len(skipped) == 2 and all(said in s for s in skipped)
    assert not marker_notes(env.state, later)


async def test_the_backlog_events_of_a_deleted_merge_request_are_skipped(handler_env, caplog):
    """GitLab sends no hook when a merge request is deleted (spam, a mistake): the events queued before it, a
    `/reviewers` comment among them, met its 404 and were dead-lettered at once, logged as errors whose hint
    asked to check that the bot user is a member. Asked again, GitLab has no such merge request: the events are
    skipped as done, saying so; a 404 of something else on a merge request that is there still fails."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.add_note(mr, env.tiny.cy, "/reviewers assign 1")
    env.state.add_note(mr, env.tiny.cy, "/reviewers why @bob")
    del env.state.projects[env.pid].mrs[mr.iid]
    caplog.set_level(logging.INFO, logger="bot.handlers")
    assert await env.run() == 2
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event skipped")]
    assert len(skipped) == 2 and all(f"merge request !{mr.iid} is not there" in s for s in skipped)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def store_opened(env, key: str):
    """Open a merge request on the simulator and store its hook as a queued event (not run): (mr, event id)."""
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    event_id, _ = await env.storage.events.store_event(dedupe_key=key, kind=opened.event_name, action="open",
                                                       project_id=env.pid, mr_iid=mr.iid, headers={},
                                                       body=opened.body)
    return mr, event_id


async def test_a_gitlab_that_does_not_answer_holds_events_like_an_outage(handler_env):
    """GitLab accepting connections and not answering (hung, or a proxy holding requests): at the defaults one
    call's tries (5 × 30 s) outlast `dispatch_timeout` (120 s), so each event failed as a plain timeout, used up
    its attempts and was dead within ~20 minutes, where the README promises an outage `outage_hours`."""
    import asyncio

    from bot.gitlab.client import RetryPolicy
    from bot.worker import Worker

    env = await handler_env()
    mr, event_id = await store_opened(env, "hung")
    worker_cfg = env.settings.worker.model_copy(update={"dispatch_timeout": 2.0, "lease_seconds": 10.0,
                                                        "max_attempts": 2, "backoff": 0.01, "backoff_max": 0.01})
    settings = env.settings.model_copy(update={"worker": worker_cfg})
    # 3 × 0.8 s > 2 s; once GitLab answers, the event's own work must fit in 2 s (0.3 s did not, under load)
    slow = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.01, timeout=0.8)
    async with make_dispatch(settings, env.storage, Metrics(), retry=slow) as dispatch:
        worker = Worker(env.storage, dispatch, settings, Metrics(), "w1")
        gate = env.state.hold_path("")  # every API call waits
        for _ in range(4):
            await worker.run_once()
            await worker.drain()
            await asyncio.sleep(0.05)
        row = await env.storage.events.get(event_id)
        assert (row.status, row.attempts) == ("failed", 0) and row.outage_attempts >= 3, (row, row.last_error)
        assert "GitLab" in row.last_error
        gate.set()
        await asyncio.sleep(0.05)
        await worker.run_once()
        await worker.drain()
    assert (await env.storage.events.get(event_id)).status == "done"
    assert len(marker_notes(env.state, mr)) == 1


async def test_an_event_held_through_a_gitlab_outage_has_its_attempts_once_gitlab_answers(handler_env):
    """Every retry through an outage counted as an attempt, only allowed one more each time: once GitLab
    answered, the event's first failure of its own (here a 409 on its first call) dead-lettered it at once,
    where it still has `max_attempts`."""
    import asyncio

    from bot.worker import Worker

    env = await handler_env()
    mr, event_id = await store_opened(env, "outage")
    worker_cfg = env.settings.worker.model_copy(update={"max_attempts": 2, "backoff": 0.01, "backoff_max": 0.01})
    settings = env.settings.model_copy(update={"worker": worker_cfg})

    async def run() -> None:
        await asyncio.sleep(0.02)  # past the retry delay
        assert await worker.run_once() == 1
        await worker.drain()

    async with make_dispatch(settings, env.storage, Metrics(), retry=FAST_RETRY) as dispatch:
        worker = Worker(env.storage, dispatch, settings, Metrics(), "w1")
        env.state.fail_path("", 502)  # every API call
        for _ in range(4):
            await run()
        row = await env.storage.events.get(event_id)
        assert row.status == "failed" and "502" in row.last_error, (row.status, row.last_error)
        del env.state.broken_paths[""]
        env.state.fail_next(1, 409)
        await run()
        row = await env.storage.events.get(event_id)
        assert row.status == "failed" and "409" in row.last_error, (row.status, row.last_error)
        assert (row.attempts, row.outage_attempts) == (1, 4)
        await run()
    assert (await env.storage.events.get(event_id)).status == "done"
    assert len(marker_notes(env.state, mr)) == 1
