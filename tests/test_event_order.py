"""Merge request events delivered late or out of order, as GitLab's asynchronous hooks (and an operator
re-sending failed deliveries, newest first) deliver them: what the bot posts, and the state it records,
follow the MR as GitLab has it when the event is handled. Each event goes through the real router, the
simulator as GitLab."""
from __future__ import annotations

from tests.bot_harness import handler_env, marker_notes, take_events  # noqa: F401 - fixture

FILES = ["src/core/m1.py"]


def names(env, ids) -> list[str]:
    return [env.state.users[u].username for u in ids]


async def labels(env, mr) -> list[tuple[str, str]]:
    return [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]


def action(event) -> str | None:
    return event.body.get("object_attributes", {}).get("action")


async def deliver(env, events) -> None:
    for event in events:
        await env.send(event)
    await env.run()


async def test_an_open_delivered_after_the_close_or_the_merge_does_nothing(handler_env):
    env = await handler_env(assign="top1")
    closed = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    env.state.close_mr(closed, by=env.tiny.ann)
    merged = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    env.state.set_reviewers(merged, [env.tiny.cy], by=env.tiny.ann)
    env.state.merge_mr(merged, by=env.tiny.cy)
    events = take_events(env.state)
    await deliver(env, [e for e in events if action(e) != "open"] + [e for e in events if action(e) == "open"])
    assert marker_notes(env.state, closed) == marker_notes(env.state, merged) == []
    assert closed.reviewer_ids == [] and names(env, merged.reviewer_ids) == ["cy"]


async def test_a_late_ready_on_a_draft_again_or_a_late_open_on_a_labelled_mr_does_nothing(handler_env):
    env = await handler_env(assign="top1")
    draft = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
    await env.run()
    env.state.mark_ready(draft)
    env.state.mark_draft(draft)
    ready, again = take_events(env.state)
    labelled = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    env.state.update_mr(labelled, by=env.tiny.ann, labels=["no-reviewer-bot"])
    opened, label = take_events(env.state)
    await deliver(env, [again, ready, label, opened])
    assert draft.reviewer_ids == labelled.reviewer_ids == [] and marker_notes(env.state, labelled) == []


async def test_a_push_delivered_after_the_merge_leaves_the_comment_as_it_was(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = marker_notes(env.state, mr)
    before, shown = comment.body, len(await env.storage.suggestions.list(env.pid))
    env.state.push_to_mr(mr, ["docs/intro.md"])
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.merge_mr(mr, by=env.tiny.bob)
    events = take_events(env.state)
    push = [e for e in events if "oldrev" in e.body["object_attributes"]]
    await deliver(env, [e for e in events if e not in push] + push)
    assert marker_notes(env.state, mr)[0].body == before
    assert len(await env.storage.suggestions.list(env.pid)) == shown


async def test_a_reopen_delivered_before_the_close_leaves_the_mr_open(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.close_mr(mr, by=env.tiny.ann)
    env.state.reopen_mr(mr, by=env.tiny.ann)
    closed, reopened = [e for e in take_events(env.state) if action(e) in ("close", "reopen")]
    await deliver(env, [reopened, closed])
    assert [row[1] for row in await labels(env, mr) if row[1] in ("closed", "reopened")] == ["reopened"]


async def test_a_close_and_reopen_handled_after_the_merge_leave_the_mr_as_merged(handler_env):
    """Closed, reopened and merged before the worker ran: the close, no longer GitLab's state, is not
    recorded (it would set the MR's rows as suggested aside), and the reopen is (a `merged` MR was reopened:
    dropped, a close recorded before it would have stayed)."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.close_mr(mr, by=env.tiny.ann)
    env.state.reopen_mr(mr, by=env.tiny.ann)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    assert [row[1] for row in await labels(env, mr) if row[1] in ("closed", "reopened")] == ["reopened"]
