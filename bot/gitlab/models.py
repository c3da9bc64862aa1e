"""Pydantic models of the GitLab REST v4 objects the bot reads: validated at the edge, unknown keys kept.

GitLab adds fields every release, so every model allows extra keys (reachable through `model_extra`) and
requires only what the bot relies on.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "User", "Member", "UserStatus", "Group", "Namespace", "SharedGroup", "Project", "MergeRequest", "ChangedFile",
    "Approval", "Approvals", "ApprovalRule", "ApprovalState", "ApprovalSettings", "Commit", "ReviewerState", "Note",
    "AwardEmoji", "Hook", "ProtectedBranch", "Page", "GUEST", "REPORTER", "DEVELOPER", "MAINTAINER", "OWNER",
]

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50
T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class User(_Model):
    """A user as embedded in MRs, notes and member lists; `bot` is only present on GET /user and /users/:id."""

    id: int
    username: str
    name: str = ""
    state: str = "active"
    bot: bool = False
    avatar_url: str | None = None
    web_url: str | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"


GHOST = {"id": 0, "username": "ghost", "name": "Ghost User"}  # who GitLab shows for a deleted user's work


class Member(User):
    """A project member with the effective (highest, inherited included) access level.

    `membership_state` is "awaiting" for a member GitLab holds until an Owner grants them a seat (a namespace
    at its seat limit or user cap, on Premium and Ultimate): such a member has no access yet. Versions and
    tiers without the field list active members only.
    """

    access_level: int
    membership_state: str = "active"

    @property
    def awaiting(self) -> bool:
        return self.membership_state == "awaiting"


# Statuses GitLab's own reviewer roulette reads as "not available": people set a 🌴 or "OOO" for a holiday far
# more often than Busy, and a 🔴 for "at capacity"; a 🤒 says the same of sick leave.
AWAY_EMOJI = frozenset({"palm_tree", "beach", "beach_umbrella", "beach_with_umbrella", "desert_island",
                        "face_with_thermometer"})
AT_CAPACITY_EMOJI = frozenset({"red_circle"})
_AWAY_WORDS = re.compile(r"\b(?:ooo|out of (?:the )?office|on (?:vacation|holidays?|leave|pto)|"
                         r"(?:parental|sick|annual) leave)\b", re.I)


class UserStatus(_Model):
    availability: str = "not_set"
    emoji: str | None = None
    message: str | None = None

    @property
    def busy(self) -> bool:
        return self.availability == "busy"

    @property
    def condition(self) -> str:
        """What the status says of reviewing now: "busy" (GitLab's Busy), "away" (a holiday or sick emoji, or
        "OOO" / "out of office" / "on vacation" in the message), "at_capacity" (🔴), else "available"."""
        if self.busy:
            return "busy"
        if self.emoji in AWAY_EMOJI or _AWAY_WORDS.search(self.message or ""):
            return "away"
        return "at_capacity" if self.emoji in AT_CAPACITY_EMOJI else "available"


class Group(_Model):
    """GET /groups/:id: a group or subgroup; `full_path` is what CODEOWNERS names (`@acme/frontend`)."""

    id: int
    full_path: str
    name: str = ""
    parent_id: int | None = None
    web_url: str = ""
    visibility: str = ""  # public, internal or private ("" from a GitLab that leaves it out: taken as private)


class Namespace(_Model):
    """A project's `namespace`: the group (or user) it lives in."""

    id: int
    full_path: str
    kind: str = "group"


class SharedGroup(_Model):
    """One entry of a project's `shared_with_groups`: a group invited to it, at most at `group_access_level`."""

    group_id: int
    group_full_path: str = ""
    group_access_level: int = 0


class Project(_Model):
    id: int
    path_with_namespace: str
    name: str = ""
    default_branch: str | None = "main"
    web_url: str = ""
    archived: bool = False  # read-only: GitLab refuses every comment and reviewer change (403)
    namespace: Namespace | None = None
    shared_with_groups: list[SharedGroup] = Field(default_factory=list)


class MergeRequest(_Model):
    """GET .../merge_requests/:iid or a list item (lists lack `diff_refs` and `changes_count`)."""

    id: int
    iid: int
    project_id: int
    title: str
    state: str
    author: User
    description: str | None = ""
    draft: bool = False
    work_in_progress: bool = False  # the same, the only field before GitLab 14.0 (`draft` came in 13.12)
    reviewers: list[User] = Field(default_factory=list)
    assignees: list[User] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    source_branch: str = ""
    target_branch: str = ""
    sha: str | None = None
    web_url: str = ""
    merge_user: User | None = None
    changes_count: str | None = None  # a string: "1000+" when GitLab cut the diff at its limit

    @property
    def diff_capped(self) -> bool:
        """Whether GitLab cut the MR's diff at its limit (1,000 files by default, at most 3,000): /diffs and
        /changes then list only the first files (`changes_count` "1000+")."""
        return str(self.changes_count or "").endswith("+")

    @field_validator("changes_count", mode="before")
    @classmethod
    def _count_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value

    @model_validator(mode="before")
    @classmethod
    def _merger_from_merged_by(cls, data: object) -> object:
        """Who merged it: `merge_user` (GitLab 14.7+), else `merged_by`, the only field before 14.7."""
        if isinstance(data, dict) and data.get("merge_user") is None and isinstance(data.get("merged_by"), dict):
            return {**data, "merge_user": data["merged_by"]}
        return data

    @field_validator("author", mode="before")
    @classmethod
    def _ghost_when_missing(cls, value: object) -> object:
        """GitLab lists some merged MRs with `"author": null` (their author's account was deleted): they are
        the Ghost User's, as GitLab shows them, rather than a page that cannot be read."""
        return GHOST if value is None else value


class ChangedFile(_Model):
    """One file of an MR's diff. `path` is where the file lives after the change: renames resolve to the new
    path; a deleted file keeps its path (GitLab sets new_path == old_path) and is flagged `deleted_file`."""

    old_path: str
    new_path: str
    new_file: bool = False
    renamed_file: bool = False
    deleted_file: bool = False

    @property
    def path(self) -> str:
        return self.new_path

    @property
    def rename(self) -> tuple[str, str] | None:
        """(old path, new path) when the change renamed the file (GitLab's `renamed_file`: the paths differ),
        else None."""
        return (self.old_path, self.new_path) if self.old_path and self.old_path != self.new_path else None


class Approval(_Model):
    """One entry of `approved_by`: `{"user": {...}, "approved_at": ...}`."""

    user: User
    approved_at: datetime | None = None


class Approvals(_Model):
    approved_by: list[Approval] = Field(default_factory=list)
    approved: bool | None = None
    approvals_required: int = 0
    approvals_left: int = 0

    @property
    def approvers(self) -> list[User]:
        return [entry.user for entry in self.approved_by]


class ApprovalRule(_Model):
    """One rule of a merge request's approval state (GET .../merge_requests/:iid/approval_state, Premium).

    `rule_type` is `regular` (Settings → Merge requests → Approval rules, copied onto each merge request and
    editable there), `code_owner` (one per matched CODEOWNERS entry), `any_approver` ("All eligible users") or
    `report_approver` (security and coverage policies). `eligible_approvers` are GitLab's
    `ApprovalWrappedRule#approvers`: the rule's users and the members of its groups who are active, less the
    author unless the project lets authors approve (and less committers when they may not). `approved` is
    also true for a rule GitLab gives up on: fewer eligible approvers than `approvals_required` (an invalid
    rule must not block the merge request). An empty `eligible_approvers` with `contains_hidden_groups` means
    GitLab hid them from the bot (a group it cannot see, while it is no project member).
    """

    id: int
    name: str = ""
    rule_type: str = "regular"
    eligible_approvers: list[User] = Field(default_factory=list)
    approvals_required: int = 0
    approved_by: list[User] = Field(default_factory=list)
    approved: bool = False
    contains_hidden_groups: bool = False
    section: str | None = None
    overridden: bool = False

    @property
    def approvals_left(self) -> int:
        """Approvals still missing, as GitLab counts them (`approvals_required` less the eligible approvers who
        approved); an invalid rule may be `approved` with approvals left."""
        return max(self.approvals_required - len(self.approved_by), 0)


class ApprovalState(_Model):
    """GET .../merge_requests/:iid/approval_state: the rules that apply to the merge request now (its target
    branch), each with who approved. GitLab without the Premium feature answers no rules at all."""

    approval_rules_overwritten: bool = False
    rules: list[ApprovalRule] = Field(default_factory=list)


class ApprovalSettings(_Model):
    """GET /projects/:id/approvals: the project's approval settings (Enterprise Edition). A field is None where
    this GitLab does not give it (`merge_requests_disable_committers_approval` came about 12.1)."""

    merge_requests_author_approval: bool | None = None
    merge_requests_disable_committers_approval: bool | None = None


class Commit(_Model):
    """One commit as GET .../merge_requests/:iid/commits lists it: who wrote it (`author_*`) and who made it
    (`committer_*`: the one who rebased, cherry-picked or applied it), as git recorded them."""

    id: str
    author_name: str = ""
    author_email: str = ""
    committer_name: str = ""
    committer_email: str = ""


class ReviewerState(_Model):
    """One reviewer of an MR with their review state (GET .../merge_requests/:iid/reviewers): "unreviewed",
    "reviewed", "requested_changes", "approved" or "unapproved"."""

    user: User
    state: str = "unreviewed"


class Note(_Model):
    id: int
    body: str
    author: User
    system: bool = False
    created_at: datetime
    updated_at: datetime | None = None
    noteable_iid: int | None = None
    internal: bool = False


class AwardEmoji(_Model):
    id: int
    name: str
    user: User
    awardable_id: int
    awardable_type: str


class Hook(_Model):
    id: int
    url: str
    push_events: bool = False
    merge_requests_events: bool = False
    note_events: bool = False
    emoji_events: bool = False
    alert_status: str | None = None


class ProtectedBranch(_Model):
    """One branch protection (GET /projects/:id/protected_branches): `name` is a branch or a wildcard such as
    `release/*`. `code_owner_approval_required` is Premium's "Code owner approval required"; GitLab's edition
    without Premium code leaves it out, and then nothing requires code owners' approval.

    >>> ProtectedBranch(id=1, name="release/*").protects("release/1.0/hotfix")
    True
    >>> main = ProtectedBranch(id=1, name="main")
    >>> main.protects("Main"), main.code_owner_approval_required
    (False, False)
    """

    id: int
    name: str
    code_owner_approval_required: bool = False

    def protects(self, branch: str) -> bool:
        """GitLab's `RefMatcher`: the exact name, or the wildcard with each `*` any run of characters (`/`
        included), case-sensitive."""
        if self.name == branch:
            return True
        return "*" in self.name and wildcard_match(self.name, branch)


def wildcard_match(pattern: str, text: str) -> bool:
    """Whether `text` is `pattern` with each `*` standing for any run of characters: prefix and suffix fixed,
    the parts between found left to right (linear; a regex of `.*?` runs backtracks for seconds on `*a*a*a…`).

    >>> [wildcard_match(p, t) for p, t in (("release/*", "release/1.0"), ("*-*-stable", "1-2-stable"), ("a*a", "a"))]
    [True, True, False]
    """
    first, *middle, last = pattern.split("*")
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    at, end = len(first), len(text) - len(last)
    for part in middle:
        found = text.find(part, at, end)
        if found < 0:
            return False
        at = found + len(part)
    return True


class Page(BaseModel, Generic[T]):
    """One page of a listing: resume a backfill from `next_page` (None when this was the last page)."""

    page: int
    items: list[T]
    next_page: int | None
