"""Merge request lifecycle of the simulated GitLab: open, push, update, approve, merge, comment, award.

A mixin of `SimState`. Each helper changes the records the way GitLab does and queues the webhook GitLab would
send (Merge Request, Note or Emoji Hook) with `changes` computed from a before/after snapshot. The `api_*`
methods carry GitLab's server-side rules for REST calls (reviewer filtering, quick actions in notes).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from bot.gitlab import payloads
from bot.gitlab.sim_model import (
    DRAFT_RE, SimAward, SimCommit, SimDiff, SimMR, SimNote, SimProject, SimUser, fake_sha,
)
from bot.gitlab.sim_render import utc_text

if TYPE_CHECKING:
    from bot.gitlab.sim_state import ProjectRef, SimState, UserRef

__all__ = ["MRActions", "FileSpec", "to_diffs"]

FileSpec = str | SimDiff
_QUICK = re.compile(r"^/(assign_reviewer|reviewer|request_review|unassign_reviewer)\b(.*)$")
_MENTION = re.compile(r"@([\w.\-]+)")


def to_diffs(files: Iterable[FileSpec]) -> list[SimDiff]:
    """Plain paths become modified files; pass `SimDiff.added/deleted/renamed(...)` for the other kinds."""
    return [SimDiff.modified(f) if isinstance(f, str) else f for f in files]


def _strip_draft(title: str) -> str:
    return DRAFT_RE.sub("", title, count=1)


class MRActions:
    """Merge request helpers mixed into `SimState` (see its docstring for the state they use)."""

    # --- creating MRs -----------------------------------------------------------------------------------------
    def _new_mr(self: SimState, project: SimProject, author: SimUser, files: Iterable[FileSpec], *,
                title: str | None, created_at: datetime | None, **fields: Any) -> SimMR:
        iid = max(project.mrs, default=0) + 1
        when = created_at or self.now()
        mr = SimMR(next(self._ids["mr"]), iid, project.id, title or f"Change {iid}", author.id,
                   fields.pop("source_branch", None) or f"{author.username}/change-{iid}",
                   fields.pop("target_branch", None) or project.default_branch, when, when,
                   diffs=to_diffs(files), sha=fake_sha(project.id, iid, 0),
                   base_sha=fake_sha(project.id, iid, "base"), **fields)
        project.mrs[iid] = mr
        self.add_commit(mr, author, sha=mr.sha, at=when)
        return mr

    def add_commit(self: SimState, mr: SimMR, author: UserRef | str, *, committer: UserRef | str | None = None,
                   sha: str | None = None, at: datetime | None = None) -> SimCommit:
        """Add a commit to the MR's branch, written by `author` and made by `committer` (the author when None):
        a user (their primary e-mail) or a bare address. No webhook: `push_to_mr` is the push."""
        def who(ref: UserRef | str) -> tuple[str, str]:
            if isinstance(ref, str) and "@" in ref:
                return ref.split("@", 1)[0], ref
            user = self.user(ref)
            return user.name, user.email
        (a_name, a_email), (c_name, c_email) = who(author), who(committer if committer is not None else author)
        parents = [mr.commits[-1].sha] if mr.commits else [mr.base_sha]
        commit = SimCommit(sha or fake_sha(mr.project_id, mr.iid, "commit", len(mr.commits)),
                           f"Change {len(mr.commits) + 1} of !{mr.iid}", a_name, a_email, c_name, c_email,
                           at or self.now(), parents)
        mr.commits.append(commit)
        return commit

    def add_merged_mr(self: SimState, project: ProjectRef, author: UserRef, files: Iterable[FileSpec], *,
                      reviewers: Iterable[UserRef] = (), approvers: Iterable[UserRef] = (),
                      merged_at: datetime, created_at: datetime | None = None, merged_by: UserRef | None = None,
                      title: str | None = None, labels: Sequence[str] = (),
                      source_project: ProjectRef | None = None) -> SimMR:
        """Add a past, already merged MR (history for backfill; `source_project` a fork it came from); fires no
        webhook."""
        target, who = self.project(project), self.user(author)
        opened = created_at or merged_at - timedelta(hours=20)
        source = self.project(source_project).id if source_project is not None else None
        mr = self._new_mr(target, who, files, title=title, created_at=opened, labels=list(labels),
                          reviewer_ids=[self.user(r).id for r in reviewers], source_project_id=source)
        mr.approvals = {self.user(a).id: merged_at - timedelta(minutes=30) for a in approvers}
        mr.state, mr.merged_at, mr.updated_at = "merged", merged_at, merged_at
        mr.merged_by_id = self.user(merged_by).id if merged_by is not None else (mr.reviewer_ids or [who.id])[0]
        return mr

    def open_mr(self: SimState, project: ProjectRef, author: UserRef, files: Iterable[FileSpec], *,
                title: str | None = None, description: str = "", draft: bool = False, labels: Sequence[str] = (),
                reviewers: Iterable[UserRef] = (), assignees: Iterable[UserRef] = (),
                source_branch: str | None = None, target_branch: str | None = None,
                source_project: ProjectRef | None = None) -> SimMR:
        """Open an MR as `author` did in the UI and queue the "open" Merge Request Hook.

        `source_project`: a fork of `project` the branch is in (`fork_project`). The MR is `project`'s all the
        same, and so are its hooks: GitLab runs them on the target project alone (`MergeRequests::BaseService
        #execute_hooks`), later pushes to the fork's branch included."""
        target, who = self.project(project), self.user(author)
        source = self.project(source_project).id if source_project is not None else None
        name = title or f"Change by {who.username}"
        mr = self._new_mr(target, who, files, title=f"Draft: {name}" if draft else name, created_at=None,
                          description=description, labels=list(labels), source_branch=source_branch,
                          target_branch=target_branch, reviewer_ids=[self.user(r).id for r in reviewers],
                          assignee_ids=[self.user(a).id for a in assignees], source_project_id=source)
        self._fire(target, mr, "open", who)
        return mr

    # --- changing MRs -----------------------------------------------------------------------------------------
    def _snapshot(self: SimState, mr: SimMR) -> dict[str, Any]:
        return {"title": mr.title, "description": mr.description, "labels": list(mr.labels),
                "reviewers": [(u, mr.review_state(u)) for u in mr.reviewer_ids], "assignees": list(mr.assignee_ids),
                "state_id": mr.state_id,
                "draft": mr.draft, "updated_at": mr.updated_at, "updated_by_id": mr.updated_by_id}

    def _changes(self: SimState, project: SimProject, before: dict[str, Any], mr: SimMR) -> dict[str, Any]:
        """GitLab's `changes`: only the attributes that differ, as previous/current pairs."""
        after = self._snapshot(mr)
        changes: dict[str, Any] = {}
        for key, old in before.items():
            new = after[key]
            if old == new:
                continue
            if key == "reviewers":
                changes[key] = payloads.reviewers_change(self, old, new)
            elif key == "assignees":
                changes[key] = payloads.assignees_change(self, old, new)
            elif key == "updated_at":
                changes[key] = {"previous": utc_text(old), "current": utc_text(new)}
            elif key == "labels":
                label = lambda titles: [{"id": self.label_id(project, t), "title": t} for t in titles]  # noqa: E731
                changes[key] = {"previous": label(old), "current": label(new)}
            else:
                changes[key] = {"previous": old, "current": new}
        return changes

    def _fire(self: SimState, project: SimProject, mr: SimMR, action: str, user: SimUser, *,
              changes: dict[str, Any] | None = None, oldrev: str | None = None,
              re_requested: int | None = None) -> None:
        body = payloads.merge_request_hook(self, project, mr, action, user=user, changes=changes, oldrev=oldrev,
                                           re_requested=re_requested)
        self.emit(project, "Merge Request Hook", body)

    def _touch(self: SimState, mr: SimMR, by: SimUser) -> None:
        mr.updated_at = max(self.now(), mr.updated_at + timedelta(microseconds=1000))
        mr.updated_by_id = by.id

    def update_mr(self: SimState, mr: SimMR, *, by: UserRef, title: str | None = None,
                  description: str | None = None, labels: Sequence[str] | None = None,
                  reviewer_ids: Sequence[int] | None = None, assignee_ids: Sequence[int] | None = None) -> dict:
        """Change fields as given (ids are taken as-is) and queue an "update" hook; returns `changes` ({} = none)."""
        project, who = self.projects[mr.project_id], self.user(by)
        before = self._snapshot(mr)
        mr.title = mr.title if title is None else title
        mr.description = mr.description if description is None else description
        mr.labels = mr.labels if labels is None else list(labels)
        mr.reviewer_ids = mr.reviewer_ids if reviewer_ids is None else list(dict.fromkeys(reviewer_ids))
        for gone in set(mr.review_states) - set(mr.reviewer_ids):  # GitLab drops a removed reviewer's state
            del mr.review_states[gone]
        mr.assignee_ids = mr.assignee_ids if assignee_ids is None else list(dict.fromkeys(assignee_ids))
        if self._snapshot(mr) == before:
            return {}
        self._touch(mr, who)
        changes = self._changes(project, before, mr)
        self._fire(project, mr, "update", who, changes=changes)
        return changes

    def set_reviewers(self: SimState, mr: SimMR, reviewers: Iterable[UserRef], *, by: UserRef) -> list[int]:
        """Replace the reviewers as a person does in the UI (same filtering and Free-tier limit as the API)."""
        project, who = self.projects[mr.project_id], self.user(by)
        kept = self.filter_reviewer_ids(project, [self.user(r).id for r in reviewers], who)
        if kept is not None:
            self.update_mr(mr, by=who, reviewer_ids=kept)
        return list(mr.reviewer_ids)

    def mark_ready(self: SimState, mr: SimMR, *, by: UserRef | None = None) -> dict:
        """Remove the Draft prefix ("update" hook with title and draft changes)."""
        return self.update_mr(mr, by=by or mr.author_id, title=_strip_draft(mr.title))

    def mark_draft(self: SimState, mr: SimMR, *, by: UserRef | None = None) -> dict:
        return self.update_mr(mr, by=by or mr.author_id, title=f"Draft: {_strip_draft(mr.title)}")

    def push_to_mr(self: SimState, mr: SimMR, files: Iterable[FileSpec], *, user: UserRef | None = None) -> SimMR:
        """Push new commits touching `files`: new sha, diffs merged by path, "update" hook with `oldrev`."""
        project, who = self.projects[mr.project_id], self.user(user or mr.author_id)
        by_path = {d.new_path: d for d in mr.diffs}
        by_path.update({d.new_path: d for d in to_diffs(files)})
        before, oldrev = self._snapshot(mr), mr.sha
        mr.diffs, mr.sha = list(by_path.values()), fake_sha(project.id, mr.iid, oldrev)
        self.add_commit(mr, who, sha=mr.sha)
        self._touch(mr, who)
        self._fire(project, mr, "update", who, changes=self._changes(project, before, mr), oldrev=oldrev)
        return mr

    def _set_state(self: SimState, mr: SimMR, state: str, action: str, by: UserRef | None) -> SimMR:
        project, who = self.projects[mr.project_id], self.user(by or mr.author_id)
        before = self._snapshot(mr)
        mr.state = state
        self._touch(mr, who)
        if state == "closed":
            mr.closed_at, mr.closed_by_id = mr.updated_at, who.id
        if state == "merged":
            mr.merged_at, mr.merged_by_id = mr.updated_at, who.id
        self._fire(project, mr, action, who, changes=self._changes(project, before, mr))
        return mr

    def close_mr(self: SimState, mr: SimMR, *, by: UserRef | None = None) -> SimMR:
        return self._set_state(mr, "closed", "close", by)

    def reopen_mr(self: SimState, mr: SimMR, *, by: UserRef | None = None) -> SimMR:
        mr.closed_at = mr.closed_by_id = None
        return self._set_state(mr, "opened", "reopen", by)

    def merge_mr(self: SimState, mr: SimMR, *, by: UserRef | None = None) -> SimMR:
        return self._set_state(mr, "merged", "merge", by)

    def _touch_by_system_note(self: SimState, mr: SimMR) -> None:
        """An approval changes no MR column; the system note GitLab adds for it touches the MR, at most once a
        minute (`ThrottledTouch`). Its hooks carry the MR's `updated_at` as it is then."""
        if self.now() - mr.updated_at > timedelta(minutes=1):
            mr.updated_at = self.now()

    def approve(self: SimState, mr: SimMR, user: UserRef) -> None:
        """`user` approves: one hook. GitLab CE sends `approved` (one approval approves the MR:
        `ExecuteApprovalHooksService`); EE sends `approved` when this approval leaves no approval required
        (`approvals_left` 0, so every approval on a project without rules) and `approval` otherwise
        (`EE::MergeRequests::ExecuteApprovalHooksService`). A reviewer's review state becomes "approved"."""
        project, who = self.projects[mr.project_id], self.user(user)
        if who.id in mr.approvals:
            return
        mr.approvals[who.id] = self.now()
        if who.id in mr.reviewer_ids:
            mr.review_states[who.id] = "approved"
        self._touch_by_system_note(mr)
        met = self.free_tier or len(mr.approvals) >= project.approvals_required
        self._fire(project, mr, "approved" if met else "approval", who, changes={})

    def unapprove(self: SimState, mr: SimMR, user: UserRef) -> None:
        """`user` takes their approval back: one hook. CE sends `unapproved` (`RemoveApprovalService`); EE
        sends `unapproved` when the MR was approved and no longer is, `unapproval` otherwise
        (`EE::MergeRequests::RemoveApprovalService#trigger_approval_hooks`). A reviewer's state becomes
        "unapproved"."""
        project, who = self.projects[mr.project_id], self.user(user)
        if mr.approvals.pop(who.id, None) is None:
            return
        if who.id in mr.reviewer_ids:
            mr.review_states[who.id] = "unapproved"
        self._touch_by_system_note(mr)
        needed = project.approvals_required
        broke = len(mr.approvals) + 1 >= needed > len(mr.approvals)
        self._fire(project, mr, "unapproved" if self.free_tier or broke else "unapproval", who, changes={})

    def submit_review(self: SimState, mr: SimMR, user: UserRef, review: str = "reviewed") -> bool:
        """`user` finishes their review ("Submit review") as `review`: "reviewed" or "requested_changes" (to
        approve, `approve`). GitLab sets their review state and (MR !246562, `UpdateReviewerStateService`) sends
        an `update` hook whose `changes.reviewers` show it; requesting changes also takes their approval back,
        with no hook of its own (`remove_approval` skips notifications). Only a reviewer can ("Reviewer not
        found"): returns whether it was taken."""
        if review not in ("reviewed", "requested_changes"):
            raise ValueError(f"a submitted review is 'reviewed' or 'requested_changes', not {review!r}")
        project, who = self.projects[mr.project_id], self.user(user)
        if who.id not in mr.reviewer_ids:
            return False
        before = self._snapshot(mr)["reviewers"]
        mr.review_states[who.id] = review
        if review == "requested_changes":
            mr.approvals.pop(who.id, None)
        self._touch_by_system_note(mr)  # its system note ("requested changes", "reviewed")
        after = self._snapshot(mr)["reviewers"]
        changes = {"reviewers": payloads.reviewers_change(self, before, after)} if after != before else {}
        self._fire(project, mr, "update", who, changes=changes)
        return True

    def re_request_review(self: SimState, mr: SimMR, reviewer: UserRef, *, by: UserRef) -> None:
        """`by` asks `reviewer` to review again (the reviewer's "Re-request review" button): GitLab 18.6+
        (MR !205274, `RequestReviewService`) takes the reviewer's approval back with no hook of its own, sets
        their state to "unreviewed", and sends an `update` hook whose `changes.reviewers` show their state
        before and after, the reviewer flagged `re_requested: true` there and in the top-level `reviewers`."""
        project, who, again = self.projects[mr.project_id], self.user(by), self.user(reviewer)
        if again.id not in mr.reviewer_ids:
            return
        before = self._snapshot(mr)["reviewers"]
        mr.approvals.pop(again.id, None)
        mr.review_states[again.id] = "unreviewed"
        self._touch_by_system_note(mr)  # its system note ("requested review from")
        after = self._snapshot(mr)["reviewers"]
        changes = {"reviewers": payloads.reviewers_change(self, before, after, re_requested=again.id)}
        self._fire(project, mr, "update", who, changes=changes, re_requested=again.id)

    # --- notes and awards -------------------------------------------------------------------------------------
    def add_note(self: SimState, mr: SimMR, author: UserRef, body: str, *, system: bool = False,
                 internal: bool = False, reply_to: SimNote | None = None, on_file: str | None = None,
                 line: int = 1) -> SimNote:
        """Comment on the MR; queues a Note Hook (Confidential Note Hook if internal; none for system notes).

        `reply_to`: answer that note in its discussion ("Reply" in GitLab, or a reply to its notification
        email); a plain note replied to becomes a `DiscussionNote` and keeps its discussion id, as GitLab's
        `convert_to_discussion!`. `on_file`: a comment on the code (`DiffNote`) at `line` of that file."""
        project, who, now = self.projects[mr.project_id], self.user(author), self.now()
        note = SimNote(next(self._ids["note"]), body, who.id, project.id, mr.iid, mr.id, now, now,
                       system=system, internal=internal)
        if reply_to is not None:
            if reply_to.type is None:
                reply_to.type = "DiscussionNote"
            note.discussion_id, note.type, note.position = reply_to.discussion_id, reply_to.type, reply_to.position
        else:
            note.discussion_id = fake_sha("discussion", project.id, mr.iid, note.id)
            if on_file is not None:
                note.type, note.position = "DiffNote", self._position(mr, on_file, line)
        mr.notes.append(note)
        if not system:
            event = "Confidential Note Hook" if internal else "Note Hook"
            self.emit(project, event, payloads.note_hook(self, project, mr, note))
        return note

    def discussion(self: SimState, mr: SimMR, discussion_id: str) -> list[SimNote]:
        """The notes of one discussion of the MR, oldest first (none: no such discussion)."""
        return [n for n in mr.notes if n.discussion_id == discussion_id]

    @staticmethod
    def _position(mr: SimMR, path: str, line: int) -> dict[str, Any]:
        """A DiffNote's `position` on a new line of `path`, as GitLab sends it."""
        return {"base_sha": mr.base_sha, "start_sha": mr.base_sha, "head_sha": mr.sha, "old_path": path,
                "new_path": path, "position_type": "text", "old_line": None, "new_line": line, "line_range": None}

    def edit_note(self: SimState, note: SimNote, body: str) -> SimNote:
        """Change a note's text; queues a Note Hook with action "update"."""
        project = self.projects[note.project_id]
        mr = project.mrs[note.mr_iid]
        note.body, note.updated_at = body, self.now()
        if not note.system:
            self.emit(project, "Note Hook", payloads.note_hook(self, project, mr, note, action="update"))
        return note

    def delete_note(self: SimState, note: SimNote) -> None:
        """Delete a note (GitLab sends no webhook for it): the API answers "404 Note Not Found" from then on."""
        mr = self.projects[note.project_id].mrs[note.mr_iid]
        mr.notes.remove(note)

    def award(self: SimState, target: SimMR | SimNote, user: UserRef, name: str) -> SimAward:
        """Award emoji `name` on an MR or a note; queues an Emoji Hook."""
        who = self.user(user)
        project = self.projects[target.project_id]
        is_note = isinstance(target, SimNote)
        mr = project.mrs[target.mr_iid] if isinstance(target, SimNote) else target
        award = SimAward(next(self._ids["award"]), name, who.id, "Note" if is_note else "MergeRequest",
                         target.id, self.now())
        target.awards.append(award)
        note = target if isinstance(target, SimNote) else None
        self.emit(project, "Emoji Hook", payloads.emoji_hook(self, project, mr, award, note=note))
        return award

    # --- server-side rules of REST calls ----------------------------------------------------------------------
    def can_read(self: SimState, project: SimProject, user_id: int) -> bool:
        """Whether a user may see the project's MRs: active, and Reporter+ on a private project."""
        user = self.users.get(user_id)
        if user is None or user.state != "active":
            return False
        return project.visibility != "private" or self.access_level(project, user_id) >= 20

    def filter_reviewer_ids(self: SimState, project: SimProject, requested: Sequence[int],
                            caller: SimUser) -> list[int] | None:
        """GitLab's `filter_reviewer`: None means "leave the reviewers unchanged".

        Callers below Developer are ignored; `[]` or `[0]` clears; the Free tier keeps only the first id; ids
        that cannot read the project (unknown, blocked, non-members) are dropped silently; if none survive,
        nothing changes.
        """
        if self.access_level(project, caller.id) < 30:
            return None
        if not requested:
            return []
        ids = list(requested[:1]) if self.free_tier else list(dict.fromkeys(requested))
        if ids == [0]:
            return []
        readable = [uid for uid in ids if self.can_read(project, uid)]
        return readable or None

    def api_create_note(self: SimState, mr: SimMR, caller: SimUser, body: str,
                        internal: bool = False) -> SimNote | dict[str, Any]:
        """POST .../notes: run reviewer quick actions; a commands-only note is not saved (the 202 body)."""
        text, changes, summary = self._quick_actions(mr, caller, body)
        if not text.strip() and summary:
            return {"commands_changes": changes, "summary": summary}
        return self.add_note(mr, caller, text if summary else body, internal=internal)

    def _quick_actions(self: SimState, mr: SimMR, caller: SimUser,
                       body: str) -> tuple[str, dict[str, Any], list[str]]:
        kept, summary = [], []
        reviewers = list(mr.reviewer_ids)
        for line in body.splitlines():
            match = _QUICK.match(line.strip())
            if match is None:
                kept.append(line)
                continue
            command, names = match.group(1), _MENTION.findall(match.group(2))
            reviewers = self._reviewer_command(command, names, reviewers, summary)
        if not summary:
            return body, {}, []
        project = self.projects[mr.project_id]
        kept_ids = self.filter_reviewer_ids(project, reviewers, caller) if reviewers else []
        if kept_ids is not None and kept_ids != mr.reviewer_ids:
            self.update_mr(mr, by=caller, reviewer_ids=kept_ids)
        return "\n".join(kept), {"reviewer_ids": list(mr.reviewer_ids)}, summary

    def _reviewer_command(self: SimState, command: str, names: list[str], reviewers: list[int],
                          summary: list[str]) -> list[int]:
        users = [u for u in (self.find_user(n) for n in names) if u is not None]
        ids = [u.id for u in users]
        mentions = ", ".join(f"@{u.username}" for u in users)
        if command == "unassign_reviewer":
            summary.append(f"Removed reviewer {mentions}." if users else "Removed all reviewers.")
            return [r for r in reviewers if r not in ids] if users else []
        summary.append(f"Assigned {mentions} as reviewer.")
        return ids if self.free_tier else list(dict.fromkeys(reviewers + ids))
