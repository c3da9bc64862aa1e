"""GitLab REST v4 JSON shapes built from the simulator's records (the keys of GitLab's documented examples).

Pure functions: no aiohttp, no state changes. `web` is the instance base URL used in `web_url` fields.
"""
from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Sequence

from bot.gitlab.sim_model import (
    SimAward, SimCommit, SimDiff, SimGroup, SimHook, SimMR, SimNote, SimProject, SimProtectedBranch, SimToken, SimUser,
)

__all__ = [
    "iso_ms", "iso_z", "utc_text", "avatar_url", "user_basic", "user_full", "member", "project_json",
    "changes_count", "mr_json", "diff_json", "commit_json", "approvals_json", "note_json", "discussion_json",
    "award_json", "hook_json", "status_json",
    "reviewer_detail_json", "group_json", "user_listed", "token_json", "protected_branch_json",
]


def iso_ms(dt: datetime | None) -> str | None:
    """REST timestamps: `2019-07-11T22:34:43.500Z`."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_z(dt: datetime | None) -> str | None:
    """Merge Request Hook `object_attributes` timestamps: `2013-12-03T17:23:34Z`."""
    return None if dt is None else dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_text(dt: datetime | None) -> str | None:
    """Note/Emoji Hook and `changes` timestamps: `2015-05-17 18:21:36 UTC`."""
    return None if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def avatar_url(user: SimUser) -> str:
    digest = hashlib.md5(user.username.encode()).hexdigest()
    return f"https://www.gravatar.com/avatar/{digest}?s=80&d=identicon"


def user_basic(web: str, user: SimUser) -> dict[str, Any]:
    """The user object embedded in MRs, approvals and members."""
    return {
        "id": user.id, "name": user.name, "username": user.username, "state": user.state,
        "avatar_url": avatar_url(user), "web_url": f"{web}/{user.username}",
    }


def user_full(web: str, user: SimUser) -> dict[str, Any]:
    """GET /user and GET /users/:id."""
    return {
        **user_basic(web, user), "locked": user.state == "blocked", "created_at": iso_ms(user.created_at),
        "bio": "", "location": "", "public_email": user.public_email, "skype": "", "linkedin": "",
        "twitter": "", "website_url": "", "organization": "", "job_title": "", "bot": user.bot,
        "work_information": None, "followers": 0, "following": 0, "is_followed": False, "local_time": None,
        "email": user.email,
        "is_admin": user.username == "root", "two_factor_enabled": False, "external": False,
    }


def user_listed(web: str, user: SimUser, *, admin: bool) -> dict[str, Any]:
    """One item of GET /users: the basic fields for a regular caller, the full record (emails) for an admin."""
    if admin:
        return user_full(web, user)
    return {**user_basic(web, user), "locked": user.state == "blocked"}


def group_json(web: str, group: SimGroup) -> dict[str, Any]:
    """GET /groups/:id (the documented fields a bot reads, without `projects` / `shared_projects`)."""
    return {
        "id": group.id, "web_url": f"{web}/groups/{group.full_path}", "name": group.name, "path": group.path,
        "description": group.description, "visibility": group.visibility, "share_with_group_lock": False,
        "require_two_factor_authentication": False, "two_factor_grace_period": 48,
        "project_creation_level": "developer", "auto_devops_enabled": None, "subgroup_creation_level": "owner",
        "emails_disabled": None, "emails_enabled": None, "mentions_disabled": None, "lfs_enabled": True,
        "default_branch_protection": 2, "avatar_url": None, "request_access_enabled": False,
        "full_name": group.full_path.replace("/", " / "), "full_path": group.full_path,
        "created_at": iso_ms(group.created_at), "parent_id": group.parent_id, "shared_with_groups": [],
    }


def member(web: str, user: SimUser, level: int, created_by: SimUser, since: datetime,
           awaiting: bool = False) -> dict[str, Any]:
    """One entry of GET /projects/:id/members/all; `membership_state` "awaiting" while it waits for a seat."""
    return {
        **user_basic(web, user), "created_at": iso_ms(since), "created_by": user_basic(web, created_by),
        "expires_at": None, "access_level": level, "group_saml_identity": None,
        "membership_state": "awaiting" if awaiting else "active",
    }


def _namespace(web: str, project: SimProject, group: SimGroup | None) -> dict[str, Any]:
    """The project's `namespace`: its simulated group when there is one, else a stand-in with the path."""
    gid, parent = (group.id, group.parent_id) if group else (project.id + 1000, None)
    return {"id": gid, "name": group.name if group else project.namespace, "path": project.namespace.rsplit("/")[-1],
            "kind": "group", "full_path": project.namespace, "parent_id": parent, "avatar_url": None,
            "web_url": f"{web}/groups/{project.namespace}"}


def project_json(web: str, project: SimProject, group: SimGroup | None = None,
                 shared: Sequence[tuple[SimGroup, int]] = ()) -> dict[str, Any]:
    """GET /projects/:id (the fields a bot reads, plus the usual neighbours); `group` is the namespace group,
    `shared` the groups the project is shared with and the access each was granted."""
    url = f"{web}/{project.path_with_namespace}"
    host = web.split("://", 1)[-1].split(":", 1)[0]
    shared_with = [{"group_id": g.id, "group_name": g.name, "group_full_path": g.full_path,
                    "group_access_level": level, "expires_at": None} for g, level in shared]
    return {
        "id": project.id, "description": project.description, "name": project.name,
        "name_with_namespace": project.path_with_namespace.replace("/", " / "), "path": project.path,
        "path_with_namespace": project.path_with_namespace, "created_at": iso_ms(project.created_at),
        "default_branch": project.default_branch, "tag_list": [], "topics": [],
        "ssh_url_to_repo": f"git@{host}:{project.path_with_namespace}.git", "http_url_to_repo": f"{url}.git",
        "web_url": url, "readme_url": None, "avatar_url": None, "forks_count": 0, "star_count": 0,
        "last_activity_at": iso_ms(project.created_at), "visibility": project.visibility,
        "namespace": _namespace(web, project, group), "shared_with_groups": shared_with,
        "empty_repo": False, "archived": project.archived, "merge_requests_enabled": True,
        "approvals_before_merge": project.approvals_required,
    }


def _mr_common(web: str, project: SimProject, mr: SimMR, users: dict[int, SimUser]) -> dict[str, Any]:
    person = lambda uid: user_basic(web, users[uid]) if uid is not None else None  # noqa: E731
    assignees = [person(u) for u in mr.assignee_ids]
    return {
        "id": mr.id, "iid": mr.iid, "project_id": project.id, "title": mr.title, "description": mr.description,
        "state": mr.state, "created_at": iso_ms(mr.created_at), "updated_at": iso_ms(mr.updated_at),
        "merged_by": person(mr.merged_by_id), "merge_user": person(mr.merged_by_id),
        "merged_at": iso_ms(mr.merged_at), "closed_by": person(mr.closed_by_id), "closed_at": iso_ms(mr.closed_at),
        "target_branch": mr.target_branch, "source_branch": mr.source_branch,
        "user_notes_count": sum(not n.system for n in mr.notes),
        "upvotes": sum(a.name == "thumbsup" for a in mr.awards),
        "downvotes": sum(a.name == "thumbsdown" for a in mr.awards),
        "assignee": assignees[0] if assignees else None, "author": person(mr.author_id), "assignees": assignees,
        "reviewers": [person(u) for u in mr.reviewer_ids], "source_project_id": mr.source_project_id,
        "target_project_id": project.id, "labels": list(mr.labels), "draft": mr.draft,
        "work_in_progress": mr.draft, "milestone": None, "merge_when_pipeline_succeeds": False,
        "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open", "sha": mr.sha,
        "merge_commit_sha": None, "squash_commit_sha": None, "discussion_locked": None,
        "should_remove_source_branch": None, "force_remove_source_branch": True,
        "reference": f"!{mr.iid}", "web_url": f"{web}/{project.path_with_namespace}/-/merge_requests/{mr.iid}",
        "time_stats": {"time_estimate": 0, "total_time_spent": 0, "human_time_estimate": None,
                       "human_total_time_spent": None},
        "squash": False, "task_completion_status": {"count": 0, "completed_count": 0},
        "approvals_before_merge": project.approvals_required or None,
    }


def changes_count(mr: SimMR, diff_cap: int) -> str:
    """GitLab's `changes_count`, a string: the number of changed files, or "<cap>+" past its diff limit."""
    return f"{diff_cap}+" if len(mr.diffs) > diff_cap else str(len(mr.diffs))


def mr_json(web: str, project: SimProject, mr: SimMR, users: dict[int, SimUser], *, full: bool,
            diff_cap: int = 1000) -> dict[str, Any]:
    """An MR as GET .../merge_requests/:iid (`full`) or as a list item (no diff_refs, changes_count…);
    `diff_cap` is the instance's limit on the files of a diff."""
    data = _mr_common(web, project, mr, users)
    if not full:
        return data
    data.update({
        "merge_status": "can_be_merged" if mr.state == "opened" else "unchecked", "subscribed": False,
        "changes_count": changes_count(mr, diff_cap), "latest_build_started_at": None, "latest_build_finished_at": None,
        "first_deployed_to_production_at": None, "pipeline": None, "head_pipeline": None,
        "diff_refs": {"base_sha": mr.base_sha, "head_sha": mr.sha, "start_sha": mr.base_sha},
        "merge_error": None, "user": {"can_merge": True}, "first_contribution": False, "has_conflicts": False,
    })
    return data


def diff_json(diff: SimDiff) -> dict[str, Any]:
    """One entry of GET .../merge_requests/:iid/diffs (and of `changes` in /changes)."""
    return {
        "old_path": diff.old_path, "new_path": diff.new_path,
        "a_mode": "0" if diff.new_file else "100644", "b_mode": "0" if diff.deleted_file else "100644",
        "diff": diff.diff, "collapsed": False, "too_large": False, "new_file": diff.new_file,
        "renamed_file": diff.renamed_file, "deleted_file": diff.deleted_file, "generated_file": False,
    }


def commit_json(web: str, project: SimProject, commit: SimCommit) -> dict[str, Any]:
    """One commit as GET .../merge_requests/:iid/commits lists it (`API::Entities::Commit`)."""
    return {
        "id": commit.sha, "short_id": commit.sha[:8], "created_at": iso_ms(commit.created_at),
        "parent_ids": list(commit.parent_ids), "title": commit.title, "message": commit.title + "\n",
        "author_name": commit.author_name, "author_email": commit.author_email,
        "authored_date": iso_ms(commit.created_at), "committer_name": commit.committer_name,
        "committer_email": commit.committer_email, "committed_date": iso_ms(commit.created_at),
        "trailers": {}, "extended_trailers": {},
        "web_url": f"{web}/{project.path_with_namespace}/-/commit/{commit.sha}",
    }


def approvals_json(web: str, project: SimProject, mr: SimMR, users: dict[int, SimUser],
                   caller_id: int) -> dict[str, Any]:
    """GET .../merge_requests/:iid/approvals."""
    left = max(project.approvals_required - len(mr.approvals), 0)
    return {
        "id": mr.id, "iid": mr.iid, "project_id": project.id, "title": mr.title, "description": mr.description,
        "state": mr.state, "created_at": iso_ms(mr.created_at), "updated_at": iso_ms(mr.updated_at),
        "merge_status": "can_be_merged", "approved": left == 0,
        "approvals_required": project.approvals_required, "approvals_left": left,
        "require_password_to_approve": False,
        "approved_by": [{"user": user_basic(web, users[uid]), "approved_at": iso_ms(at)}
                        for uid, at in mr.approvals.items()],
        "suggested_approvers": [], "approvers": [], "approver_groups": [],
        "user_has_approved": caller_id in mr.approvals, "user_can_approve": caller_id != mr.author_id,
        "approval_rules_left": [], "has_approval_rules": False, "merge_request_approvers_available": False,
        "multiple_approval_rules_available": False,
    }


def reviewer_detail_json(web: str, mr: SimMR, users: dict[int, SimUser]) -> list[dict[str, Any]]:
    """GET .../merge_requests/:iid/reviewers: each reviewer with their review state (GitLab's
    `API::Entities::MergeRequestReviewer`: user, state, created_at; no `re_requested`)."""
    return [{"user": user_basic(web, users[uid]), "state": mr.review_state(uid),
             "created_at": iso_ms(mr.updated_at)} for uid in mr.reviewer_ids]


def note_json(web: str, note: SimNote, users: dict[int, SimUser]) -> dict[str, Any]:
    """A note as the Notes API returns it (author without avatar, like the documented example)."""
    author = users[note.author_id]
    return {
        "id": note.id, "type": note.type, "body": note.body, "attachment": None,
        "author": {"id": author.id, "username": author.username, "email": author.email, "name": author.name,
                   "state": author.state, "avatar_url": avatar_url(author), "web_url": f"{web}/{author.username}",
                   "created_at": iso_ms(author.created_at)},
        "created_at": iso_ms(note.created_at), "updated_at": iso_ms(note.updated_at), "system": note.system,
        "noteable_id": note.mr_id, "noteable_type": "MergeRequest", "project_id": note.project_id,
        "noteable_iid": note.mr_iid, "resolvable": note.type is not None, "confidential": note.internal,
        "internal": note.internal, **({"position": note.position} if note.type == "DiffNote" else {}),
    }


def discussion_json(web: str, discussion_id: str, notes: list[SimNote], users: dict[int, SimUser]) -> dict[str, Any]:
    """A discussion as the Discussions API returns it: its id (the notes' `discussion_id`, which the Notes API
    does not show) and its notes, oldest first."""
    return {"id": discussion_id, "individual_note": len(notes) == 1 and notes[0].type is None,
            "notes": [note_json(web, n, users) for n in notes]}


def award_json(web: str, award: SimAward, users: dict[int, SimUser]) -> dict[str, Any]:
    """An award emoji as the Award Emoji API returns it."""
    return {
        "id": award.id, "name": award.name, "user": user_basic(web, users[award.user_id]),
        "created_at": iso_ms(award.created_at), "updated_at": iso_ms(award.created_at),
        "awardable_id": award.awardable_id, "awardable_type": award.awardable_type,
    }


def hook_json(hook: SimHook) -> dict[str, Any]:
    """A project hook; the secret token is never returned, as in GitLab."""
    return {
        "id": hook.id, "url": hook.url, "name": hook.name, "description": hook.description,
        "project_id": hook.project_id, "push_events": hook.push_events, "push_events_branch_filter": "",
        "issues_events": False, "confidential_issues_events": False,
        "merge_requests_events": hook.merge_requests_events, "tag_push_events": False,
        "note_events": hook.note_events, "confidential_note_events": hook.confidential_note_events,
        "job_events": False, "pipeline_events": False, "wiki_page_events": False, "deployment_events": False,
        "releases_events": False, "feature_flag_events": False, "emoji_events": hook.emoji_events,
        "enable_ssl_verification": hook.enable_ssl_verification, "repository_update_events": False,
        "alert_status": hook.alert_status, "disabled_until": iso_ms(hook.disabled_until), "url_variables": [],
        "created_at": iso_ms(hook.created_at), "resource_access_token_events": False,
        "custom_webhook_template": None, "custom_headers": [],
    }


def status_json(user: SimUser) -> dict[str, Any]:
    """GET /users/:id/status: `availability` is "busy" or "not_set"; `emoji` and `message` as the user set them
    (Busy alone shows no emoji)."""
    message = user.status_message
    return {"emoji": user.status_emoji, "availability": "busy" if user.busy else "not_set", "message": message,
            "message_html": message or "", "clear_status_at": None}


def token_json(token: SimToken) -> dict[str, Any]:
    """GET /personal_access_tokens/self: the token's own record (never its value)."""
    return {"id": token.id, "name": token.name, "revoked": False, "created_at": iso_ms(token.created_at),
            "description": "", "scopes": list(token.scopes), "user_id": token.user_id, "last_used_at": None,
            "active": True, "expires_at": None}


_LEVELS = {0: "No one", 30: "Developers + Maintainers", 40: "Maintainers", 60: "Admins"}


def protected_branch_json(branch: SimProtectedBranch, *, free_tier: bool) -> dict[str, Any]:
    """GET /projects/:id/protected_branches(/:name), as documented; on the free tier GitLab shows
    `code_owner_approval_required` false whatever was set (the edition without Premium code leaves it out)."""
    def levels(first_id: int, level: int) -> list[dict[str, Any]]:
        return [{"id": first_id, "access_level": level, "access_level_description": _LEVELS.get(level, str(level)),
                 "user_id": None, "group_id": None}]

    return {
        "id": branch.id, "name": branch.name,
        "push_access_levels": levels(1000 + 2 * branch.id, branch.push_access_level),
        "merge_access_levels": levels(1001 + 2 * branch.id, branch.merge_access_level),
        "allow_force_push": branch.allow_force_push,
        "code_owner_approval_required": branch.code_owner_approval_required and not free_tier,
    }
