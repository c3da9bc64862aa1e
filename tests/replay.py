"""A replayable burst of webhook deliveries and the outcome it should leave, for the crash-safety test and benchmark.

Why a module: the crash test (40 deliveries, in the suite) and `benchmarks/crash_safety.py` (1,000) run the same
scenario twice, once with a calm in-process worker (the expectation) and once with worker processes killed at
random, and compare what the two runs left behind. Both runs build the simulator with the same seeds, so every
delivery the scenario sends has the same X-Gitlab-Event-UUID in both; rows are compared by that UUID.

What may differ between two correct runs is only who gets ranked first (merges and feedback reach the recommender
in whatever order the workers happen to run them), and with it whether `/reviewers assign` finds someone with room
for a review (it replies when nobody, or fewer than asked, could be asked), so people are compared only where the
scenario itself names them, and a reply to `assign` only for never coming twice; rows about ranked people
(`suggested`, `assigned`, `reroll`, `reviewed`, a final reviewer who did not approve, one the bot asked who never
reviewed) are checked against the run's own state instead (every reviewer the bot set on GitLab has its
`assigned` row, and no other; every stored suggestion its one `suggested` row).
"""
from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from bot.backfill import backfill_project
from bot.comment import has_marker
from bot.gitlab.client import GitLabClient
from bot.gitlab.sim_model import Delivery, SimMR, SimNote
from bot.gitlab.simulator import SeededProject, SimState, run_simulator
from bot.handlers.emoji import EMOJI_LABELS
from bot.handlers.publish import REPLY_MARKER
from bot.metrics import Metrics
from bot.storage import Storage
from bot.web import make_app
from tests.bot_harness import SECRET, bot_notes, marker_notes, seed_recent
from tests.gitlab_fixtures import FAST_RETRY

__all__ = ["Scenario", "Outcome", "world", "webhook_app", "play", "send", "thumbs_on_bot_comments", "outcome",
           "STABLE_LABELS"]

# Feedback labels whose person comes from the scenario (who approved, whom a command names), not from a ranking
# (except final reviewers who did not approve: the bot's `assign` made them reviewers).
STABLE_LABELS = frozenset({"final_reviewer", "approved", "why", "exclude", "thumbs_up", "thumbs_down"})
THUMBS = frozenset(EMOJI_LABELS.values())
# Labels about whoever the ranking put first (the person shown first, the bot's `assign`, a reroll of its
# suggestion, a comment by someone the latest suggestion happens to name: the commenter is random, whether they
# were suggested is not).
RANKED = frozenset({"suggested", "moved_down_spreading", "moved_down_streak", "moved_down_duty", "assigned", "reroll",
                    "reviewed"})
COMMANDS = ("/reviewers", "/reviewers why @{who}", "/reviewers reroll", "/reviewers help", "LGTM, thanks",
            "/reviewers exclude @{who}", "/reviewers assign 1", "Looks good to me", "/reviewers nope")


@dataclass
class Scenario:
    """What was done on the simulated GitLab: the MRs, the command notes, the deliveries and their re-sends."""

    mrs: list[SimMR] = field(default_factory=list)
    commands: list[SimNote] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    resent: list[Delivery] = field(default_factory=list)
    thumbs: list[tuple[int, str, str]] = field(default_factory=list)  # (MR iid, feedback label, username)

    def expected_comments(self) -> dict[int, int]:
        """MR iid -> the bot's comments it must have: one on each MR still open, none on one merged before
        the bot handled its events (every event is queued before the workers start)."""
        return {mr.iid: int(mr.state == "opened") for mr in self.mrs}


@contextlib.asynccontextmanager
async def world(storage: Storage, *, n_people: int = 12, n_merged: int = 80) -> AsyncIterator[
        tuple[SimState, str, SeededProject]]:
    """A seeded simulator (always the same seeds) whose history is already imported into `storage`."""
    state = SimState(token="sim-token", seed=1)
    async with run_simulator(state) as (state, url):
        state.rate_limit = 10**7  # GitLab's per-user limit would pause the run for a minute: not the subject here
        seeded = seed_recent(state, n_people=n_people, n_merged=n_merged)
        async with aiohttp.ClientSession() as session:
            await backfill_project(GitLabClient(session, url=url, token=state.token, retry=FAST_RETRY), storage,
                                   seeded.project.id)
        yield state, url, seeded


@contextlib.asynccontextmanager
async def webhook_app(settings: Any, storage: Storage) -> AsyncIterator[str]:
    """POST /webhook on 127.0.0.1 without a worker (the workers are other processes); yields its URL."""
    runner = web.AppRunner(make_app(settings, storage, Metrics()), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/webhook"
    finally:
        await runner.cleanup()


def play(state: SimState, seeded: SeededProject, deliveries: int, *, seed: int = 7) -> Scenario:
    """Queue exactly `deliveries` webhook events: opens, ready, pushes, approvals, merges, awards, comments."""
    rng, project, s = random.Random(seed), seeded.project, Scenario()
    people = [p for p in seeded.people if p.id != seeded.blocked.id]
    dirs = list(seeded.owners)
    n_mrs = max(4, deliveries // 4)
    for i in range(n_mrs):
        files = [f"{dirs[i % len(dirs)]}/main{i % 3 + 1}.py"]
        s.mrs.append(state.open_mr(project, people[i % len(people)], files, draft=i % 7 == 0, title=f"Change {i}"))
    for mr in s.mrs:
        if mr.draft:
            state.mark_ready(mr)
    for _ in range(n_mrs // 3):
        state.push_to_mr(rng.choice(s.mrs), [f"{rng.choice(dirs)}/extra{rng.randrange(5)}.py"])
    for mr in rng.sample(s.mrs, n_mrs // 5):
        reviewer = next(p for p in people if p.id != mr.author_id)
        state.approve(mr, reviewer)
        state.merge_mr(mr, by=reviewer)
    while len(state.outbox) < deliveries:
        mr, i = rng.choice(s.mrs), rng.randrange(1000)
        text = rng.choice(COMMANDS).format(who=people[(i + 1) % len(people)].username)
        note = state.add_note(mr, people[i % len(people)], text)
        if text.startswith("/"):
            s.commands.append(note)
        if rng.random() < 0.1 and len(state.outbox) < deliveries:
            state.award(note, people[(i + 2) % len(people)], "thumbsup")
    del state.outbox[deliveries:]  # an award may have queued one more than asked
    return s


async def send(state: SimState, scenario: Scenario, *, duplicates: float = 0.1, seed: int = 11) -> None:
    """Deliver the queued events, then re-send `duplicates` of them (GitLab's "Resend request")."""
    scenario.deliveries = await state.flush_hooks()
    rng = random.Random(seed)
    for delivery in rng.sample(scenario.deliveries, int(len(scenario.deliveries) * duplicates)):
        scenario.resent.append(await state.sender.resend(delivery))
    bad = [d.status for d in scenario.deliveries + scenario.resent if d.status != 200]
    if bad:
        raise AssertionError(f"deliveries not acknowledged: {Counter(bad)}")


async def thumbs_on_bot_comments(state: SimState, seeded: SeededProject, scenario: Scenario, *, timeout: float,
                                 seed: int = 13) -> None:
    """Once every MR has the bot's comment, one person per MR puts a thumb up or down on it (feedback events).

    These deliveries cannot be prepared in advance (the comment does not exist before a worker posts it), so
    they arrive while the workers run; the feedback row each must leave is recorded in `scenario.thumbs`.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    commented = [mr for mr in scenario.mrs if scenario.expected_comments()[mr.iid]]
    while not all(marker_notes(state, mr) for mr in commented):
        if loop.time() > deadline:
            raise AssertionError(f"not every open MR got the bot's comment within {timeout} s")
        await asyncio.sleep(0.05)
    rng = random.Random(seed)
    people = [p for p in seeded.people if p.id != seeded.blocked.id]
    for mr in sorted(commented, key=lambda m: m.iid):
        who, name = rng.choice(people), rng.choice(["thumbsup", "thumbsdown"])
        state.award(marker_notes(state, mr)[0], who, name)
        scenario.thumbs.append((mr.iid, EMOJI_LABELS[name], who.username))


@dataclass
class Outcome:
    """What a run left behind, in terms that two correct runs share."""

    comments: dict[int, int]               # MR iid -> the bot's suggestion comments on it
    comment_rows: dict[int, bool]          # MR iid -> the bot_comments row names that very note
    suggestions: Counter[tuple[int, str]]  # (MR iid, delivery UUID) -> suggestion rows
    feedback: Counter[tuple[Any, ...]]     # (MR iid, label, delivery UUID, person or "*") -> rows
    acks: dict[int, list[str]]             # command note id -> the bot's award emoji on it
    replies: dict[int, int]                # command note id -> the bot's replies to it
    queue: dict[str, int]
    ranked: dict[tuple[Any, ...], int]     # (MR iid, label, delivery UUID) of labels about whoever was ranked
    unrecorded: list[str]                  # reviewers the bot set on GitLab without an `assigned` row, or back
    unshown: list[str] = field(default_factory=list)  # suggestions whose first person lacks its `suggested` row
    ranked_replies: dict[int, int] = field(default_factory=dict)  # `/reviewers assign` note id -> the bot's replies

    def ranked_differences(self, expected: Outcome) -> int:
        """How many (MR, label, event) rows about ranked people exist in one run and not the other.

        Who is ranked first depends on the order merges and feedback reach the recommender, which differs
        between two correct runs; these rows are checked against the run's own GitLab state instead
        (`unrecorded`) and their difference from the reference is only reported.
        """
        return len(set(self.ranked) ^ set(expected.ranked))

    def differences(self, expected: Outcome) -> list[str]:
        """Human-readable differences from `expected` (empty when they agree)."""
        out = []
        for name in ("comments", "comment_rows", "suggestions", "feedback", "acks", "replies"):
            mine, theirs = getattr(self, name), getattr(expected, name)
            if mine != theirs:
                missing = {k: v for k, v in theirs.items() if mine.get(k) != v}
                extra = {k: v for k, v in mine.items() if theirs.get(k) != v}
                out.append(f"{name}: expected {_head(missing)}, got {_head(extra)}")
        doubled = {k: n for k, n in self.ranked_replies.items() if n > 1}
        if doubled:
            out.append(f"replies to /reviewers assign, more than one: {_head(doubled)}")
        return out

    def ranked_reply_differences(self, expected: Outcome) -> int:
        """How many `/reviewers assign` commands got a reply in one run and none in the other: whether anyone
        could be asked depends on who still has room for a review, so on the order the events ran."""
        return sum(1 for k, n in self.ranked_replies.items() if n != expected.ranked_replies.get(k))


def _head(d: dict[Any, Any], n: int = 5) -> str:
    items = list(d.items())
    return f"{dict(items[:n])}{f' (+{len(items) - n} more)' if len(items) > n else ''}"


def _assigned_by_the_bot(label: str, value: Any) -> bool:
    """A final reviewer who only reviewed (did not approve) was put there by the bot's `assign`, and so was a
    reviewer it asked who never took the review up (`passed_over` at the merge): both follow a ranking."""
    if label == "passed_over":
        return isinstance(value, dict) and bool(value.get("never_reviewed"))
    return label == "final_reviewer" and isinstance(value, dict) and not value.get("approver")


async def _uuids(storage: Storage) -> dict[int, str]:
    rows = await storage.events.list_events(limit=10**7)
    return {row.id: row.headers.get("X-Gitlab-Event-UUID", f"event-{row.id}") for row in rows}


async def outcome(state: SimState, storage: Storage, project_id: int, scenario: Scenario) -> Outcome:
    """Read back what the run produced, on GitLab (notes, awards) and in the database (rows, queue)."""
    uuid = await _uuids(storage)
    comments, rows = {}, {}
    for mr in scenario.mrs:
        notes = marker_notes(state, mr)
        row = await storage.comments.get(project_id, mr.iid)
        comments[mr.iid] = len(notes)
        rows[mr.iid] = len(notes) <= 1 and (row.note_id if row else None) == (notes[0].id if notes else None)
    stored = await storage.suggestions.list(project_id)
    suggestions = Counter((s.mr_iid, uuid.get(s.event_id or 0, "none")) for s in stored)
    feedback: Counter[tuple[Any, ...]] = Counter()
    ranked: dict[tuple[Any, ...], int] = {}
    assigned: dict[int, set[str]] = {}
    shown_first: dict[int | None, list[str]] = {}
    for f in await storage.feedback.list(project_id):
        if f.label == "suggested":
            shown_first.setdefault(f.suggestion_id, []).append(f.person)
        key = (f.mr_iid, f.label, uuid.get(f.source_event_id or 0, "none"))
        if f.label in THUMBS:  # sent while the workers ran: the delivery's UUID depends on the timing
            feedback[(f.mr_iid, f.label, "thumb on the bot's comment", f.person)] += 1
        elif f.label in RANKED or _assigned_by_the_bot(f.label, f.value):
            ranked[key] = 1
            if f.label == "assigned":
                assigned.setdefault(f.mr_iid, set()).add(f.person)
        elif f.label in STABLE_LABELS:
            feedback[(*key, f.person)] += 1
        else:
            feedback[(*key, "*")] = 1
    acks, replies, ranked_replies = {}, {}, {}
    for note in scenario.commands:
        acks[note.id] = sorted(a.name for a in note.awards if a.user_id == state.bot.id)
        mr = state.projects[project_id].mrs[note.mr_iid]
        marker = REPLY_MARKER.format(note_id=note.id)
        count = sum(1 for n in bot_notes(state, mr) if has_marker(n.body, marker))
        (ranked_replies if note.body.startswith("/reviewers assign") else replies)[note.id] = count
    return Outcome(comments, rows, suggestions, feedback, acks, replies, await storage.events.depth(), ranked,
                   _unrecorded_reviewers(state, project_id, scenario, assigned), _unshown(stored, shown_first),
                   ranked_replies)


def _unshown(stored: list, shown_first: dict[int | None, list[str]]) -> list[str]:
    """Suggestions whose first person has no `suggested` row (or several, or one naming someone else): the
    load spreading of every process counts first places from those rows."""
    out = [f"suggestion {s.id} (MR {s.mr_iid}): first {s.people[0].get('username')!r}, rows "
           f"{shown_first.get(s.id, [])}" for s in stored if s.people and
           shown_first.get(s.id, []) != [s.people[0].get("username")]]
    known = {s.id for s in stored}
    out += [f"`suggested` rows {people} name no stored suggestion ({sid})" for sid, people in shown_first.items()
            if sid not in known]
    return out


def _unrecorded_reviewers(state: SimState, project_id: int, scenario: Scenario,
                          assigned: dict[int, set[str]]) -> list[str]:
    """MRs whose reviewers on GitLab (only the bot sets them in these scenarios) differ from its `assigned` rows."""
    out = []
    for mr in scenario.mrs:
        live = state.projects[project_id].mrs[mr.iid]
        on_gitlab = {state.user(uid).username for uid in live.reviewer_ids}
        if on_gitlab != assigned.get(mr.iid, set()):
            out.append(f"MR {mr.iid}: reviewers {sorted(on_gitlab)}, assigned rows {sorted(assigned.get(mr.iid, ()))}")
    return out
