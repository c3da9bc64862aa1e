"""What the dashboard shows about one project, computed from stored suggestions and feedback rows.

Why a pure module: the numbers (how often a suggestion is taken, who reviews what) are the product's proof
that it works, so they are computed by plain functions over plain rows and tested with exact values; the
web module only loads the rows and renders the result.

Definitions (one merge request is one unit, however often the bot re-suggested on it):
* a merge request is **accepted** when someone the bot suggested on it later got an `accepted`, `approved`,
  `reviewed` or `final_reviewer` label there (`assigned` never counts: it is the bot's own request, another
  automation's (a roulette script's, `bot.backfill.AUTOMATION`), or a reviewer the team added whom the last
  suggestion did not list, none of them the team taking a suggestion);
  it counts in the week of the bot's first suggestion on it;
* it is **awaiting the team** (pending) while it is open (neither merged nor closed), not accepted, and
  has no row from a person yet: only the bot's own (`suggested`, `moved_down_<term>`, its own `assigned`) and
  another automation's reviewer changes (`bot.backfill.is_automated`).
  The acceptance rate leaves these out (accepted over the merge requests the team responded to), so a
  bot installed today does not read "Accepted 0%" before anyone could answer it;
* its **actual reviewers** are the `final_reviewer` people once merged, else whoever is currently a reviewer
  (`accepted`, `assigned`, `approved`, `reviewed`, less those `removed` since; an approval taken back,
  `unapproved`, no longer makes its giver one, while a reviewer still requested or who commented stays);
* **Top-1 / Top-3 hit**: over merged merge requests, the bot's latest first / first three suggestions
  include one of the actual reviewers;
* **review load** is, per person, the open reviews (a reviewer on a merge request neither merged nor
  closed) and the merge requests suggested to, reviewed and approved in the last `load_days` days (an
  approval taken back, `unapproved` last, is none);
* **what the team took where a hand-set term chose**: per term (load spreading, the rejection streak's
  penalty, the lift for people on duty), the merge requests where the bot's latest suggestion put first
  someone the term moved ahead (a `moved_down_<term>` row beside its `suggested` row), and on how many of
  them the team took that person, or the one the term moved down (any reviewer label but an `assigned` of
  the bot's own or another automation's request). These are the votes the ranker learns the share of each term from.

A merge request is merged when the history holds it (`merged`, given by the caller) or it has
`final_reviewer` rows; closed when its last `closed` / `reopened` row is `closed`. A suggestion that named
nobody (the bot could suggest no one) is not a suggestion here.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from bot.backfill import is_automated, is_bot_pick
from bot.storage import FeedbackRow, SuggestionRow
from graph.feedback import MOVED_BY, PUT_FIRST, REVIEWED, TERMS

__all__ = [
    "ACCEPTING", "BECAME_REVIEWER", "NO_MODEL", "WeekPoint", "MrRow", "LoadRow", "ModelInfo", "HistoryInfo",
    "TermVotes", "ProjectStats", "project_stats", "week_start", "window_start",
]

ACCEPTING = frozenset({"accepted", "approved", "reviewed", "final_reviewer"})
BECAME_REVIEWER = frozenset({"accepted", "assigned", "final_reviewer"})
CURRENT_REVIEWER = frozenset({"accepted", "assigned", "approved", "reviewed"})
NO_MODEL = "history-trained (no stored model)"
PRIOR_MODEL = "prior model (not enough history of its own yet)"  # `bot.learning.PRIOR_SERVING` ranked
BOTS_OWN = frozenset({PUT_FIRST, *MOVED_BY})  # rows the bot writes about its own suggestion, no person's answer


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class WeekPoint(_Frozen):
    """One week of the acceptance chart: `rate` is `accepted` over the merge requests the team responded to
    (`suggested` less `pending`), None when there is none."""

    week: date
    suggested: int
    accepted: int
    rate: float | None
    pending: int = 0


class MrRow(_Frozen):
    """The bot's last suggestion on one merge request against who actually reviewed it.

    The hits are None until the merge request is merged: before that its reviewers may still change, and
    the bot's own assignment would count as a hit.
    """

    mr_iid: int
    suggested_at: datetime
    top1: str | None
    top3: list[str]
    reviewers: list[str]
    merged: bool
    closed: bool = False
    top1_hit: bool | None
    top3_hit: bool | None


class LoadRow(_Frozen):
    """One person's review load (see the module docstring)."""

    person: str
    open: int
    suggested: int
    top1: int
    reviewing: int
    approved: int


class ModelInfo(_Frozen):
    """The project's active stored model, if any, and the version that made the latest suggestion."""

    version: str | None = None
    backtest_score: float | None = None
    trained_at: datetime | None = None
    serving: str | None = None

    @property
    def label(self) -> str:
        """The active model's version; else the prior when it made the latest suggestion (`prior = true`, a
        project without a model of its own).

        >>> ModelInfo().label, ModelInfo(serving="default@12/prior").label
        ('history-trained (no stored model)', 'prior model (not enough history of its own yet)')
        """
        if self.version:
            return self.version
        return PRIOR_MODEL if (self.serving or "").endswith("/prior") else NO_MODEL


class HistoryInfo(_Frozen):
    """How much of the project's history the bot holds: merged changes stored, and whether the import of
    the history from before the bot (the backfill) has finished. Tells an empty project from an imported one."""

    changes: int = 0
    import_done: bool = False

    @property
    def state(self) -> str:
        """Where the import stands, in words."""
        if not self.changes:
            return "import finished: no merged MR found" if self.import_done else "no history imported yet"
        return "import finished" if self.import_done else "import not finished yet"

    @property
    def label(self) -> str:
        """In words, for the page.

        >>> HistoryInfo().label, HistoryInfo(changes=1234).label, HistoryInfo(changes=9, import_done=True).label
        ('no history imported yet', '1,234 merged MRs; import not finished yet', '9 merged MRs; import finished')
        """
        return f"{self.changes:,} merged MRs; {self.state}" if self.changes else self.state


class TermVotes(_Frozen):
    """Where one hand-set term chose the bot's first suggestion, whom the team took (see the module docstring)."""

    term: str
    changed: int
    took_first: int
    took_moved_down: int


class ProjectStats(_Frozen):
    """Everything the project page shows; also the JSON of GET /api/projects/{id}/stats."""

    project_id: int
    path: str | None
    generated_at: datetime
    weeks: list[WeekPoint]
    suggested: int
    accepted: int
    acceptance: float | None
    pending: int = 0
    judged: int
    top1: float | None
    top3: float | None
    recent: list[MrRow]
    load: list[LoadRow]
    recent_total: int = 0  # merge requests `recent` was cut from, so the page can say some are left out
    load_total: int = 0  # people `load` was cut from
    model: ModelInfo
    model_label: str
    terms: list[TermVotes] = []
    history: HistoryInfo = HistoryInfo()


def week_start(when: datetime) -> date:
    """The Monday (UTC) of the week `when` falls in.

    >>> from datetime import timezone
    >>> week_start(datetime(2025, 3, 1, 12, tzinfo=timezone.utc))
    datetime.date(2025, 2, 24)
    """
    day = when.date()
    return day - timedelta(days=day.weekday())


def window_start(now: datetime, weeks: int) -> datetime:
    """Midnight (UTC) of the first day of the chart: `weeks` whole weeks ending with the current one."""
    first = week_start(now) - timedelta(weeks=weeks - 1)
    return datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)


def _usernames(row: SuggestionRow) -> list[str]:
    return [str(p["username"]) for p in row.people if isinstance(p, Mapping) and p.get("username")]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class _Mr:
    """One merge request's suggestions and feedback, oldest first."""

    iid: int
    suggestions: list[SuggestionRow] = field(default_factory=list)
    feedback: list[FeedbackRow] = field(default_factory=list)
    in_history: bool = False  # the merged change is in the project's history

    def first_suggested(self) -> dict[str, datetime]:
        """casefolded person -> when the bot first suggested them here."""
        first: dict[str, datetime] = {}
        for row in self.suggestions:
            for name in _usernames(row):
                first.setdefault(name.casefold(), row.created_at)
        return first

    def accepted(self) -> bool:
        """True when a person suggested here later became a reviewer or approved (see `ACCEPTING`)."""
        first = self.first_suggested()
        for row in self.feedback:
            when = first.get(row.person.casefold())
            if row.label in ACCEPTING and when is not None and row.created_at >= when:
                return True
        return False

    def withdrawn_approvals(self) -> set[str]:
        """casefolded people whose last approval row here is `unapproved`: their approval was taken back."""
        last: dict[str, str] = {}
        for row in self.feedback:
            if row.label in ("approved", "unapproved"):
                last[row.person.casefold()] = row.label
        return {person for person, label in last.items() if label == "unapproved"}

    def merged(self) -> bool:
        return self.in_history or any(r.label == "final_reviewer" for r in self.feedback)

    def pending(self) -> bool:
        """Open and not accepted, with no row from a person yet (see the module docstring)."""
        answered = any(r.label not in BOTS_OWN and not is_automated(r) for r in self.feedback)
        return not (answered or self.merged() or self.closed() or self.accepted())

    def closed(self) -> bool:
        """Closed without merging (and not reopened since)."""
        states = [r.label for r in self.feedback if r.label in ("closed", "reopened")]
        return not self.merged() and bool(states) and states[-1] == "closed"

    def current(self) -> dict[str, str]:
        """casefolded -> name of each current reviewer: someone with a `CURRENT_REVIEWER` label here that
        still stands since their last `removed`, an `approved` standing until an `unapproved` after it.

        Why by label: taking an approval back ends that approval alone. A reviewer still requested keeps
        the review (GitLab lists them, their review state reset); someone whose approval was their only part
        in it is nobody's reviewer any more, as on GitLab, instead of an open review for as long as the
        merge request stays open.
        """
        standing: dict[str, set[str]] = defaultdict(set)
        names: dict[str, str] = {}
        for row in self.feedback:
            key = row.person.casefold()
            if row.label in CURRENT_REVIEWER:
                standing[key].add(row.label)
                names[key] = row.person
            elif row.label == "unapproved":
                standing[key].discard("approved")
            elif row.label == "removed":
                standing[key].clear()
        return {key: names[key] for key, labels in standing.items() if labels}

    def reviewers(self) -> list[str]:
        """The actual reviewers (see the module docstring), sorted."""
        final = [r.person for r in self.feedback if r.label == "final_reviewer"]
        names = {p.casefold(): p for p in final} if self.merged() else self.current()
        return sorted(names.values(), key=str.casefold)


def _group(suggestions: Iterable[SuggestionRow], feedback: Iterable[FeedbackRow],
           merged: Iterable[int] = ()) -> dict[int, _Mr]:
    mrs: dict[int, _Mr] = {}
    for s in sorted(suggestions, key=lambda r: (r.created_at, r.id)):
        if _usernames(s):  # a suggestion of nobody is the bot saying it could not suggest
            mrs.setdefault(s.mr_iid, _Mr(s.mr_iid)).suggestions.append(s)
    for f in sorted(feedback, key=lambda r: (r.created_at, r.id)):
        mrs.setdefault(f.mr_iid, _Mr(f.mr_iid)).feedback.append(f)
    for iid in merged:
        if iid in mrs:
            mrs[iid].in_history = True
    return mrs


def _weeks(suggested: Sequence[_Mr], now: datetime, weeks: int) -> list[WeekPoint]:
    first = week_start(now) - timedelta(weeks=weeks - 1)
    counts: dict[date, list[int]] = {first + timedelta(weeks=i): [0, 0, 0] for i in range(weeks)}
    for mr in suggested:
        bucket = counts.get(week_start(mr.suggestions[0].created_at))
        if bucket is not None:
            bucket[0] += 1
            bucket[1] += mr.accepted()
            bucket[2] += mr.pending()
    return [WeekPoint(week=w, suggested=n, accepted=a, pending=p, rate=_ratio(a, n - p))
            for w, (n, a, p) in counts.items()]


def _mr_row(mr: _Mr) -> MrRow:
    shown, reviewers, merged = _usernames(mr.suggestions[-1]), mr.reviewers(), mr.merged()
    folded = {r.casefold() for r in reviewers}
    return MrRow(
        mr_iid=mr.iid, suggested_at=mr.suggestions[0].created_at, top1=shown[0] if shown else None, top3=shown[:3],
        reviewers=reviewers, merged=merged, closed=mr.closed(),
        top1_hit=bool(shown) and shown[0].casefold() in folded if merged else None,
        top3_hit=any(p.casefold() in folded for p in shown[:3]) if merged else None,
    )


def _load(mrs: Iterable[_Mr], since: datetime) -> list[LoadRow]:
    names: dict[str, str] = {}
    counts: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))

    def add(person: str, what: str, iid: int) -> None:
        names.setdefault(person.casefold(), person)
        counts[person.casefold()][what].add(iid)

    for mr in mrs:
        for row in (s for s in mr.suggestions if s.created_at >= since):
            for rank, person in enumerate(_usernames(row)):
                add(person, "suggested", mr.iid)
                if rank == 0:
                    add(person, "top1", mr.iid)
        withdrawn = mr.withdrawn_approvals()
        for row in (f for f in mr.feedback if f.created_at >= since):
            if row.label in BECAME_REVIEWER and not is_bot_pick(row):  # the team's
                add(row.person, "reviewing", mr.iid)
            elif row.label == "approved" and row.person.casefold() not in withdrawn:
                add(row.person, "approved", mr.iid)
        for person in [] if mr.merged() or mr.closed() else mr.reviewers():
            add(person, "open", mr.iid)
    rows = [LoadRow(person=names[key], **{k: len(c[k]) for k in LoadRow.model_fields if k != "person"})
            for key, c in counts.items()]
    rows.sort(key=lambda r: (-r.open, -r.reviewing, -r.suggested, r.person.casefold()))
    return rows


def _term_votes(mrs: Iterable[_Mr]) -> list[TermVotes]:
    counts = {term: [0, 0, 0] for term in TERMS}
    for mr in mrs:
        latest = mr.suggestions[-1].id if mr.suggestions else None
        first = {r.suggestion_id: r.person for r in mr.feedback if r.label == "suggested"}.get(latest)
        took = {r.person.casefold() for r in mr.feedback
                if r.label in REVIEWED and not is_bot_pick(r)}
        moved = {MOVED_BY[r.label]: r.person for r in mr.feedback if r.label in MOVED_BY and r.suggestion_id == latest}
        for name, down in moved.items() if first is not None else ():
            c = counts[name]
            c[0] += 1
            c[1] += first.casefold() in took
            c[2] += down.casefold() in took
    return [TermVotes(term=t, changed=c[0], took_first=c[1], took_moved_down=c[2]) for t, c in counts.items()]


def project_stats(
    project_id: int, path: str | None, suggestions: Iterable[SuggestionRow], feedback: Iterable[FeedbackRow],
    model: ModelInfo, *, now: datetime, weeks: int = 12, recent: int = 20, load_days: int = 30, people: int = 30,
    merged: Iterable[int] = (), history: HistoryInfo = HistoryInfo(),
) -> ProjectStats:
    """The dashboard's numbers for one project from the rows of its merge requests active since
    `window_start(now, weeks)` (all their rows, older ones too); `merged`: which of them the history holds;
    `history`: how much history is stored, shown as it is.

    The chart counts each merge request in the week of its first suggestion (those first suggested before
    the window are left out of it); `recent` merge requests (newest first) fill the suggestions-against-
    reviewers table; at most `people` rows of load (the busiest); `recent_total` and `load_total` say how
    many there were to choose from.
    """
    mrs = _group(suggestions, feedback, merged)
    suggested = [mr for mr in mrs.values() if mr.suggestions]
    points = _weeks(suggested, now, weeks)
    in_chart = sum(p.suggested for p in points)
    accepted = sum(p.accepted for p in points)
    pending = sum(p.pending for p in points)
    rows = [_mr_row(mr) for mr in sorted(suggested, key=lambda m: m.suggestions[0].created_at, reverse=True)]
    judged = [r for r in rows if r.merged]
    load = _load(mrs.values(), now - timedelta(days=load_days))
    return ProjectStats(
        project_id=project_id, path=path, generated_at=now, weeks=points, suggested=in_chart, accepted=accepted,
        acceptance=_ratio(accepted, in_chart - pending), pending=pending, judged=len(judged),
        top1=_ratio(sum(r.top1_hit for r in judged), len(judged)),
        top3=_ratio(sum(r.top3_hit for r in judged), len(judged)),
        recent=rows[:recent], recent_total=len(rows), load=load[:people], load_total=len(load),
        model=model, model_label=model.label, terms=_term_votes(suggested), history=history,
    )
