"""The approvals GitLab will ask of people for a merge request, and what the comment says of each.

Two sources, one shape (`Approval`), so `bot.suggesting` covers both with one loop and the notes read alike:

* `OwnerApproval`: one approval rule GitLab makes per matched CODEOWNERS entry (`owner_approvals`), worked out
  by the bot from the file (any tier) where the target branch requires code owners' approval.
* `RuleApproval`: one of the project's *regular* approval rules (Premium; Settings → Merge requests → Approval
  rules, copied onto every merge request and editable there), as GitLab reports it with who approved
  (`rule_approvals`). GitLab's `code_owner` rules are left to `OwnerApproval` (not counted twice), and its
  `any_approver` rule ("All eligible users") too: anyone the bot suggests can give it. `report_approver`
  rules (security and coverage policies) are not covered.

Pure: the facts come in (`bot.suggesting.MRFacts`, imported for its type only: `bot.suggesting` imports this
module).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Protocol, Sequence

from bot.comment import code_span
from bot.gitlab.models import ApprovalRule
from graph.codeowners import DEFAULT_SECTION, Owner, RuleMatch

if TYPE_CHECKING:
    from bot.suggesting import MRFacts

__all__ = [
    "Approval", "Owned", "OwnerApproval", "RuleApproval", "owner_approvals", "rule_approvals", "owner_usernames",
    "gitlab_approvers", "owner_givers", "authors_may_approve", "cover_note", "capped", "people", "listed", "approvals",
    "owned_by", "approved_alike", "in_codeowners", "MAX_LISTED", "MAX_NOTES",
]

MAX_NOTES = 20  # notes on one kind of approvals shown in one comment (a file may match hundreds of entries)
MAX_LISTED = 5  # patterns or people named in one note or reason; the others are counted


class Approval(Protocol):
    """Approvals GitLab asks of some people, which the suggestion must be able to give.

    `approvals` are still needed, `required` is what GitLab asks in all (it approves the rule by itself when
    fewer people than that can approve); `need`, `asks` and `why` begin the notes and the reason of a person
    added for it; `role` names such a person ("code owner"), `short` one of them ("owner"); `kind` counts the
    notes left out ("CODEOWNERS approvals"); `unnamed` stands for approvers the bot could not name.
    """

    @property
    def approvals(self) -> int: ...
    @property
    def required(self) -> int: ...
    @property
    def need(self) -> str: ...
    @property
    def asks(self) -> str: ...
    @property
    def why(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def short(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def unnamed(self) -> str: ...

    def givers(self, facts: MRFacts) -> list[str]:
        """The people who may still give it, in the order the file or GitLab names them (the eligibility filter
        then decides who can be suggested)."""

    def approvers(self, facts: MRFacts, author: str) -> list[str] | None:
        """Everyone GitLab counts as able to approve (Busy or opted-out people too); None when not known."""

    def approved_by_gitlab(self, approvers: int) -> str:
        """The note saying GitLab approves it by itself, `approvers` (fewer than `required`) being able to."""


# --- CODEOWNERS ---------------------------------------------------------------------------------------------
class Owned(Protocol):
    """Anything naming CODEOWNERS owners: a section's match, a rule, an approval asked of owners."""

    @property
    def owners(self) -> tuple[Owner, ...]: ...


def owner_usernames(section: Owned, facts: MRFacts) -> list[str]:
    """The project members who may approve for a CODEOWNERS section or rule, in file order: named users, and
    the direct members holding a role, members of groups and owners of e-mails as resolved in
    `facts.owner_users`.

    People a group or an address stands for who are not project members cannot approve and are left out.
    """
    names: dict[str, None] = {}
    for owner in section.owners:
        wanted = (owner.name,) if owner.kind == "name" else ()
        for username in wanted + tuple(facts.owner_users.get(owner, ())):
            if (member := facts.member(username)) is not None:
                names[member.username] = None
    return list(names)


def gitlab_approvers(need: Owned, facts: MRFacts, author: str) -> list[str] | None:
    """The owners GitLab lets approve for a rule (`ApprovalWrappedRule#approvers`): active project members
    (not blocked, not awaiting a seat), the MR's author only where the project lets authors approve
    (`authors_may_approve`; GitLab's default forbids approving one's own MR), none who added commits to it
    where the project does not let them approve (`MRFacts.committers`). Busy, opted-out or overloaded owners
    count: GitLab waits for them. None when an owner could not be looked up this time.

    GitLab approves a rule automatically when fewer of them exist than the approvals it asks (an invalid
    rule must not block the merge request), so the bot asks nobody for it.
    """
    if any(_unresolved(owner, facts) for owner in need.owners):
        return None
    left_out = facts.committers | (set() if authors_may_approve(facts, author) else {author.casefold()})
    return [name for name in owner_usernames(need, facts)
            if (member := facts.member(name)) is not None and member.active and not member.awaiting
            and name.casefold() not in left_out]


def owner_givers(need: Owned, facts: MRFacts) -> list[str]:
    """The owners who may give a CODEOWNERS approval (`owner_usernames`), less those who added commits where
    GitLab does not accept their approval: they may still review, but are not asked for the approval."""
    return [name for name in owner_usernames(need, facts) if name.casefold() not in facts.committers]


def authors_may_approve(facts: MRFacts, author: str) -> bool:
    """Whether the project lets the author approve their own merge request ("Prevent approval by author" off).

    GitLab leaves the author out of every rule's eligible approvers unless it does, so the author among them
    says so; on Premium, where code owners' approval can be required, GitLab lists a `code_owner` rule for each
    matched entry, the author's too. Without rules to read (Free, the Community Edition, a token refused them)
    the bot keeps GitLab's default: the author may not approve.
    """
    folded = author.casefold()
    return any(user.username.casefold() == folded for rule in facts.approval_rules for user in rule.eligible_approvers)


def _unresolved(owner: Owner, facts: MRFacts) -> bool:
    """An owner that needed GitLab's answer (group, e-mail, role, unknown `@name`) and did not get it."""
    if owner.kind == "name" and facts.member(owner.name) is not None:
        return False
    return owner not in facts.owner_users


@dataclass(frozen=True)
class OwnerApproval:
    """Approvals GitLab asks of code owners: one CODEOWNERS rule (matched entry), or several of one section
    with the same owners and count, which the same approvals meet (an approval counts for every rule naming
    its giver). `alone`: the only one of its section, so its note need not name the patterns. `separately`:
    rules with owners of their own that GitLab approves each by itself alike, said in one note
    (`approved_alike`). `committers`: GitLab does not count owners who added commits (its notes say so)."""

    section: str
    patterns: tuple[str, ...]
    owners: tuple[Owner, ...]
    approvals: int
    alone: bool = True
    separately: bool = False
    committers: bool = False

    role = "code owner"
    short = "owner"
    kind = "CODEOWNERS approvals"
    unnamed = "owners the bot could not name (groups, e-mails, roles: GitLab did not answer, or there were too " \
        "many to look up)"

    @property
    def required(self) -> int:
        return self.approvals

    @property
    def which(self) -> str:
        """` for `docs/``: the patterns (the first `MAX_LISTED`, then how many more), when the section asks
        more than this of its owners."""
        return "" if self.alone else " for " + listed([code_span(p) for p in self.patterns])

    @property
    def need(self) -> str:
        """`CODEOWNERS section `Docs` needs 1 approval` (and `which`), how the comment's notes begin."""
        return f"{in_codeowners(self.section)} needs {approvals(self.approvals)}{self.which}"

    @property
    def asks(self) -> str:
        """`CODEOWNERS section `Docs` asks for 1 approval` (and `which`): what the file asks, met or not."""
        return f"{in_codeowners(self.section)} asks for {approvals(self.approvals)}{self.which}"

    @property
    def why(self) -> str:
        """The reason an owner added for it carries."""
        return f"code owner: {in_codeowners(self.section, 'section ')} needs their approval{self.which}"

    def givers(self, facts: MRFacts) -> list[str]:
        return owner_givers(self, facts)

    def approvers(self, facts: MRFacts, author: str) -> list[str] | None:
        return gitlab_approvers(self, facts, author)

    def approved_by_gitlab(self, approvers: int) -> str:
        if self.separately:
            who = f"only {approvers} of the owners of each" if approvers else "none of their owners"
        else:
            who = f"only {approvers} of its owners" if approvers else "none of its owners"
        others = "the author and those who added commits" if self.committers else "the author"
        return f"{self.asks}, but {who} can approve (active project members other than {others}): GitLab " \
               f"approves {'each' if self.separately else 'it'} automatically."


def owner_approvals(facts: MRFacts) -> list[OwnerApproval]:
    """What GitLab asks of the code owners for this MR, in the CODEOWNERS file's order: one entry per rule
    with approvals (`graph.codeowners.RuleMatch`), rules of one section with the same owners and count
    merged. Nothing when the target branch does not require code owners' approval."""
    if facts.codeowners is None or not facts.code_owner_approval:
        return []
    merged: dict[tuple[str, frozenset[Owner], int], list[RuleMatch]] = {}
    for rule in facts.codeowners.rules_for_files(facts.owned_paths):
        if rule.approvals_required > 0:
            merged.setdefault((rule.section, frozenset(rule.owners), rule.approvals_required), []).append(rule)
    per_section = Counter(section for section, _, _ in merged)
    return [OwnerApproval(section, tuple(r.pattern for r in rules), rules[0].owners, count,
                          per_section[section] == 1, committers=bool(facts.committers))
            for (section, _, count), rules in merged.items()]


def owned_by(person: str, facts: MRFacts, suggested: Sequence[str], author: str) -> list[str]:
    """For `/reviewers why @person` when the person is not suggested: one sentence per CODEOWNERS section whose
    matched entries name them (themselves, or through a group, e-mail or role), with the patterns and why the
    bot did not add them for it. Without it a code owner with no history on the files read only "no review
    history", which hides what someone asking wants to know: that they own the files, and who gives the
    approval instead. Empty when they own none of the changed files or are suggested."""
    if facts.codeowners is None or any(s.casefold() == person.casefold() for s in suggested):
        return []
    name = facts.person(person)
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for rule in facts.codeowners.rules_for_files(facts.owned_paths):
        if name.casefold() in {n.casefold() for n in owner_usernames(rule, facts)}:
            key = (rule.section, _through(rule, name, facts), _not_added(rule, facts, suggested, author, name))
            grouped.setdefault(key, []).append(rule.pattern)
    return [f"They are a code owner of {listed([code_span(p) for p in patterns])}{_where(section, through)}"
            f"{outcome}." for (section, through, outcome), patterns in grouped.items()]


def _where(section: str, through: str) -> str:
    """` (section `Docs`, through `@acme/docs`)`; the default section, which CODEOWNERS readers never see
    named, is left out: ` (through `@acme/docs`)`, or nothing."""
    parts = [] if section == DEFAULT_SECTION else [f"section {code_span(section)}"]
    parts += [through.removeprefix(", ")] if through else []
    return f" ({', '.join(parts)})" if parts else ""


def in_codeowners(section: str, named: str = "CODEOWNERS section ") -> str:
    """How a comment names a CODEOWNERS section: "CODEOWNERS section `Docs`", or "CODEOWNERS" alone for the
    entries before any section header (GitLab's default section, `codeowners`: a name nobody wrote, which read
    as "CODEOWNERS section `codeowners`").

    >>> in_codeowners("Docs"), in_codeowners("codeowners"), in_codeowners("Docs", "section ")
    ('CODEOWNERS section `Docs`', 'CODEOWNERS', 'section `Docs`')
    """
    return "CODEOWNERS" if section == DEFAULT_SECTION else f"{named}{code_span(section)}"


def _through(rule: RuleMatch, name: str, facts: MRFacts) -> str:
    """`, through `@acme/platform``: the owners standing for `name` when the entry does not name them."""
    folded = name.casefold()
    if any(o.kind == "name" and facts.person(o.name).casefold() == folded for o in rule.owners):
        return ""
    refs = [o.ref for o in rule.owners
            if any(facts.person(u).casefold() == folded for u in facts.owner_users.get(o, ()))]
    return f", through {listed([code_span(r) for r in refs])}" if refs else ""


def _not_added(rule: RuleMatch, facts: MRFacts, suggested: Sequence[str], author: str, name: str) -> str:
    """Why the bot did not add `name`, a code owner of `rule`, for it, as `bot.suggesting` decided: GitLab asks
    no approval (optional section, branch not requiring it, too few owners able to approve), or does not accept
    theirs (they added commits), or the people suggested can give it; else that GitLab still requires it (the
    owner could not be suggested: said above)."""
    needed = ", but were not needed for it: "
    if rule.approvals_required == 0:
        return needed + "the section is optional (GitLab asks its owners for no approval)"
    if not facts.code_owner_approval:
        return needed + "the target branch does not require code owners' approval"
    if name.casefold() in facts.committers:
        return ", but GitLab does not accept their approval on this merge request: they added commits to it"
    approvers = gitlab_approvers(rule, facts, author)
    if approvers is not None and len(approvers) < rule.approvals_required:
        return needed + "GitLab approves it automatically (fewer of its owners can approve than it asks)"
    owners = {n.casefold() for n in owner_givers(rule, facts)}
    covering = [s for s in suggested if s.casefold() in owners]
    if len(covering) >= rule.approvals_required:
        return f"{needed}{people(covering)}, already suggested, can give its {approvals(rule.approvals_required)}"
    return f": GitLab still requires its {approvals(rule.approvals_required)}"


# --- the project's approval rules (Premium) -------------------------------------------------------------------
@dataclass(frozen=True)
class RuleApproval:
    """The approvals one of GitLab's regular approval rules still needs on the merge request, as GitLab counts
    them: its eligible approvers are GitLab's (active, not the author unless the project allows it), and
    those who approved already count and are not asked again."""

    rule: ApprovalRule

    role = "approver"
    short = "approver"
    kind = "approval rules"
    unnamed = "approvers GitLab did not name (groups hidden from the bot)"

    @property
    def approvals(self) -> int:
        """GitLab's approvals left, or fewer when fewer of its approvers have yet to approve: an older GitLab
        approved such a rule once each of them had (a newer one approves it by itself: `approvers`)."""
        if self._hidden:
            return self.rule.approvals_left
        return min(self.rule.approvals_left, len(self._waiting))

    @property
    def _waiting(self) -> set[int]:
        """The ids of the eligible approvers who have not approved yet."""
        return {u.id for u in self.rule.eligible_approvers} - {u.id for u in self.rule.approved_by}

    @property
    def met(self) -> bool:
        """Whether the approvals given meet the rule, once GitLab says it is approved: enough of its approvers
        approved, or each of them did (an older GitLab then approved a rule asking more), or GitLab hid
        them. An approved rule not met is one GitLab gave up on, which the comment says."""
        return self._hidden or self.rule.approvals_left == 0 or bool(self.rule.approved_by) and not self._waiting

    @property
    def _hidden(self) -> bool:
        """GitLab hid the approvers (groups the bot cannot see, while it is no project member)."""
        return self.rule.contains_hidden_groups and not self.rule.eligible_approvers

    @property
    def required(self) -> int:
        return self.rule.approvals_required

    @property
    def need(self) -> str:
        """`Approval rule `Backend` needs 1 approval` (`1 more approval` once someone approved)."""
        more = " more" if self.rule.approved_by else ""
        return f"Approval rule {code_span(self.rule.name)} needs {self.approvals}{more} " \
               f"approval{'s' if self.approvals != 1 else ''}"

    @property
    def asks(self) -> str:
        return f"Approval rule {code_span(self.rule.name)} asks for {approvals(self.required)}"

    @property
    def why(self) -> str:
        return f"approver: rule {code_span(self.rule.name)} needs their approval"

    def givers(self, facts: MRFacts) -> list[str]:
        """The rule's eligible approvers who have not approved, in GitLab's order (as members spell their names).
        GitLab counts people who have left the project too: the eligibility filter says why they are not asked."""
        waiting = self._waiting
        names: dict[str, None] = {}
        for user in self.rule.eligible_approvers:
            if user.id in waiting:
                member = facts.member(user.username)
                names[member.username if member is not None else user.username] = None
        return list(names)

    def approvers(self, facts: MRFacts, author: str) -> list[str] | None:
        """GitLab's eligible approvers (it left out the author already, unless the project lets authors
        approve) where GitLab approved the rule: only GitLab's `approved` says it gave up on a rule with fewer
        of them than it asks (since about 16.0; before, it waited for each of them). None when GitLab hid them
        (groups the bot cannot see) or waits for them."""
        if self._hidden or not self.rule.approved:
            return None
        return [user.username for user in self.rule.eligible_approvers]

    def approved_by_gitlab(self, approvers: int) -> str:
        who = f"only {approvers} of the people it names" if approvers else "none of the people it names"
        return f"{self.asks}, but {who} can approve (active users other than the author): GitLab approves it " \
               "automatically."


def rule_approvals(rules: Iterable[ApprovalRule]) -> list[RuleApproval]:
    """The regular rules still asking for approvals, in GitLab's order; those GitLab approved by itself (fewer
    eligible approvers than it asks) stay, for the comment to say so. Rules met need nothing (`RuleApproval.met`)."""
    out = []
    for rule in rules:
        if rule.rule_type != "regular" or rule.approvals_required <= 0:
            continue
        need = RuleApproval(rule)
        if not (rule.approved and need.met):
            out.append(need)
    return out


# --- the notes ---------------------------------------------------------------------------------------------
def cover_note(need: Approval, givers: Sequence[str], covering: Sequence[str], added: Sequence[str],
               missing: int, why_not: str = "") -> str:
    """What the comment says of one approval the bot had to find people for; `why_not` names why the people
    left out cannot be suggested (GitLab still waits for their approval)."""
    still = f" ({why_not}; GitLab still requires the approval)" if why_not else ""
    if not added:
        who = f"from {people(givers)}" if givers else f"from {need.unnamed}"
        can = f"; {people(covering)} can give {approvals(len(covering))}" if covering else ""
        nobody = "none of the others can" if covering else ("none of them can" if len(givers) != 1 else "they cannot")
        return f"{need.need} {who}, but {nobody} be suggested right now{still}{can}."
    what = f"added {need.role}{'s' if len(added) > 1 else ''} {people(added)}"
    also = f" ({people(covering)} can give {approvals(len(covering))})" if covering else ""
    short = f"; no other {need.short} can be suggested right now{still}" if len(added) < missing else ""
    return f"{need.need}: {what}{also}{short}."


def approved_alike(needs: Sequence[Approval], notes: Sequence[str], automatic: Mapping[int, int],
                   ) -> tuple[list[Approval], list[str]]:
    """The approvals and their notes, the CODEOWNERS rules of one section that GitLab approves by itself alike
    (`automatic`: the index of each approval GitLab approves, and how many can approve it) said in one note at
    the first one's place, naming their patterns. A section of nine entries, each with owners of its own and
    none of them able to approve, made nine notes alike but for the pattern."""
    groups: dict[tuple[str, int, int], list[int]] = {}
    for i, need in enumerate(needs):
        if i in automatic and isinstance(need, OwnerApproval):
            groups.setdefault((need.section, need.approvals, automatic[i]), []).append(i)
    out_needs, out_notes = list(needs), list(notes)
    gone: set[int] = set()
    for (section, count, able), at in groups.items():
        if len(at) < 2:
            continue
        alike = [needs[i] for i in at]  # only `OwnerApproval`s were grouped
        merged = OwnerApproval(section, tuple(p for n in alike for p in n.patterns),
                               tuple(dict.fromkeys(o for n in alike for o in n.owners)), count, alone=False,
                               separately=True, committers=any(n.committers for n in alike))
        out_needs[at[0]], out_notes[at[0]] = merged, merged.approved_by_gitlab(able)
        gone.update(at[1:])
    keep = [i for i in range(len(needs)) if i not in gone]
    return [out_needs[i] for i in keep], [out_notes[i] for i in keep]


def capped(needs: Sequence[Approval], notes: Sequence[str]) -> list[str]:
    """One note per approval, at most `MAX_NOTES` of each kind, then how many more of that kind: the comment
    stays readable and within GitLab's note size."""
    out: list[str] = []
    shown: Counter[str] = Counter()
    for need, note in zip(needs, notes):
        shown[need.kind] += 1
        if shown[need.kind] <= MAX_NOTES:
            out.append(note)
    return out + [f"… and {n - MAX_NOTES} more {kind} not listed here." for kind, n in shown.items() if n > MAX_NOTES]


def people(names: Iterable[str]) -> str:
    return listed([f"@{n}" for n in names])


def listed(items: Sequence[str]) -> str:
    """The first `MAX_LISTED` items, then how many more. A section of a thousand per-file entries, or a group of
    a thousand owners, listed whole in every note and added owner's reason made a comment GitLab refuses
    (over 1,000,000 characters), and then on every later event of the merge request.

    >>> listed([f"f{i}" for i in range(8)])
    'f0, f1, f2, f3, f4 and 3 more'
    """
    more = len(items) - MAX_LISTED
    return ", ".join(items[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


def approvals(n: int) -> str:
    return f"{n} approval{'s' if n != 1 else ''}"
