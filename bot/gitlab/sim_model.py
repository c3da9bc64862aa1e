"""The records a simulated GitLab keeps: users, projects, merge requests, notes, awards, hooks, requests.

Plain mutable dataclasses, no I/O: `SimState` (sim_state.py) owns and changes them, `sim_render.py` turns them
into GitLab's REST shapes and `payloads.py` into webhook bodies. Times are timezone-aware UTC datetimes.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "SimUser", "SimGroup", "SimProject", "SimProtectedBranch", "SimApprovalRule", "SimDiff", "SimCommit", "SimMR",
    "SimNote",
    "SimAward", "SimHook", "HookEvent", "Delivery", "SimRequest", "SimToken", "fake_sha", "DRAFT_RE",
]

DRAFT_RE = re.compile(r"^\s*(\[draft\]|\(draft\)|draft:)\s*", re.IGNORECASE)  # GitLab's merge_request_draft


def fake_sha(*parts: object) -> str:
    """A stable 40-hex commit id derived from `parts`, so seeded runs produce the same shas."""
    return hashlib.sha1("\x00".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class SimUser:
    """A GitLab user; `state` is active/blocked/deactivated, `busy` is the "Busy" availability status.

    `email` is the primary (verified) address, seen only by administrators; `public_email` is the one the
    user chose to show (None by default, as in GitLab), which `GET /users?search=` matches for everyone.
    """

    id: int
    username: str
    name: str
    state: str = "active"
    bot: bool = False
    busy: bool = False
    status_message: str | None = None
    status_emoji: str | None = None
    email: str = ""
    created_at: datetime | None = None
    public_email: str | None = None


@dataclass
class SimDiff:
    """One changed file of a merge request, with GitLab's flags (a deletion keeps new_path == old_path)."""

    old_path: str
    new_path: str
    new_file: bool = False
    renamed_file: bool = False
    deleted_file: bool = False
    diff: str = ""

    @classmethod
    def modified(cls, path: str) -> SimDiff:
        return cls(path, path, diff=f"@@ -1 +1 @@\n-old {path}\n+new {path}\n")

    @classmethod
    def added(cls, path: str) -> SimDiff:
        return cls(path, path, new_file=True, diff=f"@@ -0,0 +1 @@\n+{path}\n")

    @classmethod
    def deleted(cls, path: str) -> SimDiff:
        return cls(path, path, deleted_file=True, diff=f"@@ -1 +0,0 @@\n-{path}\n")

    @classmethod
    def renamed(cls, old: str, new: str) -> SimDiff:
        return cls(old, new, renamed_file=True)


@dataclass
class SimCommit:
    """One commit of a merge request's source branch. Git keeps who wrote it (author) apart from who made it
    (committer: the one who rebased, cherry-picked or applied it); GitLab knows people by these addresses."""

    sha: str
    title: str
    author_name: str
    author_email: str
    committer_name: str
    committer_email: str
    created_at: datetime
    parent_ids: list[str] = field(default_factory=list)


@dataclass
class SimAward:
    """An award emoji on a merge request or on a note (`awardable_type` "MergeRequest" or "Note")."""

    id: int
    name: str
    user_id: int
    awardable_type: str
    awardable_id: int
    created_at: datetime


@dataclass
class SimNote:
    """A comment on a merge request; system notes never fire Note Hooks (as in GitLab).

    Every note belongs to a discussion (`discussion_id`, 40 hex digits, as GitLab's): a plain comment starts
    one of its own (`type` None), a reply joins its discussion (`DiscussionNote`; the first note becomes one
    too), a comment on the code starts one at `position` (`DiffNote`, and its replies are DiffNotes as well).
    """

    id: int
    body: str
    author_id: int
    project_id: int
    mr_iid: int
    mr_id: int
    created_at: datetime
    updated_at: datetime
    system: bool = False
    internal: bool = False
    awards: list[SimAward] = field(default_factory=list)
    discussion_id: str = ""
    type: str | None = None  # None, "DiscussionNote" or "DiffNote"
    position: dict[str, Any] | None = None  # a DiffNote's place in the diff, as GitLab's `position`


@dataclass
class SimMR:
    """A merge request; `draft` follows the title prefix exactly like GitLab ("Draft: …").

    It lives in its target project (`project_id`); `source_project_id` is the project its branch is in: the
    same one unless it was opened from a fork, and None once that fork was deleted (as GitLab nullifies it).
    """

    id: int
    iid: int
    project_id: int
    title: str
    author_id: int
    source_branch: str
    target_branch: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    state: str = "opened"
    labels: list[str] = field(default_factory=list)
    diffs: list[SimDiff] = field(default_factory=list)
    commits: list[SimCommit] = field(default_factory=list)  # oldest first (GitLab lists them newest first)
    reviewer_ids: list[int] = field(default_factory=list)
    assignee_ids: list[int] = field(default_factory=list)
    approvals: dict[int, datetime] = field(default_factory=dict)
    approval_rules: list[SimApprovalRule] | None = None  # its own rules (Premium), else the project's apply
    review_states: dict[int, str] = field(default_factory=dict)  # reviewer id -> state set by an act (see below)
    notes: list[SimNote] = field(default_factory=list)
    awards: list[SimAward] = field(default_factory=list)
    sha: str = ""
    base_sha: str = ""
    merged_at: datetime | None = None
    merged_by_id: int | None = None
    closed_at: datetime | None = None
    closed_by_id: int | None = None
    updated_by_id: int | None = None
    source_project_id: int | None = None  # given as None: a branch of the target project itself

    def __post_init__(self) -> None:
        if self.source_project_id is None:
            self.source_project_id = self.project_id

    @property
    def from_fork(self) -> bool:
        return self.source_project_id != self.project_id

    @property
    def draft(self) -> bool:
        return DRAFT_RE.match(self.title) is not None

    @property
    def state_id(self) -> int:
        return {"opened": 1, "closed": 2, "merged": 3, "locked": 4}[self.state]

    def review_state(self, user_id: int) -> str:
        """A reviewer's GitLab review state: the one their last act set (submitting a review, approving, taking
        an approval back, a re-request), else "approved" when they approved and "unreviewed" otherwise."""
        return self.review_states.get(user_id) or ("approved" if user_id in self.approvals else "unreviewed")


@dataclass
class SimHook:
    """A project webhook; `token` is the secret sent verbatim as X-Gitlab-Token (never shown by the API)."""

    id: int
    project_id: int
    url: str
    uuid: str
    created_at: datetime
    token: str | None = None
    name: str = ""
    description: str = ""
    push_events: bool = True
    merge_requests_events: bool = False
    note_events: bool = False
    confidential_note_events: bool = False
    emoji_events: bool = False
    enable_ssl_verification: bool = True
    alert_status: str = "executable"
    disabled_until: datetime | None = None
    consecutive_failures: int = 0

    def wants(self, event_name: str) -> bool:
        """Whether this hook subscribes to `event_name` (an X-Gitlab-Event value)."""
        flag = {
            "Merge Request Hook": self.merge_requests_events,
            "Note Hook": self.note_events,
            "Confidential Note Hook": self.confidential_note_events,
            "Emoji Hook": self.emoji_events,
            "Push Hook": self.push_events,
        }
        return flag.get(event_name, False)


@dataclass
class SimGroup:
    """A group or subgroup (`full_path` `a/b`), its direct members (user id → access level) and parent."""

    id: int
    full_path: str
    name: str
    created_at: datetime
    parent_id: int | None = None
    visibility: str = "private"
    description: str = ""
    members: dict[int, int] = field(default_factory=dict)
    awaiting: set[int] = field(default_factory=set)  # members waiting for a seat (`membership_state` awaiting)

    @property
    def path(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class SimProtectedBranch:
    """A branch protection: `name` is a branch or a wildcard (`release/*`, `*` matching any characters, `/`
    too); push/merge levels as GitLab's access levels; `code_owner_approval_required` is Premium's "Code
    owner approval required" (the API shows it false on the free tier)."""

    id: int
    name: str
    push_access_level: int = 40
    merge_access_level: int = 40
    allow_force_push: bool = False
    code_owner_approval_required: bool = False


@dataclass
class SimApprovalRule:
    """An approval rule (Premium): `rule_type` regular, any_approver, code_owner or report_approver; approvers
    are `user_ids` and the direct members of `group_ids`. A merge request's copy of a project rule keeps it as
    `source` (GitLab's `source_rule`) and is `overridden` once it differs."""

    id: int
    name: str
    approvals_required: int = 1
    rule_type: str = "regular"
    user_ids: list[int] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    section: str | None = None
    source: SimApprovalRule | None = None

    @property
    def overridden(self) -> bool:
        src = self.source
        return src is not None and (src.name, src.approvals_required, set(src.user_ids), set(src.group_ids)) != \
            (self.name, self.approvals_required, set(self.user_ids), set(self.group_ids))


@dataclass
class SimProject:
    """A project with its direct members (user id → access level), the groups it is shared with (group id →
    the maximum access granted), files per ref, branch protections, hooks and merge requests; `archived` as
    `PUT .../archive` leaves it; `forked_from_id` the project it is a fork of."""

    id: int
    path_with_namespace: str
    name: str
    created_at: datetime
    default_branch: str = "main"
    description: str = ""
    visibility: str = "private"
    approvals_required: int = 0
    archived: bool = False  # read-only: GitLab refuses comments, reviewer changes and awards (403)
    forked_from_id: int | None = None
    members: dict[int, int] = field(default_factory=dict)
    awaiting: set[int] = field(default_factory=set)  # direct members waiting for a seat
    shared_groups: dict[int, int] = field(default_factory=dict)
    files: dict[tuple[str, str], str | bytes] = field(default_factory=dict)  # bytes: stored as they are
    protected_branches: list[SimProtectedBranch] = field(default_factory=list)
    approval_rules: list[SimApprovalRule] = field(default_factory=list)  # copied onto every merge request
    merge_requests_author_approval: bool = False  # "Prevent approval by author" off (GitLab's default: on)
    merge_requests_disable_committers_approval: bool = False  # "Prevent approvals by users who add commits"
    hooks: list[SimHook] = field(default_factory=list)
    mrs: dict[int, SimMR] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[0]

    @property
    def path(self) -> str:
        return self.path_with_namespace.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class HookEvent:
    """One webhook event waiting for delivery: the X-Gitlab-Event name and the JSON body."""

    project_id: int
    event_name: str
    body: dict[str, Any]
    event_uuid: str


@dataclass(frozen=True)
class Delivery:
    """One POST to a hook URL: what was sent and how the receiver answered (status 0 = no answer)."""

    hook_id: int
    url: str
    event_name: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    error: str = ""


@dataclass
class SimToken:
    """An access token: whom it acts as and its scopes (`api` writes; `read_api` only reads; `read_user` reads
    users). Project and group access tokens are such tokens of a bot user, as in GitLab."""

    id: int
    user_id: int
    name: str
    created_at: datetime | None
    scopes: tuple[str, ...] = ("api",)


@dataclass(frozen=True)
class SimRequest:
    """One API request the simulator received; `path` is the raw path (e.g. /api/v4/projects/a%2Fb)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    status: int = 0
