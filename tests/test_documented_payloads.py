"""Every webhook body in ../shared/gitlab/webhooks (GitLab's documented examples, and the ones derived from them
by GitLab's data-builder rules) through the webhook endpoint, the queue, a worker and the real handlers, against
the simulator set up as the payloads describe it (project ids and paths, user ids and names, the MR they name).

Why: `test_web` checks that each is stored; a body the handlers then fail on, or silently drop where they should
act, is only seen by running it. Skipped when the samples are not there (they are not part of the project).
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from bot.comment import has_marker
from bot.config import Settings
from bot.gitlab.simulator import SimState
from bot.gitlab.sim_model import SimMR, SimProject, SimUser
from bot.storage import Storage
from tests.bot_harness import FAST_WORKER, running_bot, settle
from tests.shared_samples import GITLAB_WEBHOOKS

SAMPLES = GITLAB_WEBHOOKS
KIND = {"merge_request": "Merge Request Hook", "note": "Note Hook", "emoji": "Emoji Hook"}
SECRET = "documented-payloads-secret-0123"
PATHS = ("gitlabhq/gitlab-test", "filler/two", "filler/three", "filler/four", "gitlab-org/gitlab-test",
         "flightjs/Flight")  # the projects the samples name, by id (1, 5 and 6)
NAMES = {6: "user1", 7: "user2", 42: "reviewer-bot"}  # the users the samples name by id (root is 1)
COMMENT, NOTHING = "comment", "nothing"
# What each sample must leave: the bot's suggestion comment, a (person, label) feedback row, a reply to the note,
# or nothing at all (each for the reason given).
EXPECTED: dict[str, Any] = {
    "merge_request_open.gitlab-docs.json": COMMENT,
    "derived/merge_request_open_no_reviewers_no_assignees.json": COMMENT,
    "derived/merge_request_reopen.json": COMMENT,
    "derived/merge_request_update_push.json": COMMENT,
    "derived/merge_request_update_title_only.json": COMMENT,  # draft -> ready
    "derived/merge_request_approval.json": ("user2", "approved"),
    "derived/merge_request_approved.json": ("user2", "approved"),
    "derived/merge_request_close.json": ("root", "closed"),
    "derived/merge_request_merge.json": ("user1", "final_reviewer"),
    "derived/merge_request_update_reviewers_cleared.json": ("user1", "removed"),
    "derived/note_merge_request_mention_bot.json": "reply",  # `suggest` with words after it: answered with the help
    "note_merge_request.gitlab-docs.json": NOTHING,  # a plain comment by someone never suggested
    "derived/note_merge_request_edited.json": NOTHING,  # edits never run commands again
    "derived/note_merge_request_unknown_slash_command.json": NOTHING,  # not the bot's command
    "derived/merge_request_update_reviewers_added.json": NOTHING,  # the bot's own request (user 42)
    "derived/merge_request_unapproval.json": NOTHING,  # no approval of theirs was recorded to take back
    "derived/merge_request_unapproved.json": NOTHING,
    "emoji_award_on_issue_note.gitlab-docs.json": NOTHING,  # on an issue's note
}
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason="GitLab webhook samples (../shared/gitlab) not present")


@pytest.fixture
def sim_state() -> SimState:
    """Users with the samples' ids (the bot is `reviewer-bot`, id 42) and the projects they name."""
    state = SimState(token="unused-token", bot_username="simulator-internal", seed=1)
    for i in range(3, 60):
        user = state.add_user(NAMES.get(i, f"p{i}"), bot=i == 42)
        assert user.id == i
    state.add_token(state.users[42], "reviewer-bot-token")
    for path in PATHS:
        project = state.add_project(path)
        for i in (6, 7, 8, 9, 10, 42, 51):
            state.add_member(project, state.users[i])
    return state


def history(state: SimState, project: SimProject) -> None:
    """Ten merged MRs under src/ reviewed by user1, user2 and p8 (after the sample's MR: its iid is 1)."""
    now = datetime.now(timezone.utc)
    for k in range(10):
        reviewer = state.users[6 + k % 3]
        state.add_merged_mr(project, state.users[51 if k % 2 else 8], [f"src/m{k % 3}.py"], reviewers=[reviewer],
                            approvers=[reviewer], merged_at=now - timedelta(days=20 - k))


def prepare(state: SimState, body: dict[str, Any]) -> SimMR | None:
    """The MR the sample is about, as GitLab has it when the hook fires, then the project's history."""
    project = state.projects[body["project"]["id"]]
    attrs = body.get("object_attributes") or {}
    about = attrs if body["object_kind"] == "merge_request" else body.get("merge_request")
    mr = None
    if about is not None:
        reviewers = [state.users[r["id"]] for r in body.get("reviewers", []) if r["id"] in state.users]
        if isinstance((body.get("changes") or {}).get("reviewers"), dict):
            reviewers = [state.users[r["id"]] for r in body["changes"]["reviewers"]["current"]]
        author: SimUser = state.users.get(about.get("author_id")) or state.users[51]
        mr = state.open_mr(project, author, ["src/m0.py", "src/m1.py"], reviewers=reviewers, title=about.get("title"))
        assert mr.iid == about["iid"]
        if about.get("state") == "merged":
            state.merge_mr(mr, by=state.users[6])
        elif about.get("state") == "closed":
            state.close_mr(mr)
        if attrs.get("action") in ("approval", "approved"):
            state.approve(mr, state.users[7])
    history(state, project)
    state.outbox.clear()
    return mr


def delivery_headers(kind: str) -> dict[str, str]:
    """The headers GitLab sends (../shared/gitlab/webhooks/headers)."""
    return {"Content-Type": "application/json", "User-Agent": "GitLab/18.6.0", "X-Gitlab-Event": kind,
            "Idempotency-Key": str(uuid.uuid4()), "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Instance": "https://gitlab.example.com",
            "X-Gitlab-Token": SECRET}


def test_every_sample_has_an_expectation():
    found = {str(p.relative_to(SAMPLES)) for p in SAMPLES.glob("*.json")} | \
        {str(p.relative_to(SAMPLES)) for p in SAMPLES.glob("derived/*.json")}
    assert found == set(EXPECTED)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_each_documented_payload_is_handled_as_it_should(name, simulator, database_url):
    state, url = simulator
    path = SAMPLES / name
    raw = path.read_bytes()
    body = json.loads(raw)
    mr = prepare(state, body)
    settings = Settings(gitlab={"url": url, "token": "reviewer-bot-token", "bot_username": "reviewer-bot"},
                        webhook_secrets=[{"secret": SECRET}], database={"url": database_url}, worker=FAST_WORKER,
                        server={"max_body_bytes": 1_000_000})
    storage = Storage(database_url)
    try:
        async with running_bot(settings, storage) as bot, aiohttp.ClientSession() as session:
            async with session.post(bot.url, data=raw, headers=delivery_headers(KIND[body["object_kind"]])) as resp:
                assert resp.status == 200, await resp.text()
                event_id = (await resp.json())["event_id"]
            await settle(state, storage)
        row = await storage.events.get(event_id)
        assert row is not None and row.status == "done" and row.attempts <= 1, (row.status, row.last_error)
        writes = [f"{r.method} {r.path}" for r in state.requests if r.method != "GET"]
        rows = [(f.person, f.label) for f in await storage.feedback.list(body["project"]["id"])]
    finally:
        await storage.close()
    expected = EXPECTED[name]
    if expected == NOTHING:
        assert (writes, rows) == ([], [])
    elif expected == COMMENT:
        assert mr is not None and len([n for n in mr.notes if n.author_id == 42 and has_marker(n.body)]) == 1
    elif expected == "reply":
        assert any(w.endswith("/notes") for w in writes) and any(w.endswith("/award_emoji") for w in writes)
    else:
        assert expected in rows, rows
