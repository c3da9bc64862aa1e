"""Merge Request Hook: suggest on open, reopen, draft → ready and ignore label removed; re-suggest on new
commits; learn on merge.

What each action does:

* `open`, `reopen`, and `update` whose `changes.draft` goes true → false or whose `changes.labels` lose the
  project's `ignore_label`: suggest and post the one comment (requesting review when the project's `assign`
  says so);
* `update` with `oldrev` (new commits): recompute and edit that comment (`comment_on_update`); while no
  suggestion before named anyone (opened without files or history), this one counts as the first: it is
  made whatever `comment_on_update` says, and requests reviews as on an open;
* `update` with `changes.reviewers` on an MR still open (not `ended`): feedback on the last suggestion
  (accepted, removed, passed over, and `assigned` for a reviewer added whom it did not suggest); another
  automation's change (`by_automation`) asks people as the bot's requests do, and judges nobody
  (`automation_labels`); on `open`, the same for the reviewers the MR was opened with (GitLab sends them
  as the MR's `reviewers`, never as `changes`), judged by the suggestion just made. A reviewer whose review
  state (GitLab 18.6+) moves to or from reviewed, requested changes or approved — a submitted review, or a
  re-request showing the state it resets — `reviewed`, once;
* `approval` / `approved`: `approved` feedback; `unapproval` / `unapproved`: `unapproved` (once each);
* `close` / `reopen`: `closed` / `reopened` rows (its reviews end / count again; reopen suggests again);
* `merge`: the MR (author, reviewers, approvers, files) joins the project's history and graph, and the final
  reviewers are recorded as feedback. A reviewer the bot itself (or only another automation) requested who
  never acted on it (GitLab review state still "unreviewed", no approval, no comment, did not merge it) is
  left out of both: otherwise the recommender would learn its own suggestions, or a roulette's draws, back
  as the team's reviews. When someone reviewed or approved it, the people of the last suggestion who did
  nothing on it and were not turned down on it already are `passed_over` (a team that reviews without
  GitLab's reviewers field turns them down only here).

The author's own approval, or the author made reviewer, is no evidence about anyone and is not recorded; nor
is a bot's approval.

Skipped: drafts (`skip_drafts`), MRs with the ignore label, MRs by bots, and any event the bot itself caused
(its reviewer PUT fires an `update` hook). GitLab delivers hooks asynchronously and re-sends failed ones, so
an event may arrive late or out of order: what the bot does or records is checked against the MR as GitLab
has it now. A suggestion needs the payload and the live MR both open, ready and unlabelled (a late `open`
or push on an MR since closed, merged, made a draft again or labelled does nothing); a `closed` or
`reopened` label is recorded only while GitLab's state agrees (a `close` delivered after the `reopen` that
undid it is not). Approval and reviewer labels follow the payloads (GitLab's current state cannot tell
"changed again since" from "never happened": approvals reset by a push send no hook) in GitLab's order: an
event older (`event_time`) than one already applied about the same person's approval (or reviewer role) on
the MR is dropped, so an `unapproval` handled before its `approval`, or a reviewer removal before the
addition, stays the last word; an approval and a reviewer change never undo each other.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any, Collection, Iterable, Mapping

from gidgetlab.routing import Router
from gidgetlab.sansio import Event

from bot.backfill import ACTED, AUTOMATION, drop_idle_picks, fetch_change, is_automated
from bot.config import ProjectSettings
from bot.eligibility import is_bot_username
from bot.gitlab.models import MergeRequest
from bot.handlers.context import EventContext
from bot.handlers.publish import publish
from bot.logfmt import kv
from bot.lookups import Lookups, gather
from bot.storage import FeedbackRow, SuggestionRow
from bot.suggesting import SuggestionResult
from graph.feedback import NEGATIVE
from graph.model import Change

__all__ = ["router", "became_ready", "lost_ignore_label", "skip_reason", "left_alone", "assign_count",
           "moves_open_reviews", "reviewer_feedback", "automation_labels", "submitted_reviews", "passed_over_at_merge",
           "settled", "by_automation", "event_time", "ended"]

log = logging.getLogger("bot.handlers")
router = Router()
HOOK = "Merge Request Hook"


# --- pure decisions -----------------------------------------------------------------------------------------
# GitLab's draft title prefixes (`MergeRequest::DRAFT_REGEX`, and the `WIP` ones before 14.0)
_DRAFT_TITLE = re.compile(r"\s*(\[draft\]|\(draft\)|draft:|draft\s+-|\[wip\]|wip:)", re.IGNORECASE)


def became_ready(changes: Mapping[str, Any]) -> bool:
    """Whether an `update` turned a draft into a ready MR: `draft` (GitLab 16.3+) or `work_in_progress`
    going from true to false, or, before 16.3, when neither is a tracked change, the title losing its draft
    prefix ("Draft: X" → "X").

    >>> became_ready({"draft": {"previous": True, "current": False}}), became_ready({"title": {}})
    (True, False)
    >>> became_ready({"title": {"previous": "Draft: Fix it", "current": "Fix it"}})
    True
    """
    for key in ("draft", "work_in_progress"):
        change = changes.get(key)
        if isinstance(change, Mapping) and change.get("previous") is True and change.get("current") is False:
            return True
    title = changes.get("title")
    if "draft" in changes or "work_in_progress" in changes or not isinstance(title, Mapping):
        return False
    before, after = (str(title.get(k) or "") for k in ("previous", "current"))
    return _DRAFT_TITLE.match(before) is not None and _DRAFT_TITLE.match(after) is None


def _label_titles(attrs: Mapping[str, Any], key: str = "labels") -> list[str]:
    labels = attrs.get(key) or []
    return [str(label.get("title")) if isinstance(label, Mapping) else str(label) for label in labels]


def lost_ignore_label(changes: Mapping[str, Any], ignore_label: str) -> bool:
    """Whether an `update` took the project's `ignore_label` off the MR: the team hands it to the bot, which
    suggests as on a draft marked ready.

    >>> change = {"labels": {"previous": [{"title": "no-reviewer-bot"}], "current": [{"title": "api"}]}}
    >>> lost_ignore_label(change, "no-reviewer-bot"), lost_ignore_label({"labels": {}}, "no-reviewer-bot")
    (True, False)
    """
    labels = changes.get("labels")
    if not ignore_label or not isinstance(labels, Mapping):
        return False
    before, after = _label_titles(labels, "previous"), _label_titles(labels, "current")
    return ignore_label in before and ignore_label not in after


def skip_reason(attrs: Mapping[str, Any], settings: ProjectSettings) -> str | None:
    """Why the bot stays quiet on this MR event (from the payload), or None.

    >>> skip_reason({"draft": True}, ProjectSettings())
    'draft'
    """
    if settings.skip_drafts and (attrs.get("draft") or attrs.get("work_in_progress")):
        return "draft"
    return left_alone(attrs.get("state"), _label_titles(attrs), settings)


def left_alone(state: str | None, labels: Iterable[str], settings: ProjectSettings) -> str | None:
    """Why the bot does nothing on this MR, even when asked (a command): the project's `ignore_label` on it,
    or it is closed or merged; None otherwise.

    >>> left_alone("merged", [], ProjectSettings()), left_alone("opened", ["no-reviewer-bot"], ProjectSettings())
    ('merged', 'label no-reviewer-bot')
    """
    if settings.ignore_label and settings.ignore_label in labels:
        return f"label {settings.ignore_label}"
    return state if state in ("closed", "merged") else None


def assign_count(settings: ProjectSettings) -> int | None:
    """How many suggestions to request review from automatically (None when `assign = "off"`)."""
    return {"off": None, "top1": 1, "top-k": settings.top_k}[settings.assign]


def _names(users: Any) -> dict[str, str]:
    """casefolded username -> username, from a list of webhook user objects."""
    return {str(u["username"]).casefold(): str(u["username"]) for u in users or [] if isinstance(u, Mapping)
            and u.get("username")}


def reviewer_feedback(previous: Iterable[Mapping[str, Any]], current: Iterable[Mapping[str, Any]],
                      suggested: Iterable[str]) -> list[tuple[str, str]]:
    """(person, label) pairs for a reviewer change, judged against the last suggestion.

    A suggested person who was added is `accepted`, anyone who was removed `removed` (one the suggestion did
    not list too: they stop being a reviewer, and an early review of theirs is taken back). Someone not
    suggested who was added is `assigned` (they became a reviewer: the recommender counts their review at
    once, as the team's choice), and then the suggested people who are not reviewers are `passed_over`, but
    one removed by this very change: a reviewer swapped for someone else is turned down once, `removed`.

    >>> reviewer_feedback([], [{"username": "bob"}], ["ann", "bob"])
    [('bob', 'accepted')]
    >>> reviewer_feedback([{"username": "ann"}], [{"username": "cy"}, {"username": "Dee"}], ["ann", "bob"])
    [('ann', 'removed'), ('bob', 'passed_over'), ('cy', 'assigned'), ('Dee', 'assigned')]
    >>> reviewer_feedback([{"username": "cy"}], [], ["ann"])
    [('cy', 'removed')]
    """
    before, after = _names(previous), _names(current)
    added, removed = after.keys() - before.keys(), before.keys() - after.keys()
    chosen = {p.casefold(): p for p in suggested}
    others = [p for f, p in after.items() if f in added and f not in chosen]  # in the reviewers' order
    out = [(p, "accepted") for f, p in chosen.items() if f in added]
    out += [(p, "removed") for f, p in chosen.items() if f in removed]
    out += [(p, "removed") for f, p in before.items() if f in removed and f not in chosen]
    if others:
        out += [(p, "passed_over") for f, p in chosen.items() if f not in after and f not in removed]
    return out + [(p, "assigned") for p in others]


def automation_labels(labels: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """`reviewer_feedback`'s labels for a change another automation made (a roulette script, a project access
    token's job): the people it added are asked, as by the bot's own review requests, not chosen by the team
    (`assigned`, stored with `bot.backfill.AUTOMATION`: not learned, and left out of the history at the merge
    unless they take the review up); its removals are no rejection (`removed`, so marked, is not learned);
    nobody is passed over (counted, every suggested person was turned down on every merge request it served).

    >>> automation_labels([("bob", "accepted"), ("ann", "removed"), ("cy", "passed_over"), ("dee", "assigned")])
    [('bob', 'assigned'), ('ann', 'removed'), ('dee', 'assigned')]
    """
    return [(p, "assigned" if label == "accepted" else label) for p, label in labels if label != "passed_over"]


REVIEW_DONE = frozenset({"reviewed", "requested_changes", "approved"})  # GitLab review states of a review done


def submitted_reviews(previous: Iterable[Mapping[str, Any]], current: Iterable[Mapping[str, Any]]) -> list[str]:
    """The reviewers a reviewer change shows as having reviewed: their review `state` (in GitLab's reviewer
    objects since 18.6) moved to or from reviewed, requested changes or approved.

    Why both ways: Submit review sends an `update` moving the state to one of them (GitLab MR !246562), but
    a re-request sets it back to "unreviewed" (MR !205274, 18.6), and that `update` is then the only trace
    left where Submit review sends no hook (GitLab before !246562): the state read at the merge no longer
    tells. Reviewer objects
    without a state (older GitLab) and changes between "unreviewed" and none (added, asked again) say nothing.

    >>> submitted_reviews([{"username": "bob", "state": "unreviewed"}], [{"username": "bob", "state": "reviewed"},
    ...                   {"username": "cy", "state": "unreviewed"}])
    ['bob']
    >>> submitted_reviews([{"username": "bob", "state": "requested_changes"}],
    ...                   [{"username": "bob", "state": "unreviewed", "re_requested": True}])
    ['bob']
    >>> submitted_reviews([{"username": "bob"}], [{"username": "bob"}, {"username": "cy", "state": "unreviewed"}])
    []
    """
    before = {str(u["username"]).casefold(): u.get("state") for u in previous if u.get("username")}
    out = []
    for u in current:
        name = str(u.get("username") or "")
        state, was = u.get("state"), before.get(name.casefold())
        if name and state != was and REVIEW_DONE & {state, was}:
            out.append(name)
    return out


def passed_over_at_merge(change: Change, suggested: Iterable[str], rows: Iterable[FeedbackRow]) -> list[str]:
    """The suggested people a merged `change` passed over: someone reviewed or approved it, and they are not
    among its final reviewers or approvers, did not act on it (approve, comment, submit a review, merge:
    `bot.backfill.ACTED`) and were not turned down on it already (a removal, a passing over when the team
    added a reviewer, the bot's idle request: a rejection counts once per MR).

    Why: a team that reviews without GitLab's reviewers field never turned anyone down, so the rejection
    streak of someone who left never grew and they stayed first. This is the meaning the learning was tuned
    with (`graph.simulate`: the team turns down every suggested person who did not review, once per MR, and
    a change nobody reviewed says nothing about them): an MR merged unreviewed passes nobody over.

    >>> from datetime import datetime
    >>> row = lambda p, label: FeedbackRow(1, None, 1, 7, p, label, None, datetime.now(), None)
    >>> c = Change("!7", 0, "ann", (), ("a.py",), ackers=("dee",), committer="dee")
    >>> passed_over_at_merge(c, ["bob", "cy", "eve", "dee"], [row("cy", "reviewed"), row("eve", "removed")])
    ['bob']
    >>> passed_over_at_merge(Change("!7", 0, "ann", (), ("a.py",), committer="ann"), ["bob", "cy"], [])
    []
    """
    final = {p.casefold() for p in change.truth()}
    if not final:
        return []
    done = final | {p.casefold() for p in (change.author, change.committer) if p} | settled(rows)
    return [p for p in dict.fromkeys(suggested) if p.casefold() not in done]


def settled(rows: Iterable[FeedbackRow]) -> set[str]:
    """The people (casefolded) whom `rows`, an MR's labels, show as having taken up its review (approved,
    reviewed: `bot.backfill.ACTED`) or as turned down on it already: passing them over would be a rejection
    of someone who did the review, or a second one of someone rejected (a rejection counts once per MR). An
    automation's removal turned nobody down (`bot.backfill.is_automated`).

    >>> from datetime import datetime
    >>> from bot.backfill import AUTOMATION
    >>> row = lambda p, label, value=None: FeedbackRow(1, None, 1, 7, p, label, value, datetime.now(), None)
    >>> sorted(settled([row("Bob", "approved"), row("cy", "removed"), row("dee", "commented"),
    ...                 row("eve", "removed", AUTOMATION)]))
    ['bob', 'cy']
    """
    return {r.person.casefold() for r in rows
            if r.label in ACTED or (r.label in NEGATIVE and not is_automated(r))}


def ended(attrs: Mapping[str, Any]) -> bool:
    """Whether the MR was merged or closed when GitLab made the change the hook reports (its payload's
    `state`): reviewers changed then judge nobody. The sidebar still edits them, to tidy up; counted, the
    reviewer who approved a merged MR was turned down (`removed`, replayed before the merge), and one added
    to a closed MR took a review of a change that never merges (on duty for it, and in the graph). A change
    made while it was open and delivered after the merge still counts: its payload says "opened".

    >>> ended({"state": "merged"}), ended({"state": "closed"}), ended({"state": "opened"}), ended({})
    (True, True, False, False)
    """
    return attrs.get("state") in ("merged", "closed")


def event_time(attrs: Mapping[str, Any]) -> datetime | None:
    """When GitLab made the change a Merge Request Hook reports: `object_attributes.updated_at`, the MR's last
    update (None when absent or unreadable: the event is applied as it comes).

    GitLab writes it `2013-12-03T17:23:34Z` (its documentation) or `2013-12-03 17:23:34 UTC`, to the second.
    Reviewer changes update the MR; an approval does not: its system note touches the MR, at most once a
    minute (GitLab's `ThrottledTouch`), so an approval and its withdrawal within a minute carry one time.

    >>> event_time({"updated_at": "2013-12-03 17:23:34 UTC"}) == event_time({"updated_at": "2013-12-03T17:23:34Z"})
    True
    """
    return gitlab_time(attrs.get("updated_at"))


def gitlab_time(text: Any) -> datetime | None:
    """A time as GitLab's hooks write it (`2013-12-03 17:23:34 UTC`, or ISO 8601), in UTC; None when absent or
    unreadable."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    try:
        when = datetime.fromisoformat(text[:-4] + "+00:00" if text.endswith(" UTC") else text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


async def is_late(ctx: EventContext, iid: int, person: str, at: datetime | None, label: str,
                  aspect: str = "reviewer") -> bool:
    """Whether a change of `person`'s `aspect` ("approval" or "reviewer") on the MR newer than this event's
    (`at`) was applied already: the event's `label` is then dropped. Otherwise `at` becomes that newest time."""
    newer = await ctx.storage.feedback.newer_applied(ctx.project_id, iid, person, at, aspect)
    if newer is not None and at is not None:
        log.debug(kv("older event about a person; not recorded", project_id=ctx.project_id, mr_iid=iid,
                     person=person, label=label, event_at=at.isoformat(), newer=newer.isoformat()))
    return newer is not None


async def _is_bot_author(mr: MergeRequest, ctx: EventContext) -> bool:
    """A bot by name, or by the account's `bot` flag, which the merge request's `author` leaves out (a service
    account may take any name): read as for any automation (`by_automation`), from `GET /users/:id`."""
    author = {"id": mr.author.id, "username": mr.author.username}
    return mr.author.bot or ctx.bot.is_me(mr.author) or await by_automation(ctx, author)


def _named_bot(ctx: EventContext, username: str) -> bool:
    """A name GitLab gives bots (or `*-bot`), or one the project's `bots` setting lists."""
    return is_bot_username(username) or username.casefold() in {b.casefold() for b in ctx.project.bots}


# --- handlers -----------------------------------------------------------------------------------------------
async def suggest_if_wanted(event: Event, ctx: EventContext, *, first: bool,
                            mr: MergeRequest | None = None) -> SuggestionResult | None:
    """Post or edit the suggestion unless the MR is one the bot stays quiet on (`mr`: as GitLab has it now,
    when the caller read it already); returns it, or None when skipped.

    `first`: the MR just became one to suggest for (opened, reopened, ready, unlabelled), so reviews are
    requested when the project's `assign` says so. On new commits or another target branch it is not,
    unless no suggestion before named anyone (the MR had no files or history): then this one is the first.
    Otherwise the comment is edited only with `comment_on_update`."""
    attrs = event.object_attributes
    iid = int(attrs["iid"])
    reason = skip_reason(attrs, ctx.project)
    if reason is None and not first:
        first = await named_nobody_yet(ctx, iid)
        if not first and not ctx.project.comment_on_update:
            return None
    if reason is None:
        mr = mr or await ctx.client.get_mr(ctx.project_id, iid)
        reason = await _live_skip_reason(mr, ctx)
        if reason is None:
            return await publish(ctx, mr, assign=assign_count(ctx.project) if first else None, top_up=True)
    log.info(kv("MR skipped", project_id=ctx.project_id, mr_iid=iid, reason=reason))
    return None


async def named_nobody_yet(ctx: EventContext, iid: int) -> bool:
    """Whether the bot made suggestions on the MR (events other than this one) and none named anyone: the MR had
    no files or history then, so this suggestion is its first. An MR the bot never suggested for (opened before it
    was installed, or while its project was skipped) is not: its reviews were the team's to arrange. This event's
    own suggestion (stored by an attempt that died) does not count, so its retry decides as the attempt did; a
    second delivery of the event (another id) finds the first one's and requests nothing again."""
    shown = [row for row in await ctx.storage.suggestions.of_mrs(ctx.project_id, [iid], with_mr=False)
             if row.event_id != ctx.event_id]
    return bool(shown) and not any(row.people for row in shown)


async def _live_skip_reason(mr: MergeRequest, ctx: EventContext) -> str | None:
    """`skip_reason` on the MR as GitLab has it now (the event may be late), or a bot's MR."""
    if ctx.project.skip_drafts and (mr.draft or mr.work_in_progress):
        return "draft now"
    if (why := left_alone(mr.state, mr.labels, ctx.project)) is not None:
        return f"{why} now"
    return "bot author" if await _is_bot_author(mr, ctx) else None


NO_REVIEWERS = ("GitLab's merge request hooks carry no reviewers (a GitLab before 15.3): the reviewers people "
                "choose in GitLab are not learned from until the merge (suggestions, commands and the history "
                "import work); upgrade GitLab to 15.3 or later")


def reviewers_sent(event: Event, ctx: EventContext) -> bool:
    """Whether this GitLab's MR hooks say who the reviewers are: `reviewer_ids` came with them in 15.3 (the
    list of reviewers is left out when empty, so it cannot tell); logged once when they do not."""
    if "reviewer_ids" in event.object_attributes:
        return True
    ctx.log_once("no-reviewers", kv(NO_REVIEWERS, project_id=ctx.project_id))
    return False


def moves_open_reviews(data: Mapping[str, Any]) -> bool:
    """Whether a Merge Request Hook tells of a change in who reviews which open MR: reviewers changed, an MR
    opened with reviewers, closed, reopened or merged.

    >>> moves_open_reviews({"object_attributes": {"action": "update"}, "changes": {"reviewers": {}}})
    True
    >>> moves_open_reviews({"object_attributes": {"action": "open"}}), moves_open_reviews({"changes": {"title": {}}})
    (False, False)
    """
    action = (data.get("object_attributes") or {}).get("action")
    changes = data.get("changes") or {}
    return (action in ("close", "reopen", "merge") or (action == "open" and bool(data.get("reviewers")))
            or isinstance(changes.get("reviewers"), Mapping))


@router.register(HOOK)
async def on_any(event: Event, ctx: EventContext) -> None:
    """Before the action's handler: the open reviews this process keeps for ten seconds forget a change a
    person (or another automation) made, which the next MR's `max_open_reviews` must count. Without it, the
    team swapping bob for cy on one MR left bob at the limit and cy free on the next MR opened seconds later.
    The bot's own requests are counted when made (`Lookups.reviewers_set`)."""
    if moves_open_reviews(event.data) and not ctx.bot.is_me(event.data.get("user")):
        Lookups(ctx.client, ctx.engine.recent).open_reviews_changed(ctx.project_id)


@router.register(HOOK, action="open")
async def on_open(event: Event, ctx: EventContext) -> None:
    """A new MR: suggest reviewers, then record the reviewers it was opened with (`record_opened_with`)."""
    reviewers_sent(event, ctx)
    result = await suggest_if_wanted(event, ctx, first=True)
    if not ctx.bot.is_me(event.data.get("user")):
        await record_opened_with(event, ctx, result.requested if result else ())


@router.register(HOOK, action="reopen")
async def on_reopen(event: Event, ctx: EventContext) -> None:
    """A reopened MR: `reopened` (the dashboard counts its reviews as open again), then suggest again
    (editing the comment it already has)."""
    await suggest_if_wanted(event, ctx, first=True, mr=await record_state(event, ctx, "reopened"))


@router.register(HOOK, action="close")
async def on_close(event: Event, ctx: EventContext) -> None:
    """Closed without merging: `closed`, so its reviews end (the recommender stops counting its reviewers
    as on duty for it, the dashboard as open reviews)."""
    await record_state(event, ctx, "closed")


async def record_state(event: Event, ctx: EventContext, label: str) -> MergeRequest:
    """A row that names the merge request's new state and who changed it (not evidence about anyone), while
    GitLab still shows that state: a `close` delivered after the `reopen` that undid it records nothing.
    Returns the MR as GitLab has it now."""
    iid = int(event.object_attributes["iid"])
    mr = await ctx.client.get_mr(ctx.project_id, iid)
    if (mr.state == "closed") != (label == "closed"):  # (a reopen handled after the merge still counts)
        log.info(kv("MR state changed since; not recorded", project_id=ctx.project_id, mr_iid=iid, label=label,
                    state=mr.state))
        return mr
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid)
    who = str((event.data.get("user") or {}).get("username") or "")
    await ctx.storage.feedback.record(ctx.project_id, iid, who, label, suggestion_id=latest.id if latest else None,
                                      source_event_id=ctx.event_id)
    return mr


@router.register(HOOK, action="update")
async def on_update(event: Event, ctx: EventContext) -> None:
    """Ready for review (or the ignore label taken off), new commits, a new target branch, or reviewers
    changed by a person. Of the bot's own changes only its reviewer requests are left alone (its PUT fires
    this hook): commits pushed with its account are new commits all the same."""
    by_bot = ctx.bot.is_me(event.data.get("user"))
    if not by_bot:
        reviewers_sent(event, ctx)
    changes = event.data.get("changes") or {}
    if isinstance(changes.get("reviewers"), Mapping) and not by_bot and not ended(event.object_attributes):
        await record_reviewer_changes(ctx, int(event.object_attributes["iid"]), changes["reviewers"],
                                      at=event_time(event.object_attributes),
                                      author_id=event.object_attributes.get("author_id"),
                                      changed_by=event.data.get("user"))
    if became_ready(changes) or lost_ignore_label(changes, ctx.project.ignore_label):
        await suggest_if_wanted(event, ctx, first=True)
    elif "oldrev" in event.object_attributes or "target_branch" in changes:
        await suggest_if_wanted(event, ctx, first=False)  # new commits, or another target: diff and CODEOWNERS


async def _people(ctx: EventContext, users: Any, author: tuple[Any, str]) -> list[Mapping[str, Any]]:
    """The webhook's reviewer objects without bots and without the MR's `author` (id, username): a bot added
    beside the suggested people (a review assistant, a token's user) is no team choice, and counting it
    passed the suggestion over; nor is the author reviewing their own MR. A bot is a name GitLab gives bots
    or the project's `bots` lists, the bot itself, or an account flagged as one."""
    if not isinstance(users, list):
        return []
    look = Lookups(ctx.client, ctx.engine.recent)
    named = [u for u in users if isinstance(u, Mapping) and u.get("username") and not ctx.bot.is_me(u)
             and not _named_bot(ctx, str(u["username"])) and not _is_author(u, author)]
    flags = await gather(*(look.is_bot(u["id"]) if type(u.get("id")) is int else _no() for u in named))
    return [u for u, flagged in zip(named, flags) if not flagged]


async def _no() -> bool:
    return False


async def by_automation(ctx: EventContext, user: Any) -> bool:
    """Whether the webhook's `user`, who made the change, is an automation (a name GitLab gives bots or the
    project's `bots` lists, or an account flagged as one): a script choosing reviewers (a roulette, a project
    access token's job) makes no choice of the team against the suggestion, and counted as one it passed every
    suggested person over on every merge request it served."""
    if not isinstance(user, Mapping) or not user.get("username"):
        return False
    if _named_bot(ctx, str(user["username"])):
        return True
    return type(user.get("id")) is int and await Lookups(ctx.client, ctx.engine.recent).is_bot(user["id"])


def _is_author(user: Mapping[str, Any], author: tuple[Any, str]) -> bool:
    """Whether a webhook user object is the MR's author, given as (id from the payload's `author_id`, username
    from the suggestion; either may be missing)."""
    author_id, name = author
    if author_id is not None and user.get("id") is not None:
        return bool(user.get("id") == author_id)
    return bool(name) and str(user.get("username") or "").casefold() == name.casefold()


OPENED_WITH = {"at": "open"}  # the value of the labels about the reviewers an MR was opened with


async def record_opened_with(event: Event, ctx: EventContext, requested: Collection[str]) -> None:
    """The reviewers chosen on the new MR form, as a change from none judged by the suggestion just made: the
    team's choice (`assigned`, `accepted`, and the suggested people it passed over). GitLab's `open` lists
    them only as the MR's `reviewers` (omitted when none), never as `changes`. Those the bot `requested`
    just now are not passed over. Once per MR: the same `open` delivered again (another hook) is the same
    choice, though its suggestion may differ (the reviewers recorded by the first count as on duty)."""
    iid = int(event.object_attributes["iid"])
    rows = await ctx.storage.feedback.list(ctx.project_id, mr_iid=iid)
    if any(r.value == OPENED_WITH and r.source_event_id != ctx.event_id for r in rows):
        log.info(kv("open delivered again; its reviewers recorded already", project_id=ctx.project_id, mr_iid=iid))
        return
    opened_with = {"previous": [], "current": event.data.get("reviewers") or []}
    await record_reviewer_changes(ctx, iid, opened_with, at=event_time(event.object_attributes),
                                  requested=requested, value=OPENED_WITH,
                                  author_id=event.object_attributes.get("author_id"))


async def record_reviewer_changes(ctx: EventContext, iid: int, change: Mapping[str, Any], *,
                                  at: datetime | None = None, requested: Collection[str] = (),
                                  value: Any = None, author_id: Any = None, changed_by: Any = None) -> None:
    """Feedback on the last suggestion from a reviewer change made by a person (at GitLab's time `at`); before
    any suggestion (a draft), who became a reviewer and who stopped being one. Passing a suggested person over
    counts once per MR: reviewers added one at a time are one decision, not one rejection each. A person
    whose newer change was applied already is left out (`is_late`), and so is, from the passed over, one the
    bot `requested` itself, or one who reviewed or was turned down on the MR already (`settled`). A change
    another automation made (the webhook's user, `changed_by`: `by_automation`, asked only when the change
    labels someone, as it may cost a request to GitLab) is no choice of the team's (`automation_labels`).
    `value` is stored with the labels but `passed_over`. The MR's author (`author_id`) is no reviewer here. A
    review the change shows submitted is `reviewed`, once (`submitted_reviews`)."""
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid)
    suggested = [str(p.get("username")) for p in latest.people if p.get("username")] if latest else []
    feedback, spared = ctx.storage.feedback, {p.casefold() for p in requested}
    late: dict[str, bool] = {}
    author = (author_id, latest.author if latest else "")
    previous = await _people(ctx, change.get("previous"), author)
    current = await _people(ctx, change.get("current"), author)
    for person in submitted_reviews(previous, current):
        await feedback.record_once(ctx.project_id, iid, person, "reviewed", suggestion_id=latest.id if latest else None,
                                   source_event_id=ctx.event_id)
    labels = reviewer_feedback(previous, current, suggested)
    if labels and await by_automation(ctx, changed_by):
        labels, value = automation_labels(labels), AUTOMATION
    elif any(label == "passed_over" for _, label in labels):  # not one who reviewed or was turned down already
        spared |= settled(await feedback.list(ctx.project_id, mr_iid=iid))
    for person, label in labels:
        if label == "passed_over" and person.casefold() in spared:
            continue
        if person not in late:
            late[person] = await is_late(ctx, iid, person, at, label)
        if late[person]:
            continue
        suggestion_id = latest.id if latest else None
        if label == "passed_over":
            await feedback.record_once(ctx.project_id, iid, person, label, suggestion_id=suggestion_id,
                                       source_event_id=ctx.event_id)
        else:
            await feedback.record(ctx.project_id, iid, person, label, value=value, suggestion_id=suggestion_id,
                                  source_event_id=ctx.event_id)


@router.register(HOOK, action="approval")
@router.register(HOOK, action="approved")
async def on_approval(event: Event, ctx: EventContext) -> None:
    """Someone approved: `approved` feedback, once. GitLab sends one hook per approval: CE `approved`; EE
    `approved` when the approval leaves none required (every approval on a project without rules), else
    `approval` (`ExecuteApprovalHooksService`)."""
    await record_approval(event, ctx, "approved")


@router.register(HOOK, action="unapproval")
@router.register(HOOK, action="unapproved")
async def on_unapproval(event: Event, ctx: EventContext) -> None:
    """Someone took their approval back: `unapproved`, once (the dashboard no longer counts the approval).
    One hook: CE `unapproved`; EE `unapproved` when the MR was approved and no longer is, else `unapproval`
    (`RemoveApprovalService`)."""
    await record_approval(event, ctx, "unapproved")


def approval_state(rows: Iterable[FeedbackRow], person: str, event_id: int | None) -> str | None:
    """`approved` or `unapproved`: the person's approval on the MR as other events recorded it (None: never)."""
    folded = person.casefold()
    states = [r.label for r in rows if r.person.casefold() == folded and r.label in ("approved", "unapproved")
              and r.source_event_id != event_id]
    return states[-1] if states else None


async def record_approval(event: Event, ctx: EventContext, label: str) -> None:
    """Store an approval given or taken back, once: the same act may arrive more than once (a project and a
    group hook, a resent delivery, under another action name). Given again after being taken back, it is
    stored again; one older than the person's last change applied is not (`is_late`: an `approval` handled
    after the `unapproval` that took it back). The author's own approval (GitLab CE allows it) is none, and
    so is a bot's (`by_automation`: a name GitLab gives bots, one in `bots`, an account flagged as one)."""
    user = event.data.get("user") or {}
    person = user.get("username")
    if not person or ctx.bot.is_me(user):
        return
    iid = int(event.object_attributes["iid"])
    author_id = event.object_attributes.get("author_id")
    if author_id is not None and user.get("id") == author_id:
        log.info(kv("the author's own approval; not recorded", project_id=ctx.project_id, mr_iid=iid))
        return
    if await by_automation(ctx, user):  # a policy's or a script's approval reviewed nothing
        log.info(kv("a bot's approval; not recorded", project_id=ctx.project_id, mr_iid=iid, person=person))
        return
    if await is_late(ctx, iid, person, event_time(event.object_attributes), label, "approval"):
        return
    state = approval_state(await ctx.storage.feedback.list(ctx.project_id, mr_iid=iid), person, ctx.event_id)
    if state == label or (label == "unapproved" and state is None):
        return
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid)
    await ctx.storage.feedback.record(ctx.project_id, iid, person, label, source_event_id=ctx.event_id,
                                      suggestion_id=latest.id if latest else None)


@router.register(HOOK, action="merge")
async def on_merge(event: Event, ctx: EventContext) -> None:
    """A merged MR joins the history (and the graph); its final reviewers become feedback."""
    iid = int(event.object_attributes["iid"])
    rows = await ctx.storage.feedback.list(ctx.project_id, mr_iid=iid)
    if merge_recorded(rows, ctx.event_id):  # that event, retried until done, also adds it to the history
        log.info(kv("merge delivered again; already recorded", project_id=ctx.project_id, mr_iid=iid))
        return
    mr = await ctx.client.get_mr(ctx.project_id, iid)
    change = await fetch_change(ctx.client, ctx.project_id, mr, bots=ctx.project.bots, people=ctx.storage.people)
    latest = await ctx.storage.suggestions.latest(ctx.project_id, iid)  # read once: both steps label it
    change = await leave_out_idle(ctx, iid, change, rows, latest)
    await ctx.engine.add_merged(ctx.project_id, change, ctx.project)
    await record_final(ctx, iid, change, latest)
    log.info(kv("merge added to history", project_id=ctx.project_id, mr_iid=iid, files=len(change.files),
                reviewers=",".join(change.truth()) or None))


def merge_recorded(rows: Iterable[FeedbackRow], event_id: int | None) -> bool:
    """Whether another event already recorded this MR's merge (its `final_reviewer` rows, or the `passed_over`
    rows of the bot's idle requests): the same merge delivered twice (a project and a group hook, a resent
    delivery) must not count its reviewers twice. A retry of this very event finishes its own rows."""
    return any(r.source_event_id not in (None, event_id) and
               (r.label == "final_reviewer" or
                (r.label == "passed_over" and isinstance(r.value, dict) and r.value.get("never_reviewed")))
               for r in rows)


async def leave_out_idle(ctx: EventContext, iid: int, change: Change, rows: list[FeedbackRow],
                         latest: SuggestionRow | None) -> Change:
    """`change` without the reviews the bot (or another automation) requested that nobody took up
    (`bot.backfill.drop_idle_picks`), each recorded as `passed_over`: the request was left lying, a rejection,
    not a review."""
    change, idle = await drop_idle_picks(ctx.client, ctx.project_id, iid, change, rows)
    if not idle:
        return change
    for person in idle:
        await ctx.storage.feedback.record(ctx.project_id, iid, person, "passed_over", value={"never_reviewed": True},
                                          suggestion_id=latest.id if latest else None, source_event_id=ctx.event_id)
    log.info(kv("reviewers the bot or an automation requested never reviewed; left out of the history",
                project_id=ctx.project_id, mr_iid=iid, people=",".join(idle)))
    return change


PASSED_AT_MERGE = {"at": "merge"}  # the value of the `passed_over` rows `passed_over_at_merge` finds


async def record_final(ctx: EventContext, iid: int, change: Change, latest: SuggestionRow | None) -> None:
    """`final_reviewer` feedback for everyone who reviewed or approved the merged MR, then `passed_over` for
    the suggested people it passed over (`passed_over_at_merge`; a retry of this event does not record them
    twice, nor does another delivery of the merge: `merge_recorded`)."""
    suggestion_id = latest.id if latest else None
    for person in sorted(change.truth()):
        value = {"reviewer": person in change.reviewers, "approver": person in change.ackers}
        await ctx.storage.feedback.record(ctx.project_id, iid, person, "final_reviewer", value=value,
                                          suggestion_id=suggestion_id, source_event_id=ctx.event_id)
    suggested = [str(p.get("username")) for p in latest.people if p.get("username")] if latest else []
    rows = await ctx.storage.feedback.list(ctx.project_id, mr_iid=iid)  # with the idle requests just recorded
    for person in passed_over_at_merge(change, suggested, rows):
        await ctx.storage.feedback.record(ctx.project_id, iid, person, "passed_over", value=PASSED_AT_MERGE,
                                          suggestion_id=suggestion_id, source_event_id=ctx.event_id)
