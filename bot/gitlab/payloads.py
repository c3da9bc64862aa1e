"""Webhook bodies (Merge Request, Note and Emoji Hooks) built from the simulator's state, shaped as GitLab sends them.

The key sets and timestamp formats follow GitLab's documented examples (webhook_events docs) and its data-builder
rules: `changes` is `{attr: {"previous": x, "current": y}}`, top-level `assignees`/`reviewers` are omitted when
empty, `object_attributes.oldrev` appears only when code was pushed, user emails are `[REDACTED]`. As from GitLab
18.6 (MR !205274, `reviewers_hook_attrs`), each reviewer object, top-level and in `changes.reviewers`, carries the
reviewer's review `state` and `re_requested` (true only for the reviewer whose review the event re-requests).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from bot.gitlab.sim_model import SimAward, SimMR, SimNote, SimProject, SimUser, fake_sha
from bot.gitlab.sim_render import avatar_url, iso_z, utc_text

if TYPE_CHECKING:
    from bot.gitlab.sim_state import SimState

__all__ = ["merge_request_hook", "note_hook", "emoji_hook", "hook_user", "hook_reviewer", "reviewers_change",
           "assignees_change", "MR_ACTIONS"]

MR_ACTIONS = frozenset({"open", "close", "reopen", "update", "approved", "unapproved", "approval", "unapproval",
                        "merge"})


def hook_user(user: SimUser, *, email: bool = True) -> dict[str, Any]:
    """A user as webhooks embed it (`email` is redacted, and absent in the top-level reviewer lists)."""
    data = {"id": user.id, "name": user.name, "username": user.username, "avatar_url": avatar_url(user)}
    if email:
        data["email"] = "[REDACTED]"
    return data


def hook_reviewer(user: SimUser, review_state: str, *, re_requested: bool = False,
                  email: bool = True) -> dict[str, Any]:
    """A reviewer as MR hooks embed it (GitLab 18.6+): the user, their review state, and whether this event
    re-requested their review."""
    return {**hook_user(user, email=email), "state": review_state, "re_requested": re_requested}


def reviewers_change(state: SimState, before: list[tuple[int, str]], after: list[tuple[int, str]], *,
                     re_requested: int | None = None) -> dict[str, Any]:
    """The `changes.reviewers` entry GitLab adds when the reviewers or one's review state changed: (id, review
    state) pairs before and after; `re_requested` the reviewer the event asked again (flagged in `current`)."""
    return {"previous": [hook_reviewer(state.users[u], s) for u, s in before],
            "current": [hook_reviewer(state.users[u], s, re_requested=u == re_requested) for u, s in after]}


def assignees_change(state: SimState, before: list[int], after: list[int]) -> dict[str, Any]:
    """The `changes.assignees` entry GitLab adds when the assignees changed."""
    return {"previous": [hook_user(state.users[u]) for u in before],
            "current": [hook_user(state.users[u]) for u in after]}


def _project_attrs(state: SimState, project: SimProject, *, with_id: bool) -> dict[str, Any]:
    web = f"{state.web}/{project.path_with_namespace}"
    host = state.web.split("://", 1)[-1].split(":", 1)[0]
    data: dict[str, Any] = {"id": project.id} if with_id else {}
    data.update({
        "name": project.name, "description": project.description, "web_url": web, "avatar_url": None,
        "git_ssh_url": f"git@{host}:{project.path_with_namespace}.git", "git_http_url": f"{web}.git",
        "namespace": project.namespace, "visibility_level": 0 if project.visibility == "private" else 20,
        "path_with_namespace": project.path_with_namespace, "default_branch": project.default_branch,
    })
    if with_id:
        data["ci_config_path"] = ""
    data.update({"homepage": web, "url": f"{web}.git", "ssh_url": data["git_ssh_url"], "http_url": f"{web}.git"})
    return data


def _repository(state: SimState, project: SimProject) -> dict[str, Any]:
    web = f"{state.web}/{project.path_with_namespace}"
    return {"name": project.name, "url": f"{web}.git", "description": project.description, "homepage": web}


def _labels(state: SimState, project: SimProject, mr: SimMR) -> list[dict[str, Any]]:
    stamp = iso_z(project.created_at)
    return [{"id": state.label_id(project, title), "title": title, "color": "#6699cc", "project_id": project.id,
             "created_at": stamp, "updated_at": stamp, "template": False, "description": None,
             "type": "ProjectLabel", "group_id": None} for title in mr.labels]


def _last_commit(state: SimState, project: SimProject, mr: SimMR) -> dict[str, Any]:
    author = state.users[mr.author_id]
    return {
        "id": mr.sha, "message": f"{mr.title}\n", "title": mr.title, "timestamp": iso_z(mr.updated_at),
        "url": f"{state.web}/{project.path_with_namespace}/-/commit/{mr.sha}",
        "author": {"name": author.name, "email": author.email},
    }


def _source_attrs(state: SimState, mr: SimMR) -> dict[str, Any] | None:
    """`object_attributes.source`: the project the MR's branch is in (a fork's, for an MR from one), None once
    that project was deleted (`merge_request.source_project.try(:hook_attrs)` in GitLab's MergeRequestBuilder)."""
    source = state.projects.get(mr.source_project_id) if mr.source_project_id is not None else None
    return _project_attrs(state, source, with_id=False) if source is not None else None


def _mr_attrs(state: SimState, project: SimProject, mr: SimMR) -> dict[str, Any]:
    """`object_attributes` of a Merge Request Hook without `action` (GitLab's MergeRequest#hook_attrs). The hook
    is the target project's (`project`), also for an MR from a fork: only `source` and `source_project_id` name
    the fork."""
    first_assignee = mr.assignee_ids[0] if mr.assignee_ids else None
    return {
        "id": mr.id, "iid": mr.iid, "target_branch": mr.target_branch, "source_branch": mr.source_branch,
        "source_project_id": mr.source_project_id, "author_id": mr.author_id, "assignee_ids": list(mr.assignee_ids),
        "assignee_id": first_assignee, "reviewer_ids": list(mr.reviewer_ids), "title": mr.title,
        "created_at": iso_z(mr.created_at), "updated_at": iso_z(mr.updated_at), "last_edited_at": None,
        "last_edited_by_id": None, "milestone_id": None, "state_id": mr.state_id, "state": mr.state,
        "blocking_discussions_resolved": True, "work_in_progress": mr.draft, "draft": mr.draft,
        "first_contribution": False, "merge_status": "can_be_merged", "target_project_id": project.id,
        "description": mr.description, "prepared_at": iso_z(mr.created_at), "total_time_spent": 0,
        "time_change": 0, "human_total_time_spent": None, "human_time_change": None, "human_time_estimate": None,
        "url": f"{state.web}/{project.path_with_namespace}/-/merge_requests/{mr.iid}",
        "source": _source_attrs(state, mr),
        "target": _project_attrs(state, project, with_id=False),
        "last_commit": _last_commit(state, project, mr), "labels": _labels(state, project, mr),
    }


def merge_request_hook(state: SimState, project: SimProject, mr: SimMR, action: str, *, user: SimUser,
                       changes: Mapping[str, Any] | None = None, oldrev: str | None = None,
                       re_requested: int | None = None) -> dict[str, Any]:
    """A Merge Request Hook body for `action` (open, update, close, reopen, merge, approval, approved, …).

    `changes` holds `{attr: {"previous": …, "current": …}}`; pass `oldrev` only for pushes of new commits, and
    `re_requested` (a reviewer's id) only for the `update` of a re-requested review.
    """
    if action not in MR_ACTIONS:
        raise ValueError(f"unknown merge request action {action!r}; use one of {sorted(MR_ACTIONS)}")
    attrs = _mr_attrs(state, project, mr)
    attrs.update({"action": action, "detailed_merge_status": "mergeable"})
    if oldrev is not None:
        attrs["oldrev"] = oldrev
    body: dict[str, Any] = {
        "object_kind": "merge_request", "event_type": "merge_request", "user": hook_user(user),
        "project": _project_attrs(state, project, with_id=True), "repository": _repository(state, project),
        "object_attributes": attrs, "labels": attrs["labels"], "changes": dict(changes or {}),
    }
    if mr.assignee_ids:
        body["assignees"] = [hook_user(state.users[u], email=False) for u in mr.assignee_ids]
    if mr.reviewer_ids:
        body["reviewers"] = [hook_reviewer(state.users[u], mr.review_state(u), re_requested=u == re_requested,
                                           email=False) for u in mr.reviewer_ids]
    return body


def _note_mr(state: SimState, project: SimProject, mr: SimMR) -> dict[str, Any]:
    """The `merge_request` object of a Note Hook: no reviewers, like GitLab's (GET the MR for them)."""
    attrs = _mr_attrs(state, project, mr)
    keep = ("id", "target_branch", "source_branch", "source_project_id", "author_id", "assignee_id", "title",
            "milestone_id", "state", "merge_status", "target_project_id", "iid", "description", "labels",
            "source", "target", "last_commit", "work_in_progress", "draft")
    data = {key: attrs[key] for key in keep}
    data.update({"created_at": utc_text(mr.created_at), "updated_at": utc_text(mr.updated_at), "position": 0,
                 "detailed_merge_status": "mergeable"})
    if mr.assignee_ids:
        first = state.users[mr.assignee_ids[0]]
        data["assignee"] = {"name": first.name, "username": first.username, "avatar_url": avatar_url(first)}
    return data


def _note_url(state: SimState, project: SimProject, note: SimNote) -> str:
    return f"{state.web}/{project.path_with_namespace}/-/merge_requests/{note.mr_iid}#note_{note.id}"


def _line_code(note: SimNote) -> str | None:
    """GitLab's `line_code` of a DiffNote: the file's SHA1, then the old and the new line."""
    if note.position is None:
        return None
    path = str(note.position.get("new_path") or note.position.get("old_path") or "")
    return f"{fake_sha(path)}_{note.position.get('old_line') or 0}_{note.position.get('new_line') or 0}"


def _note_attrs(state: SimState, project: SimProject, mr: SimMR, note: SimNote) -> dict[str, Any]:
    """A note as GitLab's hooks show it (`Gitlab::HookData::NoteBuilder`): its discussion, its `type` (None for
    a plain comment, `DiscussionNote` in a thread, `DiffNote` on the code, with its `position`)."""
    return {
        "attachment": None, "author_id": note.author_id, "change_position": None,
        "commit_id": mr.sha if note.type == "DiffNote" else None, "created_at": utc_text(note.created_at),
        "discussion_id": note.discussion_id, "id": note.id, "internal": note.internal,
        "line_code": _line_code(note), "note": note.body, "noteable_id": mr.id, "noteable_type": "MergeRequest",
        "original_position": note.position, "position": note.position, "project_id": project.id,
        "resolved_at": None, "resolved_by_id": None, "resolved_by_push": None, "st_diff": None,
        "system": note.system, "type": note.type, "updated_at": utc_text(note.updated_at), "updated_by_id": None,
        "description": note.body, "url": _note_url(state, project, note),
    }


def note_hook(state: SimState, project: SimProject, mr: SimMR, note: SimNote, *,
              action: str = "create") -> dict[str, Any]:
    """A Note Hook body for a comment on an MR (`action` "create" or "update"); internal notes are confidential."""
    return {
        "object_kind": "note", "event_type": "confidential_note" if note.internal else "note",
        "user": hook_user(state.users[note.author_id]), "project_id": project.id,
        "project": _project_attrs(state, project, with_id=True), "repository": _repository(state, project),
        "object_attributes": {**_note_attrs(state, project, mr, note), "action": action},
        "merge_request": _note_mr(state, project, mr),
    }


def emoji_hook(state: SimState, project: SimProject, mr: SimMR, award: SimAward, *, action: str = "award",
               note: SimNote | None = None) -> dict[str, Any]:
    """An Emoji Hook body for an award on the MR itself or, with `note`, on one of its comments."""
    on_note = note is not None
    url = _note_url(state, project, note) if on_note else \
        f"{state.web}/{project.path_with_namespace}/-/merge_requests/{mr.iid}"
    attrs = {
        "user_id": award.user_id, "created_at": utc_text(award.created_at), "id": award.id, "name": award.name,
        "awardable_type": award.awardable_type, "awardable_id": award.awardable_id,
        "updated_at": utc_text(award.created_at), "action": action, "awarded_on_url": url,
    }
    body: dict[str, Any] = {
        "object_kind": "emoji", "event_type": action, "user": hook_user(state.users[award.user_id]),
        "project_id": project.id, "project": _project_attrs(state, project, with_id=True),
        "object_attributes": attrs,
    }
    if note is not None:
        body["note"] = _note_attrs(state, project, mr, note)
    body["merge_request"] = {**_mr_attrs(state, project, mr), "state_id": mr.state_id}
    return body
