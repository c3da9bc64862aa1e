"""The bot's one suggestion comment per merge request: compute, assign when asked, render, post once or edit.

Why here and not in a handler: merge request events (open, ready, push) and commands (`/reviewers`,
`reroll`, `exclude`, `assign`) all end the same way. Every step is safe to run again when the worker retries
the event: the `bot_comments` row (reserved before posting) makes the comment unique, a reservation that
finds the bot's marker note already on the MR adopts it instead of posting a second one, the reviewer PUT
sends the same set again, and the suggestion row and feedback are written once per event.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Hashable, Sequence

from bot.backfill import BOT_PICK
from bot.comment import NO_ELIGIBLE, NO_ELIGIBLE_SAID, NO_FILES, has_marker, render_cannot_suggest, render_comment
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import MergeRequest
from bot.handlers.context import EventContext, RetryLater
from bot.logfmt import kv
from bot.lookups import Lookups
from bot.suggesting import SKIPPED, SuggestionResult, suggest_for_mr
from graph.feedback import MOVED_DOWN, PUT_FIRST
from graph.model import Suggestion

__all__ = ["Assignment", "publish", "store_suggestion", "assign_reviewers", "reviewers_now", "requested_by_bot",
           "upsert_comment", "reply_once", "acknowledge", "no_quick_actions", "REPLY_MARKER", "FREE_TIER_NOTE"]

log = logging.getLogger("bot.handlers")

REPLY_MARKER = "<!-- reviewbot:reply to={note_id} -->"
FREE_TIER_NOTE = ("GitLab kept a single reviewer on this merge request (GitLab Free allows one); "
                  "ask the others for a review by mentioning them.")


@dataclass
class Assignment:
    """Who the bot asked GitLab to add as reviewers, who GitLab kept, and what to say about it; `added`: those
    of `assigned` the bot's request made reviewers (the others were already), at GitLab's time `added_at`."""

    assigned: list[str] = field(default_factory=list)
    not_stuck: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    added_at: datetime | None = None


async def assign_reviewers(ctx: EventContext, mr: MergeRequest, people: Sequence[str],
                           user_ids: dict[str, int]) -> Assignment:
    """Request review from `people`: PUT existing reviewers ∪ ours (as GitLab has them now: `reviewers_now`),
    then compare with what GitLab kept."""
    mr, people = await reviewers_now(ctx, mr, people, user_ids)
    wanted = [(p, user_ids[p]) for p in people if p in user_ids]
    existing = [u.id for u in mr.reviewers]
    missing = [uid for _, uid in wanted if uid not in existing]
    after = await ctx.client.set_reviewers(ctx.project_id, mr.iid, existing + missing) if missing else mr
    if missing:  # the next merge request's ranking counts this review open (`max_open_reviews`)
        Lookups(ctx.client, ctx.engine.recent).reviewers_set(ctx.project_id, mr.iid, [u.id for u in after.reviewers])
    kept = {u.username.casefold() for u in after.reviewers}
    result = Assignment(assigned=[p for p, _ in wanted if p.casefold() in kept],
                        not_stuck=[p for p in people if p.casefold() not in kept],
                        added=[p for p, uid in wanted if uid in missing and p.casefold() in kept],
                        added_at=after.updated_at if missing else None)
    if result.not_stuck and len(kept) <= 1 and len(existing) + len(missing) > 1:
        result.notes.append(FREE_TIER_NOTE)
    if result.not_stuck:
        log.info(kv("reviewers not kept by GitLab", project_id=ctx.project_id, mr_iid=mr.iid,
                    not_stuck=",".join(result.not_stuck)))
    return result


async def reviewers_now(ctx: EventContext, mr: MergeRequest, people: Sequence[str],
                        user_ids: dict[str, int]) -> tuple[MergeRequest, list[str]]:
    """`mr` read again when the bot is about to add someone, and `people` without those it listed as reviewers
    and no longer does (taken off meanwhile: not asked again). Why: GitLab's PUT replaces the whole set, and
    `mr` was read before the ranking: a reviewer a person picked meanwhile (the author, in the sidebar of the
    MR just opened) was dropped without a word, and one they took off was sent back."""
    before = {u.id for u in mr.reviewers}
    if all(user_ids[p] in before for p in people if p in user_ids):
        return mr, list(people)
    mr = await ctx.client.get_mr(ctx.project_id, mr.iid)
    gone = before - {u.id for u in mr.reviewers}
    return mr, [p for p in people if user_ids.get(p) not in gone]


async def taken_off_reviewers(ctx: EventContext, mr: MergeRequest, person: Callable[[str], str] = str) -> set[str]:
    """Who the team removed from this MR's reviewers and did not put back (casefolded): the bot never
    requests their review again on it (say when it is reopened or marked ready again). A reviewer as the
    stored feedback has it whom GitLab (`mr`, as it is now) no longer lists was removed too: its hook is late
    (GitLab may deliver it after a `/reviewers assign` written later). `person` gives a stored name's username
    now (`MRFacts.person`): someone removed who renamed themselves since is still taken off."""
    last: dict[str, str] = {}
    for row in await ctx.storage.feedback.list(ctx.project_id, mr_iid=mr.iid):
        if row.label in ("removed", "accepted", "assigned"):
            last[person(row.person).casefold()] = row.label
    reviewing = {u.username.casefold() for u in mr.reviewers}
    return {name for name, label in last.items() if label == "removed" or name not in reviewing}


async def asked_earlier(ctx: EventContext, mr: MergeRequest, person: Callable[[str], str] = str) -> list[str]:
    """The people whose review the bot requested on this MR before and GitLab still lists as reviewers: an
    edit of the comment (new commits, `/reviewers`) keeps saying so, as GitLab's sidebar does. Someone taken
    off and put back by a person since is the team's pick, no longer the bot's. `person` gives a stored name's
    username now (`MRFacts.person`): someone who renamed themselves since the request is still reviewing."""
    reviewing = {u.username.casefold(): u.username for u in mr.reviewers}
    last = await _last_reviewer_change(ctx, mr.iid, person)
    return [name for folded, name in reviewing.items() if last.get(folded) is True]


async def _last_reviewer_change(ctx: EventContext, iid: int, person: Callable[[str], str]) -> dict[str, bool]:
    """Casefolded name -> whether their last reviewer change stored on the MR was the bot's request (False: a
    person's, or another automation's, or a removal)."""
    last: dict[str, bool] = {}
    for row in await ctx.storage.feedback.list(ctx.project_id, mr_iid=iid):
        if row.label in ("accepted", "assigned", "removed"):
            last[person(row.person).casefold()] = row.label == "assigned" and row.value == BOT_PICK
    return last


async def requested_by_bot(ctx: EventContext, iid: int, assignment: Assignment, *, retry: bool,
                           person: Callable[[str], str] = str) -> list[str]:
    """Of `assignment.assigned` (those the bot asked for whom GitLab lists), the ones it requested: its request
    made them reviewers, or they were reviewing on its own earlier request, or, on a `retry` of the event, on
    nobody's stored one (the killed attempt's request). Someone a person chose before (on the draft, on the
    new MR form, while the ignore label was on) is the team's pick: the comment said the bot requested them,
    and the label stored made the team's choice the bot's."""
    last = await _last_reviewer_change(ctx, iid, person)
    added = {p.casefold() for p in assignment.added}
    return [p for p in assignment.assigned
            if p.casefold() in added or last.get(person(p).casefold(), retry) is True]


def render(ctx: EventContext, result: SuggestionResult, assignment: Assignment) -> str:
    """The comment text: the table with its notes, or the reason nothing can be suggested.

    When nobody can be suggested but there is something to say (who was skipped and why, the approvals GitLab
    still waits for, also on a merge request no history covers), the reason is the title of an empty table, the
    notes below it; when they name who was skipped and why, the title does not also send the reader to
    `/reviewers why`.
    """
    if result.cannot == NO_FILES or (result.cannot is not None and not result.notes):
        return render_cannot_suggest(result.cannot)
    said = result.cannot == NO_ELIGIBLE and any(note.startswith(SKIPPED) for note in result.notes)
    return render_comment(
        result.suggestions, loads=result.loads, names=result.names, mention=ctx.project.mention,
        notes=[*result.notes, *assignment.notes], assigned=assignment.assigned,
        not_stuck=assignment.not_stuck, why_empty=NO_ELIGIBLE_SAID if said else result.cannot,
    )


async def publish(ctx: EventContext, mr: MergeRequest, *, assign: int | None = None,
                  top_up: bool = False, once: dict[Hashable, Any] | None = None) -> SuggestionResult:
    """Suggest reviewers for `mr` and show them in the bot's comment (posted once, edited afterwards).

    `assign` = how many of the top suggestions to request review from (None: none). With `top_up` (the
    project's `assign` setting, not a command) the reviews the bot requested on the MR before and GitLab
    still lists count toward `assign`: `top1` means one reviewer of the bot's, and an MR marked ready again
    after its pick turned Busy got a second. The suggestion is stored before any reviewer is requested:
    when a worker dies after the request, the retried event shows and assigns what was stored, not a new
    ranking made from the state its first attempt changed. `once`: what the event's suggestions share (its
    `why`s read the approval rules: `Lookups`).
    """
    k = max(ctx.project.top_k, assign or 0)
    result = await suggest_for_mr(ctx.client, ctx.engine, ctx.storage, ctx.project_id, mr, ctx.project,
                                  bot_username=ctx.bot.username, k=k, once=once)
    retry = bool(assign) and await _stored_before(ctx, mr.iid)
    suggestion_id = await store_suggestion(ctx, mr.iid, result)
    if result.suggestions and result.cannot is None:  # every process's ranker counts who is put first
        first = result.suggestions[0].person
        await ctx.storage.feedback.record(ctx.project_id, mr.iid, first, PUT_FIRST,
                                          suggestion_id=suggestion_id, source_event_id=ctx.event_id)
        for term, down, up in result.moved_down:  # ... and whom a hand-set term moved down from first
            if up == first:
                await ctx.storage.feedback.record(ctx.project_id, mr.iid, down, MOVED_DOWN[term],
                                                  suggestion_id=suggestion_id, source_event_id=ctx.event_id)
    earlier = await asked_earlier(ctx, mr, result.facts.person)
    assignment = Assignment()
    if assign and result.cannot is None:
        taken_off = await taken_off_reviewers(ctx, mr, result.facts.person)
        people = [s.person for s in result.suggestions[:assign] if s.person.casefold() not in taken_off]
        if top_up:
            people = _topped_up(people, earlier, assign)
        assignment = await assign_reviewers(ctx, mr, people, result.user_ids)
        result.reviewing = list(assignment.assigned)
        assignment.assigned = await requested_by_bot(ctx, mr.iid, assignment, retry=retry,
                                                     person=result.facts.person)
    result.requested = list(assignment.assigned)
    shown = replace(assignment, assigned=_together(earlier, assignment.assigned))
    note_id, created = await upsert_comment(ctx, mr.iid, render(ctx, result, shown))
    for person in assignment.assigned:
        if person in assignment.added:  # a reviewer change at `added_at`: an older hook about them, late, is not
            await ctx.storage.feedback.newer_applied(ctx.project_id, mr.iid, person, assignment.added_at)
        await ctx.storage.feedback.record(ctx.project_id, mr.iid, person, "assigned", value=BOT_PICK,
                                          suggestion_id=suggestion_id, source_event_id=ctx.event_id)
    if created:
        ctx.metrics.suggestion_latency.observe(max(0.0, time.time() - ctx.received_at.timestamp()))
    log.info(kv("suggestion shown", project_id=ctx.project_id, mr_iid=mr.iid, note_id=note_id,
                created=created, people=",".join(s.person for s in result.suggestions) or None,
                cannot=result.cannot))
    return result


def _topped_up(people: Sequence[str], earlier: Sequence[str], count: int) -> list[str]:
    """Of `people`, those to ask so that the bot has `count` requests of its own on the MR, `earlier` (its
    requests GitLab still lists) counted first; those of them among `people` are asked again (a request GitLab
    already has changes nothing, and the comment says it was the bot's).

    >>> _topped_up(["cy", "dee"], ["Bob"], 1), _topped_up(["bob", "cy", "dee"], ["Bob"], 2)
    ([], ['bob', 'cy'])
    """
    asked = {p.casefold() for p in earlier}
    free = max(0, count - len(asked))
    out = []
    for p in people:
        if p.casefold() in asked or free > 0:
            free -= p.casefold() not in asked
            out.append(p)
    return out


def _together(earlier: Sequence[str], assigned: Sequence[str]) -> list[str]:
    """Whom the comment says the bot asked: its requests GitLab still lists, then those of this event, each once
    (a request made before a command or a new ranking is still the bot's, as GitLab's sidebar shows it)."""
    out: dict[str, str] = {}
    for name in (*earlier, *assigned):
        out.setdefault(name.casefold(), name)
    return list(out.values())


async def _stored_before(ctx: EventContext, mr_iid: int) -> bool:
    """Whether an earlier attempt of this event stored its suggestion (and may have requested reviews)."""
    latest = await ctx.storage.suggestions.latest(ctx.project_id, mr_iid)
    return latest is not None and latest.event_id == ctx.event_id


async def store_suggestion(ctx: EventContext, mr_iid: int, result: SuggestionResult) -> int:
    """Store the suggestion once per event and return its id. When an earlier attempt of this event stored
    one, `result` takes its people (in its order) instead: that attempt may have requested their reviews.

    The MR's author and files are stored with it: labels about the MR are learned with them by whichever
    process reads them (`bot.learning.new_labels`)."""
    storage = ctx.storage
    latest = await storage.suggestions.latest(ctx.project_id, mr_iid)
    if latest is not None and latest.event_id == ctx.event_id:
        if latest.people:
            result.suggestions = _as_stored(result, latest.people)
            result.cannot = None
        return latest.id
    people = [{"username": s.person, "score": round(s.score, 6), "reasons": list(s.reasons)}
              for s in result.suggestions]
    return await storage.suggestions.add(ctx.project_id, mr_iid, people, result.model_version or "none",
                                         event_id=ctx.event_id, author=result.change.author,
                                         files=result.change.files)


def _as_stored(result: SuggestionResult, people: Sequence[dict]) -> list[Suggestion]:
    """The stored people as suggestions: today's evidence where they were ranked again, else the stored one."""
    fresh = {s.person.casefold(): s for s in (*result.ranked, *result.suggestions)}
    out = []
    for p in people:
        name = str(p.get("username") or "")
        again = fresh.get(name.casefold())
        out.append(again if again is not None and again.reasons else
                   Suggestion(name, float(p.get("score") or 0.0), tuple(str(r) for r in p.get("reasons") or ())))
    return [s for s in out if s.person]


# --- the one comment ----------------------------------------------------------------------------------------
async def upsert_comment(ctx: EventContext, mr_iid: int, body: str) -> tuple[int, bool]:
    """Edit the MR's bot comment, or post it if there is none; returns (note id, newly posted)."""
    comments = ctx.storage.comments
    row = await comments.get(ctx.project_id, mr_iid)
    if row is not None and row.note_id and await _edit(ctx, mr_iid, row.note_id, body):
        return row.note_id, False
    owner = f"event:{ctx.event_id}"
    stale_after = ctx.services.settings.worker.dispatch_timeout
    if not await comments.reserve(ctx.project_id, mr_iid, owner, stale_after=stale_after):
        row = await comments.get(ctx.project_id, mr_iid)
        if row is not None and row.note_id and await _edit(ctx, mr_iid, row.note_id, body):
            return row.note_id, False
        if row is None or row.reserved_by != owner:
            raise RetryLater(f"another worker is posting the comment on !{mr_iid}; retrying after it",
                             retry_after=min(stale_after, 30.0))
    return await _post(ctx, mr_iid, body)


async def _edit(ctx: EventContext, mr_iid: int, note_id: int, body: str) -> bool:
    """Edit the comment; False when someone deleted it (then the row is dropped and a new one is posted)."""
    try:
        await ctx.client.update_note(ctx.project_id, mr_iid, note_id, body)
    except GitLabError as exc:
        if not exc.not_found:
            raise
        log.info(kv("bot comment was deleted; posting a new one", project_id=ctx.project_id, mr_iid=mr_iid))
        await ctx.storage.comments.forget(ctx.project_id, mr_iid)
        return False
    await ctx.storage.comments.touch(ctx.project_id, mr_iid)
    return True


async def _find_comment(ctx: EventContext, mr_iid: int) -> int | None:
    """The bot's marker note already on the MR (posted by an attempt whose answer was lost), if any."""
    for note in await ctx.client.list_notes(ctx.project_id, mr_iid):
        if ctx.bot.is_me(note.author) and has_marker(note.body):
            return note.id
    return None


async def _post(ctx: EventContext, mr_iid: int, body: str) -> tuple[int, bool]:
    """Post under our reservation (adopting a marker note found on the MR); drop the reservation on failure."""
    pid, client = ctx.project_id, ctx.client
    try:
        note_id = await _find_comment(ctx, mr_iid)
        created = note_id is None
        if note_id is None:
            note = await client.create_note(pid, mr_iid, body)
            if note is None:
                raise RuntimeError("GitLab saved no note for the suggestion comment (it was read as quick actions)")
            note_id = note.id
        else:
            await client.update_note(pid, mr_iid, note_id, body)
        await ctx.storage.comments.set_note(pid, mr_iid, note_id)
    except BaseException:
        with contextlib.suppress(Exception):
            await ctx.storage.comments.forget(pid, mr_iid)
        raise
    return note_id, created


# --- replies and acknowledgements ---------------------------------------------------------------------------
async def reply_once(ctx: EventContext, mr_iid: int, note_id: int, text: str, *, internal: bool = False,
                     discussion: str | None = None) -> None:
    """Answer a command note, once: the reply carries a marker naming the note, so a retry finds it among the
    notes posted after the command (only those are read: a thread of thousands of notes cost the bot's token
    a request per hundred for every reply, `/reviewers help` from anyone). A command in an internal note is
    answered with an internal note; one in a thread (`discussion`), in that thread, where it was asked (or, the
    thread deleted since, by a comment of its own)."""
    marker = REPLY_MARKER.format(note_id=note_id)
    for note in await ctx.client.notes_after(ctx.project_id, mr_iid, note_id):
        if ctx.bot.is_me(note.author) and has_marker(note.body, marker):
            return
    body = f"{marker}\n{no_quick_actions(text)}"
    if discussion is not None:
        try:
            await ctx.client.reply_in_discussion(ctx.project_id, mr_iid, discussion, body)
            return
        except GitLabError as exc:
            if not exc.not_found or exc.no_route:
                raise
    await ctx.client.create_note(ctx.project_id, mr_iid, body, internal=internal)


def no_quick_actions(text: str) -> str:
    r"""Escape lines that start with `/`, which GitLab would run as quick actions.

    >>> no_quick_actions("ok\n  /assign @me")
    'ok\n  \\/assign @me'
    """
    return re.sub(r"^(\s*)/", r"\1\\/", text, flags=re.MULTILINE)


async def acknowledge(ctx: EventContext, mr_iid: int, note_id: int, emoji: str) -> None:
    """Award `emoji` on a command note; an award left by an earlier attempt counts as done, and so does a note
    deleted since it was written (GitLab answers 404 for both): the commands ran and were answered, and
    retrying could never succeed (the event went dead as if the bot had failed)."""
    try:
        await ctx.client.award_emoji(ctx.project_id, mr_iid, note_id, emoji)
    except GitLabError as exc:
        if exc.status != 404:
            raise
        if "already" not in str(exc).lower():
            log.info(kv("command note gone: not acknowledged", project_id=ctx.project_id, mr_iid=mr_iid,
                        note_id=note_id, error=str(exc)))
