"""The REST answers of real GitLab instances (../shared/gitlab/api: gitlab.com responses kept by go-gitlab, and
GitLab's documented examples) read into the bot's models, with the quirks they carry: `changes_count` a string,
`draft` absent before GitLab 13.12 (only `work_in_progress`), list items without `diff_refs`, unknown keys.

Skipped when the samples are not there (they are not part of the project)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from bot.gitlab.models import Approvals, ChangedFile, Hook, Member, MergeRequest, Note, UserStatus
from tests.shared_samples import GITLAB_API

API = GITLAB_API
pytestmark = pytest.mark.skipif(not API.is_dir(), reason="GitLab API samples (../shared/gitlab) not present")


def sample(name: str) -> Any:
    return json.loads((API / name).read_text())


def test_a_merge_request_as_gitlab_com_answers_it():
    mr = MergeRequest.model_validate(sample("get_merge_request.go-gitlab.json"))
    assert (mr.iid, mr.state, mr.draft, mr.changes_count, mr.diff_capped) == (14656, "opened", True, "35", False)
    assert [u.username for u in mr.reviewers] == ["tkuah"] and "backend" in mr.labels
    assert mr.model_extra and "detailed_merge_status" in mr.model_extra  # kept, though not modelled


def test_merge_request_list_items_before_draft_was_a_field():
    items = [MergeRequest.model_validate(item) for item in sample("list_merge_requests.go-gitlab.json")]
    first = items[0]
    assert first.title.startswith("Draft:") and (first.draft, first.work_in_progress) == (False, True)
    assert all(mr.changes_count is None for mr in items)  # lists leave it out


def test_diffs_approvals_notes_members_statuses_and_hooks():
    diffs = [ChangedFile.model_validate(d) for d in sample("merge_request_diffs.go-gitlab.json")]
    assert [(d.new_path, d.new_file, d.deleted_file) for d in diffs[:2]] == [("README", False, False),
                                                                             ("VERSION", False, False)]
    approvals = Approvals.model_validate(sample("merge_request_approve_response.gitlab-docs.json"))
    assert [a.user.username for a in approvals.approved_by] == ["root", "ryley"] and approvals.approvals_left == 0
    note = Note.model_validate(sample("note_merge_request.gitlab-docs.json"))
    assert (note.id, note.system, note.author.username) == (301, False, "pipin")
    members = [Member.model_validate(m) for m in sample("project_members_all.gitlab-docs.json")]
    assert all(isinstance(m.access_level, int) for m in members)
    assert UserStatus.model_validate(sample("user_status_busy.gitlab-docs.json")).busy
    assert not UserStatus.model_validate(sample("user_status_not_set.derived.json")).busy
    hook = Hook.model_validate(sample("project_hook.gitlab-docs.json"))
    assert hook.alert_status == "executable"
