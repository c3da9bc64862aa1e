"""Merge request events delivered late or out of order, as GitLab's asynchronous hooks (and an operator
re-sending failed deliveries, newest first) deliver them: what the bot posts, and the state it records,
follow the MR as GitLab has it when the event is handled. Each event goes through the real router, the
simulator as GitLab."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from tests.bot_harness import handler_env, marker_notes, take_events  # noqa: F401 - fixture

FILES = ["src/core/m1.py"]


def names(env, ids) -> list[str]:
    return [env.state.users[u].username for u in ids]


async def labels(env, mr) -> list[tuple[str, str]]:
    return [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]


def action(event) -> str | None:
    return event.body.get("object_attributes", {}).get("action")


def hand_clock(env) -> Callable[[], None]:
    """Run the simulator's clock by hand; returns `later()`, which moves it two minutes on. GitLab's hook times
    are whole seconds, and an approval moves the MR's time at most once a minute."""
    now = [datetime.now(timezone.utc)]
    env.state.clock = lambda: now[0]

    def later() -> None:
        now[0] += timedelta(minutes=2)
    return later


async def bob_reviewing(env):
    """An MR the bot suggested on, bob made its reviewer by ann two minutes later (the clock run by hand)."""
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    later()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    await env.run()
    return mr, later


async def approvals(env, mr, person: str = "bob") -> list[str]:
    return [label for who, label in await labels(env, mr) if who == person and label in ("approved", "unapproved")]


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


async def test_an_unapproval_delivered_before_its_approval_leaves_the_approval_taken_back(handler_env):
    env = await handler_env()
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    later()
    env.state.approve(mr, env.tiny.bob)
    later()
    env.state.unapprove(mr, env.tiny.bob)
    events = take_events(env.state)
    assert [action(e) for e in events] == ["approved", "unapproval"]  # GitLab EE, a project without rules
    await deliver(env, events[::-1])
    assert await approvals(env, mr) == []  # GitLab's last word: bob does not approve


async def test_a_reviewer_removal_delivered_before_the_addition_leaves_the_reviewer_removed(handler_env):
    env = await handler_env()
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    later()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    later()
    env.state.set_reviewers(mr, [], by=env.tiny.ann)
    added, removed = take_events(env.state)
    await deliver(env, [removed, added])
    assert [row for row in await labels(env, mr) if row[0] == "bob"] == [("bob", "suggested"), ("bob", "removed")]


async def test_an_assign_command_delivered_before_an_earlier_removal_does_not_request_the_removed_reviewer(
        handler_env):
    """bob took the review, ann took him off, then asked the bot to assign: handled before the removal, the
    command must not bring bob back (GitLab no longer lists him), and the removal, handled then, counts."""
    env = await handler_env()
    mr, later = await bob_reviewing(env)
    later()
    env.state.set_reviewers(mr, [], by=env.tiny.ann)
    later()
    env.state.add_note(mr, env.tiny.ann, "/reviewers assign")
    removed, command = take_events(env.state)
    await deliver(env, [command, removed])
    assert "bob" not in names(env, mr.reviewer_ids)
    assert [label for who, label in await labels(env, mr) if who == "bob"][-1] == "removed"


async def test_a_bot_request_is_not_undone_by_an_older_reviewer_change_delivered_after_it(handler_env):
    """Opened, bob added and removed by hand, all before the worker ran: the late open requests bob (nothing
    tells the bot he was taken off), and the older hooks, handled after, leave the label GitLab's state has."""
    env = await handler_env(assign="top1")
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    later()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    later()
    env.state.set_reviewers(mr, [], by=env.tiny.ann)
    opened, added, removed = take_events(env.state)
    later()
    await env.send(opened)
    await deliver(env, [added, removed])
    assert names(env, mr.reviewer_ids) == ["bob"]
    assert [label for who, label in await labels(env, mr) if who == "bob"] == ["suggested", "assigned"]


async def test_reviewer_and_approval_changes_delivered_in_order_are_all_recorded(handler_env):
    env = await handler_env()
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    for reviewers in ([env.tiny.bob], [], [env.tiny.bob]):
        later()
        env.state.set_reviewers(mr, reviewers, by=env.tiny.ann)
    for change in (env.state.approve, env.state.unapprove, env.state.approve):
        later()
        change(mr, env.tiny.bob)
    await env.run()
    assert [label for who, label in await labels(env, mr) if who == "bob"] == [
        "suggested", "accepted", "removed", "accepted", "approved", "unapproved", "approved"]


async def test_an_approval_and_its_withdrawal_within_a_minute_carry_one_time_and_apply_as_handled(handler_env):
    """GitLab moves the MR's `updated_at` for an approval only through its system note, once a minute at most:
    within the minute both hooks carry the same time, and an equal time applies (as before)."""
    env = await handler_env()
    hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.approve(mr, env.tiny.bob)
    env.state.unapprove(mr, env.tiny.bob)
    events = take_events(env.state)
    assert len({e.body["object_attributes"]["updated_at"] for e in events}) == 1
    await deliver(env, events)
    assert await approvals(env, mr) == ["approved", "unapproved"]


async def test_a_payload_on_another_clock_is_recorded_not_taken_for_a_late_delivery(handler_env):
    """Hooks replayed or written by hand may carry any time (GitLab's documented samples say 2013): far older
    than the time the bot's own request got, they are no late delivery, and their labels count."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert names(env, mr.reviewer_ids) == ["bob"]
    env.state.approve(mr, env.tiny.bob)
    events = take_events(env.state)
    for event in events:
        event.body["object_attributes"]["updated_at"] = "2013-12-03T17:23:34Z"
    await deliver(env, events)
    assert await approvals(env, mr) == ["approved"]


async def test_an_approval_handled_after_the_bots_own_later_request_is_recorded(handler_env):
    """In GitLab's order: opened, bob approves, and only then (a backlog, a parked first event) the bot handles
    the open and requests bob. The approval, handled after, still counts: a review request undoes no approval."""
    env = await handler_env(assign="top1")
    later = hand_clock(env)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    later()
    env.state.approve(mr, env.tiny.bob)
    events = take_events(env.state)
    later()
    await deliver(env, events)
    assert names(env, mr.reviewer_ids) == ["bob"]
    assert await approvals(env, mr) == ["approved"]


async def test_an_approval_handled_after_a_later_removal_of_the_same_reviewer_is_recorded(handler_env):
    """bob added, bob approves, ann takes him off; handled newest first, the removal does not undo the approval."""
    env = await handler_env()
    mr, later = await bob_reviewing(env)
    later()
    env.state.approve(mr, env.tiny.bob)
    later()
    env.state.set_reviewers(mr, [], by=env.tiny.ann)
    await deliver(env, take_events(env.state)[::-1])
    assert await approvals(env, mr) == ["approved"]
    assert [label for who, label in await labels(env, mr) if who == "bob"][-2:] == ["removed", "approved"]
