"""`suggest_for_mr`: one merge request in, ranked eligible people out (and `/reviewers why` for one person).

It gathers the changed files, members, opt-outs, per-MR exclusions, statuses, open review loads,
CODEOWNERS of the target branch (`bot.lookups`, cached briefly) and the merge request's approval rules (Premium),
asks the project's recommender (`bot.engine.Engine`) for a ranking, filters it with `bot.eligibility.eligible`,
favours code owners and makes sure every approval GitLab will ask (one per matched CODEOWNERS entry, one per
regular approval rule: `bot.approvals`) is covered by someone who can give it.

    engine = Engine(storage)
    result = await suggest_for_mr(client, engine, storage, project_id, mr, settings, bot_username="reviewbot")
    result.suggestions, result.notes, result.cannot
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Collection, Hashable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit

from bot import learning
from bot.approvals import (
    Approval, approved_alike, capped, cover_note, owner_approvals, owner_usernames, people, rule_approvals,
)
from bot.comment import NO_ELIGIBLE, NO_FILES, NO_HISTORY, ONLY_AUTHOR, code_span
from bot.committers import read_committers
from bot.config import ProjectSettings
from bot.eligibility import Member, eligible, for_now
from bot.engine import Engine
from bot.threads import to_the_end
from bot.gitlab.client import GitLabClient
from bot.gitlab.models import ApprovalRule, MergeRequest
from bot.gitlab.models import Member as GitLabMember
from bot.lookups import ApprovalRulesUnreadable, CodeOwnersUnreadable, Lookups, gather
from bot.owners import owners_to_resolve, resolve_owners
from bot.people import former_names
from bot.storage import Storage
from graph.codeowners import CodeOwners, Owner
from graph.model import Change, Suggestion
from graph.ownership import OwnershipGraph
from graph.recommend import GraphRecommender, LearnedRecommender

__all__ = [
    "MRFacts", "SuggestionResult", "suggest_for_mr", "explain_person", "gather_facts", "owner_usernames",
    "boost_owners", "has_history", "as_members", "open_change", "EXCLUDING_LABELS", "INTERNAL", "POOL",
    "CODEOWNERS_UNREADABLE", "APPROVAL_RULES_UNREADABLE", "APPROVERS_ONLY", "SKIPPED", "members_former_names",
]

EXCLUDING_LABELS = ("exclude", "reroll")  # feedback labels that keep a person off one MR's suggestions
# ... and how an exclusion is named when only internal notes made it (the row's value says so, `INTERNAL`): the
# suggestion comment is public and says nothing of it; what names a person best wins (`_EXCLUSION_RANK`)
INTERNAL = "internal"
_EXCLUSION_RANK = {"exclude": 2, "reroll": 1, INTERNAL: 0}
POOL = 40            # how many ranked candidates the eligibility filter looks at
SPARE = 3            # statuses fetched for k + SPARE people at a time (some may be busy or overloaded)
OWNER_BOOST = 0.25   # code owners move up by this share of the pool's score spread
MAX_SKIP_NOTES = 3
SKIPPED = "Skipped @"  # how a note on someone who would have ranked among those suggested begins
CODEOWNERS_UNREADABLE = "CODEOWNERS could not be read from GitLab this time, so code owners are left out of " \
    "these suggestions (`/reviewers` suggests again)."
APPROVERS_ONLY = "No changed file has review history yet: only the people GitLab's approvals need are suggested."
APPROVAL_RULES_UNREADABLE = "The approval rules could not be read from GitLab this time, so they are left out of " \
    "these suggestions (`/reviewers` suggests again)."

C = TypeVar("C", str, Suggestion)


# --- what the bot gathers about one MR ----------------------------------------------------------------------
@dataclass(frozen=True)
class MRFacts:
    """Everything about one MR the ranking and the filter need, fetched once.

    `owner_users` holds the usernames GitLab gave for the CODEOWNERS groups, e-mails and non-member `@name`s
    of the sections this MR touches (`bot.owners`); an owner missing from it is not known this time (GitLab
    did not answer, or an e-mail nobody shows), which is no "nobody": the bot then claims no auto-approval.
    `code_owner_approval`: the target branch's protection requires code owners' approval (GitLab asks for
    none on other branches, and the bot then only favours owners in the ranking). `aliases` maps the former
    usernames of members who renamed themselves (casefolded) to their usernames now (`bot.people`); the
    opt-outs and exclusions are under the members' usernames now. `approval_rules` are the merge request's
    rules as GitLab reports them now (Premium; none on other tiers), each with who approved. `committers` are
    the people (usernames, casefolded) who added commits to it, read only where GitLab will ask code owners'
    approval and does not let committers approve (`bot.committers`): GitLab does not accept their approval.
    """

    files: tuple[str, ...]
    members: Mapping[str, GitLabMember]
    optouts: frozenset[str]
    excluded: Mapping[str, str]  # username -> "exclude", "reroll" (the label that took them off) or INTERNAL
    codeowners: CodeOwners | None
    owner_users: Mapping[Owner, tuple[str, ...]] = field(default_factory=dict)
    renames: tuple[tuple[str, str], ...] = ()  # (old path, new path) of each renamed file
    capped: bool = False  # GitLab listed only the first files (its diff limit): the others are not known
    code_owner_approval: bool = False  # GitLab requires code owners' approval on the target branch
    codeowners_unreadable: bool = False  # GitLab would not give the CODEOWNERS file this time
    aliases: Mapping[str, str] = field(default_factory=dict)  # former username (casefolded) -> username now
    approval_rules: tuple[ApprovalRule, ...] = ()
    approval_rules_unreadable: bool = False  # GitLab failed on the approval state alone this time
    committers: frozenset[str] = frozenset()  # who added commits, where GitLab will not take their approval

    @property
    def moved_from(self) -> tuple[str, ...]:
        """The old paths of renamed files: CODEOWNERS of both paths apply, and their history counts."""
        return tuple(dict.fromkeys(old for old, _ in self.renames))

    @property
    def owned_paths(self) -> tuple[str, ...]:
        """The paths CODEOWNERS is read for: GitLab takes a renamed file's old and new path (moving a file out
        of an owned directory still needs that directory's owners)."""
        return tuple(dict.fromkeys((*self.files, *self.moved_from)))

    def member(self, username: str) -> GitLabMember | None:
        """A member by username, compared case-insensitively as GitLab does."""
        if username in self.members:
            return self.members[username]
        folded = username.casefold()
        return next((m for name, m in self.members.items() if name.casefold() == folded), None)

    @cached_property
    def _spelled(self) -> dict[str, str]:
        return {name.casefold(): name for name in self.members}

    def person(self, name: str) -> str:
        """The username now of the member a name from the history, feedback or opt-outs stands for: the
        member's spelling (usernames ignore case), or the member whose former username it is (they renamed
        themselves: `aliases`); `name` itself when it is no member's.

        >>> MRFacts((), {"Bob": None, "alice.w": None}, frozenset(), {}, None, aliases={"alice": "alice.w"}
        ...         ).person("ALICE"), MRFacts((), {"Bob": None}, frozenset(), {}, None).person("bob")
        ('alice.w', 'Bob')
        """
        folded = name.casefold()
        return self._spelled.get(folded) or self.aliases.get(folded, name)


@dataclass
class SuggestionResult:
    """The outcome of `suggest_for_mr`: the people, their loads and names, notes for the comment.

    `cannot` is set (to `bot.comment.NO_FILES`, `NO_HISTORY`, `ONLY_AUTHOR` or `NO_ELIGIBLE`) when there is
    nobody to suggest for a reason worth saying. `candidates` is the graph's ranking (code owners moved up), `ranked`
    those of them who passed the filters that need no API call, best first (for `/reviewers why`);
    `dropped` says why the others were left out.
    """

    change: Change
    facts: MRFacts
    suggestions: list[Suggestion] = field(default_factory=list)
    candidates: list[Suggestion] = field(default_factory=list)
    ranked: list[Suggestion] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    cannot: str | None = None
    model_version: str = ""
    moved_down: list[tuple[str, str, str]] = field(default_factory=list)  # hand-set terms that chose the first
    spellings: int = 0  # ranked entries that were another spelling of a person ranked above (`as_members`)
    requested: list[str] = field(default_factory=list)  # review requested from them (`bot.handlers.publish`)
    told: set[str] = field(default_factory=set)  # casefolded: an approval's note says why they cannot review now
    # of the people the bot was to ask, those GitLab lists as reviewers after its request, the team's picks among
    # them: `/reviewers assign N` fell short only when fewer than N
    reviewing: list[str] = field(default_factory=list)
    only_author: bool = False  # nobody but the author has history on these files (`only_author_knows`)


async def persisted_exclusions(storage: Storage, project_id: int, mr_iid: int) -> dict[str, str]:
    """People `/reviewers exclude` or `/reviewers reroll` took off this MR (kept as feedback rows), each with
    the label that did (an explicit exclude names them best), or `INTERNAL` when only commands in internal notes
    did: a command nobody outside the team can read is not told in the public comment (`_skip_notes`)."""
    rows = await storage.feedback.list(project_id, mr_iid=mr_iid)
    out: dict[str, str] = {}
    for r in rows:
        if r.label in EXCLUDING_LABELS:
            label = INTERNAL if isinstance(r.value, Mapping) and r.value.get(INTERNAL) else r.label
            _keep_best(out, r.person, label)
    return out


def _keep_best(out: dict[str, str], person: str, label: str) -> None:
    """`out[person] = label` unless `out` names them better already (`_EXCLUSION_RANK`)."""
    if person not in out or _EXCLUSION_RANK.get(label, 2) > _EXCLUSION_RANK.get(out[person], 2):
        out[person] = label


async def gather_facts(look: Lookups, storage: Storage, project_id: int, mr: MergeRequest,
                       extra_excluded: Collection[str] = ()) -> MRFacts:
    """Fetch the changed files, members, CODEOWNERS and approval rules (together), the CODEOWNERS groups and
    e-mails those files need, opt-outs and exclusions; record the members' ids and usernames, and map the names
    each had before to them (`MRFacts.aliases`), so the opt-outs and exclusions made under a former name still
    hold."""
    changed, members, (codeowners, unreadable), (rules, rules_unreadable) = await gather(
        look.changed_files(project_id, mr), look.members(project_id),
        _read_codeowners(look, project_id, mr.target_branch), _read_approval_rules(look, project_id, mr.iid),
    )
    files = tuple(dict.fromkeys(f.path for f in changed))
    renames = tuple(dict.fromkeys(f.rename for f in changed if f.rename))
    by_name = {m.username: m for m in members}
    paths = (*files, *(old for old, _ in renames))
    if codeowners is not None:  # match once off the event loop (a large file against a large change)
        await to_the_end(asyncio.to_thread(codeowners.rules_for_files, paths))
    owner_users, required = await gather(
        resolve_owners(look.client, look.recent, project_id, owners_to_resolve(codeowners, paths, by_name)),
        _code_owner_approval(look, project_id, mr.target_branch, codeowners, paths),
    )
    committers = await _committers(look, project_id, mr, by_name) if required else frozenset()
    optouts = await storage.optouts.active(project_id)
    excluded = await persisted_exclusions(storage, project_id, mr.iid)
    facts = MRFacts(
        files=files, members=by_name, optouts=frozenset(), excluded={}, codeowners=codeowners,
        owner_users=owner_users, renames=renames, capped=mr.diff_capped, code_owner_approval=required,
        codeowners_unreadable=unreadable, aliases=await members_former_names(storage, members),
        approval_rules=tuple(rules), approval_rules_unreadable=rules_unreadable, committers=committers,
    )
    return replace(facts, optouts=frozenset(facts.person(p) for p in optouts),
                   excluded=_under_names_now(facts, {**excluded, **{p: "exclude" for p in extra_excluded}}))


async def members_former_names(storage: Storage, members: Sequence[GitLabMember]) -> dict[str, str]:
    """Record who the members are now (id and username: a rename is learned here), and map the usernames
    each had before to their usernames now (`bot.people.former_names`)."""
    pairs = [(m.id, m.username) for m in members]
    await storage.people.learn(pairs)
    return former_names(pairs, await storage.people.sightings(uid for uid, _ in pairs))


def _under_names_now(facts: MRFacts, excluded: Mapping[str, str]) -> dict[str, str]:
    """`excluded` under the members' usernames now (an exclusion made before a rename still holds), an
    explicit exclude winning over a reroll when both name one person, and either over an internal one."""
    out: dict[str, str] = {}
    for name, label in excluded.items():
        _keep_best(out, facts.person(name), label)
    return out


async def _read_codeowners(look: Lookups, project_id: int, branch: str) -> tuple[CodeOwners | None, bool]:
    """CODEOWNERS of `branch` and whether it could not be read. Read beside the MR's diffs and members: when all
    of GitLab fails, so do they and the event is retried; an error of this file alone costs only its owners."""
    try:
        return await look.codeowners(project_id, branch), False
    except CodeOwnersUnreadable:
        return None, True


async def _read_approval_rules(look: Lookups, project_id: int, iid: int) -> tuple[list[ApprovalRule], bool]:
    """The MR's approval rules and whether GitLab failed on them alone (`Lookups.approval_rules`): read beside
    the MR's diffs and members, as CODEOWNERS is."""
    try:
        return await look.approval_rules(project_id, iid), False
    except ApprovalRulesUnreadable:
        return [], True


async def _code_owner_approval(look: Lookups, project_id: int, branch: str, codeowners: CodeOwners | None,
                               paths: Sequence[str]) -> bool:
    """Whether GitLab requires code owners' approval on the MR's target branch; asked only when the change
    matches CODEOWNERS entries that would need approvals."""
    if codeowners is None or not any(rule.approvals_required for rule in codeowners.rules_for_files(paths)):
        return False
    return await look.code_owner_approval(project_id, branch)


async def _committers(look: Lookups, project_id: int, mr: MergeRequest, members: Mapping[str, GitLabMember]
                      ) -> frozenset[str]:
    """Who added commits to the MR, where the project does not let them approve; asked only where GitLab will
    ask code owners' approval (the approval rules come with GitLab's own list of who may approve)."""
    if not await look.committers_barred(project_id):
        return frozenset()
    return await read_committers(look, project_id, mr.iid, members, urlsplit(mr.web_url).hostname, mr.sha)


def _eligibility_members(facts: MRFacts) -> dict[str, Member]:
    return {name: Member(m.access_level, m.state, m.bot, m.membership_state) for name, m in facts.members.items()}


# --- ranking and filtering ----------------------------------------------------------------------------------
def has_history(rec: GraphRecommender, files: Iterable[str], moved_from: Iterable[str] = ()) -> bool:
    """Whether any changed file, or a directory holding one, appears in the project's history, or the old path
    of a renamed file (`moved_from`) does: its history goes with the file."""
    graph = rec.og.G
    return any(node in graph for node in rec.og.paths_of(files)) or \
        any(rec.og.path_nodes(old)[0] in graph for old in moved_from)


def boost_owners(ranked: Sequence[Suggestion], owners: Collection[str]) -> list[Suggestion]:
    """Move code owners up by `OWNER_BOOST` of the score spread (a strong signal, not an override).

    >>> s = [Suggestion("ann", 1.0), Suggestion("bob", 0.9), Suggestion("cy", 0.0)]
    >>> [x.person for x in boost_owners(s, {"bob"})]
    ['bob', 'ann', 'cy']
    """
    if not ranked or not owners:
        return list(ranked)
    folded = {o.casefold() for o in owners}
    scores = [s.score for s in ranked]
    bonus = OWNER_BOOST * ((max(scores) - min(scores)) or 1.0)
    keyed = [(s.score + (bonus if s.person.casefold() in folded else 0.0), -i, s) for i, s in enumerate(ranked)]
    return [s for _, _, s in sorted(keyed, key=lambda item: (item[0], item[1]), reverse=True)]


async def _statuses(look: Lookups, facts: MRFacts, people: Sequence[str]) -> dict[str, str]:
    """What each person's GitLab status says (busy, away, at_capacity, available); members looked up by id."""
    def uid(person: str) -> int | str:
        member = facts.member(person)
        return member.id if member else person

    found = await gather(*(look.status(uid(p)) for p in people))
    return dict(zip(people, found))


def _cheap_filter(ranked: Sequence[Suggestion], facts: MRFacts, author: str, settings: ProjectSettings,
                  bots: Collection[str]) -> tuple[list[Suggestion], dict[str, str]]:
    """Eligibility without statuses and loads (no API calls): members, access, opt-outs, exclusions, bots."""
    return eligible(
        ranked, members=_eligibility_members(facts), statuses={}, author=author, optouts=facts.optouts,
        excluded={**{facts.person(p): "settings" for p in settings.exclude}, **facts.excluded}, bots=bots,
        open_loads={}, max_open_reviews=None, min_access_level=settings.min_access_level,
    )


async def _flagged_bots(look: Lookups, facts: MRFacts, people: Sequence[str]) -> set[str]:
    """The members among `people` whose account GitLab flags as a bot (a service account named like anyone)."""
    ids = {p: m.id for p in people if (m := facts.member(p)) is not None}
    flags = await gather(*(look.is_bot(uid) for uid in ids.values()))
    return {p for p, flagged in zip(ids, flags) if flagged}


async def _api_filter(look: Lookups, facts: MRFacts, people: Sequence[C], result: SuggestionResult,
                      settings: ProjectSettings) -> tuple[list[C], dict[str, str]]:
    """Eligibility that needs GitLab's answers about each person: the Busy status, the account's bot flag,
    the open-review cap. The statuses are kept in `result` (the comment's notes read them)."""
    names = [p if isinstance(p, str) else p.person for p in people]
    statuses, bots = await gather(_statuses(look, facts, names), _flagged_bots(look, facts, names))
    result.statuses.update(statuses)
    return eligible(people, members=None, statuses=result.statuses, author="", optouts=(), excluded=(), bots=bots,
                    open_loads=result.loads, max_open_reviews=settings.max_open_reviews or None)


async def _final_filter(look: Lookups, facts: MRFacts, pool: Sequence[Suggestion], k: int,
                        result: SuggestionResult, settings: ProjectSettings) -> list[Suggestion]:
    """Ask GitLab about the pool chunk by chunk and drop busy, bot or overloaded people until `k` remain (or
    none are left)."""
    kept: list[Suggestion] = []
    start = 0
    while len(kept) < k and start < len(pool):
        chunk = list(pool[start:start + k - len(kept) + SPARE])
        start += len(chunk)
        ok, dropped = await _api_filter(look, facts, chunk, result, settings)
        kept += ok
        result.dropped.update(dropped)
    return kept[:k]


async def _loads(look: Lookups, project_id: int, facts: MRFacts, mr_iid: int) -> dict[str, int]:
    """Open reviews per member username (one listing of the project's open MRs), besides this MR's: someone
    already reviewing it is not overloaded by it, and must not drop out of its comment when it is edited."""
    by_id = {m.id: name for name, m in facts.members.items()}
    loads = dict.fromkeys(by_id.values(), 0)
    for iid, reviewers in await look.open_reviewers(project_id):
        if iid == mr_iid:
            continue
        for uid in reviewers:
            if uid in by_id:
                loads[by_id[uid]] += 1
    return loads


# --- approvals: CODEOWNERS and approval rules -----------------------------------------------------------------
def _all_owners(facts: MRFacts) -> set[str]:
    if facts.codeowners is None:
        return set()
    sections = facts.codeowners.owners_for_files(facts.owned_paths).values()
    return {name for section in sections for name in owner_usernames(section, facts)}


async def _best_givers(look: Lookups, facts: MRFacts, result: SuggestionResult, givers: Sequence[str], count: int,
                       author: str, settings: ProjectSettings, bots: Collection[str],
                       favour: Mapping[str, int] | None = None) -> list[Suggestion]:
    """The `count` best of `givers` who can review now: those `favour` weighs most first (people the approvals
    still to cover also need: one person is asked instead of two), then those with history, then the others
    in the order GitLab or the file names them."""
    folded = {o.casefold() for o in givers}
    ranked = [s for s in result.ranked if s.person.casefold() in folded]
    known = {s.person.casefold() for s in ranked}
    others = [Suggestion(o, 0.0) for o in givers if o.casefold() not in known]
    weight = favour or {}
    pool = sorted(ranked + others, key=lambda s: -weight.get(s.person.casefold(), 0))
    pool, dropped = _cheap_filter(pool, facts, author, settings, bots)
    result.dropped.update(dropped)
    return await _final_filter(look, facts, pool, count, result, settings)


def _favour(later: Sequence[Approval], facts: MRFacts) -> Counter[str]:
    """How many of the approvals still to cover each person (casefolded) could give."""
    return Counter(name.casefold() for need in later for name in need.givers(facts))


async def _cover_approvals(look: Lookups, facts: MRFacts, result: SuggestionResult, kept: list[Suggestion],
                           author: str, settings: ProjectSettings, bots: Collection[str]) -> list[Suggestion]:
    """Make sure each approval GitLab will ask has enough people among those suggested who can give it: each
    matched CODEOWNERS entry (`[Section][2]` needs two of its owners) and each regular approval rule still
    short of approvals (one person may cover several). One note per approval (`bot.approvals.capped`), entries
    of one section GitLab approves by itself alike in one (`bot.approvals.approved_alike`)."""
    kept = list(kept)
    needs: list[Approval] = [*owner_approvals(facts), *rule_approvals(facts.approval_rules)]
    notes = []
    automatic: dict[int, int] = {}  # the approvals GitLab gives by itself: how many can approve each
    for i, need in enumerate(needs):
        approvers = need.approvers(facts, author)
        if approvers is not None and len(approvers) < need.required:
            automatic[i] = len(approvers)
            notes.append(need.approved_by_gitlab(len(approvers)))
            continue
        givers = need.givers(facts)
        folded = {o.casefold() for o in givers}
        covering = [s.person for s in kept if s.person.casefold() in folded]
        missing = need.approvals - len(covering)
        if missing <= 0:
            notes.append(f"{need.need}: {people(covering)} can give {'them' if need.approvals > 1 else 'it'}.")
            continue
        others = [o for o in givers if o.casefold() not in {c.casefold() for c in covering}]
        best = await _best_givers(look, facts, result, others, missing, author, settings, bots,
                                  _favour(needs[i + 1:], facts)) if others else []
        kept += [replace(b, reasons=(need.why, *b.reasons)) for b in best]
        chosen = {b.person.casefold() for b in best}
        why_not = _why_not([o for o in others if o.casefold() not in chosen], result.dropped, result.told)
        notes.append(cover_note(need, givers, covering, [b.person for b in best], missing, why_not))
    result.notes += capped(*approved_alike(needs, notes, automatic))
    return kept


def _why_not(people: Sequence[str], dropped: Mapping[str, str], told: set[str]) -> str:
    """Why people the bot did not add cannot be suggested (`eligible`'s words), for the first few of them:
    set aside by the team, Busy, a bot account… GitLab may still need their approval. Those named join `told`."""
    reasons = {name.casefold(): why for name, why in dropped.items()}
    named = [p for p in people if p.casefold() in reasons][:MAX_SKIP_NOTES]
    told.update(p.casefold() for p in named)
    return "; ".join(f"{code_span('@' + p)} {reasons[p.casefold()]}" for p in named)


def _skip_notes(result: SuggestionResult, picked: Sequence[Suggestion], k: int) -> list[str]:
    """The people held back for now (`bot.eligibility.for_now`: Busy or away, at the open-review limit, opted
    out, taken off this MR by a command, awaiting a seat) who would have been in the table, each once with the
    reason, the first `MAX_SKIP_NOTES` named and the others counted.

    Would have been in the table: ranked above the last of the ranking's own `k` picks (`picked`), or anywhere
    when it found fewer (the table had room for them). Why not "above the last person shown": with places left,
    the second of two people with history, Busy, went unsaid while the first was named, and a code owner added
    for an approval from far down named whoever ranked above them. Someone an approval's note names with the
    reason already (`result.told`) is not named twice; one set aside in internal notes is not named.
    """
    quiet = {p.casefold() for p, how in result.facts.excluded.items() if how == INTERNAL}
    skipped = []
    for s in _would_have_shown(result.candidates, picked, k):
        reason, folded = result.dropped.get(s.person), s.person.casefold()
        if reason and for_now(reason) and folded not in quiet and folded not in result.told:
            skipped.append(f"{SKIPPED}{s.person}: {reason}.")
    more = len(skipped) - MAX_SKIP_NOTES
    rest = [f"{more} more {'person' if more == 1 else 'people'} who would have been suggested cannot review "
            "right now either (`/reviewers why @user` tells why)."] if more > 0 else []
    return skipped[:MAX_SKIP_NOTES] + rest


def _would_have_shown(candidates: Sequence[Suggestion], picked: Sequence[Suggestion], k: int) -> list[Suggestion]:
    """The candidates ranked above the last of `picked` when the ranking found its `k`, else all of them.

    >>> c = [Suggestion(p, 1.0) for p in ("ann", "bob", "cy", "dee")]
    >>> [s.person for s in _would_have_shown(c, c[1:3], 2)], len(_would_have_shown(c, c[1:2], 2))
    (['ann', 'bob', 'cy'], 4)
    """
    if len(picked) < k:
        return list(candidates)
    folded = {s.person.casefold() for s in picked}
    last = max((i for i, s in enumerate(candidates) if s.person.casefold() in folded), default=len(candidates) - 1)
    return list(candidates[:last + 1])


def _capped_note(facts: MRFacts) -> list[str]:
    """Where GitLab cut the diff at its limit, say so: the code owners and reviewers of the files past it
    cannot be known (the bot reads what GitLab lists, no more)."""
    if not facts.capped:
        return []
    return [f"Only the first {len(facts.files):,} changed files were read (GitLab's diff limit): owners and "
            "reviewers of the later files may be missing."]


# --- the service ----------------------------------------------------------------------------------------------
def open_change(mr: MergeRequest, files: Sequence[str], now: float | None = None,
                renames: Sequence[tuple[str, str]] = ()) -> Change:
    """The MR as the recommender sees it, under the id its merge will have in the history (`!iid`): the
    candidate rows remembered when suggesting become training rows at the merge, with the labels about it.
    The files it renames (old path, new path) are ranked with their old paths' history."""
    return Change(id=learning.mr_change_id(mr.iid), time=int(now if now is not None else time.time()),
                  author=mr.author.username, reviewers=(), files=tuple(files), title=mr.title,
                  renames=tuple(renames))


def as_members(ranked: Sequence[Suggestion], facts: MRFacts) -> tuple[list[Suggestion], int]:
    """The ranking under the members' current usernames (`MRFacts.person`), each person once, and how many
    entries went.

    GitLab usernames ignore case and a user may change their name's case: history imported before names
    `bob`, events after `Bob`, and the graph holds both. A user may also rename themselves (`alice` to
    `alice.w`, same id): the graph holds their history under `alice`, which no member is called now, so
    they were dropped as someone who left. Shown twice, one person took two of the slots, and the old
    spelling missed the id lookups that request reviews. The better-ranked entry stays, with its reasons.

    >>> facts = MRFacts((), {"Bob": None, "alice.w": None}, frozenset(), {}, None, aliases={"alice": "alice.w"})
    >>> as_members([Suggestion("bob", 0.9), Suggestion("alice", 0.8), Suggestion("Bob", 0.7),
    ...             Suggestion("alice.w", 0.1)], facts)[1]
    2
    >>> [s.person for s in as_members([Suggestion("bob", 0.9), Suggestion("alice", 0.8)], facts)[0]]
    ['Bob', 'alice.w']
    """
    out: list[Suggestion] = []
    seen: set[str] = set()
    for s in ranked:
        name = facts.person(s.person)
        if name.casefold() in seen:
            continue
        seen.add(name.casefold())
        out.append(s if name == s.person else replace(s, person=name))
    return out, len(ranked) - len(out)


async def _rank(engine: Engine, project_id: int, settings: ProjectSettings,
                result: SuggestionResult) -> list[Suggestion] | None:
    """The graph's candidates, best first; None when no changed file has history."""
    async with engine.use(project_id, settings) as rec:
        result.model_version = f"{rec.name}@{rec.og.changes}" + learning.serving_suffix(rec)
        if not has_history(rec, result.facts.files, result.facts.moved_from):
            return None
        ranked = await to_the_end(asyncio.to_thread(rec.suggest, result.change, POOL, explain=False))
        if not ranked:
            result.only_author = only_author_knows(rec.og, result.facts.owned_paths, result.change.author,
                                                   result.facts.person)
        if isinstance(rec, LearnedRecommender):
            result.moved_down = rec.moved_down(result.change)
        ranked, result.spellings = as_members(ranked, result.facts)
        return ranked


async def _explain_chosen(engine: Engine, project_id: int, settings: ProjectSettings,
                          result: SuggestionResult) -> list[Suggestion]:
    """The suggestions with their evidence. Only the people shown are explained: explaining all `POOL`
    ranked candidates cost several times the ranking itself."""
    folded = {s.person.casefold() for s in result.suggestions}
    if not folded:
        return []
    facts = result.facts
    async with engine.use(project_id, settings) as rec:
        explained = await to_the_end(asyncio.to_thread(rec.suggest, result.change, len(folded) + result.spellings,
                                                       allowed=lambda p: facts.person(p).casefold() in folded,
                                                       explain=True))
    by_person: dict[str, Suggestion] = {}
    for s in explained:  # the best-ranked name of each person (`as_members`)
        by_person.setdefault(facts.person(s.person).casefold(), s)
    out = []
    for s in result.suggestions:
        e = by_person.get(s.person.casefold())
        out.append(s if e is None else
                   replace(s, reasons=(*s.reasons, *e.reasons), contributions=e.contributions, basis=e.basis))
    return out


async def suggest_for_mr(client: GitLabClient, engine: Engine, storage: Storage, project_id: int,
                         mr: MergeRequest, settings: ProjectSettings, *, bot_username: str, k: int | None = None,
                         extra_excluded: Collection[str] = (), now: float | None = None,
                         once: dict[Hashable, Any] | None = None) -> SuggestionResult:
    """Rank the people who can review `mr` now: the top `k` (default `settings.top_k`) plus whoever GitLab's
    approvals need (CODEOWNERS, approval rules), those alone when no changed file has history. `once`: what the
    suggestions of one event share (`Lookups`)."""
    look = Lookups(client, engine.recent, once)
    facts = await gather_facts(look, storage, project_id, mr, extra_excluded)
    result = SuggestionResult(open_change(mr, facts.files, now, facts.renames), facts,
                              names={n: m.name for n, m in facts.members.items() if m.name},
                              user_ids={n: m.id for n, m in facts.members.items()})
    if facts.codeowners_unreadable:
        result.notes.append(CODEOWNERS_UNREADABLE)
    if facts.approval_rules_unreadable:
        result.notes.append(APPROVAL_RULES_UNREADABLE)
    if not facts.files:
        result.cannot = NO_FILES
        return result
    engine.note_author(project_id, mr.iid, mr.author.username)
    ranked = await _rank(engine, project_id, settings, result)
    if ranked is None and not _asks_approvals(facts):
        result.cannot = NO_HISTORY
        return result
    author, bots = mr.author.username, {*settings.bots, bot_username}
    result.candidates = boost_owners(ranked or [], _all_owners(facts))
    result.ranked, dropped = _cheap_filter(result.candidates, facts, author, settings, bots)
    result.dropped.update(dropped)
    result.loads = await _loads(look, project_id, facts, mr.iid)
    kept = await _final_filter(look, facts, result.ranked, k or settings.top_k, result, settings)
    result.suggestions = await _cover_approvals(look, facts, result, kept, author, settings, bots)
    result.suggestions = await _explain_chosen(engine, project_id, settings, result)
    result.notes = _skip_notes(result, kept, k or settings.top_k) + result.notes + _capped_note(facts)
    if not result.suggestions:
        result.cannot = NO_HISTORY if ranked is None else ONLY_AUTHOR if result.only_author else NO_ELIGIBLE
    elif ranked is None:
        result.notes.insert(0, APPROVERS_ONLY)
    return result


def only_author_knows(og: OwnershipGraph, files: Sequence[str], author: str,
                      person: Callable[[str], str] = str) -> bool:
    """Whether the author is the only person the history links to these files and their directories (the
    graph leaves the author out of the candidates, so none are left): "nobody ... can review right now
    (`/reviewers why @user` tells why)" sent the reader looking for a reason nobody else had. `person` gives
    a name in the history as the member's username now (`MRFacts.person`)."""
    return {person(p).casefold() for p in og.people_on(files)} == {author.casefold()}


def _asks_approvals(facts: MRFacts) -> bool:
    """Whether GitLab will ask approvals of named people (CODEOWNERS sections, approval rules): on files
    without history those people are still the ones to ask, and "no history" alone would hide them (a new
    project's first merge requests, a change to files no one touched yet)."""
    return bool(owner_approvals(facts) or rule_approvals(facts.approval_rules))


async def explain_person(client: GitLabClient, engine: Engine, project_id: int, settings: ProjectSettings,
                         result: SuggestionResult, person: str, *, bot_username: str,
                         ) -> tuple[Suggestion | None, int | None, str | None]:
    """For `/reviewers why @person`: their suggestion (if any), rank and the reason they were left out."""
    folded = person.casefold()
    for rank, s in enumerate(result.suggestions, start=1):
        if s.person.casefold() == folded:
            return s, rank, None
    found = next(((i, s) for i, s in enumerate(result.ranked, start=1) if s.person.casefold() == folded), None)
    dropped = next((r for p, r in result.dropped.items() if p.casefold() == folded), None)
    absent = None  # why the history's record of them made no candidate of them
    if (found is None or not found[1].reasons) and result.cannot not in (NO_FILES, NO_HISTORY):
        mine = lambda p: result.facts.person(p).casefold() == folded  # noqa: E731 - a name of this person's
        async with engine.use(project_id, settings) as rec:  # ranked candidates come without their evidence
            alone = await to_the_end(asyncio.to_thread(rec.suggest, result.change, 1, explain=True, allowed=mine))
            if not alone and found is None:  # no candidate: idle, or past the limit?
                absent = await to_the_end(asyncio.to_thread(rec.absent, result.change, mine)) or None
        alone = [replace(s, person=result.facts.person(s.person)) for s in alone]  # under the name now
        found = (found[0] if found else None, alone[0]) if alone else found
    if dropped is None:
        dropped = await _reason_for(Lookups(client, engine.recent), result, person, settings, bot_username) or absent
    return (found[1], found[0], dropped) if found else (None, None, dropped)


async def _reason_for(look: Lookups, result: SuggestionResult, person: str, settings: ProjectSettings,
                      bot_username: str) -> str | None:
    """Why `person` cannot be suggested on this MR right now, or None when they can."""
    _, dropped = _cheap_filter([person], result.facts, result.change.author, settings, {*settings.bots, bot_username})
    if dropped:
        return next(iter(dropped.values()))
    _, dropped = await _api_filter(look, result.facts, [person], result, settings)
    return next(iter(dropped.values()), None)
