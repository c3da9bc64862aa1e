"""Merge Request Hook handlers: real payloads from the simulator through the real router, the simulator as the
GitLab that records every call."""
from __future__ import annotations

import asyncio

import pytest

from bot.backfill import AUTOMATION, BOT_PICK, backfill_project, change_id
from bot.comment import MARKER
from bot.gitlab.payloads import merge_request_hook
from bot.handlers.context import GitLabFailure
from bot.handlers.merge_requests import reviewer_feedback, skip_reason
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.learning import new_labels, replay
from graph.recommend import make_recommender
from tests.bot_harness import SECRET, bot_notes, event_row, handler_env, marker_notes, take_events  # noqa: F401

FILES = ["src/core/m1.py"]


@pytest.mark.parametrize("version", [(17, 5), (15, 6)])  # files from /diffs; before 15.7, from /changes
async def test_a_diff_gitlab_cut_at_its_limit_is_said_so(handler_env, version):
    """GitLab lists at most `diff_max_files` files of an MR (1,000 by default) and counts "1000+": the owners
    of the later files may be missing, which the comment did not say."""
    env = await handler_env()
    env.state.version, env.state.diff_max_files = version, 3
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, [f"src/core/m{i}.py" for i in range(5)])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "`@bob`" in comment.body
    assert "- Only the first 3 changed files were read (GitLab's diff limit): owners and reviewers of the later " \
           "files may be missing." in comment.body
    small = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert "Only the first" not in marker_notes(env.state, small)[0].body


async def test_open_posts_exactly_one_comment_with_a_table(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = bot_notes(env.state, mr)
    assert comment.body.startswith(MARKER) and "| # | Reviewer | Why | Open reviews |" in comment.body
    assert "`@bob`" in comment.body and "`@ann`" not in comment.body
    assert not any(line.startswith("/") for line in comment.body.splitlines())
    row = await env.storage.comments.get(env.pid, mr.iid)
    assert row.note_id == comment.id
    latest = await env.storage.suggestions.latest(env.pid, mr.iid)
    assert latest.people[0]["username"] == "bob" and latest.people[0]["reasons"]


async def test_push_edits_the_same_comment(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [before] = marker_notes(env.state, mr)
    first_body = before.body
    env.state.push_to_mr(mr, ["docs/intro.md"])
    await env.run()
    [after] = marker_notes(env.state, mr)
    assert after.id == before.id and after.body != first_body and "`@dee`" in after.body
    assert len(env.state.calls("POST", f"/merge_requests/{mr.iid}/notes")) == 1
    assert len(env.state.calls("PUT", f"/notes/{before.id}")) == 1


async def test_commits_pushed_with_the_bots_account_are_suggested_for(handler_env):
    """The only change the bot makes to an MR is a reviewer request, so that is all of its own `update` hooks it
    ignores: new commits pushed with its account (a shared automation account, a suggestion applied with its
    token) were ignored too, and the comment kept suggesting for the files it had before."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.push_to_mr(mr, ["docs/intro.md"], user=env.state.bot)
    await env.run()
    [after] = marker_notes(env.state, mr)
    assert "`@dee`" in after.body


async def test_drafts_are_skipped_until_ready(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
    await env.run()
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    assert bot_notes(env.state, mr) == []
    env.state.mark_ready(mr)
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1


async def test_drafts_are_suggested_when_configured(handler_env):
    env = await handler_env(skip_drafts=False)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1


async def test_ignore_label_and_bot_authors_are_skipped(handler_env):
    env = await handler_env()
    labelled = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, labels=["no-reviewer-bot"])
    renovate = env.state.add_user("renovate-bot", bot=True)
    env.state.add_member(env.tiny.project, renovate)
    bumped = env.state.open_mr(env.tiny.project, renovate, FILES)
    await env.run()
    assert bot_notes(env.state, labelled) == [] and bot_notes(env.state, bumped) == []


async def test_a_service_account_authors_merge_request_is_skipped_as_a_bots(handler_env):
    """GitLab's merge request API leaves the author's `bot` flag out, and a service account may take any
    name: its merge requests were suggested for, while the same account was never suggested as a reviewer."""
    env = await handler_env()
    robot = env.state.add_user("release-tool", bot=True)
    env.state.add_member(env.tiny.project, robot)
    mr = env.state.open_mr(env.tiny.project, robot, FILES)
    await env.run()
    env.state.push_to_mr(mr, ["docs/intro.md"])
    await env.run()
    assert bot_notes(env.state, mr) == []


async def test_the_bots_own_events_cause_no_calls(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    await env.send(opened)
    caused = list(env.state.outbox)
    assert {e.event_name for e in caused} == {"Merge Request Hook", "Note Hook"}  # the PUT and the comment
    calls = len(env.state.requests)
    await env.run()
    assert len(env.state.requests) == calls and len(bot_notes(env.state, mr)) == 1


async def test_top1_assignment_requests_review_and_records_it(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["bob"]
    [comment] = marker_notes(env.state, mr)
    assert "Review requested from `@bob`." in comment.body
    labels = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert labels == [("bob", "suggested"), ("bob", "assigned")]  # shown first (load spreading), then requested


async def test_the_comment_edited_after_a_push_still_says_whom_the_bot_asked(handler_env):
    """The status line went with the first edit: the comment then read as if the bot had asked nobody, while
    GitLab still listed the reviewer it asked. Once the team takes that reviewer off, the line goes."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.push_to_mr(mr, ["docs/intro.md"])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "`@dee`" in comment.body and "Review requested from `@bob`." in comment.body
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["bob"]
    env.state.set_reviewers(mr, [env.tiny.cy], by=env.tiny.ann)
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    assert "Review requested from" not in marker_notes(env.state, mr)[0].body


async def test_a_retry_after_a_killed_attempt_assigns_and_records_what_that_attempt_stored(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    # the killed attempt of event 7001 stored its suggestion (cy first), requested cy's review, then died
    await env.storage.suggestions.add(env.pid, mr.iid, [{"username": "cy", "score": 1.0, "reasons": ["stored"]},
                                                         {"username": "bob", "score": 0.5, "reasons": []}],
                                      "test", event_id=7001)
    env.state.set_reviewers(mr, [env.tiny.cy], by=env.state.root)
    env.state.outbox.clear()
    await env.dispatch(event_row(opened.event_name, opened.body, event_id=7001))
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["cy"]
    labels = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert labels == [("cy", "suggested"), ("cy", "assigned")]
    [comment] = marker_notes(env.state, mr)
    assert comment.body.index("`@cy`") < comment.body.index("`@bob`")
    assert len(await env.storage.suggestions.list(env.pid)) == 1


async def test_a_retried_reroll_judges_the_suggestion_shown_before_it(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    shown = [p["username"] for p in (await env.storage.suggestions.latest(env.pid, mr.iid)).people]
    env.state.add_note(mr, env.tiny.ann, "/reviewers reroll")
    [hook] = [e for e in env.state.outbox if e.event_name == "Note Hook"]
    env.state.outbox.clear()
    # the killed attempt of event 7002 stored the new suggestion (dee), then died before it was shown
    await env.storage.suggestions.add(env.pid, mr.iid, [{"username": "dee", "score": 1.0, "reasons": []}],
                                      "test", event_id=7002)
    await env.dispatch(event_row(hook.event_name, hook.body, event_id=7002))
    rerolled = [f.person for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid) if f.label == "reroll"]
    assert sorted(rerolled) == sorted(shown) and "dee" not in rerolled


async def test_free_tier_assignment_that_did_not_stick_is_said(handler_env):
    env = await handler_env(assign="top1")
    env.state.free_tier = True
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, reviewers=[env.tiny.cy])
    await env.run()
    assert mr.reviewer_ids == [env.tiny.cy.id]
    [comment] = marker_notes(env.state, mr)
    assert "GitLab did not keep `@bob` as reviewer." in comment.body
    assert "GitLab Free allows one" in comment.body


async def test_merge_adds_the_mr_to_history_and_records_final_reviewers(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.approve(mr, env.tiny.bob)
    env.state.merge_mr(mr, by=env.tiny.bob)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert (merged.author, merged.reviewers, merged.ackers, merged.files) == ("ann", ("bob",), ("bob",),
                                                                              ("src/core/new.py",))
    labels = {(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)}
    assert labels == {("bob", "suggested"), ("bob", "accepted"), ("bob", "approved"), ("bob", "final_reviewer"),
                      ("cy", "passed_over")}  # shown second, did nothing: turned down at the merge


async def test_a_suggested_person_who_merged_is_not_passed_over_on_a_gitlab_before_14_7(handler_env):
    """Merging is acting on the merge request. Before GitLab 14.7 the merger is `merged_by` alone (no
    `merge_user`): cy, suggested and merging it, was recorded as passed over there."""
    env = await handler_env()
    env.state.version = (14, 6)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.approve(mr, env.tiny.bob)
    env.state.merge_mr(mr, by=env.tiny.cy)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    labels = {(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)}
    assert merged.committer == "cy" and ("cy", "passed_over") not in labels


async def test_an_approval_taken_back_is_recorded_once_and_given_again_too(handler_env):
    """Each change of mind is stored once, in order, whichever of `approval` / `approved` (`unapproval` /
    `unapproved`) GitLab names it with."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    for _ in range(2):
        env.state.approve(mr, env.tiny.bob)
        env.state.unapprove(mr, env.tiny.bob)
    env.state.approve(mr, env.tiny.bob)
    await env.run()
    rows = [f.label for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
            if f.person == "bob" and f.label.endswith("approved")]
    assert rows == ["approved", "unapproved", "approved", "unapproved", "approved"]
    labels, _ = await new_labels(env.storage, env.pid, 0)
    rec = make_recommender("default")
    replay(rec, labels, {})
    assert rec.feedback.labels == 1  # the approvals are one piece of evidence; taking one back is none


async def test_a_merge_delivered_twice_counts_its_reviewers_once(handler_env):
    """A project and a group hook, or a resent delivery: two events for one merge. The history takes the MR
    once; the final reviewers and the bot's idle requests must be recorded once too, while a retry of the
    same event still finishes its own rows."""
    env = await handler_env(assign="top-k")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.approve(mr, env.tiny.bob)
    env.state.merge_mr(mr, by=env.tiny.bob)
    [merge] = [e for e in take_events(env.state) if e.body["object_attributes"].get("action") == "merge"]
    first = event_row(merge.event_name, merge.body)
    await env.dispatch(first)
    once = sorted((f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid))
    assert ("bob", "final_reviewer") in once and ("cy", "passed_over") in once
    await env.dispatch(event_row(merge.event_name, merge.body))  # the second delivery
    await env.dispatch(first)  # the first one retried (e.g. its worker was killed before it finished)
    again = sorted((f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid))
    assert again == once


async def test_closing_and_reopening_are_recorded_and_reopening_suggests_again(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.close_mr(mr, by=env.tiny.cy)
    await env.run()
    rows = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert rows[-2:] == [("bob", "accepted"), ("cy", "closed")]
    before = len(await env.storage.suggestions.list(env.pid))
    env.state.reopen_mr(mr, by=env.tiny.ann)
    await env.run()
    rows = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert ("ann", "reopened") in rows and len(await env.storage.suggestions.list(env.pid)) == before + 1


async def test_a_review_the_bot_requested_and_nobody_did_is_not_learned_as_one(handler_env):
    """bob, requested by the bot, never approved, commented or merged (GitLab: "unreviewed"); a person asked
    cy, who did nothing either. The history keeps cy (a person chose them) and leaves bob out."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["bob"]
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.cy], by=env.tiny.ann)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert merged.reviewers == ("cy",)
    labels = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert labels == [("bob", "suggested"), ("bob", "assigned"), ("cy", "accepted"), ("bob", "passed_over"),
                      ("cy", "final_reviewer")]
    assert env.state.calls("GET", f"/merge_requests/{mr.iid}/reviewers")


@pytest.mark.parametrize("act", ["approves", "comments"])
async def test_a_review_the_bot_requested_and_was_done_is_learned(handler_env, act):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    if act == "approves":
        env.state.approve(mr, env.tiny.bob)
    else:
        env.state.add_note(mr, env.tiny.bob, "Looks good, one nit inline.")
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert "bob" in merged.truth()
    labels = {(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)}
    assert ("bob", "final_reviewer") in labels and ("bob", "passed_over") not in labels


async def test_a_merged_file_gets_history_at_once(handler_env):
    env = await handler_env()
    first = env.state.open_mr(env.tiny.project, env.tiny.ann, ["lib/fresh.py"])
    await env.run()
    assert "touches no file with review history" in marker_notes(env.state, first)[0].body
    env.state.set_reviewers(first, [env.tiny.cy], by=env.tiny.ann)
    env.state.merge_mr(first, by=env.tiny.cy)
    second = env.state.open_mr(env.tiny.project, env.tiny.bob, ["lib/fresh.py"])
    await env.run()
    assert "`@cy`" in marker_notes(env.state, second)[0].body


async def test_gitlab_failure_is_retryable_and_a_retry_posts_once(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    [opened] = env.state.outbox[:]
    env.state.outbox.clear()
    env.state.fail_next(40, 500)
    with pytest.raises(GitLabFailure) as failure:
        await env.send(opened)
    assert failure.value.permanent is False and failure.value.status == 500
    env.state._fail_queue.clear()
    await env.send(opened)
    await env.send(opened)
    assert len(marker_notes(env.state, mr)) == 1


async def test_a_comment_posted_whose_answer_was_lost_is_adopted(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    await env.storage.comments.forget(env.pid, mr.iid)  # as if the POST's answer never arrived
    env.state.push_to_mr(mr, ["src/core/m3.py"])
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1
    assert (await env.storage.comments.get(env.pid, mr.iid)).note_id == marker_notes(env.state, mr)[0].id


async def test_a_deleted_comment_is_posted_again(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    mr.notes.clear()
    env.state.push_to_mr(mr, ["src/core/m3.py"])
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1


async def test_an_event_of_a_merge_request_gitlab_does_not_have_is_skipped_not_retried(handler_env, caplog):
    """No retry can make GitLab find it (deleted since, `bot.handlers._mr_deleted`): the event is done, skipped
    with the reason, after one more question to GitLab, not failed and retried."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    body = merge_request_hook(env.state, env.tiny.project, mr, "open", user=env.tiny.ann)
    body["object_attributes"]["iid"] = 999
    caplog.set_level("INFO", logger="bot.handlers")
    await env.dispatch(event_row("Merge Request Hook", body))
    assert len(env.state.calls("GET", "/merge_requests/999")) == 2
    assert any("merge request !999 is not there any more" in r.getMessage() for r in caplog.records)
    env.state.outbox.clear()


def test_skip_reason_reads_the_payload():
    settings = ProjectSettings()
    assert skip_reason({"draft": False, "labels": [{"title": "no-reviewer-bot"}]}, settings) == "label no-reviewer-bot"
    assert skip_reason({"state": "closed"}, settings) == "closed"
    assert skip_reason({"draft": True}, ProjectSettings(skip_drafts=False)) is None


def test_reviewer_feedback_labels():
    people = lambda *names: [{"username": n} for n in names]  # noqa: E731
    assert reviewer_feedback(people("ann"), people(), ["ann"]) == [("ann", "removed")]
    assert reviewer_feedback(people(), people("Bob", "cy"), ["bob", "dee"]) == [
        ("bob", "accepted"), ("dee", "passed_over"), ("cy", "assigned")]
    assert reviewer_feedback(people("cy"), people("cy", "Eve"), ["bob"]) == [("bob", "passed_over"),
                                                                              ("Eve", "assigned")]
    # cy, not suggested, removed: no longer a reviewer (the dashboard's open reviews, an early review taken back)
    assert reviewer_feedback(people("cy"), people(), ["bob"]) == [("cy", "removed")]


async def test_a_reviewer_the_bot_did_not_suggest_is_recorded_as_assigned_once(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    shown = await env.storage.suggestions.latest(env.pid, mr.iid)
    assert ([p["username"] for p in shown.people], shown.author, shown.files) == (["bob", "cy"], "ann", FILES)
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.dee], by=env.tiny.ann)
    [update] = env.state.outbox[:]
    env.state.outbox.clear()
    row = event_row(update.event_name, update.body)
    await env.dispatch(row)
    await env.dispatch(row)  # the worker retries the event: nothing is recorded twice
    rows = await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
    assert [(f.person, f.label) for f in rows] == [("bob", "suggested"), ("bob", "accepted"), ("cy", "passed_over"),
                                                   ("dee", "assigned")]
    assert {f.suggestion_id for f in rows} == {shown.id}


async def test_mentions_only_when_configured(handler_env):
    env = await handler_env(mention=True)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "| 1 | @bob" in comment.body and "`@bob`" not in comment.body.split("| 2 |")[0]


async def test_when_load_spreading_changes_the_first_place_it_records_whom_it_moved_down(handler_env):
    """The model's first choice (without the spreading) has been shown first on 100 other MRs they never
    reviewed: the spreading puts the other code owner first and the bot stores the first choice as
    `moved_down` beside the `suggested` row; whom the team then takes of the two teaches every process's
    ranker how much spreading the project wants."""
    import pickle

    from graph.model import Change
    from tests.test_retrain import trained

    env = await handler_env()
    await env.storage.models.save(env.pid, "v1", pickle.dumps(trained().model_, 5))  # spreading needs a model
    engine = env.dispatch.args[0].engine
    async with engine.use(env.pid, env.settings.project_settings(env.pid, None)) as rec:
        probe = Change("probe", int(env.state.now().timestamp()), "ann", (), tuple(FILES))
        shown = rec.suggest(probe, 1, explain=False)[0].person
        favourite = next((down for term, down, _ in rec.moved_down(probe) if term == "spreading"), shown)
    assert favourite in ("bob", "cy")  # a code owner: CODEOWNERS may move owners up, past the ranking's first
    for iid in range(1000, 1100):
        await env.storage.feedback.record(env.pid, iid, favourite, "suggested")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    first = (await env.storage.suggestions.latest(env.pid, mr.iid)).people[0]["username"]
    labels = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert first != favourite and labels == [(first, "suggested"), (favourite, "moved_down_spreading")]


async def test_when_code_owners_decide_the_first_place_no_moved_down_row(handler_env):
    """Both owners over-suggested: the spreading puts `rep` first, CODEOWNERS still shows an owner first, so
    the team's choice says nothing about the spreading."""
    import pickle

    from tests.test_retrain import trained

    env = await handler_env()
    await env.storage.models.save(env.pid, "v1", pickle.dumps(trained().model_, 5))
    for n, person in enumerate(("bob", "cy")):
        for iid in range(1000 * (n + 1), 1000 * (n + 1) + 100):
            await env.storage.feedback.record(env.pid, iid, person, "suggested")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    labels = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert len(labels) == 1 and labels[0][0] in ("bob", "cy") and labels[0][1] == "suggested"


async def test_without_spreading_at_work_no_moved_down_row(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    labels = [f.label for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert labels == ["suggested"]


async def test_a_numbered_project_token_bot_is_left_alone_and_never_suggested(handler_env):
    """GitLab names a project's second access token's user `project_<id>_bot1`: its MRs get no comment and it is
    no candidate, however much it wrote."""
    env = await handler_env(top_k=5)
    token_bot = env.state.add_user(f"project_{env.tiny.project.id}_bot1", bot=True)
    env.state.add_member(env.tiny.project, token_bot, 40)
    for _ in range(3):
        bump = env.state.open_mr(env.tiny.project, token_bot, FILES)
        env.state.set_reviewers(bump, [env.tiny.bob], by=env.tiny.ann)
        env.state.merge_mr(bump, by=env.tiny.bob)
    await env.run()
    assert all(bot_notes(env.state, m) == [] for m in env.state.project(env.tiny.project).mrs.values()
               if m.author_id == token_bot.id)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert token_bot.username not in marker_notes(env.state, mr)[0].body


async def test_reopening_does_not_request_again_a_reviewer_the_team_removed(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert mr.reviewer_ids == [env.tiny.bob.id]
    env.state.set_reviewers(mr, [env.tiny.cy], by=env.tiny.ann)
    env.state.close_mr(mr, by=env.tiny.ann)
    env.state.reopen_mr(mr, by=env.tiny.ann)
    await env.run()
    assert mr.reviewer_ids == [env.tiny.cy.id]
    assert "Review requested from `@bob`" not in marker_notes(env.state, mr)[0].body


async def test_reopening_does_not_request_again_a_removed_reviewer_who_renamed_themselves_since(handler_env):
    """bob, taken off the reviewers, renames himself `robert` (same id) before the MR is reopened. The removal is
    stored under `bob`, and the bot, which suggests him under his name now, asked `robert` to review again."""
    env = await handler_env(assign="top-k", top_k=2)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert sorted(mr.reviewer_ids) == sorted([env.tiny.bob.id, env.tiny.cy.id])
    env.state.set_reviewers(mr, [env.tiny.cy], by=env.tiny.ann)
    env.state.close_mr(mr, by=env.tiny.ann)
    await env.run()
    env.state.rename_user(env.tiny.bob, "robert")
    recent = env.dispatch.args[0].engine.recent  # a minute later: the members list kept is read again
    later = recent.clock() + 120
    recent.clock = lambda: later
    env.state.reopen_mr(mr, by=env.tiny.ann)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "`@robert`" in body and "`@bob`" not in body  # still suggested, under his name now
    assert mr.reviewer_ids == [env.tiny.cy.id]
    assert "Review requested from `@cy`." in body


async def test_a_new_target_branch_updates_the_comment_with_its_codeowners(handler_env):
    env = await handler_env()
    project = env.state.project(env.tiny.project)
    env.state.add_file(project, ".gitlab/CODEOWNERS", "[Release][1]\nsrc/ @dee\n", ref="release")
    env.state.protect_branch(project, "release*", code_owner_approval_required=True)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert "`Release`" not in marker_notes(env.state, mr)[0].body
    old, mr.target_branch = mr.target_branch, "release"
    env.state._fire(project, mr, "update", env.state.user(env.tiny.ann),
                    changes={"target_branch": {"previous": old, "current": "release"}})
    await env.run()
    assert "CODEOWNERS section `Release` needs 1 approval" in marker_notes(env.state, mr)[0].body


async def rows_of(env, mr):
    return [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]


async def test_a_reopened_mr_counts_its_reviewers_again_in_the_recommender(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    await env.run()
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as before:
        assert "bob" in before.feedback.open[f"!{mr.iid}"].people  # on duty for the open MR
    env.state.close_mr(mr, by=env.tiny.ann)
    await env.run()
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as closed:
        assert f"!{mr.iid}" not in closed.feedback.open
    env.state.reopen_mr(mr, by=env.tiny.ann)
    await env.run()
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as after:
        review = after.feedback.open.get(f"!{mr.iid}")
        assert review is not None and "bob" in review.people and f"!{mr.iid}" in after._early


async def test_a_review_a_human_requests_before_any_suggestion_is_recorded(handler_env):
    """On a draft the bot stays quiet; a reviewer set there is still the team's choice, and removing them is
    what keeps the bot from requesting them again later."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
    await env.run()
    assert marker_notes(env.state, mr) == []
    env.state.set_reviewers(mr, [env.tiny.cy], by=env.tiny.ann)
    await env.run()
    env.state.set_reviewers(mr, [], by=env.tiny.ann)
    await env.run()
    assert await rows_of(env, mr) == [("cy", "assigned"), ("cy", "removed")]


async def test_passing_a_suggestion_over_counts_once_when_reviewers_are_added_one_at_a_time(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    shown = [p["username"] for p in (await env.storage.suggestions.latest(env.pid, mr.iid)).people]
    assert shown == ["bob", "cy"]
    env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.dee, env.tiny.rep], by=env.tiny.ann)
    await env.run()
    rows = await rows_of(env, mr)
    assert rows.count(("bob", "passed_over")) == 1 and rows.count(("cy", "passed_over")) == 1
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        assert rec.feedback.streak["bob"] == 1.0


async def test_a_draft_marked_ready_on_gitlab_before_16_3_gets_its_suggestion(handler_env):
    """Before 16.3 `draft` was no tracked change: marking ready arrives as an `update` whose `changes` hold
    only the title losing its "Draft:" prefix (and `work_in_progress` in the attributes)."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
    await env.run()
    assert bot_notes(env.state, mr) == []
    env.state.mark_ready(mr)
    [ready] = take_events(env.state)
    ready.body["object_attributes"].pop("draft", None)
    ready.body["changes"].pop("draft", None)
    assert set(ready.body["changes"]) >= {"title"} and "work_in_progress" not in ready.body["changes"]
    await env.send(ready)
    assert len(marker_notes(env.state, mr)) == 1 and mr.reviewer_ids  # suggested, and assigned as on an open


async def test_a_username_whose_case_changed_is_one_person_requested_under_the_new_name(handler_env, gitlab_client):
    """GitLab usernames ignore case and may change case: history imported as `bob`, later merges as `Bob`.
    The person is suggested once, under GitLab's current name, and the review request reaches them."""
    env = await handler_env(assign="top1", top_k=3)
    env.tiny.bob.username = "Bob"
    for i in range(8):
        done = env.state.open_mr(env.tiny.project, env.tiny.ann, [f"src/core/m{i % 4}.py"])
        env.state.set_reviewers(done, [env.tiny.bob], by=env.tiny.ann)
        env.state.merge_mr(done, by=env.tiny.bob)
    await env.run()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    rows = [line for line in body.splitlines() if line.startswith("| ") and "`@" in line]
    assert sum("`@Bob`" in r or "`@bob`" in r for r in rows) == 1 and "`@Bob`" in rows[0]
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["Bob"]
    assert "Review requested from `@Bob`." in body


async def test_a_member_who_renamed_themselves_keeps_their_history_under_the_new_name(handler_env):
    """GitLab lets a user change their username; the id stays. The history imported names `bob`, whom no member
    is called any more: he was dropped as someone who left, and `robert` had no history. He is suggested
    first, as `robert`, with the evidence of his reviews as `bob`, and the review request reaches him."""
    env = await handler_env(assign="top1", top_k=3)
    env.state.rename_user(env.tiny.bob, "robert")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    rows = [line for line in body.splitlines() if line.startswith("| ") and "`@" in line]
    assert "`@robert`" in rows[0] and "reviewed" in rows[0] and "`@bob`" not in body
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["robert"]
    assert "Review requested from `@robert`." in body


async def test_the_comment_edited_after_a_rename_still_says_whom_the_bot_asked(handler_env):
    """bob, asked to review, renames himself `robert` (same id, still a reviewer on GitLab); the next push
    edits the comment. The request is stored under `bob`: the line "Review requested from" went, and the
    comment read as if the bot had asked nobody."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.rename_user(env.tiny.bob, "robert")
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    assert "Review requested from `@robert`." in marker_notes(env.state, mr)[0].body


async def test_files_only_their_author_has_worked_on_say_so(handler_env, gitlab_client):
    """A new project: ann merged two changes to `app/main.py` nobody reviewed and opens a third. The comment
    said "nobody with review history on these files can review right now (`/reviewers why @user` tells why)",
    as if someone were busy; nobody was, and no `why` could tell more. bob's merge request names ann."""
    env = await handler_env()
    state, ann = env.state, env.tiny.ann
    project = state.add_project("acme/fresh")
    for user in (ann, env.tiny.bob, env.tiny.cy):
        state.add_member(project, user, 30)
    state.add_hook(project, "http://127.0.0.1:9/not-delivered", token=SECRET)
    await backfill_project(gitlab_client, env.storage, project.id)
    for _ in range(2):
        state.merge_mr(state.open_mr(project, ann, ["app/main.py"]), by=ann)
        await env.run()
    mr = state.open_mr(project, ann, ["app/main.py"])
    await env.run()
    assert "Cannot suggest reviewers: only the author of this merge request has worked on these files so far. " \
        "Choose reviewers yourself for now" in marker_notes(state, mr)[0].body
    theirs = state.open_mr(project, env.tiny.bob, ["app/main.py"])
    await env.run()
    assert "| 1 | `@ann` (Ann) | wrote `app/main.py` | 0 |" in marker_notes(state, theirs)[0].body


async def test_a_service_account_with_a_plain_name_is_never_suggested(handler_env):
    """Service accounts may take any username, and the members API does not say which accounts are bots: the
    bot reads the flag from `GET /users/:id`."""
    env = await handler_env(top_k=5)
    helper = env.state.add_user("release-helper", bot=True)
    env.state.add_member(env.tiny.project, helper, 30)
    for _ in range(6):
        done = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
        env.state.set_reviewers(done, [helper], by=env.tiny.ann)
        env.state.merge_mr(done, by=helper)
    await env.run()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "release-helper" not in body and "`@bob`" in body


async def test_a_bot_added_as_reviewer_beside_the_suggested_person_passes_nobody_over(handler_env):
    """A review assistant (any name: GitLab flags the account) or a token's user added as a reviewer is no
    team choice: the suggested people left out are not passed over, and the bot gets no label."""
    env = await handler_env()
    assistant = env.state.add_user("GitLabDuo", bot=True)
    token_user = env.state.add_user(f"project_{env.tiny.project.id}_bot_3f9a", bot=True)
    for user in (assistant, token_user):
        env.state.add_member(env.tiny.project, user, 30)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob, assistant, token_user], by=env.tiny.ann)
    await env.run()
    rows = [row for row in await rows_of(env, mr) if row[1] != "suggested"]
    assert rows == [("bob", "accepted")]


@pytest.mark.parametrize("status", [429, 500])
async def test_a_refused_bot_flag_lookup_stops_neither_the_suggestion_nor_the_labels(handler_env, status):
    """GitLab rate-limits the Users API (300 requests per 10 minutes per user by default on 17.x): without the
    flag, the name rules still apply and the suggestion and the reviewer labels go on."""
    env = await handler_env(assign="top1")
    for user in env.state.users.values():
        env.state.fail_path(f"/users/{user.id}", status)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert "`@bob`" in marker_notes(env.state, mr)[0].body
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.cy], by=env.tiny.ann)
    await env.run()
    assert ("cy", "accepted") in await rows_of(env, mr)


async def test_the_reviewers_an_mr_is_opened_with_are_judged_by_its_first_suggestion(handler_env):
    """GitLab's `open` lists the reviewers chosen on the new MR form as the MR's `reviewers`, never as
    `changes`: they are the team's choice all the same (a bot among them is none)."""
    env = await handler_env()
    assistant = env.state.add_user("GitLabDuo", bot=True)
    env.state.add_member(env.tiny.project, assistant, 30)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, reviewers=[env.tiny.dee, assistant])
    [opened] = take_events(env.state)
    assert "reviewers" not in (opened.body.get("changes") or {}) and len(opened.body["reviewers"]) == 2
    await env.send(opened)
    [shown] = await env.storage.suggestions.of_mrs(env.pid, [mr.iid])
    assert [p["username"] for p in shown.people] == ["bob", "cy"]
    await env.send(opened)  # delivered twice (a project hook and a group hook): one choice
    await env.run()
    rows = [row for row in await rows_of(env, mr) if row[1] != "suggested"]
    assert rows == [("bob", "passed_over"), ("cy", "passed_over"), ("dee", "assigned")]
    rows = await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
    assert {r.suggestion_id for r in rows if r.label != "suggested"} == {shown.id}
    env.state.set_reviewers(mr, [env.tiny.dee, env.tiny.cy], by=env.tiny.ann)
    await env.run()
    assert [row for row in await rows_of(env, mr) if row[1] != "suggested"][3:] == [("cy", "accepted")]


async def test_the_reviews_the_bot_requests_on_open_are_no_choice_of_the_team(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, reviewers=[env.tiny.dee])
    await env.run()
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["dee", "bob"]
    rows = await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
    assert [(r.person, r.label, r.value == BOT_PICK) for r in rows] == [
        ("bob", "suggested", False), ("bob", "assigned", True), ("cy", "passed_over", False),
        ("dee", "assigned", False)]
    env.state.close_mr(mr, by=env.tiny.ann)
    env.state.reopen_mr(mr, by=env.tiny.ann)  # its `reviewers` were recorded when chosen: nothing again
    await env.run()
    assert [row for row in await rows_of(env, mr) if row[1] not in ("suggested", "closed", "reopened")] == [
        ("bob", "assigned"), ("cy", "passed_over"), ("dee", "assigned"), ("bob", "assigned")]


def reviewer_requests(env, mr) -> int:
    """How many times the bot asked GitLab to set the MR's reviewers."""
    return sum(r.path.endswith(f"/merge_requests/{mr.iid}") for r in env.state.calls("PUT"))


async def test_a_push_that_makes_the_first_suggestion_naming_someone_requests_the_reviews_once(handler_env):
    """An MR opened without commits (from an issue, by the API) gets the "changes no files" comment; the push
    that brings files makes the first suggestion naming people: it requests the reviews as an open does,
    once however often the push is delivered; later pushes request nobody."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, [])
    await env.run()
    assert "changes no files" in marker_notes(env.state, mr)[0].body and mr.reviewer_ids == []
    env.state.push_to_mr(mr, FILES)
    [push] = take_events(env.state)
    row = event_row(push.event_name, push.body)
    await env.dispatch(row)
    [comment] = marker_notes(env.state, mr)
    assert "Review requested from `@bob`." in comment.body
    await env.dispatch(row)  # the worker retries it
    await env.send(push)  # and GitLab delivers it again
    await env.run()
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["bob"]
    assert reviewer_requests(env, mr) == 1 and len(marker_notes(env.state, mr)) == 1
    assert (await rows_of(env, mr)).count(("bob", "assigned")) == 1
    env.state.push_to_mr(mr, ["docs/intro.md"])
    await env.run()
    assert "`@dee`" in marker_notes(env.state, mr)[0].body and mr.reviewer_ids == [env.tiny.bob.id]
    assert reviewer_requests(env, mr) == 1


async def test_without_comment_on_update_the_first_suggestion_naming_someone_is_still_made(handler_env):
    env = await handler_env(comment_on_update=False)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, [])
    await env.run()
    env.state.push_to_mr(mr, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "`@bob`" in body
    env.state.push_to_mr(mr, ["docs/intro.md"])
    await env.run()
    assert marker_notes(env.state, mr)[0].body == body


async def test_a_push_to_an_mr_opened_before_the_bot_arrived_requests_nobody(handler_env):
    """Its open never reached the bot (no suggestion stored): the team arranged its reviews; a push is no first
    suggestion, and without `comment_on_update` it gets no comment either."""
    env = await handler_env(assign="top1", comment_on_update=False)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, reviewers=[env.tiny.cy])
    take_events(env.state)  # before the webhook existed
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    assert marker_notes(env.state, mr) == [] and mr.reviewer_ids == [env.tiny.cy.id]
    assert reviewer_requests(env, mr) == 0


async def test_removing_the_ignore_label_hands_the_mr_to_the_bot_as_marking_it_ready_does(handler_env):
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, labels=["no-reviewer-bot", "api"])
    await env.run()
    env.state.update_mr(mr, by=env.tiny.ann, labels=["no-reviewer-bot"])  # another label: still left alone
    await env.run()
    assert bot_notes(env.state, mr) == []
    env.state.update_mr(mr, by=env.tiny.ann, labels=[])
    [unlabelled] = take_events(env.state)
    await env.send(unlabelled)
    await env.send(unlabelled)  # delivered twice
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "Review requested from `@bob`." in comment.body and mr.reviewer_ids == [env.tiny.bob.id]
    assert reviewer_requests(env, mr) == 1


async def test_the_ignore_label_removed_from_a_draft_waits_for_ready(handler_env):
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True, labels=["no-reviewer-bot"])
    env.state.update_mr(mr, by=env.tiny.ann, labels=[])
    await env.run()
    assert bot_notes(env.state, mr) == []
    env.state.mark_ready(mr)
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1


# --- GitLab's review states, the author's own acts, suggestions the team reviewed around -------------------
def action_of(event):
    return event.body["object_attributes"]["action"]


async def bob_reviewed_once(env, mr) -> frozenset[str]:
    """Checks bob's labels say he reviewed, once, and was not passed over; returns who reviewed the merged change."""
    rows = await rows_of(env, mr)
    assert rows.count(("bob", "reviewed")) == 1 and ("bob", "passed_over") not in rows
    return {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)].truth()


async def test_a_submitted_review_counts_as_the_review_the_bot_requested(handler_env):
    """bob, requested by the bot, submits a review asking for changes (no comment: GitLab sends an `update`
    whose `changes.reviewers` move his state to "requested_changes"); cy approves, ann merges. bob reviewed:
    `reviewed` once, and the history keeps him."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    assert env.state.submit_review(mr, env.tiny.bob, "requested_changes")
    env.state.approve(mr, env.tiny.cy)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    assert "bob" in await bob_reviewed_once(env, mr)


@pytest.mark.parametrize("submit_hook", [True, False])  # False: GitLab 18.6, whose Submit review sends none
async def test_a_review_re_requested_after_changes_were_asked_stays_a_review(handler_env, submit_hook):
    """bob asks for changes, ann pushes and re-requests his review (his state back to "unreviewed", so the
    state read at the merge says nothing), cy approves, ann merges: bob is no idle request of the bot's. The
    re-request's `update` shows the state it reset, which tells it even where Submit review sends no hook."""
    env = await handler_env(assign="top1")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.submit_review(mr, env.tiny.bob, "requested_changes")
    [submitted] = take_events(env.state)
    if submit_hook:
        await env.send(submitted)
    env.state.push_to_mr(mr, FILES)
    env.state.re_request_review(mr, env.tiny.bob, by=env.tiny.ann)
    env.state.approve(mr, env.tiny.cy)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    assert sorted(await bob_reviewed_once(env, mr)) == ["bob", "cy"]


async def test_a_reviewer_added_or_asked_again_has_reviewed_nothing(handler_env):
    """States that move between "unreviewed" and nothing (added, re-requested before any review) are no
    review."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.re_request_review(mr, env.tiny.bob, by=env.tiny.ann)
    await env.run()
    assert ("bob", "reviewed") not in await rows_of(env, mr)


async def test_the_authors_own_approval_and_self_review_say_nothing_about_anyone(handler_env):
    """GitLab CE lets the author approve their own MR and pick themselves as reviewer: neither is the team
    taking or passing over a suggestion."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.approve(mr, env.tiny.ann)
    env.state.set_reviewers(mr, [env.tiny.ann], by=env.tiny.ann)
    env.state.unapprove(mr, env.tiny.ann)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    assert await rows_of(env, mr) == [("bob", "suggested")]


async def test_a_suggestion_the_team_reviewed_around_without_the_reviewers_field_passes_it_over(handler_env):
    """`assign` off: the team reads the comment and leaves GitLab's reviewers empty; dee approves and merges.
    bob and cy, shown, did nothing: each is passed over once, at the merge, however often it is delivered."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    shown = [p["username"] for p in (await env.storage.suggestions.latest(env.pid, mr.iid)).people]
    assert shown == ["bob", "cy"]
    env.state.approve(mr, env.tiny.dee)
    env.state.merge_mr(mr, by=env.tiny.dee)
    [merge] = [e for e in take_events(env.state) if action_of(e) == "merge"]
    first = event_row(merge.event_name, merge.body)
    await env.dispatch(first)
    await env.dispatch(event_row(merge.event_name, merge.body))  # a second delivery
    await env.dispatch(first)  # the first one retried
    rows = await rows_of(env, mr)
    assert [r for r in rows if r[1] == "passed_over"] == [("bob", "passed_over"), ("cy", "passed_over")]
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        assert rec.feedback.streak["bob"] == 1.0 and rec.feedback.streak["cy"] == 0.5  # 1 / rank


@pytest.mark.parametrize("how", ["took it", "commented", "already passed over", "merged unreviewed"])
async def test_at_the_merge_nobody_is_passed_over_twice_or_for_nobody(handler_env, how):
    """Not passed over at the merge: a suggested person who reviewed (here bob), one already turned down on the
    MR (passed over when the team added dee as reviewer), and anyone when nobody reviewed."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    if how == "took it":
        env.state.approve(mr, env.tiny.bob)
    elif how == "commented":
        env.state.add_note(mr, env.tiny.bob, "One nit inline.")
    elif how == "already passed over":
        env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)
    if how in ("commented", "already passed over"):
        env.state.approve(mr, env.tiny.dee)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    rows = await rows_of(env, mr)
    passed = [p for p, label in rows if label == "passed_over"]
    assert passed == {"took it": ["cy"], "commented": ["cy"], "already passed over": ["bob", "cy"],
                      "merged unreviewed": []}[how]


@pytest.mark.parametrize("how", ["approved", "commented"])
async def test_a_suggested_person_who_reviewed_is_not_passed_over_when_the_team_adds_another(handler_env, how):
    """bob approved (or commented on the code) without being made reviewer; ann then asks dee for a second
    review. bob did the review: adding dee passes over cy alone (bob was passed over and learned a rejection
    right after his review, as if he had been turned down)."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    if how == "approved":
        env.state.approve(mr, env.tiny.bob)
    else:
        env.state.add_note(mr, env.tiny.bob, "nit: rename this", on_file=FILES[0], line=2)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)
    await env.run()
    rows = await rows_of(env, mr)
    assert [p for p, label in rows if label == "passed_over"] == ["cy"] and ("dee", "assigned") in rows
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        assert rec.feedback.streak.get("bob", 0.0) == 0.0 and "bob" not in rec.feedback.neg


@pytest.mark.parametrize("at_once", [True, False])
async def test_a_reviewer_swapped_for_someone_else_is_turned_down_once(handler_env, at_once):
    """bob, suggested first, took the review; ann then replaces him by dee, in one change of the reviewers
    (GitLab sends bob in `previous`, dee in `current`) or by removing bob and adding dee later. One decision,
    one rejection: `removed` (bob was also passed over, a second rejection of the same choice)."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    await env.run()
    if not at_once:
        env.state.set_reviewers(mr, [], by=env.tiny.ann)
        await env.run()
    env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)
    await env.run()
    rows = await rows_of(env, mr)
    assert [label for p, label in rows if p == "bob"] == ["suggested", "accepted", "removed"]
    assert ("cy", "passed_over") in rows and ("dee", "assigned") in rows
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        assert rec.feedback.streak["bob"] == 1.0  # one rejection at rank 1


@pytest.mark.parametrize("named", [True, False])
async def test_reviewers_another_automation_sets_pass_nobody_over(handler_env, named):
    """A project access token's script (a bot by its name) or a service account (flagged by GitLab, any name)
    asks dee for the review: that is no choice of the team against the suggestion, so bob and cy are not passed
    over (every suggested person was turned down on every merge request the automation served); dee still
    took the review."""
    env = await handler_env()
    robot = env.state.add_user(f"project_{env.pid}_bot_5e1f" if named else "review-roulette", bot=not named)
    env.state.add_member(env.tiny.project, robot, 40)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.dee], by=robot)
    await env.run()
    rows = await rows_of(env, mr)
    assert [label for _, label in rows if label == "passed_over"] == [] and ("dee", "assigned") in rows


def roulette(env, named: bool):
    """A reviewer roulette's account: a project access token's (a bot by its name) or a service account (any
    name, flagged by GitLab)."""
    robot = env.state.add_user(f"project_{env.pid}_bot_5e1f" if named else "review-roulette", bot=not named)
    env.state.add_member(env.tiny.project, robot, 40)
    return robot


async def learned(env):
    """The project's recommender as the engine builds it from storage (history and labels)."""
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        return rec


@pytest.mark.parametrize("named", [True, False])
async def test_the_reviewers_another_automation_adds_are_asked_not_chosen_by_the_team(handler_env, named):
    """A roulette asks bob (suggested first) and dee (not suggested): as with the bot's own requests, the team
    chose nobody. Stored as `assigned` requests of an automation, neither is learned: bob's was the team
    taking the suggestion (`accepted`), dee's its pick, and both had taken a review (on duty, in the graph)."""
    env = await handler_env()
    robot = roulette(env, named)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.dee], by=robot)
    await env.run()
    rows = [(r.person, r.label, r.value) for r in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert rows[1:] == [("bob", "assigned", AUTOMATION), ("dee", "assigned", AUTOMATION)]
    rec = await learned(env)
    assert rec.feedback.labels == 0 and f"!{mr.iid}" not in rec.feedback.open
    assert "bob" not in rec.feedback.pos and "dee" not in rec.feedback.pos


@pytest.mark.parametrize("named", [True, False])
async def test_a_reviewer_another_automation_removes_is_not_turned_down(handler_env, named):
    """ann takes bob, suggested first; a roulette then swaps him for dee. Its removal is no rejection by the
    team: bob's rejection streak stays 0, and he is not taken for turned down on the merge request. dee, the
    roulette's pick, then submits a review: that she did, and it counts as any review. At the merge bob, who
    did nothing, is passed over like any suggested person who did nothing, and dee stays in the history."""
    env = await handler_env()
    robot = roulette(env, named)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.set_reviewers(mr, [env.tiny.dee], by=robot)
    await env.run()
    rows = [(r.person, r.label, r.value) for r in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert rows[1:] == [("bob", "accepted", None), ("bob", "removed", AUTOMATION), ("dee", "assigned", AUTOMATION)]
    rec = await learned(env)
    assert rec.feedback.streak.get("bob", 0.0) == 0.0 and "bob" not in rec.feedback.neg
    assert "dee" not in rec.feedback.pos
    assert env.state.submit_review(mr, env.tiny.dee, "reviewed")
    await env.run()
    assert "dee" in (await learned(env)).feedback.pos
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert merged.reviewers == ("dee",)
    rows = await rows_of(env, mr)
    assert [label for p, label in rows if p == "bob"] == ["suggested", "accepted", "removed", "passed_over"]
    assert ("dee", "final_reviewer") in rows and ("cy", "passed_over") in rows


async def test_a_review_another_automation_requested_and_nobody_did_is_left_out_of_the_history(handler_env):
    """A roulette asks cy (suggested second) and dee; neither does anything, bob approves and ann merges. As
    with the bot's own idle requests (GitLab's review state still "unreviewed"), neither enters the history as a
    reviewer: the recommender would learn the roulette's draws as the team's reviews. A request left lying is
    passed over, once."""
    env = await handler_env()
    robot = roulette(env, named=True)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.set_reviewers(mr, [env.tiny.cy, env.tiny.dee], by=robot)
    env.state.approve(mr, env.tiny.bob)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert merged.reviewers == () and merged.truth() == frozenset({"bob"})
    rows = await rows_of(env, mr)
    assert rows[1:] == [("cy", "assigned"), ("dee", "assigned"), ("bob", "approved"), ("cy", "passed_over"),
                        ("dee", "passed_over"), ("bob", "final_reviewer")]


async def test_who_changed_the_reviewers_is_asked_of_gitlab_only_when_the_change_labels_someone(handler_env):
    """Whether the account that changed the reviewers is an automation matters to the labels of the change
    (an automation asks people, a person chooses them), not to a re-request that labels nobody: the Users API
    allows 300 requests per 10 minutes by default. The answer is kept an hour: the lead's two changes ask it
    once. (Not the author: the bot asked about her account when the merge request was opened.)"""
    env = await handler_env()
    lead = env.state.add_user("lead")
    env.state.add_member(env.tiny.project, lead, 40)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    await env.run()
    about_lead = f"/users/{lead.id}"
    since = len(env.state.requests)
    env.state.re_request_review(mr, env.tiny.bob, by=lead)
    await env.run()
    assert not [r for r in env.state.requests[since:] if r.path.endswith(about_lead)]
    env.state.set_reviewers(mr, [env.tiny.bob, env.tiny.dee], by=lead)
    env.state.set_reviewers(mr, [env.tiny.dee], by=lead)
    await env.run()
    assert len([r for r in env.state.requests[since:] if r.path.endswith(about_lead)]) == 1
    assert {("dee", "assigned"), ("cy", "passed_over"), ("bob", "removed")} <= set(await rows_of(env, mr))


@pytest.mark.parametrize("status", [403, 404, 429, 500])
async def test_a_failed_lookup_of_who_changed_the_reviewers_loses_no_label(handler_env, status):
    """The Users API refusing or failing on the account that changed the reviewers (a service account, any
    name): the change is judged as a person's, as the name rules say, and the event goes through."""
    env = await handler_env()
    robot = env.state.add_user("review-roulette", bot=True)
    env.state.add_member(env.tiny.project, robot, 40)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    env.state.fail_path(f"/users/{robot.id}", status)
    env.state.set_reviewers(mr, [env.tiny.dee], by=robot)
    await env.run()
    assert {("dee", "assigned"), ("bob", "passed_over"), ("cy", "passed_over")} <= set(await rows_of(env, mr))


@pytest.mark.parametrize("end", ["merge", "close"])
async def test_reviewers_changed_on_a_merged_or_closed_mr_are_no_feedback(handler_env, end):
    """Tidying the reviewers of a merge request that is over (GitLab lets the sidebar edit them) judges
    nobody: dee, who approved it, was stored as turned down (`removed`, replayed before the merge), and cy,
    added after it was closed, as taking a review of a merge request that will never merge, on duty for it
    and in the graph."""
    env = await handler_env()
    t = env.tiny
    mr = env.state.open_mr(t.project, t.ann, ["src/core/new.py"])
    await env.run()
    env.state.set_reviewers(mr, [t.dee], by=t.ann)
    env.state.approve(mr, t.dee)
    (env.state.merge_mr if end == "merge" else env.state.close_mr)(mr, by=t.ann)
    await env.run()
    before = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    env.state.set_reviewers(mr, [t.cy], by=t.ann)
    await env.run()
    after = [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]
    assert after == before


async def test_an_approval_by_a_bot_account_is_no_feedback(handler_env):
    """A service account approving by policy (GitLab flags it a bot; any name) reviewed nothing: its approval
    was stored as a label about a bot, as if a person of the team had reviewed."""
    env = await handler_env()
    robot = env.state.add_user("release-tool", bot=True)
    env.state.add_member(env.tiny.project, robot)
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    await env.run()
    env.state.approve(mr, robot)
    await env.run()
    assert not [f for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid) if f.person == "release-tool"]


def as_before_15_3(event):
    """A Merge Request Hook as GitLab sent it before 15.3: no `reviewer_ids`, no `reviewers`, no reviewer changes."""
    body = event.body
    body["object_attributes"].pop("reviewer_ids", None)
    body.pop("reviewers", None)
    (body.get("changes") or {}).pop("reviewers", None)
    return event


async def test_hooks_without_reviewers_are_handled_and_said_once(handler_env, caplog):
    """A GitLab before 15.3 names no reviewers in its hooks: the bot suggests, and imports the merge with its
    reviewers from the API, and says once what it cannot learn."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/new.py"])
    sent = []
    with caplog.at_level("WARNING", logger="bot.handlers"):
        for step in (lambda: None, lambda: env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann),
                     lambda: env.state.merge_mr(mr, by=env.tiny.bob)):
            step()
            for event in take_events(env.state):
                if event.event_name == "Merge Request Hook":
                    sent.append(event.body["object_attributes"]["action"])
                    await env.send(as_before_15_3(event))
    assert sent == ["open", "update", "merge"]
    assert len(marker_notes(env.state, mr)) == 1
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr.iid)]
    assert merged.reviewers == ("bob",)
    told = [r.getMessage() for r in caplog.records if "carry no reviewers" in r.getMessage()]
    assert len(told) == 1 and "before 15.3" in told[0]


async def test_a_review_the_bot_requests_counts_at_once_in_the_next_merge_requests_loads(handler_env):
    """Two merge requests opened together (a burst of webhooks): the open reviews were read once and kept ten
    seconds, so the review the bot had just requested on the first was not counted on the second, and the bot
    asked bob twice, past `max_open_reviews`, the column still saying he had none open."""
    env = await handler_env(assign="top1", max_open_reviews=1)
    first = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    second = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m2.py"])
    await env.run()
    assert first.reviewer_ids == [env.tiny.bob.id] and second.reviewer_ids == [env.tiny.cy.id]
    body = marker_notes(env.state, second)[0].body
    assert "Review requested from `@cy`." in body and "`@bob`: already has 1 open review (the limit is 1)" in body


@pytest.mark.parametrize("how", ["on the draft", "on the form", "after the label"])
async def test_a_reviewer_the_team_chose_is_not_claimed_as_the_bots_request(handler_env, how):
    """The author picks bob (on the draft, on the new MR form, or after the bot's pick while the MR carried the
    ignore label) and the bot, asked to request its top suggestion, finds him first: its comment said "Review
    requested from `@bob`" and stored him as its own request, as if the team had not chosen him."""
    env = await handler_env(assign="top1")
    t = env.tiny
    if how == "on the form":
        mr = env.state.open_mr(t.project, t.ann, FILES, reviewers=[t.bob])
    else:
        mr = env.state.open_mr(t.project, t.ann, FILES, draft=how == "on the draft",
                               labels=["no-reviewer-bot"] if how == "after the label" else ())
        env.state.set_reviewers(mr, [t.bob], by=t.ann)
        if how == "on the draft":
            env.state.mark_ready(mr)
        else:
            env.state.update_mr(mr, by=t.ann, labels=[])
    await env.run()
    assert mr.reviewer_ids == [t.bob.id] and reviewer_requests(env, mr) == 0
    assert "Review requested from" not in marker_notes(env.state, mr)[0].body
    rows = await env.storage.feedback.list(env.pid, mr_iid=mr.iid)
    assert not [r for r in rows if r.value == BOT_PICK]
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    assert "Review requested from" not in marker_notes(env.state, mr)[0].body


async def test_a_reviewer_taken_off_while_the_bot_ranks_is_not_requested_again(handler_env):
    """Ready for review with bob, whom the author picked on the draft; while the bot ranks, the author takes
    him off. The bot, asked to request its top two (bob, cy), sent bob back with cy: the set it had read
    before ranking, or bob as one of its own."""
    env = await handler_env(assign="top-k", top_k=2)
    t = env.tiny
    mr = env.state.open_mr(t.project, t.ann, FILES, draft=True)
    env.state.set_reviewers(mr, [t.bob], by=t.ann)
    await env.run()
    env.state.mark_ready(mr)
    [ready] = take_events(env.state)
    gate = env.state.hold_path(f"/users/{t.cy.id}/status")
    ranking = asyncio.create_task(env.send(ready))
    while not env.state.held:
        await asyncio.sleep(0.01)
    env.state.set_reviewers(mr, [], by=t.ann)
    gate.set()
    await ranking
    await env.run()
    assert mr.reviewer_ids == [t.cy.id]
    body = marker_notes(env.state, mr)[0].body
    assert "Review requested from `@cy`." in body and "did not keep" not in body


async def test_a_reviewer_chosen_while_the_bot_ranks_is_kept_when_it_requests_its_own(handler_env):
    """The author picks cy in the sidebar right after opening the MR, while the bot is still ranking (GitLab
    slow on a status): GitLab's PUT replaces the whole set, and the bot sent the reviewers it had read before
    ranking plus bob, so cy was silently dropped (and still stored as the team's pick)."""
    env = await handler_env(assign="top1")
    t = env.tiny
    mr = env.state.open_mr(t.project, t.ann, FILES)
    [opened] = take_events(env.state)
    gate = env.state.hold_path(f"/users/{t.bob.id}/status")
    ranking = asyncio.create_task(env.send(opened))
    while not env.state.held:
        await asyncio.sleep(0.01)
    env.state.set_reviewers(mr, [t.cy], by=t.ann)
    gate.set()
    await ranking
    await env.run()
    assert sorted(mr.reviewer_ids) == sorted([t.bob.id, t.cy.id])
    assert "Review requested from `@bob`." in marker_notes(env.state, mr)[0].body


async def test_reviewers_the_team_changes_count_at_once_in_the_next_merge_requests_loads(handler_env):
    """The team swaps the bot's pick bob for cy on one MR, and the next MR opens seconds later: the open reviews
    kept from before the swap still counted bob's, so the bot set him aside as at the limit and asked cy, who
    was at it."""
    env = await handler_env(assign="top1", max_open_reviews=1)
    t = env.tiny
    first = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    env.state.set_reviewers(first, [t.cy], by=t.ann)
    await env.run()
    second = env.state.open_mr(t.project, t.ann, ["src/core/m2.py"])
    await env.run()
    assert second.reviewer_ids == [t.bob.id]
    body = marker_notes(env.state, second)[0].body
    assert "| `@cy`" not in body and "Skipped `@cy`: already has 1 open review (the limit is 1)." in body


def later(env, seconds: float = 120.0) -> None:
    """Move the bot's short-lived cache (statuses, members) `seconds` on: what GitLab says is read again."""
    recent = env.dispatch.args[0].engine.recent
    now = recent.clock() + seconds
    recent.clock = lambda: now


async def test_top1_counts_the_reviewer_it_asked_and_still_listed_when_the_mr_is_ready_again(handler_env):
    """The bot asks bob; bob sets his status to Busy; the MR goes back to draft and is marked ready again. The
    bot asked cy too: two reviewers of its own on a project that says `top1`, as if bob had never been asked."""
    env = await handler_env(assign="top1")
    t = env.tiny
    mr = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    assert mr.reviewer_ids == [t.bob.id]
    env.state.set_busy(t.bob)
    later(env)
    env.state.mark_draft(mr, by=t.ann)
    env.state.mark_ready(mr, by=t.ann)
    await env.run()
    assert mr.reviewer_ids == [t.bob.id]
    body = marker_notes(env.state, mr)[0].body
    assert "Review requested from `@bob`." in body and "Skipped @bob" in body.replace("`", "")
    assert "Review requested from `@cy`" not in body


async def test_top_k_fills_only_the_slots_its_requests_still_listed_leave(handler_env):
    """`top-k` with 2: the bot asked two people, and the first turned Busy. Ready again, it asked the third as
    well. Its requests still listed fill its two slots; one the team takes off frees a slot for the next."""
    env = await handler_env(assign="top-k", top_k=2)
    t = env.tiny
    done = env.state.open_mr(t.project, t.ann, ["src/core/m3.py"])
    env.state.set_reviewers(done, [t.dee], by=t.ann)
    env.state.merge_mr(done, by=t.dee)
    await env.run()
    mr = env.state.open_mr(t.project, t.bob, FILES)
    await env.run()
    first, second = (env.state.users[u] for u in mr.reviewer_ids)
    [third] = [u for u in (t.ann, t.cy, t.dee) if u.id not in mr.reviewer_ids]
    env.state.set_busy(first)
    later(env)
    env.state.mark_draft(mr, by=t.bob)
    env.state.mark_ready(mr, by=t.bob)
    await env.run()
    assert mr.reviewer_ids == [first.id, second.id]
    env.state.set_reviewers(mr, [first], by=t.bob)
    env.state.mark_draft(mr, by=t.bob)
    env.state.mark_ready(mr, by=t.bob)
    await env.run()
    assert mr.reviewer_ids == [first.id, third.id]
    assert f"Review requested from `@{first.username}`, `@{third.username}`." in marker_notes(env.state, mr)[0].body


async def test_reviewers_assign_from_a_developer_adds_beside_the_bots_earlier_request(handler_env):
    """`/reviewers assign 1` is the team asking for one more review: bob, asked by the bot and now Busy, does not
    use it up; the comment names both people the bot asked."""
    env = await handler_env(assign="top1")
    t = env.tiny
    mr = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    env.state.set_busy(t.bob)
    later(env)
    env.state.add_note(mr, t.ann, "/reviewers assign 1")
    await env.run()
    assert sorted(mr.reviewer_ids) == sorted([t.bob.id, t.cy.id])
    assert "Review requested from `@bob`, `@cy`." in marker_notes(env.state, mr)[0].body


@pytest.mark.parametrize("why", ["busy", "at the limit"])
async def test_someone_who_would_have_filled_the_table_is_named_when_skipped(handler_env, why):
    """Three places, two people with history: bob first, cy second. Busy or at the limit, bob was named in a
    "Skipped" note; cy, who would have been second, was left out of the table without a word (only those ranked
    above the last person shown were named, even with places left)."""
    env = await handler_env(top_k=3, max_open_reviews=1)
    t = env.tiny
    if why == "busy":
        env.state.set_busy(t.cy)
    else:
        other = env.state.open_mr(t.project, t.bob, ["lib/other.py"])
        env.state.set_reviewers(other, [t.cy], by=t.bob)
    await env.run()
    mr = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    table = [line for line in body.splitlines() if line.startswith("| ")]
    assert not any("`@cy`" in line for line in table)
    reason = "has set their GitLab status to Busy" if why == "busy" else "already has 1 open review (the limit is 1)"
    assert f"Skipped `@cy`: {reason}." in body


async def test_someone_held_back_for_good_is_not_named_because_they_are_also_at_the_limit(handler_env):
    """cy is on the project's `exclude` list, as rep has Reporter access: neither is named in the comment.
    At the review limit as well, each was named with that other reason ("Skipped @cy: is on the project's
    `exclude` list"), as if the limit were news."""
    env = await handler_env(top_k=3, max_open_reviews=1, exclude=["cy"])
    t = env.tiny
    other = env.state.open_mr(t.project, t.bob, ["lib/other.py"])
    env.state.set_reviewers(other, [t.cy, t.rep], by=t.bob)
    env.state.set_busy(t.bob)
    await env.run()
    mr = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "Skipped `@bob`: has set their GitLab status to Busy." in body
    assert "`@cy`" not in body and "`@rep`" not in body


async def reviewed_src(env, *people) -> None:
    """Each of `people` reviews and merges one of ann's changes under src/ (history the bot learns at the merge)."""
    for person in people:
        done = env.state.open_mr(env.tiny.project, env.tiny.ann, ["src/core/m3.py"])
        env.state.set_reviewers(done, [person], by=env.tiny.ann)
        env.state.merge_mr(done, by=person)
    await env.run()


async def test_a_code_owner_added_for_an_approval_names_nobody_the_table_had_no_place_for(handler_env):
    """One place: bob. cy, second and Busy, was named ("Skipped @cy") only while dee, ranked below him, was added
    for the Docs approval; with dee Busy too, cy went unsaid. Whether cy is named depends on cy alone now."""
    env = await handler_env(top_k=1)
    t = env.tiny
    await reviewed_src(env, t.dee)
    env.state.set_busy(t.cy)
    mr = env.state.open_mr(t.project, t.ann, [*FILES, "docs/a.md"])
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "added code owner `@dee`" in body and "`@cy`" not in body


async def test_someone_an_approvals_note_says_is_busy_is_not_named_again(handler_env):
    """Everyone with history is Busy, dee (the Docs owner) too: the approval's note said why dee cannot give it,
    and a "Skipped" note said it again."""
    env = await handler_env(top_k=1)
    t = env.tiny
    await reviewed_src(env, t.dee)
    for user in (t.bob, t.cy, t.dee):
        env.state.set_busy(user)
    mr = env.state.open_mr(t.project, t.ann, [*FILES, "docs/a.md"])
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "Skipped `@bob`" in body and "Skipped `@cy`" in body
    assert "(`@dee` has set their GitLab status to Busy; GitLab still requires the approval)" in body
    assert body.count("has set their GitLab status to Busy") == 3


async def test_past_three_people_skipped_the_others_are_counted(handler_env):
    """Four of the people who would have been suggested are Busy: three are named, and the fourth was left out
    without a word."""
    env = await handler_env(top_k=3)
    t = env.tiny
    eve, fay, gus = (env.state.add_user(n) for n in ("eve", "fay", "gus"))
    for user in (eve, fay, gus):
        env.state.add_member(t.project, user, 30)
    await reviewed_src(env, eve, fay, gus)
    for user in (t.bob, t.cy, eve, fay):
        env.state.set_busy(user)
    mr = env.state.open_mr(t.project, t.ann, FILES)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert body.count("- Skipped `@") == 3
    assert "- 1 more person who would have been suggested cannot review right now either" in body
