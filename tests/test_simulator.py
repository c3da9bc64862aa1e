"""The GitLab simulator over real HTTP: auth, pagination, failures, rate limits, GitLab's rules, webhooks, seeding."""
from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from statistics import median
from typing import Any

import aiohttp
import pytest

from bot.gitlab import payloads
from bot.gitlab.sim_model import SimDiff
from bot.gitlab.simulator import SimState, run_simulator, seed_project
from tests.gitlab_fixtures import Receiver, http_session, sim_state, simulator, webhook_receiver  # noqa: F401
from tests.shared_samples import GITLAB_WEBHOOKS

SAMPLES = GITLAB_WEBHOOKS
T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
Sim = tuple[SimState, str]


async def call(session: aiohttp.ClientSession, url: str, method: str = "GET", *, token: str | None = "sim-token",
               **kwargs: Any) -> tuple[int, Any, Any]:
    """One raw request: (status, headers, decoded body)."""
    headers = {"PRIVATE-TOKEN": token} if token else {}
    async with session.request(method, url, headers=headers, **kwargs) as response:
        text = await response.text()
        body = json.loads(text) if response.content_type == "application/json" and text else text
        return response.status, response.headers, body


def world(state: SimState) -> dict[str, Any]:
    """A small project: ann (author), bob and cid (developers), dee (blocked), eve (not a member)."""
    project = state.add_project("acme/app")
    people = {name: state.add_user(name) for name in ("ann", "bob", "cid", "dee", "eve")}
    for name in ("ann", "bob", "cid", "dee"):
        state.add_member(project, people[name])
    state.block_user("dee")
    return {"project": project, **people}


# --- auth, errors, recording ----------------------------------------------------------------------------------
async def test_requires_a_token_and_accepts_both_header_styles(simulator: Sim, http_session) -> None:
    state, url = simulator
    status, _, body = await call(http_session, f"{url}/api/v4/user", token=None)
    assert (status, body) == (401, {"message": "401 Unauthorized"})
    status, _, body = await call(http_session, f"{url}/api/v4/user", token="wrong")
    assert status == 401
    status, _, body = await call(http_session, f"{url}/api/v4/user")
    assert (status, body["username"], body["bot"]) == (200, "reviewbot", True)
    async with http_session.get(f"{url}/api/v4/user", headers={"Authorization": "Bearer sim-token"}) as resp:
        assert resp.status == 200


async def test_user_status_needs_no_token(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.add_user("ann", busy=True)
    status, _, body = await call(http_session, f"{url}/api/v4/users/ann/status", token=None)
    assert (status, body["availability"]) == (200, "busy")
    _, _, body = await call(http_session, f"{url}/api/v4/users/{state.root.id}/status", token=None)
    assert body == {"emoji": None, "availability": "not_set", "message": None, "message_html": "",
                    "clear_status_at": None}


async def test_unknown_endpoint_answers_gitlab_404_and_is_recorded(simulator: Sim, http_session) -> None:
    state, url = simulator
    status, _, body = await call(http_session, f"{url}/api/v4/projects/1/pipelines?ref=main")
    assert (status, body) == (404, {"error": "404 Not Found"})
    assert [(r.method, r.path, r.query) for r in state.unknown] == [
        ("GET", "/api/v4/projects/1/pipelines", {"ref": "main"})]
    with pytest.raises(AssertionError, match="GET /api/v4/projects/1/pipelines"):
        state.assert_no_unknown()
    state.unknown.clear()


async def test_an_older_gitlab_lacks_the_endpoints_added_since(simulator: Sim, http_session) -> None:
    """`state.version` plays an older GitLab: .../diffs (15.7) answers its catch-all 404, /changes still works,
    and neither counts as an endpoint the simulator does not know."""
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], w["ann"], ["a.py"])
    state.version = (15, 6)
    base = f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}"
    assert (await call(http_session, f"{base}/diffs"))[::2] == (404, {"error": "404 Not Found"})
    status, _, body = await call(http_session, f"{base}/changes")
    assert (status, [c["new_path"] for c in body["changes"]], body["overflow"]) == (200, ["a.py"], False)
    state.version = (15, 7)
    assert (await call(http_session, f"{base}/diffs"))[0] == 200
    state.assert_no_unknown()


async def test_a_diff_past_the_limit_is_cut_and_counted_with_a_plus(simulator: Sim, http_session) -> None:
    """GitLab keeps at most `diff_max_files` files of a diff: `changes_count` "3+", /diffs lists 3, /changes
    lists 3 with `overflow` true."""
    state, url = simulator
    w = world(state)
    state.diff_max_files = 3
    mr = state.open_mr(w["project"], w["ann"], [f"f{i}.py" for i in range(5)])
    base = f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}"
    assert (await call(http_session, base))[2]["changes_count"] == "3+"
    assert [d["new_path"] for d in (await call(http_session, f"{base}/diffs"))[2]] == ["f0.py", "f1.py", "f2.py"]
    _, _, changes = await call(http_session, f"{base}/changes")
    assert (len(changes["changes"]), changes["overflow"], changes["changes_count"]) == (3, True, "3+")
    state.diff_max_files = 5
    assert (await call(http_session, base))[2]["changes_count"] == "5"


async def test_a_token_acts_within_its_scopes(simulator: Sim, http_session) -> None:
    """`read_api` reads, `read_user` reads users, only `api` writes; any token may read its own record."""
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], w["ann"], ["a.py"])
    state.add_token(state.bot, "reader", scopes=("read_api",))
    state.add_token(state.bot, "profile", scopes=("read_user",))
    notes = f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}/notes"
    assert (await call(http_session, notes, token="reader"))[0] == 200
    status, headers, body = await call(http_session, notes, "POST", token="reader", json={"body": "hi"})
    assert (status, body["error"], body["scope"]) == (403, "insufficient_scope", "api") and mr.notes == []
    assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert (await call(http_session, f"{url}/api/v4/user", token="profile"))[0] == 200
    assert (await call(http_session, notes, token="profile"))[0] == 403
    _, _, me = await call(http_session, f"{url}/api/v4/personal_access_tokens/self", token="profile")
    assert (me["scopes"], me["user_id"], me["active"]) == (["read_user"], state.bot.id, True)


async def test_a_member_awaiting_a_seat_is_listed_so_and_has_no_access(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], w["ann"], ["a.py"])
    state.await_seat(w["project"], w["bob"])
    _, _, rows = await call(http_session, f"{url}/api/v4/projects/{w['project'].id}/members/all")
    assert {r["username"]: r["membership_state"] for r in rows}["bob"] == "awaiting"
    assert {r["username"]: r["membership_state"] for r in rows}["cid"] == "active"
    state.update_mr(mr, by=w["ann"], reviewer_ids=None)
    _, _, body = await call(http_session, f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}", "PUT",
                            json={"reviewer_ids": [w["bob"].id, w["cid"].id]})
    assert [r["username"] for r in body["reviewers"]] == ["cid"]  # GitLab drops who cannot read the project


async def test_every_request_is_recorded_with_its_json_body(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    await call(http_session, f"{url}/api/v4/projects/acme%2Fapp/merge_requests/{mr.iid}", "PUT",
               json={"reviewer_ids": [w["bob"].id]})
    last = state.requests[-1]
    assert (last.method, last.path, last.json, last.status) == (
        "PUT", f"/api/v4/projects/acme%2Fapp/merge_requests/{mr.iid}", {"reviewer_ids": [w["bob"].id]}, 200)


async def test_private_project_hidden_from_non_members(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.add_project("acme/secret", bot_access_level=None)
    status, _, body = await call(http_session, f"{url}/api/v4/projects/acme%2Fsecret")
    assert (status, body) == (404, {"message": "404 Project Not Found"})


# --- pagination -----------------------------------------------------------------------------------------------
async def test_paginates_like_gitlab(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    for day in range(45):
        state.add_merged_mr(w["project"], "ann", ["a.py"], reviewers=["bob"], merged_at=T0 + timedelta(days=day))
    base = f"{url}/api/v4/projects/{w['project'].id}/merge_requests"
    status, headers, body = await call(http_session, f"{base}?state=merged&per_page=20&page=2")
    assert status == 200 and len(body) == 20
    assert [headers[h] for h in ("X-Page", "X-Per-Page", "X-Next-Page", "X-Prev-Page", "X-Total", "X-Total-Pages")] \
        == ["2", "20", "3", "1", "45", "3"]
    rels = {part.split('rel="')[1].rstrip('"'): part for part in headers["Link"].split(", ")}
    assert set(rels) == {"prev", "next", "first", "last"}
    assert "page=3" in rels["next"] and "state=merged" in rels["next"] and rels["next"].startswith(f"<{url}")
    _, headers, body = await call(http_session, f"{base}?state=merged&per_page=20&page=3")
    assert (len(body), headers["X-Next-Page"], 'rel="next"' in headers["Link"]) == (5, "", False)
    _, headers, _ = await call(http_session, f"{base}?per_page=500")
    assert headers["X-Per-Page"] == "100"


# --- failures and rate limits ---------------------------------------------------------------------------------
async def test_fail_next_then_recovers(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.fail_next(1, 500)
    state.fail_next(1, 429, retry_after=7)
    status, _, body = await call(http_session, f"{url}/api/v4/user")
    assert (status, body) == (500, {"message": "500 Internal Server Error"})
    status, headers, body = await call(http_session, f"{url}/api/v4/user")
    assert (status, body, headers["Retry-After"]) == (429, "Retry later\n", "7")
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "RateLimit-ResetTime"} <= set(headers)
    assert (await call(http_session, f"{url}/api/v4/user"))[0] == 200


async def test_a_held_path_is_answered_once_released(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = world(state)["project"]
    gate = state.hold_path(f"/projects/{project.id}/merge_requests", state="merged")
    base = f"{url}/api/v4/projects/{project.id}/merge_requests"
    held = asyncio.ensure_future(call(http_session, f"{base}?state=merged"))
    assert (await call(http_session, f"{base}?state=opened"))[0] == 200  # another query is not held
    while not state.held:
        await asyncio.sleep(0.01)
    assert state.held == [f"/api/v4/projects/{project.id}/merge_requests"] and not held.done()
    gate.set()
    assert (await held)[0] == 200 and state.held == []


async def test_rate_limit_answers_429_with_retry_after(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.rate_limit = 2
    statuses = [(await call(http_session, f"{url}/api/v4/user"))[0] for _ in range(3)]
    _, headers, _ = await call(http_session, f"{url}/api/v4/user")
    assert statuses == [200, 200, 429]
    assert headers["RateLimit-Remaining"] == "0" and float(headers["Retry-After"]) > 0


async def test_random_failures_are_a_seeded_mix() -> None:
    def draws(seed: int) -> list[Any]:
        state = SimState(seed=seed)
        state.failure_rate = 0.5
        return [state.take_failure() for _ in range(40)]

    first = draws(7)
    assert first == draws(7)
    assert {f[0] for f in first if f} == {500, 429} and None in first


# --- merge requests and GitLab's rules ------------------------------------------------------------------------
async def test_merge_request_filters_and_order(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    old = state.add_merged_mr(w["project"], "ann", ["a"], reviewers=["bob"], merged_at=T0)
    new = state.add_merged_mr(w["project"], "bob", ["b"], reviewers=["cid"], merged_at=T0 + timedelta(days=9))
    state.open_mr(w["project"], "ann", ["c"], reviewers=["bob"])
    base = f"{url}/api/v4/projects/{w['project'].id}/merge_requests"
    _, _, merged = await call(http_session, f"{base}?state=merged&order_by=updated_at&sort=asc")
    assert [m["iid"] for m in merged] == [old.iid, new.iid]
    assert "diff_refs" not in merged[0] and merged[0]["merged_at"]
    _, _, later = await call(http_session, f"{base}?state=merged&updated_after=2025-03-05T00:00:00Z")
    assert [m["iid"] for m in later] == [new.iid]
    _, _, load = await call(http_session, f"{base}?state=opened&reviewer_id={w['bob'].id}")
    assert len(load) == 1 and load[0]["reviewers"][0]["username"] == "bob"
    status, _, _ = await call(http_session, f"{base}?order_by=nonsense")
    assert status == 400


async def test_get_mr_shape_and_changes_count_is_a_string(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py", SimDiff.deleted("old.py")], draft=True)
    _, _, body = await call(http_session, f"{url}/api/v4/projects/acme%2Fapp/merge_requests/{mr.iid}")
    assert body["changes_count"] == "2" and body["draft"] is True and body["title"].startswith("Draft:")
    assert set(body["diff_refs"]) == {"base_sha", "head_sha", "start_sha"} and body["author"]["username"] == "ann"
    status, _, body = await call(http_session, f"{url}/api/v4/projects/acme%2Fapp/merge_requests/99")
    assert (status, body) == (404, {"message": "404 Merge Request Not Found"})


async def test_a_renamed_user_keeps_their_id_and_everything_they_did(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"], reviewers=["bob"])
    state.rename_user("bob", "bob.b")
    base = f"{url}/api/v4/projects/{w['project'].id}"
    _, _, members = await call(http_session, f"{base}/members/all")
    _, _, body = await call(http_session, f"{base}/merge_requests/{mr.iid}")
    assert {m["id"]: m["username"] for m in members}[w["bob"].id] == "bob.b"
    assert [(r["id"], r["username"]) for r in body["reviewers"]] == [(w["bob"].id, "bob.b")]
    status, _, found = await call(http_session, f"{url}/api/v4/users?username=bob")
    assert (status, found) == (200, [])  # the old name is nobody's now
    with pytest.raises(ValueError, match="taken"):
        state.rename_user("cid", "BOB.b")


async def test_put_reviewer_ids_replaces_and_filters(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"], reviewers=["bob"])
    put = f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}"
    ids = lambda body: [r["id"] for r in body["reviewers"]]  # noqa: E731
    _, _, body = await call(http_session, put, "PUT", json={"reviewer_ids": [w["cid"].id, w["dee"].id, w["eve"].id]})
    assert ids(body) == [w["cid"].id]  # replaced; blocked and non-member dropped silently
    _, _, body = await call(http_session, put, "PUT", json={"reviewer_ids": [w["eve"].id]})
    assert ids(body) == [w["cid"].id]  # nobody valid: no change
    _, _, body = await call(http_session, put, "PUT", data={"reviewer_ids[]": [str(w["bob"].id), str(w["cid"].id)]})
    assert ids(body) == [w["bob"].id, w["cid"].id]  # form encoding works too
    _, _, body = await call(http_session, put, "PUT", json={"reviewer_ids": []})
    assert ids(body) == []


async def test_free_tier_keeps_only_the_first_reviewer(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.free_tier = True
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    _, _, body = await call(http_session, f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}", "PUT",
                            json={"reviewer_ids": [w["bob"].id, w["cid"].id]})
    assert [r["username"] for r in body["reviewers"]] == ["bob"]


async def test_reviewer_changes_ignored_for_callers_below_developer(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    state.add_member(w["project"], state.bot, 20)
    mr = state.open_mr(w["project"], "bob", ["a.py"])
    status, _, body = await call(http_session, f"{url}/api/v4/projects/1/merge_requests/{mr.iid}", "PUT",
                                 json={"reviewer_ids": [w["cid"].id]})
    assert status == 403


# --- notes, awards, files, hooks ------------------------------------------------------------------------------
async def test_notes_create_edit_and_quick_actions(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    notes = f"{url}/api/v4/projects/1/merge_requests/{mr.iid}/notes"
    status, _, note = await call(http_session, notes, "POST", json={"body": "Suggested reviewers: `@bob`"})
    assert status == 201 and note["author"]["username"] == "reviewbot" and note["noteable_iid"] == mr.iid
    status, _, edited = await call(http_session, f"{notes}/{note['id']}", "PUT", json={"body": "edited"})
    assert (status, edited["body"]) == (200, "edited")
    status, _, only = await call(http_session, notes, "POST", json={"body": "/assign_reviewer @cid"})
    assert status == 202 and only["commands_changes"] == {"reviewer_ids": [w["cid"].id]}
    status, _, _ = await call(http_session, notes, "POST", json={})
    assert status == 400
    status, _, long = await call(http_session, notes, "POST", json={"body": "x" * 1_000_001})
    assert (status, long) == (400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}})
    state.add_token("ann", "ann-token")
    status, _, _ = await call(http_session, f"{notes}/{note['id']}", "PUT", token="ann-token", json={"body": "x"})
    assert status == 403


async def test_notes_are_listed_newest_first_unless_asked_otherwise(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    at = state.now()
    state.clock = lambda: at  # notes of the same time: GitLab orders them by id too
    ids = [state.add_note(mr, "ann", f"n{i}", system=i == 1).id for i in range(3)]
    notes = f"{url}/api/v4/projects/1/merge_requests/{mr.iid}/notes"
    for query, want in (("", ids[::-1]), ("?sort=asc", ids), ("?order_by=created_at&sort=desc&per_page=2", ids[:0:-1])):
        assert [n["id"] for n in (await call(http_session, notes + query))[2]] == want


async def test_notes_belong_to_discussions_as_in_gitlabs_note_hooks(simulator: Sim, http_session) -> None:
    """Note Hooks carry `discussion_id` and `type` (GitLab's NoteBuilder): a plain comment starts a discussion
    of its own (type null), a reply joins it (`DiscussionNote`, the first note converted), a comment on the code
    is a `DiffNote` with its `position`. The Notes API does not show the discussion; the Discussions API does."""
    state, url = simulator
    w = world(state)
    state.add_hook(w["project"], "http://127.0.0.1:9/hook")
    state.auto_hooks = False
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    state.outbox.clear()
    first = state.add_note(mr, "ann", "Please have a look")
    reply = state.add_note(mr, "bob", "On it", reply_to=first)
    on_code = state.add_note(mr, "bob", "nit: rename", on_file="a.py", line=3)
    hooks = [e.body["object_attributes"] for e in state.outbox if e.event_name == "Note Hook"]
    assert [(h["type"], len(h["discussion_id"])) for h in hooks] == [(None, 40), ("DiscussionNote", 40),
                                                                    ("DiffNote", 40)]
    assert hooks[0]["discussion_id"] == hooks[1]["discussion_id"] != hooks[2]["discussion_id"]
    assert hooks[2]["position"]["new_path"] == "a.py" and hooks[2]["position"]["new_line"] == 3
    assert hooks[0]["position"] is None and first.type == "DiscussionNote"  # converted by the reply
    base = f"{url}/api/v4/projects/1/merge_requests/{mr.iid}"
    status, _, listed = await call(http_session, f"{base}/notes/{on_code.id}")
    assert status == 200 and listed["type"] == "DiffNote" and "discussion_id" not in listed
    status, _, discussion = await call(http_session, f"{base}/discussions/{first.discussion_id}")
    assert status == 200 and [n["id"] for n in discussion["notes"]] == [first.id, reply.id]
    assert discussion["id"] == first.discussion_id and discussion["individual_note"] is False
    status, _, answer = await call(http_session, f"{base}/discussions/{first.discussion_id}/notes", "POST",
                                   json={"body": "Thanks"})
    assert status == 201 and answer["type"] == "DiscussionNote"
    assert state.outbox[-1].body["object_attributes"]["discussion_id"] == first.discussion_id
    assert (await call(http_session, f"{base}/discussions/{'0' * 40}"))[0] == 404


async def test_award_emoji_on_note_and_mr(simulator: Sim, http_session) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    note = state.add_note(mr, "ann", "@reviewbot suggest")
    base = f"{url}/api/v4/projects/1/merge_requests/{mr.iid}"
    status, _, award = await call(http_session, f"{base}/notes/{note.id}/award_emoji", "POST", json={"name": "eyes"})
    assert (status, award["awardable_type"], award["awardable_id"]) == (201, "Note", note.id)
    status, _, _ = await call(http_session, f"{base}/notes/{note.id}/award_emoji", "POST", json={"name": "eyes"})
    assert status == 404
    status, _, award = await call(http_session, f"{base}/award_emoji", "POST", json={"name": "thumbsup"})
    assert (status, award["awardable_type"]) == (201, "MergeRequest")


async def test_who_may_comment_follows_gitlabs_create_note(simulator: Sim, http_session) -> None:
    """Anyone signed in may comment on a public or internal project's merge requests (GitLab's
    `public_user_access` grants `guest_access`, hence `create_note`); a private one's MRs need Reporter to read."""
    state, url = simulator
    w = world(state)
    project = state.add_project("someone/public-app", bot_access_level=None)
    state.add_member(project, w["ann"])
    notes = f"{url}/api/v4/projects/{project.id}/merge_requests/{state.open_mr(project, 'ann', ['a.py']).iid}/notes"
    for visibility, expected in (("public", 201), ("internal", 201), ("private", 404)):
        project.visibility = visibility
        assert (await call(http_session, notes, "POST", json={"body": "hello"}))[0] == expected, visibility
    state.add_member(project, state.bot, 10)  # a Guest cannot read a private project's merge requests
    assert (await call(http_session, notes, "POST", json={"body": "hello"}))[:3:2] == (
        404, {"message": "404 Merge Request Not Found"})
    state.add_member(project, state.bot, 20)
    assert (await call(http_session, notes, "POST", json={"body": "hello"}))[0] == 201


async def test_an_archived_project_is_read_only(simulator: Sim, http_session) -> None:
    """Archived, a project still answers reads (`archived: true`) but refuses comments, their edits, reviewer
    changes and award emoji for every role with 403, as GitLab's `ArchivedAbilities` do."""
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    note = state.add_note(mr, state.bot, "Suggested reviewers")
    project, base = f"{url}/api/v4/projects/1", f"{url}/api/v4/projects/1/merge_requests/{mr.iid}"
    state.archive(w["project"])
    assert (await call(http_session, project))[2]["archived"] is True
    assert (await call(http_session, base))[0] == 200
    forbidden = (403, {"message": "403 Forbidden"})
    assert (await call(http_session, f"{base}/notes", "POST", json={"body": "x"}))[:3:2] == forbidden
    assert (await call(http_session, f"{base}/notes/{note.id}", "PUT", json={"body": "x"}))[:3:2] == forbidden
    assert (await call(http_session, base, "PUT", json={"reviewer_ids": [w["bob"].id]}))[:3:2] == forbidden
    assert (await call(http_session, f"{base}/award_emoji", "POST", json={"name": "eyes"}))[:3:2] == forbidden
    assert mr.notes == [note] and mr.reviewer_ids == [] and mr.awards == []
    state.archive(w["project"], archived=False)
    assert (await call(http_session, f"{base}/notes", "POST", json={"body": "x"}))[0] == 201


async def test_raw_file_and_missing_file(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.add_file(state.add_project("acme/app"), ".gitlab/CODEOWNERS", "* @ann\n")
    status, headers, body = await call(http_session, f"{url}/api/v4/projects/1/repository/files/"
                                                     ".gitlab%2FCODEOWNERS/raw?ref=main")
    assert (status, headers["Content-Type"].split(";")[0], body) == (200, "text/plain", "* @ann\n")
    status, _, body = await call(http_session, f"{url}/api/v4/projects/1/repository/files/CODEOWNERS/raw?ref=main")
    assert (status, body) == (404, {"message": "404 File Not Found"})


async def test_protected_branches_have_the_documented_shape(simulator: Sim, http_session) -> None:
    """A new project's default branch is protected without code owner approval; wildcards come as written;
    the free tier shows the setting false; GET .../protected_branches/:name finds exact names only."""
    state, url = simulator
    project = state.add_project("acme/app")
    state.add_member(project, state.add_user("guest"), 10)
    state.add_token("guest", "guest-token")
    state.protect_branch(project, "release/*", code_owner_approval_required=True)
    listed = f"{url}/api/v4/projects/1/protected_branches"
    status, headers, body = await call(http_session, listed)
    assert status == 200 and headers["X-Total"] == "2"
    assert [(b["name"], b["code_owner_approval_required"]) for b in body] == [("main", False), ("release/*", True)]
    assert set(body[0]) == {"id", "name", "push_access_levels", "merge_access_levels", "allow_force_push",
                            "code_owner_approval_required"}
    assert body[0]["push_access_levels"][0]["access_level"] == 40
    status, _, one = await call(http_session, f"{listed}/release%2F%2A")
    assert status == 200 and one["name"] == "release/*"
    assert (await call(http_session, f"{listed}/release%2F1.0"))[:3:2] == (404, {"message": "404 Not found"})
    assert [b["name"] for b in (await call(http_session, listed, params={"search": "rel"}))[2]] == ["release/*"]
    assert (await call(http_session, listed, token="guest-token"))[0] == 403
    state.free_tier = True
    assert [b["code_owner_approval_required"] for b in (await call(http_session, listed))[2]] == [False, False]


async def test_hooks_need_maintainer_and_hide_the_token(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.add_project("acme/app")
    state.add_token(state.root, "root-token")
    hooks = f"{url}/api/v4/projects/1/hooks"
    assert (await call(http_session, hooks, "POST", json={"url": "http://x/hook"}))[0] == 403
    status, _, hook = await call(http_session, hooks, "POST", token="root-token",
                                 json={"url": "http://x/hook", "token": "s3cret", "merge_requests_events": True})
    assert status == 201 and hook["push_events"] is True and hook["merge_requests_events"] is True
    assert "s3cret" not in json.dumps(hook) and state.projects[1].hooks[0].token == "s3cret"


# --- webhooks -------------------------------------------------------------------------------------------------
async def test_opening_an_mr_delivers_a_merge_request_hook(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, url = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url, token="hook-secret")
    mr = state.open_mr(w["project"], "ann", ["src/a.py"], title="Add a", labels=["backend"])
    await state.flush_hooks()
    [got] = webhook_receiver.received
    assert got.event == "Merge Request Hook" and got.headers["X-Gitlab-Token"] == "hook-secret"
    assert got.headers["User-Agent"].startswith("GitLab/18.")
    assert got.headers["X-Gitlab-Instance"] == url and got.headers["Content-Type"] == "application/json"
    for name in ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID", "Idempotency-Key"):
        assert len(got.headers[name]) == 36
    attrs = got.body["object_attributes"]
    assert (attrs["action"], attrs["iid"], attrs["reviewer_ids"], got.body["user"]["username"]) == (
        "open", mr.iid, [], "ann")
    assert "reviewers" not in got.body and "oldrev" not in attrs and attrs["labels"][0]["title"] == "backend"


async def test_bot_reviewer_change_fires_update_with_reviewer_changes(simulator: Sim, http_session,
                                                                      webhook_receiver: Receiver) -> None:
    state, url = simulator
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"], reviewers=["bob"])
    state.add_hook(w["project"], webhook_receiver.url)
    await call(http_session, f"{url}/api/v4/projects/1/merge_requests/{mr.iid}", "PUT",
               json={"reviewer_ids": [w["bob"].id, w["cid"].id]})
    await state.flush_hooks()
    [got] = webhook_receiver.events("Merge Request Hook")
    change = got.body["changes"]["reviewers"]
    assert [u["username"] for u in change["previous"]] == ["bob"]
    assert [u["username"] for u in change["current"]] == ["bob", "cid"]
    assert got.body["user"]["username"] == "reviewbot" and "X-Gitlab-Token" not in got.headers


async def test_lifecycle_events(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, _ = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url)
    mr = state.open_mr(w["project"], "ann", ["a.py"], draft=True)
    state.push_to_mr(mr, ["b.py"])
    state.mark_ready(mr)
    state.approve(mr, "bob")
    state.merge_mr(mr, by="bob")
    await state.flush_hooks()
    bodies = [r.body for r in webhook_receiver.received]
    assert [b["object_attributes"]["action"] for b in bodies] == ["open", "update", "update", "approved", "merge"]
    assert "oldrev" in bodies[1]["object_attributes"] and "oldrev" not in bodies[2]["object_attributes"]
    assert bodies[2]["changes"]["draft"] == {"previous": True, "current": False}
    assert bodies[4]["changes"]["state_id"] == {"previous": 1, "current": 3}


async def test_an_mr_from_a_fork_is_the_target_projects(simulator: Sim, http_session,
                                                      webhook_receiver: Receiver) -> None:
    """GitLab runs MR hooks on the target project alone (`MergeRequests::BaseService#execute_hooks`), pushes to
    the fork's branch included; `source` and `source_project_id` name the fork, null once it is deleted."""
    state, url = simulator
    w = world(state)
    w["project"].visibility = "public"
    state.add_hook(w["project"], webhook_receiver.url)
    state.add_file(w["project"], "CODEOWNERS", "* @bob\n")
    fork = state.fork_project(w["project"], "eve")
    assert (fork.path_with_namespace, fork.forked_from_id, fork.hooks) == ("eve/app", w["project"].id, [])
    assert fork.files == w["project"].files and state.access_level(fork, w["bob"].id) == 0
    state.add_hook(fork, webhook_receiver.url)
    mr = state.open_mr(w["project"], "eve", ["a.py"], source_project=fork, source_branch="main")
    state.push_to_mr(mr, ["b.py"])
    await state.flush_hooks()
    assert len(webhook_receiver.received) == 2
    for got in webhook_receiver.received:
        attrs = got.body["object_attributes"]
        assert got.body["project"]["id"] == attrs["target_project_id"] == w["project"].id
        assert attrs["source_project_id"] == fork.id and attrs["source"]["path_with_namespace"] == "eve/app"
        assert attrs["target"]["path_with_namespace"] == "acme/app"
    status, _, body = await call(http_session, f"{url}/api/v4/projects/{w['project'].id}/merge_requests/{mr.iid}")
    assert status == 200 and (body["source_project_id"], body["target_project_id"]) == (fork.id, w["project"].id)
    del state.projects[fork.id]
    mr.source_project_id = None  # GitLab nullifies it when the fork is deleted
    state.close_mr(mr, by="bob")
    await state.flush_hooks()
    attrs = webhook_receiver.received[-1].body["object_attributes"]
    assert (attrs["action"], attrs["source_project_id"], attrs["source"]) == ("close", None, None)


@pytest.mark.parametrize("edition, required, hooks", [
    ("ce", 0, ["approved", "approved", "unapproved", "unapproved"]),
    ("ee", 0, ["approved", "approved", "unapproval", "unapproval"]),  # no rules: approved before and after
    ("ee", 2, ["approval", "approved", "unapproved", "unapproval"]),
])
async def test_each_approval_sends_one_hook_as_gitlab_names_it(simulator: Sim, webhook_receiver: Receiver,
                                                               edition: str, required: int, hooks: list) -> None:
    """CE: `approved` / `unapproved` (`ExecuteApprovalHooksService`, `RemoveApprovalService`). EE: `approved`
    for the approval that leaves none required, `unapproved` for taking back the one that breaks it, else
    `approval` / `unapproval` (their EE modules). Never two hooks for one act."""
    state, _ = simulator
    state.free_tier = edition == "ce"
    w = world(state)
    w["project"].approvals_required = required
    state.add_hook(w["project"], webhook_receiver.url)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    state.approve(mr, "bob")
    state.approve(mr, "cid")
    state.unapprove(mr, "cid")
    state.unapprove(mr, "bob")
    await state.flush_hooks()
    assert [r.body["object_attributes"]["action"] for r in webhook_receiver.received][1:] == hooks


async def test_review_states_reach_the_hooks_and_the_reviewers_endpoint(simulator: Sim, http_session,
                                                                       webhook_receiver: Receiver) -> None:
    """GitLab 18.6+: each reviewer object carries `state` and `re_requested`. Submit review sends an `update`
    whose `changes.reviewers` show the new state (MR !246562); asking for changes takes the approval back
    without a hook; a re-request sets "unreviewed" and flags the reviewer (MR !205274). GET .../reviewers
    gives each reviewer's state (no `re_requested` there)."""
    state, url = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url)
    mr = state.open_mr(w["project"], "ann", ["a.py"], reviewers=["bob", "cid"])
    state.approve(mr, "bob")
    assert state.submit_review(mr, "bob", "requested_changes") and not state.submit_review(mr, "eve")
    state.re_request_review(mr, "bob", by="ann")
    await state.flush_hooks()
    opened, approved, submitted, again = (r.body for r in webhook_receiver.received)
    assert [(r["username"], r["state"], r["re_requested"]) for r in opened["reviewers"]] == [
        ("bob", "unreviewed", False), ("cid", "unreviewed", False)]
    assert approved["object_attributes"]["action"] == "approved" and approved["changes"] == {}
    state_of = lambda users: [(u["username"], u["state"], u["re_requested"]) for u in users]  # noqa: E731
    assert (submitted["object_attributes"]["action"], submitted["user"]["username"]) == ("update", "bob")
    assert state_of(submitted["changes"]["reviewers"]["previous"])[0] == ("bob", "approved", False)
    assert state_of(submitted["changes"]["reviewers"]["current"])[0] == ("bob", "requested_changes", False)
    assert state_of(again["changes"]["reviewers"]["previous"])[0] == ("bob", "requested_changes", False)
    assert state_of(again["changes"]["reviewers"]["current"]) == [("bob", "unreviewed", True),
                                                                ("cid", "unreviewed", False)]
    assert state_of(again["reviewers"])[0] == ("bob", "unreviewed", True) and mr.approvals == {}
    state.submit_review(mr, "cid")
    status, _, body = await call(http_session, f"{url}/api/v4/projects/1/merge_requests/{mr.iid}/reviewers")
    assert status == 200 and [(r["user"]["username"], r["state"]) for r in body] == [
        ("bob", "unreviewed"), ("cid", "reviewed")]
    assert set(body[0]) == {"user", "state", "created_at"}


async def test_note_and_emoji_hooks(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, _ = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    note = state.add_note(mr, "bob", "@reviewbot suggest")
    state.edit_note(note, "@reviewbot suggest please")
    state.add_note(mr, "bob", "secret", internal=True)  # no confidential_note_events on this hook
    state.add_note(mr, "bob", "changed the description", system=True)  # system notes never fire
    state.award(note, "ann", "thumbsup")
    await state.flush_hooks()
    notes = webhook_receiver.events("Note Hook")
    assert [n.body["object_attributes"]["action"] for n in notes] == ["create", "update"]
    assert notes[0].body["merge_request"]["iid"] == mr.iid and "reviewers" not in notes[0].body["merge_request"]
    [emoji] = webhook_receiver.events("Emoji Hook")
    assert emoji.body["object_attributes"]["awardable_type"] == "Note" and emoji.body["note"]["id"] == note.id


async def test_resend_keeps_the_idempotency_key(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, _ = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url)
    state.open_mr(w["project"], "ann", ["a.py"])
    [first] = await state.flush_hooks()
    again = await state.sender.resend(first)
    assert again.headers["Idempotency-Key"] == first.headers["Idempotency-Key"]
    assert webhook_receiver.received[0].body == webhook_receiver.received[1].body


async def test_failing_receiver_gets_the_hook_disabled(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, _ = simulator
    w = world(state)
    hook = state.add_hook(w["project"], webhook_receiver.url)
    webhook_receiver.status = 500
    for _ in range(5):
        state.open_mr(w["project"], "ann", ["a.py"])
    await state.flush_hooks()
    assert len(webhook_receiver.received) == 4 and hook.alert_status == "temporarily_disabled"


async def test_automatic_delivery_without_flush(simulator: Sim, webhook_receiver: Receiver) -> None:
    state, _ = simulator
    w = world(state)
    state.add_hook(w["project"], webhook_receiver.url)
    state.open_mr(w["project"], "ann", ["a.py"])
    await webhook_receiver.arrived.wait()
    assert webhook_receiver.received[0].event == "Merge Request Hook"


@pytest.mark.shared_data
@pytest.mark.parametrize("sample, action", [
    ("merge_request_open.gitlab-docs.json", "open"), ("derived/merge_request_merge.json", "merge"),
])
def test_merge_request_hook_has_the_documented_keys(sample: str, action: str) -> None:
    path = SAMPLES / sample
    if not path.exists():
        pytest.skip(f"{path} is absent")
    documented = json.loads(path.read_text())
    state = SimState()
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"], reviewers=["bob"], assignees=["ann"], labels=["x"])
    body = payloads.merge_request_hook(state, w["project"], mr, action, user=state.user("ann"))
    assert set(body) == set(documented)
    assert set(documented["object_attributes"]) <= set(body["object_attributes"])
    assert set(body["object_attributes"]["source"]) == set(documented["object_attributes"]["source"])


NOTE_BUILDER_KEYS = {  # GitLab's Gitlab::HookData::NoteBuilder::SAFE_HOOK_ATTRIBUTES, then what it adds
    "attachment", "author_id", "change_position", "commit_id", "created_at", "discussion_id", "id", "internal",
    "line_code", "note", "noteable_id", "noteable_type", "original_position", "position", "project_id",
    "resolved_at", "resolved_by_id", "resolved_by_push", "st_diff", "system", "type", "updated_at", "updated_by_id",
    "description", "url"}


@pytest.mark.shared_data
def test_note_hook_has_the_documented_keys() -> None:
    path = SAMPLES / "note_merge_request.gitlab-docs.json"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    documented = json.loads(path.read_text())
    state = SimState()
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"], assignees=["bob"])
    body = payloads.note_hook(state, w["project"], mr, state.add_note(mr, "bob", "hi"))
    assert set(body) == set(documented)
    # the documented example is older than the keys GitLab's NoteBuilder sends now (discussion_id, type, ...)
    assert set(documented["object_attributes"]) <= set(body["object_attributes"]) <= \
        set(documented["object_attributes"]) | NOTE_BUILDER_KEYS
    assert set(body["merge_request"]) == set(documented["merge_request"])


def test_unknown_merge_request_action_is_refused() -> None:
    state = SimState()
    w = world(state)
    mr = state.open_mr(w["project"], "ann", ["a.py"])
    with pytest.raises(ValueError, match="unknown merge request action 'opened'"):
        payloads.merge_request_hook(state, w["project"], mr, "opened", user=w["ann"])


# --- seeding --------------------------------------------------------------------------------------------------
def test_seed_project_is_deterministic_and_skewed() -> None:
    def build(seed: int) -> tuple[SimState, Any]:
        state = SimState()
        return state, seed_project(state, n_people=20, n_merged=240, n_open=3, seed=seed)

    state, seeded = build(5)
    _, again = build(5)
    assert seeded.owners == again.owners
    assert [m.diffs for m in seeded.project.mrs.values()] == [m.diffs for m in again.project.mrs.values()]
    merged = [m for m in seeded.project.mrs.values() if m.state == "merged"]
    authors = Counter(m.author_id for m in merged)
    assert authors.most_common(1)[0][1] > 3 * median(authors.values())
    assert seeded.busy.busy and seeded.blocked.state == "blocked" and all(b.bot for b in seeded.bots)
    assert any(m.author_id in {b.id for b in seeded.bots} for m in merged)
    assert ("main", ".gitlab/CODEOWNERS") in seeded.project.files
    assert sum(m.state == "opened" for m in seeded.project.mrs.values()) == 3


def test_seeded_reviewers_mostly_follow_ownership() -> None:
    state = SimState()
    seeded = seed_project(state, n_people=20, n_merged=300, seed=2)
    owned = total = 0
    for mr in seeded.project.mrs.values():
        owners = set(seeded.owners.get(mr.diffs[0].new_path.rsplit("/", 1)[0], ()))
        if not owners or not mr.reviewer_ids:
            continue
        total += 1
        owned += any(state.users[r].username in owners for r in mr.reviewer_ids)
    assert owned / total > 0.6


async def test_run_simulator_sets_the_instance_url() -> None:
    async with run_simulator() as (state, url):
        assert url.startswith("http://127.0.0.1:") and state.web == url


# --- OAuth 2.0 provider ---------------------------------------------------------------------------------------
async def _authorize(http_session, url: str, app, **extra: str) -> tuple[int, str]:
    params = {"client_id": app.uid, "redirect_uri": app.redirect_uris[0], "response_type": "code", "state": "st",
              "scope": "read_api", **extra}
    async with http_session.get(f"{url}/oauth/authorize", params=params, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", "")


async def test_oauth_codes_work_once_with_their_pkce_verifier_and_the_secret(simulator: Sim, http_session) -> None:
    """GitLab's doc/api/oauth2.md: the verifier's S256 hash is the challenge (its own example pair), a code is
    exchanged once, and the token reads the API as the person who consented."""
    state, url = simulator
    app = state.add_oauth_app("http://bot.example/cb")
    assert (await _authorize(http_session, url, app))[1] == f"{url}/users/sign_in"  # nobody signed in to GitLab
    state.browser_user = state.add_user("ann")
    verifier, challenge = "ks02i3jdikdo2k0dkfodf3m39rjfjsdk0wk349rj3jrhf", "2i0WFA-0AerkjQm4X4oDEhqA17QIAKNjXpagHBXmO_U"
    status, location = await _authorize(http_session, url, app, code_challenge=challenge,
                                        code_challenge_method="S256")
    assert status == 302 and location.startswith("http://bot.example/cb?code=") and location.endswith("&state=st")
    code = location.split("code=")[1].split("&")[0]
    form = {"client_id": app.uid, "client_secret": app.secret, "code": code, "grant_type": "authorization_code",
            "redirect_uri": "http://bot.example/cb"}
    for wrong, error in (({"code_verifier": "x" * 43}, (400, "invalid_grant")),
                         ({"client_secret": "nope", "code_verifier": verifier}, (401, "invalid_client"))):
        status, _, body = await call(http_session, f"{url}/oauth/token", "POST", token=None, data={**form, **wrong})
        assert (status, body["error"]) == error
    status, _, body = await _token(http_session, url, form, verifier)
    assert (status, body["error"]) == (400, "invalid_grant")  # the wrong verifier spent the code
    status, location = await _authorize(http_session, url, app, code_challenge=challenge,
                                        code_challenge_method="S256")
    form["code"] = location.split("code=")[1].split("&")[0]
    status, _, body = await _token(http_session, url, form, verifier)
    assert status == 200 and set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope",
                                           "created_at"}
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 7200, "read_api")
    assert (await _token(http_session, url, form, verifier))[0] == 400  # once only
    status, _, me = await call(http_session, f"{url}/api/v4/user", token=body["access_token"])
    assert (status, me["username"]) == (200, "ann")
    status, _, _ = await call(http_session, f"{url}/oauth/revoke", "POST", token=None,
                              data={"client_id": app.uid, "client_secret": app.secret, "token": body["access_token"]})
    assert status == 200
    assert (await call(http_session, f"{url}/api/v4/user", token=body["access_token"]))[0] == 401


async def _token(http_session, url: str, form: dict[str, str], verifier: str) -> tuple[int, Any, Any]:
    return await call(http_session, f"{url}/oauth/token", "POST", token=None, data={**form, "code_verifier": verifier})


async def test_oauth_authorize_refuses_unknown_redirects_and_a_declined_consent(simulator: Sim, http_session) -> None:
    state, url = simulator
    app = state.add_oauth_app("http://bot.example/cb")
    state.browser_user = state.add_user("ann")
    status, location = await _authorize(http_session, url, app, redirect_uri="http://evil.example/cb")
    assert (status, location) == (400, "")  # never sent to an unregistered address
    status, location = await _authorize(http_session, url, app, scope="api")
    assert "error=invalid_scope" in location
    state.oauth_deny = True
    status, location = await _authorize(http_session, url, app)
    assert status == 302 and "error=access_denied" in location and location.endswith("state=st")


async def test_a_guest_of_a_private_project_cannot_list_its_merge_requests(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = state.add_project("acme/app")
    state.add_member(project, state.add_user("gus"), 10)
    state.add_token("gus", "gus-token", scopes=("read_api",))
    status, _, body = await call(http_session, f"{url}/api/v4/projects/{project.id}", token="gus-token")
    assert status == 200  # the project is visible to its Guest ...
    status, _, body = await call(http_session, f"{url}/api/v4/projects/{project.id}/merge_requests", token="gus-token")
    assert (status, body) == (403, {"message": "403 Forbidden"})  # ... its merge requests are not
