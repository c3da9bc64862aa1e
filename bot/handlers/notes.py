"""Note Hook on merge requests: the `/reviewers` commands (parsed by `bot.commands`).

Each command's effect is applied in order; the suggestion comment is then edited (or posted) once, answers
(`why`, `help`, opt-out confirmations, refusals) go into one reply to the command note, and the note gets an
award emoji: `thumbsup` when every command ran, `confused` when one was unknown, invalid or not allowed.
Every step is safe to retry (see `bot.handlers.publish`). Notes by the bot itself, system notes and edited
notes are ignored, so the bot never answers itself and an edit does not run a command twice; of its own notes,
the bot keeps only the discussion of its suggestion comment (`remember_discussion`). A comment without
commands by a suggested person is their review, but for a reply in a thread the bot started (`record_comment`).
Commands written before a merge or close but handled after it record who they set aside and do nothing else.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Hashable, Mapping, Sequence, TypeVar

from gidgetlab.routing import Router
from gidgetlab.sansio import Event

from bot.approvals import owned_by
from bot.backfill import ACTED, is_automated
from bot.comment import code_span, has_marker, render_why
from bot.commands import Command, addresses_bot, help_text, parse_commands, shown
from bot.eligibility import DEVELOPER, REPORTER, access_level_name
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import Group, MergeRequest
from bot.handlers.context import EventContext
from bot.handlers.merge_requests import assign_count, ended, gitlab_time, left_alone
from bot.handlers.publish import acknowledge, publish, reply_once
from bot.logfmt import kv
from bot.lookups import Lookups
from bot.people import own_names
from bot.storage.db import as_id
from bot.suggesting import INTERNAL, explain_person, members_former_names, suggest_for_mr
from graph.feedback import NEGATIVE

__all__ = ["router", "CommandRun", "ACK_OK", "ACK_PROBLEM"]

log = logging.getLogger("bot.handlers")
T = TypeVar("T")
router = Router()
ACK_OK, ACK_PROBLEM = "thumbsup", "confused"
JUDGING = frozenset({"why", "reroll", "exclude"})  # commands stored as labels about people; the rest as "command"
ACTING = frozenset({"suggest", "assign", "reroll", "exclude"})  # commands that change the comment or the reviewers
SETTING_ASIDE = JUDGING & ACTING  # ... of which these also judge people: written before a merge or close handled
# after it, they still record their labels (`CommandRun.late`)
# The access a command needs: requesting reviews is a Developer's call; setting people aside teaches the ranker
# that the team turned them down, which only the team may say (on a public project anyone may comment).
NEEDS = {"assign": DEVELOPER, "reroll": REPORTER, "exclude": REPORTER}
MAX_COMMANDS = 20  # per comment: the reply stays far below GitLab's note size limit (1,000,000 characters)
MAX_GROUP_LOOKUPS = 10  # names of one comment looked up as groups (each a GET /groups/:path)
# Comments longer than this are read in a thread: reading Markdown takes ~0.2-0.4 s per million characters
# (GitLab allows a note of 1,000,000), which on the event loop stalled every other delivery and request
PARSE_IN_THREAD = 20_000


@dataclass
class CommandRun:
    """What the commands of one note asked for, gathered before acting once."""

    ctx: EventContext
    mr_iid: int
    note_id: int
    user: dict[str, Any]
    replies: list[str] = field(default_factory=list)
    publish: bool = False
    assign: int | None = None
    ok: bool = True
    needs_help: bool = False  # a command was unknown or invalid: the reply ends with the help, once
    written: datetime | None = None  # when the note was written (the Note Hook's `created_at`, to the second)
    late: str | None = None  # "merged" / "closed": the MR was, after the note was written (`_not_here`)
    internal: bool = False  # written as an internal note: what it sets aside is not told in the public comment
    project_path: str = ""  # the project's `path_with_namespace`: its groups show in its address
    _mr: MergeRequest | None = None
    _access: int | None = None  # the commenter's access level (0: not a member), fetched once
    _awaiting: bool = False  # the commenter is a member awaiting a seat (no access yet)
    _groups: dict[str, bool] = field(default_factory=dict)  # names looked up as groups: whether to say so
    once: dict[Hashable, Any] = field(default_factory=dict)  # what this note's suggestions read once (`Lookups`)

    @property
    def username(self) -> str:
        return str(self.user.get("username") or "")

    async def mr(self) -> MergeRequest:
        """The MR as GitLab has it now (the Note Hook carries no reviewers), fetched once."""
        if self._mr is None:
            self._mr = await self.ctx.client.get_mr(self.ctx.project_id, self.mr_iid)
        return self._mr

    async def written_before(self, ended: datetime | None) -> bool:
        """Whether the note was written before `ended` (the MR's merge or close). The Note Hook's time is to the
        second; within the second of `ended`, GitLab's note, to the millisecond, decides."""
        if ended is None or self.written is None:
            return False
        if self.written + timedelta(seconds=1) <= ended:
            return True
        if self.written > ended:
            return False
        try:
            note = await self.ctx.client.get_note(self.ctx.project_id, self.mr_iid, self.note_id)
        except GitLabError as exc:
            if not exc.not_found:
                raise
            return False  # deleted since: nothing tells it was written in time
        return note.created_at < ended

    async def member_names(self) -> dict[str, str]:
        """The project's members' usernames by their casefolded form (usernames ignore case), and by the
        usernames they had before renaming themselves (an older comment of the bot's names them so)."""
        members = await Lookups(self.ctx.client, self.ctx.engine.recent).members(self.ctx.project_id)
        former = await members_former_names(self.ctx.storage, members)
        return {**former, **{m.username.casefold(): m.username for m in members}}

    async def username_of(self, typed: str) -> str:
        """A username as GitLab spells it (`@CY` is member `cy`: usernames ignore case), so that feedback about
        a person is stored, and learned, under their name; as typed when no project member has it."""
        return (await self.member_names()).get(typed.casefold(), typed)

    async def feedback(self, person: str, label: str, **value: Any) -> None:
        """Record a command as feedback on the MR's latest suggestion. Handled after the merge (`late`), a
        rejection of someone the merge already recorded as passed over is not stored again: a rejection counts
        once per MR, whichever of the two events was handled first. Another automation's removal of them is
        no rejection (`bot.backfill.is_automated`) and does not stand in for one."""
        storage = self.ctx.storage
        if self.late is not None and label in NEGATIVE and await storage.feedback.stored_by_another(
                self.ctx.project_id, self.mr_iid, person, NEGATIVE, self.ctx.event_id, unless=is_automated):
            return
        latest = await storage.suggestions.latest(self.ctx.project_id, self.mr_iid)
        if self.internal:
            value = {**value, INTERNAL: True}
        await storage.feedback.record(self.ctx.project_id, self.mr_iid, person, label,
                                      value={"by": self.username, **value},
                                      suggestion_id=latest.id if latest else None,
                                      source_event_id=self.ctx.event_id)

    async def groups(self, names: Sequence[str]) -> list[str]:
        """Those of `names` no member has that GitLab knows as groups (`@acme`, `@acme/web`: a group's path is
        written as a username is, and a mention of it notifies its members) and the reply may name
        (`_may_name`), as written."""
        members = await self.member_names()
        return [n for n in names if n.casefold() not in members and await self._named_group(n)]

    async def _named_group(self, name: str) -> bool:
        """Whether `name` is a group the reply may call one. Each name is looked up once per comment, and at most
        `MAX_GROUP_LOOKUPS` of them: one comment of 20 `exclude`s of 10 names each cost 200 requests."""
        key = name.casefold()
        if key not in self._groups:
            if len(self._groups) >= MAX_GROUP_LOOKUPS:
                return False  # answered as a name no member has
            group = await self.ctx.client.get_group(name)
            self._groups[key] = group is not None and self._may_name(group)
        return self._groups[key]

    def _may_name(self, group: Group) -> bool:
        """Whether the reply may say `group` exists: whoever reads it may see the group. The bot's token sees
        private groups the commenter may not (anyone can comment on a public project, and `why` needs no
        access), so only a public or internal group (any signed-in user's to see), one of the project's own
        (its path is in the project's address) or an answer in an internal note names a group."""
        own = self.project_path.casefold().startswith(group.full_path.casefold() + "/")
        return self.internal or own or group.visibility in ("public", "internal")

    def problem(self, text: str) -> None:
        self.ok = False
        self.replies.append(text)

    async def allowed(self, command: Command) -> bool:
        """Whether the commenter has the access `command` needs (`NEEDS`); if not, say so and who can run it."""
        needed = NEEDS.get(command.kind)
        if needed is None:
            return True
        if self._access is None:
            member = await self.ctx.client.get_member(self.ctx.project_id, int(self.user["id"]))
            self._awaiting = member is not None and member.awaiting
            self._access = 0 if member is None or member.awaiting else member.access_level  # awaiting: no seat
        if self._access >= needed:
            return True
        has = "no access" if self._access == 0 else f"{access_level_name(self._access)} access"
        if self._awaiting:
            has += " yet (their membership awaits a seat an Owner must approve)"
        self.problem(f"{code_span('/reviewers ' + command.kind)} needs {access_level_name(needed)} access to this "
                     f"project; {code_span('@' + self.username)} has {has}. Ask someone with that access to run it.")
        return False


# --- one function per command -------------------------------------------------------------------------------
async def _suggest(run: CommandRun, command: Command) -> None:
    run.publish = True


async def _assign(run: CommandRun, command: Command) -> None:
    ctx = run.ctx
    wanted = command.count or assign_count(ctx.project) or 1
    run.assign = max(run.assign or 0, wanted)
    run.publish = True


def _fewer_requested(asked: int, requested: Sequence[str]) -> str:
    """The reply when `/reviewers assign N` could not request N reviews: fewer people can be suggested."""
    if not requested:
        return f"{code_span('/reviewers assign')}: nobody could be asked for a review right now (the bot's comment " \
            "says why)."
    who = ", ".join(code_span("@" + p) for p in requested)
    return (f"{code_span('/reviewers assign')}: review requested from {who}, {len(requested)} of the {asked} asked: "
            "nobody else can be suggested right now.")


def _not_people(groups: Sequence[str], command: str, example: str) -> str:
    """The refusal of `why` and `exclude` about groups: the bot suggests people, each by name."""
    are = "is a group" if len(groups) == 1 else "are groups"
    return (f"{', '.join(code_span('@' + g) for g in groups)} {are}, not a person: the bot suggests people, each "
            f"by name. Name a member instead: {code_span(f'/reviewers {command} {example}')}.")


async def _why(run: CommandRun, command: Command) -> None:
    ctx, typed = run.ctx, str(command.user)
    if await run.groups([typed]):
        run.problem(_not_people([typed], "why", "@alice"))
        return
    person = await run.username_of(typed)  # a member's former username: their name now
    mr = await run.mr()
    result = await suggest_for_mr(ctx.client, ctx.engine, ctx.storage, ctx.project_id, mr, ctx.project,
                                  bot_username=ctx.bot.username, once=run.once)
    suggestion, rank, dropped = await explain_person(ctx.client, ctx.engine, ctx.project_id, ctx.project, result,
                                                     person, bot_username=ctx.bot.username)
    owned = owned_by(person, result.facts, [s.person for s in result.suggestions], mr.author.username)
    run.replies.append(render_why(person, suggestion, rank=rank, dropped=dropped, owned=owned,
                                  former=typed if typed.casefold() != person.casefold() else None))
    await run.feedback(person, "why", rank=rank, dropped=dropped)


async def _reroll(run: CommandRun, command: Command) -> None:
    """Set aside the people shown, but not those already reviewing (GitLab's reviewers, and those who approved or
    reviewed without being made reviewers: `bot.backfill.ACTED`): asking for others is no verdict on them."""
    ctx = run.ctx
    latest = await ctx.storage.suggestions.latest(ctx.project_id, run.mr_iid, before_event=ctx.event_id)
    reviewing = {u.username.casefold() for u in (await run.mr()).reviewers}
    reviewing |= {r.person.casefold() for r in await ctx.storage.feedback.list(ctx.project_id, mr_iid=run.mr_iid)
                  if r.label in ACTED}
    for person in [str(p.get("username")) for p in (latest.people if latest else []) if p.get("username")]:
        if person.casefold() not in reviewing:
            await run.feedback(person, "reroll")
    run.publish = True


def _never_suggested(author: str | None, bot: str | None) -> str:
    """The refusal of `exclude` for the MR's author and the bot, who are never suggested on it."""
    said = ([f"{code_span('@' + author)} wrote this merge request"] if author else []) + \
        ([f"{code_span('@' + bot)} is this bot"] if bot else [])
    who = "neither is ever suggested on it" if len(said) == 2 else \
        "they are never suggested on it" if author else "it is never suggested"
    return f"{' and '.join(said)}: {who}, nothing to set aside."


async def _exclude(run: CommandRun, command: Command) -> None:
    """Set members aside on this MR. Names no member has are refused, not stored: the bot never suggests
    them anyway, and the ranker would learn rejections of nobody. So are the MR's author and the bot: stored,
    `exclude @ann` on ann's own MR would be learned as the team turning ann down as a reviewer."""
    members = await run.member_names()
    people = list(dict.fromkeys(members[u.casefold()] for u in command.users if u.casefold() in members))
    author = (await run.mr()).author.username
    own = [p for p in people if p.casefold() == author.casefold()]
    bot = [p for p in people if run.ctx.bot.is_me({"username": p})]
    if own or bot:
        run.problem(_never_suggested(own[0] if own else None, bot[0] if bot else None))
        people = [p for p in people if p not in own and p not in bot]
    groups = await run.groups(command.users)
    if groups:
        run.problem(_not_people(groups, "exclude", "@alice @bob"))
    strangers = [u for u in command.users if u.casefold() not in members and u not in groups]
    if strangers:
        whose = "this username" if len(strangers) == 1 else "these usernames"
        run.problem(f"{', '.join(code_span('@' + u) for u in strangers)}: no member of this project has {whose} "
                    "(only members are ever suggested): nothing to set aside.")
    for person in people:
        await run.feedback(person, "exclude")
    if not people:
        return
    who = ", ".join(code_span("@" + u) for u in people)
    if run.late is not None:  # nothing will be suggested on it any more: what remains is the team's verdict
        run.replies.append(f"{who} set aside on this merge request.")
        return
    row = await run.ctx.storage.comments.get(run.ctx.project_id, run.mr_iid)
    run.publish = run.publish or (row is not None and row.note_id is not None)
    run.replies.append(f"{who} will not be suggested on this merge request.")


async def _optout(run: CommandRun, command: Command) -> None:
    store = run.ctx.storage.optouts
    until = store.clock() + command.duration if command.duration else None
    await store.set(run.ctx.project_id, run.username, until)
    optin = code_span("/reviewers optin")
    when = f"until {until:%Y-%m-%d %H:%M} UTC ({optin} ends it sooner)" if until else f"until you write {optin}"
    run.replies.append(f"{code_span('@' + run.username)} will not be suggested as a reviewer on this project {when}.")


async def _optin(run: CommandRun, command: Command) -> None:
    """Clear the commenter's opt-out under their username now and under the names they had before (an
    opt-out made before they renamed themselves still holds, `bot.people`, so it must end with `optin`)."""
    storage, uid = run.ctx.storage, as_id(run.user.get("id"))
    former = own_names(uid, await storage.people.sightings([uid])) if uid is not None else []
    cleared = await storage.optouts.clear(run.ctx.project_id, run.username, *former)
    who = code_span("@" + run.username)
    run.replies.append(f"{who} can be suggested as a reviewer again." if cleared else
                       f"{who} was not opted out; nothing changed.")


async def _help(run: CommandRun, command: Command) -> None:
    run.replies.append(help_text(run.ctx.bot.username))


async def _unknown(run: CommandRun, command: Command) -> None:
    run.problem(f"{code_span(shown(command.text))} is not a command I know.")
    run.needs_help = True


async def _invalid(run: CommandRun, command: Command) -> None:
    run.problem(command.error)
    run.needs_help = True


RUNNERS: dict[str, Callable[[CommandRun, Command], Awaitable[None]]] = {
    "suggest": _suggest, "assign": _assign, "why": _why, "reroll": _reroll, "exclude": _exclude,
    "optout": _optout, "optin": _optin, "help": _help, "unknown": _unknown, "invalid": _invalid,
}


# --- the handler ----------------------------------------------------------------------------------------------
async def record_comment(event: Event, ctx: EventContext) -> None:
    """A suggested person (not the author) commented on the MR: `reviewed` feedback, once per person and MR
    (a thread of ten comments is one review), or `commented` for a reply in a thread the bot started: its
    comment's, or its answer to a command's (`in_bots_thread`).

    Why the difference: the bot's comment names (and, with `assign`, requests) the people it suggests, so a
    reply in its thread answers the bot — "I'm out until the 20th, can someone else take this?" as often as
    "on it" — and is no review; counted as one, the bot learned its own request back as the team's review.
    `commented` is stored, not learned (`bot.learning.LEARNED`), and a request answered only so is left lying
    at the merge (`bot.backfill.unacted_picks`). A comment on the code (a DiffNote) is a review. So is any other
    comment of theirs — a note of its own on the MR, a reply in someone else's thread: that is where reviews
    are discussed (questions, "LGTM"), and an answer to the bot's request goes to the bot's thread, where
    GitLab's Reply and a reply to the mention's notification email put it (or to the bot's answer to a command,
    `/reviewers why @them`: that answers the bot too). A comment on an MR merged or closed (the hook's
    `merge_request.state`, `ended`) reviews nothing: the merge judged who reviewed it, and a "thanks" after it
    was learned as a review, replayed before the merge. A comment that mentions the bot (`addresses_bot`: "@bot
    I'm away this week") talks to the bot too, wherever it is: `commented`."""
    user, mr = event.data.get("user") or {}, event.data["merge_request"]
    person = str(user.get("username") or "")
    if not person or (user.get("id") is not None and user.get("id") == mr.get("author_id")) or ended(mr):
        return
    iid = int(mr["iid"])
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid, with_mr=False)
    suggested = {str(p.get("username", "")).casefold() for p in latest.people} if latest else set()
    if latest is not None and person.casefold() in suggested:
        if await ctx.storage.feedback.stored_by_another(ctx.project_id, iid, person, {"reviewed"}, ctx.event_id):
            return  # one review per person and MR: no need to ask GitLab where this reply sits
        talking = await _in_thread_if_long(addresses_bot, str(event.object_attributes.get("note") or ""),
                                           ctx.bot.username)
        label = "commented" if talking or await in_bots_thread(ctx, iid, event.object_attributes) else "reviewed"
        await ctx.storage.feedback.record_once(ctx.project_id, iid, person, label, suggestion_id=latest.id,
                                               source_event_id=ctx.event_id)


async def in_bots_thread(ctx: EventContext, iid: int, attrs: dict[str, Any]) -> bool:
    """Whether a note is a reply in a discussion the bot started on MR `iid`: its suggestion comment's, or one of
    its answers to a command written in a comment of its own (a suggested person answering `/reviewers why @them`
    with "I'm away next week" answers the bot, as in the comment's thread, and has reviewed nothing; a command
    in someone's thread is answered there, `thread_of`, and the thread stays theirs).

    Only a `DiscussionNote` can be (a plain note starts a discussion of its own, a DiffNote is on the code). The
    comment's discussion is kept from its own Note Hook (`remember_discussion`); any other discussion is asked
    of GitLab once the note is a reply by someone suggested (who started it), and so is the comment's when its
    Note Hook was not handled yet, or the comment is older than the keeping: the answer is then kept."""
    discussion = attrs.get("discussion_id")
    if attrs.get("type") != "DiscussionNote" or not isinstance(discussion, str) or not discussion:
        return False
    row = await ctx.storage.comments.get(ctx.project_id, iid)
    if row is not None and row.discussion_id == discussion:
        return True
    notes = await ctx.client.discussion_notes(ctx.project_id, iid, discussion)
    if not notes:
        return False
    if row is not None and row.note_id is not None and row.discussion_id is None and \
            row.note_id in {n.id for n in notes}:
        await ctx.storage.comments.set_discussion(ctx.project_id, iid, row.note_id, discussion)
        return True
    return ctx.bot.is_me(notes[0].author)


async def remember_discussion(event: Event, ctx: EventContext) -> None:
    """Keep the discussion of the bot's suggestion comment from the comment's own Note Hook: replies in it are
    told from reviews by it (`record_comment`), and the Notes API that posted it does not name it."""
    attrs, mr = event.object_attributes, event.data.get("merge_request")
    discussion = attrs.get("discussion_id")
    if attrs.get("action") not in (None, "create") or not isinstance(mr, dict) or not has_marker(attrs.get("note")):
        return
    if isinstance(discussion, str) and discussion and attrs.get("id") is not None:
        await ctx.storage.comments.set_discussion(ctx.project_id, int(mr["iid"]), int(attrs["id"]), discussion)


async def _not_here(run: CommandRun) -> str | None:
    """Why the commands that change the suggestion or the reviewers may not run on this MR as GitLab has it
    now (`left_alone`), in words, or None. An MR merged or closed after the note was written (its event handled
    before the note's) sets `run.late`: the commands that set people aside still record it (`SETTING_ASIDE`);
    the team said it about the suggestion while the MR was open, and the ranker learns from it."""
    mr = await run.mr()
    why = left_alone(mr.state, mr.labels, run.ctx.project)
    if why in ("closed", "merged"):
        if await run.written_before(mr.merged_at if why == "merged" else mr.closed_at):
            run.late = why
            return (f"this merge request was {why} after this comment was written, before the bot got to it; "
                    "reviewers are suggested on open merge requests only.")
        return f"this merge request is {why}; reviewers are suggested on open merge requests only."
    if why is not None:
        return (f"this merge request has the label {code_span(run.ctx.project.ignore_label)}, so the bot leaves "
                "it alone; remove the label and write the command again.")
    return None


async def _run_commands(run: CommandRun, commands: Sequence[Command]) -> None:
    """Each command in order, those that act refused where they may not (`_not_here`); on an MR merged or
    closed after the note was written, the labels of the commands that set people aside are recorded and
    nothing acts (no new suggestion, no review request), which the reply says."""
    refusal = await _not_here(run) if any(c.kind in ACTING for c in commands) else None
    for command in commands:
        if refusal is not None and command.kind in ACTING and not (run.late and command.kind in SETTING_ASIDE):
            run.problem(f"{code_span(shown(command.text))}: {refusal}")
            continue
        if await run.allowed(command):
            await RUNNERS[command.kind](run, command)
    if run.late is not None:
        run.publish, run.assign = False, None
        if any(c.kind in SETTING_ASIDE for c in commands):
            run.replies.append(f"This merge request was {run.late} after this comment was written, before the bot "
                               "got to it: who it set aside is recorded, but no new suggestion was made and no "
                               "review was requested.")


def thread_of(attrs: Mapping[str, Any]) -> str | None:
    """The discussion a note is in when it is part of a thread (a `DiscussionNote`, or a `DiffNote` on the code),
    else None: a comment of its own is answered by one of its own.

    >>> thread_of({"type": "DiffNote", "discussion_id": "ab12"}), thread_of({"type": None, "discussion_id": "cd"})
    ('ab12', None)
    """
    discussion = attrs.get("discussion_id")
    threaded = attrs.get("type") in ("DiscussionNote", "DiffNote")
    return discussion if threaded and isinstance(discussion, str) and discussion else None


def written_at(attrs: Mapping[str, Any]) -> datetime | None:
    """When a note was written: the Note Hook's `created_at` (`2015-05-17 18:21:36 UTC`, or ISO 8601), or None.

    >>> written_at({"created_at": "2015-05-17 18:21:36 UTC"}) == written_at({"created_at": "2015-05-17T18:21:36Z"})
    True
    """
    return gitlab_time(attrs.get("created_at"))


def _wanted(event: Event, ctx: EventContext) -> bool:
    attrs = event.object_attributes
    if ctx.bot.is_me(event.data.get("user")) or attrs.get("system"):
        return False
    return attrs.get("action") in (None, "create") and isinstance(event.data.get("merge_request"), dict)


async def _in_thread_if_long(read: Callable[[str, str | None], T], note: str, bot_username: str | None) -> T:
    """`read(note, bot_username)`, in a thread for a long comment (`PARSE_IN_THREAD`)."""
    if len(note) <= PARSE_IN_THREAD:
        return read(note, bot_username)
    return await asyncio.to_thread(read, note, bot_username)


@router.register("Note Hook", noteable_type="MergeRequest")
@router.register("Confidential Note Hook", noteable_type="MergeRequest")
async def on_note(event: Event, ctx: EventContext) -> None:
    """Run the `/reviewers` commands of a new comment on an MR, then answer and acknowledge it; a comment
    without commands by someone the bot suggested is their review (`reviewed`), or their answer to the bot
    (`commented`, in a thread the bot started: `record_comment`). Internal notes (a "Confidential Note Hook",
    when the hook is set to send them) alike, answered with an internal note."""
    if ctx.bot.is_me(event.data.get("user")):
        await remember_discussion(event, ctx)
        return
    if not _wanted(event, ctx):
        return
    commands = await _in_thread_if_long(parse_commands, str(event.object_attributes.get("note") or ""),
                                        ctx.bot.username)
    if not commands:
        await record_comment(event, ctx)
        return
    internal = event.event == "Confidential Note Hook" or bool(event.object_attributes.get("internal"))
    run = CommandRun(ctx, int(event.data["merge_request"]["iid"]), int(event.object_attributes["id"]),
                     dict(event.data.get("user") or {}), written=written_at(event.object_attributes),
                     internal=internal,
                     project_path=str((event.data.get("project") or {}).get("path_with_namespace") or ""))
    if len(commands) > MAX_COMMANDS:
        left = len(commands) - MAX_COMMANDS
        run.problem(f"Only the first {MAX_COMMANDS} commands of a comment run; "
                    f"{'the last one was not' if left == 1 else f'the other {left} were not'}.")
        commands = commands[:MAX_COMMANDS]
    await _run_commands(run, commands)
    plain = [c.kind for c in commands if c.kind not in JUDGING]
    if plain and run.username:
        await run.feedback(run.username, "command", commands=plain)
    if run.publish:
        result = await publish(ctx, await run.mr(), assign=run.assign, once=run.once)
        if run.assign and len(result.reviewing) < run.assign:  # a reviewer the team picked counts
            run.replies.append(_fewer_requested(run.assign, result.reviewing))
    if run.needs_help:
        run.replies.append(help_text(ctx.bot.username))
    if run.replies:
        await reply_once(ctx, run.mr_iid, run.note_id, "\n\n".join(dict.fromkeys(run.replies)),  # each once
                         internal=internal, discussion=None if internal else thread_of(event.object_attributes))
    await acknowledge(ctx, run.mr_iid, run.note_id, ACK_OK if run.ok else ACK_PROBLEM)
    log.info(kv("commands run", project_id=ctx.project_id, mr_iid=run.mr_iid, note_id=run.note_id,
                commands=",".join(c.kind for c in commands), ok=run.ok))
