"""`/reviewers` commands in MR comments: each command through the real router, the simulator as GitLab."""
from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.config import ProjectSettings
from bot.engine import Engine

from bot.handlers.notes import ACK_OK, ACK_PROBLEM, MAX_GROUP_LOOKUPS, PARSE_IN_THREAD
from bot.handlers.publish import REPLY_MARKER
from bot.storage.tables import bot_comments
from tests.bot_harness import bot_notes, handler_env, marker_notes, take_events  # noqa: F401 - fixture

FILES = ["src/core/m1.py"]


async def opened(env, *, draft=False, files=FILES):
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, files, draft=draft)
    await env.run()
    return mr


def replies(env, mr, note):
    marker = REPLY_MARKER.format(note_id=note.id)
    return [n for n in bot_notes(env.state, mr) if n.body.startswith(marker)]


def acks(env, note):
    return [a.name for a in note.awards if a.user_id == env.state.bot.id]


async def feedback(env, mr):
    return [(f.person, f.label) for f in await env.storage.feedback.list(env.pid, mr_iid=mr.iid)]


async def shown_now(env, mr) -> list[str]:
    """Who the MR's latest suggestion shows, in order."""
    return [p["username"] for p in (await env.storage.suggestions.latest(env.pid, mr.iid)).people]


async def test_suggest_posts_on_a_draft_and_acknowledges(handler_env):
    env = await handler_env()
    mr = await opened(env, draft=True)
    note = env.state.add_note(mr, env.tiny.cy, "Who should look at this?\n/reviewers")
    await env.run()
    assert len(marker_notes(env.state, mr)) == 1 and acks(env, note) == [ACK_OK] and replies(env, mr, note) == []


async def test_assign_by_a_developer_requests_review(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.cy, "/reviewers assign 1")
    await env.run()
    assert [env.state.users[u].username for u in mr.reviewer_ids] == ["bob"]
    assert "Review requested from `@bob`." in marker_notes(env.state, mr)[0].body
    assert acks(env, note) == [ACK_OK] and ("bob", "assigned") in await feedback(env, mr)


async def test_assign_says_when_fewer_people_could_be_asked_than_it_named(handler_env):
    """Two people can be suggested (bob, cy; dee's docs are not touched): `assign 5` requests both and says so."""
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers assign 5")
    await env.run()
    assert sorted(env.state.users[u].username for u in mr.reviewer_ids) == ["bob", "cy"]
    [reply] = replies(env, mr, note)
    assert "review requested from `@bob`, `@cy`, 2 of the 5 asked: nobody else can be suggested right now." in \
        reply.body and acks(env, note) == [ACK_OK]


async def test_a_reroll_leaving_nobody_says_why_once_above_who_was_set_aside(handler_env):
    env = await handler_env()
    mr = await opened(env)
    env.state.add_note(mr, env.tiny.ann, "/reviewers reroll")
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert "No reviewer to suggest: nobody with review history on these files can review right now.\n" in body
    assert "Cannot suggest reviewers" not in body and "Skipped `@bob`: was set aside" in body
    assert "tells why" not in body  # the notes below the title do


async def test_assign_needs_developer_access(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.rep, "/reviewers assign")
    await env.run()
    assert mr.reviewer_ids == [] and env.state.calls("PUT", f"/merge_requests/{mr.iid}") == []
    [reply] = replies(env, mr, note)
    assert "needs Developer access" in reply.body and "Reporter access" in reply.body
    assert acks(env, note) == [ACK_PROBLEM]


async def test_a_non_member_cannot_set_the_projects_reviewers_aside(handler_env):
    """On a public project anyone may comment: `exclude` and `reroll` would teach the ranker that the team
    turned people down. They need Reporter access; `why` stays open to all."""
    env = await handler_env()
    env.state.project(env.tiny.project).visibility = "public"
    outsider = env.state.add_user("outsider")
    mr = await opened(env)
    note = env.state.add_note(mr, outsider, "/reviewers exclude @bob @cy\n/reviewers reroll\n/reviewers why @bob")
    await env.run()
    assert not any(label in ("exclude", "reroll") for _, label in await feedback(env, mr))
    [reply] = replies(env, mr, note)
    assert "`/reviewers exclude` needs Reporter access to this project; `@outsider` has no access" in reply.body
    assert "`/reviewers reroll` needs Reporter access" in reply.body and "**Why `@bob`?**" in reply.body
    assert "`@bob`" in marker_notes(env.state, mr)[0].body and acks(env, note) == [ACK_PROBLEM]


async def test_why_explains_a_person(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob")
    await env.run()
    [reply] = replies(env, mr, note)
    assert "**Why `@bob`?**" in reply.body and "`@bob` ranked 1.\n" in reply.body
    assert "with score" not in reply.body  # the model's bare number is no verdict: said only beside the table
    assert "Their score, " in reply.body and "only orders this merge request's candidates" in reply.body
    assert "Ranked up most by " in reply.body
    assert "| Signal | `@bob` | Other candidates, typically | Effect |" in reply.body
    assert ("bob", "why") in await feedback(env, mr)


async def test_why_tells_why_someone_is_left_out(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @rep")
    await env.run()
    [reply] = replies(env, mr, note)
    assert "Not suggested: has Reporter access" in reply.body


@pytest.mark.parametrize("owner, through", [("@fay", ""), ("@acme/platform", ", through `@acme/platform`")])
async def test_why_says_a_code_owner_was_not_needed_for_the_approvals(handler_env, owner, through):
    """fay owns the changed files (named, or as a member of an invited group) but has no history there: bob,
    suggested, owns them too and can give the section's approval. The answer says she is a code owner of which
    pattern and section, and why the bot did not add her, not only that she has no history."""
    env = await handler_env()
    state, project = env.state, env.tiny.project
    fay = state.add_user("fay")
    if owner == "@fay":
        state.add_member(project, fay, 30)
    else:
        platform = state.add_group("acme/platform")
        state.add_group_member(platform, fay, 30)
        state.share_project(project, platform, 30)
    state.add_file(project, ".gitlab/CODEOWNERS", f"[Backend][1]\nsrc/core/ @bob {owner}\n[Docs][1]\ndocs/ @dee\n")
    mr = await opened(env)
    note = state.add_note(mr, env.tiny.ann, "/reviewers why @fay")
    await env.run()
    [reply] = replies(env, mr, note)
    assert f"They are a code owner of `src/core/` (section `Backend`{through}), but were not needed for it: " \
        "`@bob`, already suggested, can give its 1 approval." in reply.body
    assert "They have no review history on the files this merge request touches." in reply.body


async def why_fay_under(env, codeowners: str):
    """(MR, the bot's reply) for ann's `/reviewers why @fay` on a new MR, fay a Developer without history and
    the project's CODEOWNERS `codeowners`."""
    fay = env.state.add_user("fay")
    env.state.add_member(env.tiny.project, fay, 30)
    env.state.add_file(env.tiny.project, ".gitlab/CODEOWNERS", codeowners)
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @fay")
    await env.run()
    [reply] = replies(env, mr, note)
    return mr, reply


async def test_why_says_a_code_owner_of_an_optional_section_is_asked_no_approval(handler_env):
    env = await handler_env()
    _, reply = await why_fay_under(env, "^[Src]\nsrc/ @bob @fay\n")
    assert "They are a code owner of `src/` (section `Src`), but were not needed for it: the section is optional " \
        "(GitLab asks its owners for no approval)." in reply.body


async def test_the_codeowners_default_section_is_not_named_codeowners(handler_env):
    """Entries before any section header are in GitLab's default section, `codeowners`, a name nobody wrote:
    the comment read "CODEOWNERS section `codeowners` needs 1 approval" and `why` "(section `codeowners`)"."""
    env = await handler_env()
    mr, reply = await why_fay_under(env, "src/core/ @bob @fay\n")
    body = marker_notes(env.state, mr)[0].body
    assert "- CODEOWNERS needs 1 approval: `@bob` can give it." in body and "`codeowners`" not in body
    assert "They are a code owner of `src/core/`, but were not needed for it: `@bob`, already suggested" in reply.body


async def test_an_exclusion_made_before_a_rename_holds_under_the_new_name(handler_env):
    """`/reviewers exclude @bob`, then bob renames himself `robert` on GitLab (same id) and asks why he is not
    suggested: the exclusion made under his old name holds, and his own comment, naming him anew, makes the bot
    read the members again (it keeps them a minute) instead of calling him someone who is not a member."""
    env = await handler_env()
    mr = await opened(env)
    env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @bob")
    await env.run()
    env.state.rename_user(env.tiny.bob, "robert")
    note = env.state.add_note(mr, env.tiny.bob, "/reviewers why @robert\n/reviewers")
    await env.run()
    [reply] = replies(env, mr, note)
    assert "Not suggested: was excluded from this merge request with `/reviewers exclude`" in reply.body
    assert "robert" not in await shown_now(env, mr) and "bob" not in await shown_now(env, mr)


async def asked_after_bob_renamed(env, command: str):
    """(MR, note, the bot's reply) for `command` written by ann after bob, put first on a new MR, renamed himself
    `robert` and a push made the bot learn of it."""
    mr = await opened(env)
    env.state.rename_user(env.tiny.bob, "robert")
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    note = env.state.add_note(mr, env.tiny.ann, command)
    await env.run()
    [reply] = replies(env, mr, note)
    return mr, note, reply


async def test_why_about_a_former_username_answers_for_the_member_now(handler_env):
    """A comment written before bob, asked to review, renamed himself `robert` names `@bob`: asked why about
    that name once the bot knew of the rename (the push's hook names him), it said "Not suggested: is not a
    member of this project" of the person it had put first."""
    env = await handler_env(assign="top1")
    _, _, reply = await asked_after_bob_renamed(env, "/reviewers why @bob")
    assert reply.body.splitlines()[1:3] == ["**Why `@robert`?**", "`@bob` is `@robert` now: they changed their "
                                            "username."]
    assert "`@robert` ranked 1.\n" in reply.body
    assert "not a member" not in reply.body


async def test_exclude_with_a_former_username_sets_the_member_aside(handler_env):
    """The comment names `@bob`; he renames himself `robert` meanwhile. `/reviewers exclude @bob`, copied from
    the comment, was refused: "no member of this project has this username"."""
    env = await handler_env(assign="top1")
    mr, note, reply = await asked_after_bob_renamed(env, "/reviewers exclude @bob")
    assert "`@robert` will not be suggested on this merge request." in reply.body and acks(env, note) == [ACK_OK]
    assert "robert" not in await shown_now(env, mr)


async def test_a_member_awaiting_a_seat_is_left_out_and_said_why(handler_env):
    """`members/all` lists members GitLab holds for a seat (Premium, at the seat limit) as `membership_state:
    "awaiting"`: they have no access yet, so a review request would go nowhere. They were suggested first."""
    env = await handler_env()
    env.state.await_seat(env.tiny.project, env.tiny.bob)
    mr = await opened(env)
    [comment] = marker_notes(env.state, mr)
    table = [line for line in comment.body.splitlines() if line.startswith("| ")]
    assert not any("`@bob`" in line for line in table) and "`@cy`" in table[1]
    assert "Skipped `@bob`: is awaiting a seat" in comment.body and "until an Owner approves them" in comment.body
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob")
    await env.run()
    assert "Not suggested: is awaiting a seat" in replies(env, mr, note)[0].body


async def test_a_member_awaiting_a_seat_cannot_run_the_commands_that_need_access(handler_env):
    """A member GitLab holds for a seat has no access yet (a public project lets them comment): their `reroll`
    speaks for nobody on the team."""
    env = await handler_env()
    env.state.project(env.tiny.project).visibility = "public"
    mr = await opened(env)
    env.state.await_seat(env.tiny.project, env.tiny.dee)
    note = env.state.add_note(mr, env.tiny.dee, "/reviewers reroll")
    await env.run()
    assert not any(label == "reroll" for _, label in await feedback(env, mr))
    assert "`/reviewers reroll` needs Reporter access to this project; `@dee` has no access yet (their " \
        "membership awaits a seat an Owner must approve)" in replies(env, mr, note)[0].body


async def test_reroll_suggests_other_people_and_remembers_it(handler_env):
    """... when written as a command: in an indented code block (4 spaces) it is text."""
    env = await handler_env()
    mr = await opened(env)
    shown = await shown_now(env, mr)
    quoted = env.state.add_note(mr, env.tiny.dee, "For other names, comment:\n\n    /reviewers reroll\n\nThanks!")
    await env.run()
    assert acks(env, quoted) == [] and await shown_now(env, mr) == shown
    assert not any(label == "reroll" for _, label in await feedback(env, mr))
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers reroll")
    await env.run()
    now = await shown_now(env, mr)
    assert shown and not set(shown) & set(now)
    assert {(p, "reroll") for p in shown} <= set(await feedback(env, mr)) and acks(env, note) == [ACK_OK]
    env.state.push_to_mr(mr, ["src/core/m2.py"])
    await env.run()
    again = await shown_now(env, mr)
    assert not set(shown) & set(again)
    why = env.state.add_note(mr, env.tiny.ann, f"/reviewers why @{shown[0]}")
    await env.run()
    said = replies(env, mr, why)[0].body
    assert "set aside on this merge request with `/reviewers reroll`" in said and "excluded" not in said


async def test_reroll_leaves_alone_someone_already_reviewing(handler_env):
    """Asking for other people is no verdict on the reviewer already at it: no `reroll` for them, and they stay
    on duty for the recommender."""
    env = await handler_env()
    mr = await opened(env)
    env.state.set_reviewers(mr, [env.tiny.bob], by=env.tiny.ann)
    env.state.add_note(mr, env.tiny.ann, "/reviewers reroll")
    await env.run()
    rows = await feedback(env, mr)
    assert ("bob", "reroll") not in rows and ("cy", "reroll") in rows and mr.reviewer_ids == [env.tiny.bob.id]
    async with Engine(env.storage, retrain_labels=None).use(env.pid, ProjectSettings()) as rec:
        assert "bob" in rec.feedback.open[f"!{mr.iid}"].people


@pytest.mark.parametrize("how", ["approved", "commented"])
async def test_reroll_leaves_alone_someone_who_reviewed_without_being_made_reviewer(handler_env, how):
    """bob approved (or commented on the code) without being in GitLab's reviewers; ann asks for other people:
    bob did the review, rerolling is no verdict on him."""
    env = await handler_env()
    mr = await opened(env)
    if how == "approved":
        env.state.approve(mr, env.tiny.bob)
    else:
        env.state.add_note(mr, env.tiny.bob, "nit: rename this", on_file=FILES[0], line=2)
    await env.run()
    env.state.add_note(mr, env.tiny.ann, "/reviewers reroll")
    await env.run()
    rows = await feedback(env, mr)
    assert ("bob", "reroll") not in rows and ("cy", "reroll") in rows


async def test_the_exclude_setting_keeps_people_off_every_mr(handler_env):
    env = await handler_env(exclude=("bob",))
    mr = await opened(env)
    people = await shown_now(env, mr)
    assert people and "bob" not in people
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob")
    await env.run()
    assert "Not suggested: is on the project's `exclude` list" in replies(env, mr, note)[0].body


async def test_people_named_in_other_capitals_are_stored_under_their_username(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @CY @Cy\n/reviewers why @BOB")
    await env.run()
    rows = [row for row in await feedback(env, mr) if row[1] in ("exclude", "why")]
    assert rows == [("cy", "exclude"), ("bob", "why")]
    assert "`@cy` will not be suggested on this merge request" in replies(env, mr, note)[0].body


async def test_exclude_keeps_someone_off_this_mr(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @bob")
    await env.run()
    [comment] = marker_notes(env.state, mr)
    table = [line for line in comment.body.splitlines() if line.startswith("| ")]
    assert not any("`@bob`" in line for line in table) and "Skipped `@bob`: was excluded" in comment.body
    assert ("bob", "exclude") in await feedback(env, mr)
    assert "will not be suggested on this merge request" in replies(env, mr, note)[0].body
    other = env.state.open_mr(env.tiny.project, env.tiny.cy, FILES)
    await env.run()
    assert "`@bob`" in marker_notes(env.state, other)[0].body


async def test_why_and_exclude_about_a_group_say_it_is_no_person(handler_env):
    """`@acme` (the project's group) and `@acme/web` (a subgroup) are groups: `why` answered "not a member" and
    `exclude` "no member has this username", as if they were people with a typo. The reply says each is a
    group and that the bot suggests people; nothing is stored about a group, and a person named beside one is
    still set aside."""
    env = await handler_env()
    env.state.add_group("acme/web", visibility="internal")  # a private one the bot cannot see is a 404
    mr = await opened(env)
    why = env.state.add_note(mr, env.tiny.ann, "/reviewers why @acme")
    sub = env.state.add_note(mr, env.tiny.ann, "/reviewers why @acme/web")
    exclude = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @ACME @bob")
    await env.run()
    said = replies(env, mr, why)[0].body
    assert "`@acme` is a group, not a person: the bot suggests people" in said and "not a member" not in said
    assert "`@acme/web` is a group, not a person" in replies(env, mr, sub)[0].body
    said = replies(env, mr, exclude)[0].body
    assert "`@ACME` is a group, not a person" in said and "no member" not in said
    assert "`@bob` will not be suggested on this merge request" in said
    assert acks(env, why) == acks(env, sub) == acks(env, exclude) == [ACK_PROBLEM]
    assert [f for f in await feedback(env, mr) if f[1] in ("why", "exclude")] == [("bob", "exclude")]


async def test_optout_and_optin(handler_env):
    env = await handler_env()
    mr = await opened(env)
    out = env.state.add_note(mr, env.tiny.bob, "/reviewers optout 2w")
    await env.run()
    assert await env.storage.optouts.active(env.pid) == {"bob"}
    assert "will not be suggested as a reviewer on this project until" in replies(env, mr, out)[0].body
    assert "UTC (`/reviewers optin` ends it sooner)." in replies(env, mr, out)[0].body
    back = env.state.add_note(mr, env.tiny.bob, "/reviewers optin")
    await env.run()
    assert await env.storage.optouts.active(env.pid) == set()
    assert "can be suggested as a reviewer again" in replies(env, mr, back)[0].body


async def test_help_and_unknown_commands_answer_with_help(handler_env):
    env = await handler_env()
    mr = await opened(env)
    asked = env.state.add_note(mr, env.tiny.ann, "/reviewers help")
    wrong = env.state.add_note(mr, env.tiny.ann, "/reviewers frobnicate")
    invalid = env.state.add_note(mr, env.tiny.ann, "/reviewers assign lots")
    await env.run()
    assert "| `/reviewers` | suggest reviewers again |" in replies(env, mr, asked)[0].body
    assert "is not a command I know" in replies(env, mr, wrong)[0].body
    assert "N a number from 1 to 10" in replies(env, mr, invalid)[0].body
    assert acks(env, asked) == [ACK_OK] and acks(env, wrong) == [ACK_PROBLEM] == acks(env, invalid)


async def test_conversation_addressed_to_the_bot_is_left_alone(handler_env):
    """"@reviewbot thanks!" is no command: no emoji, no reply (it got a 😕, "not a command I know" and the
    whole help). A mention followed by one of the bot's command words runs it; a slash command still answers a
    wrong word with the help."""
    env = await handler_env()
    mr = await opened(env)
    talk = [env.state.add_note(mr, env.tiny.ann, text) for text in
            ("@reviewbot thanks!", "@reviewbot can you look again?", "thanks @reviewbot")]
    asked = env.state.add_note(mr, env.tiny.ann, "@reviewbot help")
    wrong = env.state.add_note(mr, env.tiny.ann, "@reviewbot reviewers please")
    await env.run()
    assert all(replies(env, mr, note) == [] and acks(env, note) == [] for note in talk)
    assert "| `/reviewers` | suggest reviewers again |" in replies(env, mr, asked)[0].body
    assert acks(env, asked) == [ACK_OK] and acks(env, wrong) == [ACK_PROBLEM]
    assert "is not a command I know" in replies(env, mr, wrong)[0].body


async def test_a_suggested_person_talking_to_the_bot_has_reviewed_nothing(handler_env):
    """bob, suggested, tells the bot he is away, in a comment of its own: he answers the bot, as in its
    comment's thread (`commented`), and has reviewed nothing."""
    env = await handler_env()
    mr = await opened(env)  # the bot suggests bob first
    env.state.add_note(mr, env.tiny.bob, "@reviewbot I'm out until the 20th, can you pick someone else?")
    await env.run()
    assert [f for f in await feedback(env, mr) if f[0] == "bob" and f[1] != "suggested"] == [("bob", "commented")]


async def test_a_long_comment_is_read_whole(handler_env):
    """A comment past `PARSE_IN_THREAD` is read in a thread: its command at the very end still runs, and its
    quoted or fenced look-alikes still do not."""
    env = await handler_env()
    mr = await opened(env)
    filler = "Some context, word after word.\n" * (PARSE_IN_THREAD // 30 + 10)
    assert len(filler) > PARSE_IN_THREAD
    asked = env.state.add_note(mr, env.tiny.ann, filler + "\n> /reviewers frobnicate\n\n/reviewers help")
    fenced = env.state.add_note(mr, env.tiny.ann, filler + "\n```\n/reviewers help\n```")
    await env.run()
    assert len(replies(env, mr, asked)) == 1 and "| `/reviewers` | suggest reviewers again |" in \
        replies(env, mr, asked)[0].body
    assert acks(env, asked) == [ACK_OK] and replies(env, mr, fenced) == [] and acks(env, fenced) == []


async def test_a_command_note_deleted_before_it_is_handled_is_answered_and_done(handler_env):
    """The award on a deleted note is a 404 "Note Not Found": the commands ran and were answered, so the event
    is done (it was retried, then went dead)."""
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers help")
    env.state.delete_note(note)
    await env.run()
    assert "| `/reviewers` | suggest reviewers again |" in replies(env, mr, note)[0].body
    assert not any(r.method == "POST" and r.path.endswith(f"/notes/{note.id}/award_emoji") and r.status == 201
                   for r in env.state.requests)


async def test_the_bots_own_and_edited_and_plain_notes_do_nothing(handler_env):
    env = await handler_env()
    mr = await opened(env)
    calls = len(env.state.requests)
    env.state.add_note(mr, env.state.bot, "/reviewers help")
    plain = env.state.add_note(mr, env.tiny.ann, "Looks good to me")
    env.state.edit_note(plain, "/reviewers help")
    await env.run()
    assert len(env.state.requests) == calls


async def test_a_retried_command_answers_and_acknowledges_once(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @cy\n/reviewers help")
    [event] = env.state.outbox[:]
    await env.send(event)
    await env.send(event)
    await env.run()
    [reply] = replies(env, mr, note)
    assert "**Why `@cy`?**" in reply.body and "suggest reviewers again" in reply.body
    assert acks(env, note) == [ACK_OK]


async def test_a_command_in_a_thread_is_answered_in_that_thread(handler_env):
    """A command written on the code or as a reply in a thread was answered by a comment of its own at the end of
    the merge request, away from the thread the question was asked in. It is answered in the thread, once
    however often the event is retried; a comment of its own is answered by one of its own, as before."""
    env = await handler_env()
    mr = await opened(env)
    on_code = env.state.add_note(mr, env.tiny.cy, "/reviewers why @bob", on_file=FILES[0], line=3)
    started = env.state.add_note(mr, env.tiny.cy, "Who knows this code?")
    in_thread = env.state.add_note(mr, env.tiny.dee, "/reviewers why @cy", reply_to=started)
    [comment] = marker_notes(env.state, mr)
    under_comment = env.state.add_note(mr, env.tiny.ann, "/reviewers help", reply_to=comment)
    alone = env.state.add_note(mr, env.tiny.cy, "/reviewers why @dee")
    events = env.state.outbox[:]
    await env.run()
    for event in events:
        await env.send(event)
    for note in (on_code, in_thread, under_comment):
        [answer] = replies(env, mr, note)
        assert (answer.discussion_id, answer.type) == (note.discussion_id, note.type) and acks(env, note) == [ACK_OK]
    [answer] = replies(env, mr, alone)
    assert answer.discussion_id != alone.discussion_id and answer.type is None and alone.type is None


async def test_a_command_in_a_thread_deleted_meanwhile_is_answered_by_a_comment_of_its_own(handler_env):
    env = await handler_env()
    mr = await opened(env)
    started = env.state.add_note(mr, env.tiny.cy, "Who knows this code?")
    note = env.state.add_note(mr, env.tiny.dee, "/reviewers why @cy", reply_to=started)
    env.state.delete_note(started)
    env.state.delete_note(note)
    await env.run()
    [answer] = replies(env, mr, note)
    assert answer.discussion_id != note.discussion_id and "**Why `@cy`?**" in answer.body


async def test_an_internal_command_in_a_public_thread_is_answered_internally(handler_env):
    """A reply in a thread is as internal as the thread's first note: an internal command's answer in a public
    thread would tell everyone what was asked in private. It is answered by an internal note of its own."""
    env = await handler_env()
    env.state.project(env.tiny.project).hooks[0].confidential_note_events = True
    mr = await opened(env)
    started = env.state.add_note(mr, env.tiny.cy, "Who knows this code?")
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob", reply_to=started, internal=True)
    await env.run()
    [answer] = replies(env, mr, note)
    assert answer.internal and answer.discussion_id != started.discussion_id


def note_listings(env, since: int) -> int:
    return sum(r.method == "GET" and r.path.endswith("/notes") for r in env.state.requests[since:])


async def test_a_reply_on_a_long_thread_reads_only_the_notes_after_its_command(handler_env):
    """Anyone may write `/reviewers help`: on an MR of hundreds of notes its reply cost a listing per hundred
    of them (the bot's token, shared by every project); now one page of the notes posted since."""
    env = await handler_env()
    eve = env.state.add_user("eve")  # not a member
    mr = await opened(env)
    for i in range(450):
        env.state.add_note(mr, eve, f"filler {i}")
    env.state.outbox[:] = []  # the filler's hooks
    calls = len(env.state.requests)
    note = env.state.add_note(mr, eve, "/reviewers help")
    await env.run()
    assert len(replies(env, mr, note)) == 1 and note_listings(env, calls) == 1


async def test_a_command_redelivered_after_the_thread_grew_still_answers_once(handler_env):
    """The reply is found however many notes came after it (pages are read back to the command)."""
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers help")
    [event] = env.state.outbox[:]
    await env.run()
    for i in range(250):
        env.state.add_note(mr, env.tiny.cy, f"later {i}")
    env.state.outbox[:] = []
    calls = len(env.state.requests)
    await env.send(event)
    assert len(replies(env, mr, note)) == 1 and note_listings(env, calls) == 3


async def test_a_comment_by_a_suggested_person_is_their_review_once(handler_env):
    env = await handler_env()
    mr = await opened(env)  # the bot suggests bob first (see the tests above)
    env.state.add_note(mr, env.tiny.bob, "Looks fine, one nit below.")
    env.state.add_note(mr, env.tiny.bob, "And another one.")
    env.state.add_note(mr, env.tiny.ann, "Thanks!")  # the author: not a review
    await env.run()
    assert [f for f in await feedback(env, mr) if f[1] == "reviewed"] == [("bob", "reviewed")]


def discussion_reads(env, since: int) -> int:
    return sum(r.method == "GET" and "/discussions/" in r.path for r in env.state.requests[since:])


async def test_a_reply_to_the_bots_comment_is_no_review_and_a_comment_on_the_code_is_one(handler_env):
    """bob, suggested, answers the bot in its comment's thread: that answers the bot's request (here: declines
    it), it is no review (`commented`; the bot learned its own request back as one). His comment on the code is
    a review, and so is a reply in someone else's thread."""
    env = await handler_env()
    mr = await opened(env)
    [comment] = marker_notes(env.state, mr)
    env.state.add_note(mr, env.tiny.bob, "I'm out until the 20th, can someone else take this one?", reply_to=comment)
    calls = len(env.state.requests)
    await env.run()
    assert [f for f in await feedback(env, mr) if f[0] == "bob" and f[1] != "suggested"] == [("bob", "commented")]
    assert discussion_reads(env, calls) == 0  # the thread is known from the comment's own Note Hook
    env.state.add_note(mr, env.tiny.bob, "nit: rename this", on_file=FILES[0], line=2)
    question = env.state.add_note(mr, env.tiny.ann, "Is the new name clearer?")
    env.state.add_note(mr, env.tiny.cy, "Yes", reply_to=question)
    await env.run()
    assert [f for f in await feedback(env, mr) if f[1] in ("commented", "reviewed")] == [
        ("bob", "commented"), ("bob", "reviewed"), ("cy", "reviewed")]


async def test_a_reply_to_the_bots_answer_to_a_command_is_no_review(handler_env):
    """ann asks `/reviewers why @bob`; bob, suggested, answers the bot's reply in its thread ("I'm away next
    week"): he answers the bot, as in its comment's thread, and has reviewed nothing (it was stored as his
    review: a positive label, and his request counted as taken up at the merge)."""
    env = await handler_env()
    mr = await opened(env)
    command = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob")
    await env.run()
    [answer] = replies(env, mr, command)
    env.state.add_note(mr, env.tiny.bob, "I'm away next week, sorry", reply_to=answer)
    await env.run()
    assert [label for who, label in await feedback(env, mr) if who == "bob"] == ["suggested", "why", "commented"]
    env.state.add_note(mr, env.tiny.bob, "nit: rename this", on_file=FILES[0], line=2)
    await env.run()
    assert [label for who, label in await feedback(env, mr) if who == "bob"][-1] == "reviewed"


async def test_the_bots_comment_thread_is_asked_of_gitlab_when_its_own_note_hook_is_not_handled_yet(handler_env):
    """The bot keeps its comment's discussion from the comment's own Note Hook; a reply handled before that hook
    (or on a comment posted before the bot kept it) asks GitLab once, then the discussion is kept."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    for event in take_events(env.state):
        await env.send(event)
    own = [e for e in take_events(env.state) if e.event_name == "Note Hook"]  # the comment's hook, held back
    [comment] = marker_notes(env.state, mr)
    question = env.state.add_note(mr, env.tiny.ann, "Anyone?")
    env.state.add_note(mr, env.tiny.cy, "Looking", reply_to=question)
    env.state.add_note(mr, env.tiny.bob, "Not me, sorry", reply_to=comment)
    calls = len(env.state.requests)
    await env.run()
    assert (await env.storage.comments.get(env.pid, mr.iid)).discussion_id == comment.discussion_id
    assert discussion_reads(env, calls) == 2  # cy's thread is not the comment's, bob's is (then kept)
    env.state.add_note(mr, env.tiny.cy, "Me neither", reply_to=comment)
    for event in own:
        await env.send(event)
    calls = len(env.state.requests)
    await env.run()
    assert discussion_reads(env, calls) == 0
    assert [f for f in await feedback(env, mr) if f[1] in ("commented", "reviewed")] == [
        ("cy", "reviewed"), ("bob", "commented")]  # cy's review is recorded: nothing more to learn of his reply


async def test_a_comment_by_someone_not_suggested_records_nothing(handler_env):
    env = await handler_env()
    mr = await opened(env)
    env.state.add_note(mr, env.tiny.rep, "Drive-by remark.")
    await env.run()
    assert [f for f in await feedback(env, mr) if f[0] == "rep"] == []


async def test_commands_that_act_are_refused_on_merged_closed_and_ignored_mrs(handler_env):
    """`/reviewers`, `assign`, `reroll` and `exclude` would request reviews on a merged MR or one the team
    labelled for the bot to leave alone; they get a reply saying why, the rest still answer."""
    env = await handler_env()
    merged, closed = await opened(env), await opened(env)
    labelled = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, labels=["no-reviewer-bot"])
    await env.run()
    env.state.merge_mr(merged)
    env.state.close_mr(closed)
    await env.run()
    before = {mr.iid: len(await feedback(env, mr)) for mr in (merged, closed, labelled)}
    notes = {mr.iid: env.state.add_note(mr, env.tiny.cy, "/reviewers assign 1\n/reviewers reroll\n/reviewers help")
             for mr in (merged, closed, labelled)}
    await env.run()
    for mr, why in ((merged, "is merged"), (closed, "is closed"), (labelled, "has the label `no-reviewer-bot`")):
        note = notes[mr.iid]
        assert mr.reviewer_ids == [] and acks(env, note) == [ACK_PROBLEM]
        [reply] = replies(env, mr, note)
        assert reply.body.count(why) == 2 and "suggest reviewers again" in reply.body  # help still answers
        assert [label for _, label in (await feedback(env, mr))[before[mr.iid]:]] == ["command"]
    assert marker_notes(env.state, labelled) == []


@pytest.mark.parametrize("end, gap", [("merge", 5.0), ("close", 5.0), ("merge", 0.5)])
async def test_commands_written_before_a_merge_or_close_handled_after_it_keep_their_labels(handler_env, end, gap):
    """The author sets bob aside and asks for other people; cy merges (or closes) right after, and the note's
    event is handled after that one. What the command said about people is recorded (it judges the
    suggestion as it was then); nothing acts on the MR, and the reply says so. `gap` 0.5 s: both in one second,
    which the Note Hook's time (to the second) cannot order; GitLab's note (to the millisecond) does."""
    env = await handler_env()
    mr = await opened(env)
    shown = await shown_now(env, mr)
    t0 = env.state.now().replace(microsecond=100_000)
    env.state.clock = lambda: t0
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @bob\n/reviewers reroll")
    late = take_events(env.state)
    env.state.clock = lambda: t0 + timedelta(seconds=gap)
    (env.state.merge_mr if end == "merge" else env.state.close_mr)(mr, by=env.tiny.cy)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    for event in late:
        await env.send(event)
    await env.run()
    rows = await feedback(env, mr)
    assert ("bob", "exclude") in rows and {(p, "reroll") for p in shown if p != "bob"} <= set(rows)
    assert marker_notes(env.state, mr)[0].body == body and mr.reviewer_ids == [] and acks(env, note) == [ACK_OK]
    [reply] = replies(env, mr, note)
    word = "merged" if end == "merge" else "closed"
    assert f"This merge request was {word} after this comment was written" in reply.body
    assert "no new suggestion was made" in reply.body and f"is {word}" not in reply.body


async def test_a_comment_of_a_thousand_commands_runs_twenty_and_says_each_answer_once(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers help\n" * 1000)
    await env.run()
    [reply] = replies(env, mr, note)
    assert reply.body.count("| `/reviewers` | suggest reviewers again |") == 1
    assert "Only the first 20 commands of a comment run; the other 980 were not." in reply.body
    assert len(reply.body) < 5000 and acks(env, note) == [ACK_PROBLEM]


async def test_one_command_past_the_twentieth_is_said_in_the_singular(handler_env):
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers help\n" * 21)
    await env.run()
    [reply] = replies(env, mr, note)
    assert "Only the first 20 commands of a comment run; the last one was not." in reply.body, reply.body


async def test_a_command_in_an_internal_note_runs_and_is_answered_internally(handler_env):
    """With the hook's "Confidential comments" trigger on, internal notes arrive as Confidential Note Hooks."""
    env = await handler_env()
    env.state.project(env.tiny.project).hooks[0].confidential_note_events = True
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers why @bob", internal=True)
    await env.run()
    [reply] = replies(env, mr, note)
    assert reply.internal and "@bob" in reply.body
    assert ("bob", "why") in await feedback(env, mr)


async def test_setting_someone_aside_in_an_internal_note_is_not_announced_in_the_public_comment(handler_env):
    """The comment is public: "Skipped `@bob`: was excluded from this merge request with `/reviewers exclude`" told
    everyone who can read the merge request (anyone, on a public project) what a command written in an internal
    note did. The person is left out of the table all the same; the internal answer says so."""
    env = await handler_env()
    env.state.project(env.tiny.project).hooks[0].confidential_note_events = True
    mr = await opened(env)
    top = marker_notes(env.state, mr)[0].body.split("| 1 | `@")[1].split("`")[0]
    note = env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude @{top}", internal=True)
    await env.run()
    body = marker_notes(env.state, mr)[0].body
    assert f"| 1 | `@{top}`" not in body and f"@{top}" not in body and "/reviewers exclude`." not in body
    [reply] = replies(env, mr, note)
    assert reply.internal and f"`@{top}` will not be suggested on this merge request." in reply.body
    public = env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude @{top}")  # said in public: said so
    await env.run()
    assert f"Skipped `@{top}`: was excluded from this merge request with `/reviewers exclude`." in \
        marker_notes(env.state, mr)[0].body and replies(env, mr, public)


async def test_exclude_refuses_names_no_member_has(handler_env):
    """Only members are ever suggested: excluding anyone else is refused, and no rejection of nobody is stored."""
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @bob @u000001 @nobody")
    await env.run()
    assert [row for row in await feedback(env, mr) if row[1] == "exclude"] == [("bob", "exclude")]
    body = replies(env, mr, note)[0].body
    assert "`@u000001`, `@nobody`: no member of this project has these usernames" in body
    assert "`@bob` will not be suggested on this merge request" in body and acks(env, note) == [ACK_PROBLEM]


async def test_exclude_refuses_the_author_and_the_bot(handler_env):
    """The author is never suggested on their own MR, nor is the bot: `exclude @ann` on ann's MR set nobody aside,
    and stored it would be learned as the team turning ann down as a reviewer."""
    env = await handler_env()
    mr = await opened(env)
    note = env.state.add_note(mr, env.tiny.ann, "/reviewers exclude @Ann @reviewbot @bob")
    await env.run()
    assert [row for row in await feedback(env, mr) if row[1] == "exclude"] == [("bob", "exclude")]
    body = replies(env, mr, note)[0].body
    assert "`@ann` wrote this merge request and `@reviewbot` is this bot: neither is ever suggested on it, " \
        "nothing to set aside." in body
    assert "`@bob` will not be suggested on this merge request." in body and "`@ann`," not in body
    assert acks(env, note) == [ACK_PROBLEM]


async def test_a_reply_to_many_bad_commands_shows_the_help_once_and_short_echoes(handler_env):
    """Twenty wrong commands of 50,000 characters each are a comment GitLab takes; the reply must not repeat
    the help twenty times nor echo a megabyte (GitLab refuses notes over 1,000,000 characters)."""
    env = await handler_env()
    mr = await opened(env)
    lines = [f"/reviewers x{i:02d}" + "A" * 49_900 for i in range(20)]
    note = env.state.add_note(mr, env.tiny.ann, "\n".join(lines))
    await env.run()
    [reply] = replies(env, mr, note)
    assert reply.body.count("| `/reviewers` | suggest reviewers again |") == 1
    assert reply.body.count("is not a command I know") == 20 and len(reply.body) < 5_000
    assert acks(env, note) == [ACK_PROBLEM]


@pytest.mark.parametrize("note_first", [True, False])
async def test_a_late_exclusion_and_the_merge_reject_a_person_once_in_either_order(handler_env, note_first):
    """The merge records a suggested person nobody took as passed over; an exclusion written before the merge
    but handled after it is the same rejection: one, whichever event is handled first."""
    env = await handler_env()
    mr = await opened(env)
    target = (await shown_now(env, mr))[0]
    t0 = env.state.now().replace(microsecond=100_000)
    env.state.clock = lambda: t0
    env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude @{target}")
    held = take_events(env.state)
    if note_first:
        for e in held:
            await env.send(e)
        await env.run()
    env.state.clock = lambda: t0 + timedelta(seconds=5)
    approver = env.tiny.dee if target != "dee" else env.tiny.cy
    env.state.approve(mr, approver)
    env.state.merge_mr(mr, by=approver)
    await env.run()
    if not note_first:
        for e in held:
            await env.send(e)
        await env.run()
    rejections = [label for person, label in await feedback(env, mr)
                  if person == target and label in ("exclude", "passed_over", "reroll", "removed")]
    assert len(rejections) == 1, rejections


async def test_a_late_exclusion_of_someone_a_roulette_removed_is_the_one_rejection(handler_env):
    """ann takes the first suggested person, a roulette then removes them (no rejection by the team: an
    automation's change), and ann's exclusion of them, written before the merge, is handled after it. Nobody
    reviewed, so the merge passes nobody over: the exclusion is the only rejection of them on the MR and is kept
    (the roulette's removal was taken for one already, and it was dropped)."""
    env = await handler_env()
    robot = env.state.add_user(f"project_{env.pid}_bot_5e1f")
    env.state.add_member(env.tiny.project, robot, 40)
    mr = await opened(env)
    target = (await shown_now(env, mr))[0]
    person = next(u for u in (env.tiny.bob, env.tiny.cy, env.tiny.dee) if u.username == target)
    env.state.set_reviewers(mr, [person], by=env.tiny.ann)
    env.state.set_reviewers(mr, [], by=robot)
    await env.run()
    t0 = env.state.now().replace(microsecond=100_000)
    env.state.clock = lambda: t0
    env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude @{target}")
    held = take_events(env.state)
    env.state.clock = lambda: t0 + timedelta(seconds=5)
    env.state.merge_mr(mr, by=env.tiny.ann)
    await env.run()
    for e in held:
        await env.send(e)
    await env.run()
    labels = [label for who, label in await feedback(env, mr) if who == target]
    assert labels == ["suggested", "accepted", "removed", "exclude"], labels


async def test_replies_in_other_threads_ask_gitlab_once_per_person(handler_env):
    """Where the bot comment's discussion is not known (a comment kept before it was stored), a suggested
    person's reply in a thread asks GitLab for the thread once: after their first review, nothing more to learn."""
    env = await handler_env()
    mr = await opened(env)
    shown = await shown_now(env, mr)
    async with env.storage.engine.begin() as conn:
        await conn.execute(sa.update(bot_comments).values(discussion_id=None))
    person = next(u for u in (env.tiny.bob, env.tiny.cy) if u.username == shown[0])
    root = env.state.add_note(mr, env.tiny.ann, "question about the design")
    await env.run()
    before = len(env.state.calls("GET", "/discussions/"))
    for i in range(5):
        env.state.add_note(mr, person, f"answer {i}", reply_to=root)
        await env.run()
    assert len(env.state.calls("GET", "/discussions/")) - before <= 1
    assert [label for who, label in await feedback(env, mr) if who == person.username] == ["suggested", "reviewed"]


@pytest.mark.parametrize("end", ["merge", "close"])
async def test_a_comment_on_a_merged_or_closed_mr_is_no_review(handler_env, end):
    """bob, shown first, did nothing while the MR was open: the merge turned him down (`passed_over`). His
    "thanks" after it was stored as his review of it, which the replay puts before the merge, undoing that."""
    env = await handler_env()
    mr = await opened(env)
    env.state.set_reviewers(mr, [env.tiny.dee], by=env.tiny.ann)
    env.state.approve(mr, env.tiny.dee)
    (env.state.merge_mr if end == "merge" else env.state.close_mr)(mr, by=env.tiny.ann)
    await env.run()
    env.state.add_note(mr, env.tiny.bob, "Thanks, late to the party.")
    await env.run()
    assert ("bob", "reviewed") not in await feedback(env, mr)


async def test_a_member_with_the_configured_bot_username_is_not_taken_for_the_bot(handler_env):
    """`bot_username` set to another name than the token's user (a project access token's user is
    `project_7_bot_…`): the member who has that name is still a person. Their commands are answered, and a note
    of theirs that starts with the bot's marker (or a reply's) is not the bot's: the bot posts its own comment
    and reply rather than adopting theirs (which GitLab would refuse to edit) or taking the reply as given."""
    from bot.comment import MARKER
    from tests.bot_harness import dispatching

    env = await handler_env()
    gitlab = env.settings.gitlab.model_copy(update={"bot_username": "dee"})
    settings = env.settings.model_copy(update={"gitlab": gitlab})
    async with dispatching(settings, env.storage) as dispatch:
        env.dispatch = dispatch
        mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, draft=True)
        env.state.add_note(mr, env.tiny.dee, f"{MARKER}\nnot the bot's")
        await env.run()
        command = env.state.add_note(mr, env.tiny.dee, "/reviewers")
        env.state.add_note(mr, env.tiny.dee, REPLY_MARKER.format(note_id=command.id + 2) + "\nnot the bot's")
        help_note = env.state.add_note(mr, env.tiny.ann, "/reviewers help")
        assert help_note.id == command.id + 2
        await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "**Suggested reviewers**" in comment.body
    assert acks(env, command) == [ACK_OK] and len(replies(env, mr, help_note)) == 1


async def test_assign_counts_a_reviewer_the_team_picked_among_the_top_n(handler_env):
    """`assign 2` when the author already picked bob, the top suggestion, on the new merge request's form: the bot
    requests cy, and bob, the team's pick, is reviewing too; nothing was short, so no reply says fewer could be
    asked (the comment alone says whom the bot requested)."""
    env = await handler_env()
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES, reviewers=[env.tiny.bob])
    await env.run()
    note = env.state.add_note(mr, env.tiny.cy, "/reviewers assign 2")
    await env.run()
    assert sorted(env.state.users[u].username for u in mr.reviewer_ids) == ["bob", "cy"]
    assert await shown_now(env, mr) == ["bob", "cy"]
    assert replies(env, mr, note) == [] and acks(env, note) == [ACK_OK]


async def test_why_about_a_private_group_tells_a_stranger_nothing(handler_env):
    """Anyone may comment on a public project's merge request, and `why` needs no access: `why @secret` about a
    private group the bot's token sees (the bot is in it) answered "is a group" in the public reply, telling
    anyone that a group they cannot see exists. It is answered as a name nobody has, like one that does not
    exist; the project's own group, whose path its address shows, is still told."""
    env = await handler_env()
    env.tiny.project.visibility = "public"
    env.state.add_group("acme")  # private, and the project's
    secret = env.state.add_group("secret")
    env.state.add_group_member(secret, env.state.bot, 10)
    eve = env.state.add_user("eve")  # no member of the project
    mr = await opened(env)
    hidden = env.state.add_note(mr, eve, "/reviewers why @secret")
    nobody = env.state.add_note(mr, eve, "/reviewers why @nosuch")
    own = env.state.add_note(mr, eve, "/reviewers why @acme")
    await env.run()
    said = replies(env, mr, hidden)[0].body.split("\n", 1)[1]
    assert "group" not in said
    assert said == replies(env, mr, nobody)[0].body.split("\n", 1)[1].replace("nosuch", "secret")
    assert "`@acme` is a group, not a person" in replies(env, mr, own)[0].body


async def test_one_comment_looks_up_few_groups(handler_env):
    """Each name no member has was looked up as a group (GET /groups/:path), every time it was named: twenty
    `exclude` commands of ten names each made 200 requests of one comment. Each name is asked once per comment,
    and at most `MAX_GROUP_LOOKUPS` names."""
    env = await handler_env()
    mr = await opened(env)
    before = len(env.state.calls("GET", "/groups/"))
    names = " ".join(f"@x{i}" for i in range(10))
    env.state.add_note(mr, env.tiny.ann, "\n".join(f"/reviewers exclude {names}" for _ in range(20)))
    also = " ".join(f"@y{i}" for i in range(10))
    env.state.add_note(mr, env.tiny.ann, f"/reviewers exclude {also}\n/reviewers exclude {also}")
    await env.run()
    assert len(env.state.calls("GET", "/groups/")) - before <= 2 * MAX_GROUP_LOOKUPS


async def test_many_whys_in_one_comment_read_the_commits_once(handler_env):
    """Where committers may not approve, each suggestion read the merge request's commits (every page of them);
    `why` needs no access and a comment holds 20 commands, so anyone made the bot read them 20 times with one
    comment. The committers of the MR's head are kept a while, as the other lookups are."""
    env = await handler_env()
    env.state.add_file(env.tiny.project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @dee\n")
    env.tiny.project.merge_requests_disable_committers_approval = True
    mr = await opened(env, files=[*FILES, "docs/a.md"])
    env.state.add_commit(mr, env.tiny.dee, committer="someone@corp.example")
    before = len(env.state.calls("GET", "/commits"))
    env.state.add_note(mr, env.state.add_user("eve"), "\n".join(f"/reviewers why @x{i}" for i in range(20)))
    await env.run()
    assert len(env.state.calls("GET", "/commits")) - before <= 1


async def test_many_whys_in_one_comment_read_the_changed_files_once(handler_env):
    """Each `why` built a fresh suggestion, which read every page of the merge request's diffs again: on 300
    changed files (3 pages) one comment of 20 `why`s, from anyone, cost 60 requests. The changed files of the
    MR's head are kept a while; a push (a new head) reads them again."""
    env = await handler_env()
    files = [*(f"src/core/m{i}.py" for i in range(4)), *(f"src/gen/f{i}.py" for i in range(296))]
    mr = await opened(env, files=files)
    before = len(env.state.calls("GET", "/diffs"))
    who = ["bob", "cy", "dee", "rep", "ann"]
    eve = env.state.add_user("eve")
    note = env.state.add_note(mr, eve, "\n".join(f"/reviewers why @{who[i % 5]}" for i in range(20)))
    await env.run()
    assert len(env.state.calls("GET", "/diffs")) - before <= 3  # one reading at most, 100 files a page
    assert all(f"**Why `@{name}`?**" in replies(env, mr, note)[0].body for name in who)
    env.state.push_to_mr(mr, ["docs/new.md"])
    pushed = len(env.state.calls("GET", "/diffs"))
    env.state.add_note(mr, eve, "/reviewers why @dee")
    await env.run()
    assert len(env.state.calls("GET", "/diffs")) - pushed == 4  # the new head's 301 files (4 pages), read once


async def test_many_whys_in_one_comment_read_the_approval_rules_once(handler_env):
    """Each `why` built a fresh suggestion, which read the merge request's approval state again: one comment of
    20 `why`s, from anyone, asked GitLab 20 times. One comment reads the rules once, its suggestion included;
    the next comment reads them again (an approval changes them without a push)."""
    env = await handler_env()
    env.state.add_approval_rule(env.tiny.project, "Backend", 1, users=[env.tiny.bob, env.tiny.dee])
    mr = await opened(env)
    before = len(env.state.calls("GET", "/approval_state"))
    who = ["bob", "cy", "dee", "rep", "ann"]
    eve = env.state.add_user("eve")
    note = env.state.add_note(mr, eve, "\n".join(f"/reviewers why @{who[i % 5]}" for i in range(20)))
    await env.run()
    assert len(env.state.calls("GET", "/approval_state")) - before <= 1
    assert all(f"**Why `@{name}`?**" in replies(env, mr, note)[0].body for name in who)
    second = len(env.state.calls("GET", "/approval_state"))
    env.state.add_note(mr, env.tiny.ann, "/reviewers why @dee\n/reviewers suggest")
    await env.run()
    assert len(env.state.calls("GET", "/approval_state")) - second == 1


async def test_approval_rules_gitlab_failed_on_are_asked_once_per_comment(handler_env):
    """When GitLab fails on the approval state, the comment's `why`s go on without the rules and do not ask it
    again, retries and all, for each one: the failure holds for that comment alone."""
    env = await handler_env()
    env.state.add_approval_rule(env.tiny.project, "Backend", 1, users=[env.tiny.dee])
    mr = await opened(env)
    env.state.fail_path("/approval_state", 500)
    before = len(env.state.calls("GET", "/approval_state"))
    env.state.add_note(mr, env.tiny.ann, "/reviewers why @dee")
    await env.run()
    one = len(env.state.calls("GET", "/approval_state")) - before
    note = env.state.add_note(mr, env.tiny.ann, "\n".join(["/reviewers why @dee", "/reviewers why @bob"] * 3))
    await env.run()
    assert one >= 1 and len(env.state.calls("GET", "/approval_state")) - before == 2 * one
    assert "**Why `@bob`?**" in replies(env, mr, note)[0].body
