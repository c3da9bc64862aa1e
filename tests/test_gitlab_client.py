"""GitLabClient against the simulator over real HTTP: pagination, retries, errors, GitLab's rules."""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.gitlab.client import GitLabClient, RetryPolicy, _retry_after
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import ProtectedBranch
from bot.gitlab.sim_model import SimDiff
from bot.gitlab.simulator import SimState, seed_project
from bot.lookups import Lookups, Recent
from tests.gitlab_fixtures import (  # noqa: F401
    FAST_RETRY, Receiver, fast_retry, gitlab_client, http_session, sim_state, simulator, webhook_receiver,
)

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
Sim = tuple[SimState, str]


def team(state: SimState):
    project = state.add_project("acme/app")
    for name in ("ann", "bob", "cid"):
        state.add_member(project, state.add_user(name))
    return project


def client_for(session: aiohttp.ClientSession, url: str, token: str = "sim-token", **kwargs) -> GitLabClient:
    return GitLabClient(session, url=url, token=token, retry=kwargs.pop("retry", FAST_RETRY), **kwargs)


# --- reading ----------------------------------------------------------------------------------------------------
async def test_current_user_and_project_by_path(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    me = await gitlab_client.current_user()
    assert (me.username, me.bot) == ("reviewbot", True)
    got = await gitlab_client.get_project("acme/app")
    assert (got.id, got.default_branch) == (project.id, "main")
    assert state.requests[-1].path == "/api/v4/projects/acme%2Fapp"


async def test_members_come_from_every_page(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    for i in range(8):
        state.add_member(project, state.add_user(f"dev{i}"))
    client = client_for(http_session, url, per_page=3)
    members = await client.list_members(project.id)
    assert len(members) == len(project.members) == 13
    assert [r.query["page"] for r in state.calls("GET", "/members/all")] == ["1", "2", "3", "4", "5"]
    assert {m.access_level for m in members} == {30, 50}


async def test_changed_files_across_pages_keep_rename_and_delete_flags(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    files = [f"src/f{i}.py" for i in range(10)] + [SimDiff.renamed("old/x.py", "new/x.py"), SimDiff.deleted("gone.py")]
    mr = state.open_mr(project, "ann", files)
    changed = await client_for(http_session, url, per_page=5).mr_changed_files(project.id, mr.iid)
    assert len(changed) == 12
    renamed, deleted = changed[-2], changed[-1]
    assert (renamed.path, renamed.old_path, renamed.renamed_file) == ("new/x.py", "old/x.py", True)
    assert (deleted.path, deleted.deleted_file) == ("gone.py", True)


async def test_changed_files_before_gitlab_15_7_come_from_changes(simulator: Sim, http_session) -> None:
    """GitLab before 15.7 has no .../diffs (its catch-all 404 `{"error":"404 Not Found"}`): the files come from
    the deprecated /changes, which has had them all along; the missing route is asked once per client."""
    state, url = simulator
    project = team(state)
    state.version = (15, 6)
    first = state.open_mr(project, "ann", ["src/a.py", SimDiff.renamed("old/x.py", "new/x.py")])
    second = state.open_mr(project, "bob", ["docs/b.md"])
    client = client_for(http_session, url)
    changed = await client.mr_changed_files(project.id, first.iid)
    assert [(f.path, f.rename) for f in changed] == [("src/a.py", None), ("new/x.py", ("old/x.py", "new/x.py"))]
    assert [f.path for f in await client.mr_changed_files(project.id, second.iid)] == ["docs/b.md"]
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in state.calls("GET", "/merge_requests/")] == [
        ("diffs", 404), ("changes", 200), ("changes", 200)]
    state.assert_no_unknown()


async def test_an_mr_says_when_gitlab_cut_its_diff(simulator: Sim, gitlab_client: GitLabClient) -> None:
    """`changes_count` is a string, "<limit>+" past GitLab's diff limit; /diffs and /changes stop there."""
    state, _ = simulator
    project = team(state)
    state.diff_max_files = 2
    big, small = (state.open_mr(project, "ann", [f"f{i}.py" for i in range(n)]) for n in (3, 2))
    assert (await gitlab_client.get_mr(project.id, big.iid)).diff_capped
    assert not (await gitlab_client.get_mr(project.id, small.iid)).diff_capped
    assert len(await gitlab_client.mr_changed_files(project.id, big.iid)) == 2
    state.version = (15, 6)
    assert len(await gitlab_client.mr_changed_files(project.id, big.iid)) == 2


async def test_changed_files_are_kept_for_the_mr_head_without_their_patches(simulator: Sim,
                                                                          gitlab_client: GitLabClient) -> None:
    """Every suggestion asks for the MR's changed files: they are read once for its head and target branch, and
    kept without the patches GitLab sends with them."""
    state, _ = simulator
    project = team(state)
    sim_mr = state.open_mr(project, "ann", ["a.py", "b.py"])
    look, mr = Lookups(gitlab_client, Recent()), await gitlab_client.get_mr(project.id, sim_mr.iid)
    first = await look.changed_files(project.id, mr)
    assert [f.path for f in first] == ["a.py", "b.py"] and all(not f.model_extra for f in first)
    assert await look.changed_files(project.id, mr) == first and len(state.calls("GET", "/diffs")) == 1
    await look.changed_files(project.id, mr.model_copy(update={"target_branch": "release"}))
    state.push_to_mr(sim_mr, ["c.py"])
    pushed = await look.changed_files(project.id, await gitlab_client.get_mr(project.id, sim_mr.iid))
    assert [f.path for f in pushed] == ["a.py", "b.py", "c.py"] and len(state.calls("GET", "/diffs")) == 3


async def test_a_missing_mr_is_not_a_missing_endpoint(simulator: Sim, gitlab_client: GitLabClient) -> None:
    """`{"message":"404 Not found"}`-style answers name a missing object: no fallback, the usual hint."""
    state, _ = simulator
    project = team(state)
    with pytest.raises(GitLabError) as caught:
        await gitlab_client.mr_changed_files(project.id, 999)
    assert caught.value.not_found and not caught.value.no_route and "404 Merge Request Not Found" in str(caught.value)
    assert len(state.calls("GET", "/changes")) == 0


async def test_merged_mrs_backfill_is_resumable(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    for day in range(7):
        state.add_merged_mr(project, "ann", ["a.py"], reviewers=["bob"], approvers=["bob"],
                            merged_at=T0 + timedelta(days=day))
    state.open_mr(project, "ann", ["b.py"])
    client = client_for(http_session, url, per_page=3)
    pages = [page async for page in client.iter_merged_mrs(project.id)]
    assert [(p.page, p.next_page, len(p.items)) for p in pages] == [(1, 2, 3), (2, 3, 3), (3, None, 1)]
    assert [mr.iid for p in pages for mr in p.items] == list(range(1, 8))
    resumed = [mr.iid async for p in client.iter_merged_mrs(project.id, page_start=pages[0].next_page)
               for mr in p.items]
    assert resumed == list(range(4, 8))
    later = [mr.iid async for p in client.iter_merged_mrs(project.id, updated_after=T0 + timedelta(days=4, hours=1))
             for mr in p.items]
    assert later == [6, 7]


async def test_approvals_status_and_review_load(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    state.set_busy("cid")
    mr = state.open_mr(project, "ann", ["a.py"], reviewers=["bob", "cid"])
    state.open_mr(project, "cid", ["b.py"], reviewers=["bob"])
    state.approve(mr, "bob")
    approvals = await gitlab_client.mr_approvals(project.id, mr.iid)
    assert [u.username for u in approvals.approvers] == ["bob"]
    assert (await gitlab_client.user_status(state.user("cid").id)).busy
    assert not (await gitlab_client.user_status("bob")).busy
    ids = [state.user(n).id for n in ("ann", "bob", "cid")]
    assert await gitlab_client.open_review_counts(project.id, ids) == dict(zip(ids, [0, 2, 1]))
    states = await gitlab_client.mr_reviewer_states(project.id, mr.iid)
    assert [(s.user.username, s.state) for s in states] == [("bob", "approved"), ("cid", "unreviewed")]
    assert await gitlab_client.mr_reviewer_states(project.id, 999) is None  # no such MR (or no review states)


async def test_file_raw_returns_text_or_none(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    state.add_file(project, ".gitlab/CODEOWNERS", "/src/ @ann\n")
    assert await gitlab_client.file_raw("acme/app", ".gitlab/CODEOWNERS", "main") == "/src/ @ann\n"
    assert await gitlab_client.file_raw("acme/app", "CODEOWNERS", "main") is None
    assert await gitlab_client.file_raw(project.id, ".gitlab/CODEOWNERS") == "/src/ @ann\n"
    # GitLab serves a Latin-1 file as `text/plain; charset=utf-8` all the same: gidgetlab's decoding raised
    latin1 = "# J\u00fcrgen\n/src/ @ann\n".encode("latin-1")
    state.add_file(project, "docs/CODEOWNERS", latin1)
    assert await gitlab_client.file_bytes(project.id, "docs/CODEOWNERS") == latin1
    assert await gitlab_client.file_raw(project.id, "docs/CODEOWNERS") == "# J\ufffdrgen\n/src/ @ann\n"
    state.add_file(project, "empty", "")
    assert await gitlab_client.file_bytes(project.id, "empty") == b""
    assert await gitlab_client.file_raw(project.id, "empty") == ""


async def test_get_member_is_none_for_outsiders(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    outsider = state.add_user("zed")
    assert (await gitlab_client.get_member(project.id, state.user("bob").id)).access_level == 30
    assert await gitlab_client.get_member(project.id, outsider.id) is None


# --- writing ----------------------------------------------------------------------------------------------------
async def test_set_reviewers_returns_what_gitlab_kept(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    ids = [state.user("bob").id, state.user("cid").id]
    kept = (await gitlab_client.set_reviewers(project.id, mr.iid, ids)).reviewers
    assert [u.username for u in kept] == ["bob", "cid"]
    state.free_tier = True
    kept = (await gitlab_client.set_reviewers(project.id, mr.iid, list(reversed(ids)))).reviewers
    assert [u.username for u in kept] == ["cid"]
    assert state.requests[-1].json == {"reviewer_ids": list(reversed(ids))}


async def test_notes_create_edit_list_and_award(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    state.add_note(mr, "ann", "@reviewbot suggest")
    note = await gitlab_client.create_note(project.id, mr.iid, "<!-- reviewbot -->\nSuggested: `@bob`")
    assert note is not None and note.author.username == "reviewbot"
    edited = await gitlab_client.update_note(project.id, mr.iid, note.id, "<!-- reviewbot -->\nSuggested: `@cid`")
    assert edited.body.endswith("`@cid`")
    assert [n.body[:9] for n in await gitlab_client.list_notes(project.id, mr.iid)] == ["@reviewbo", "<!-- revi"]
    assert (await gitlab_client.get_note(project.id, mr.iid, note.id)).body == edited.body
    award = await gitlab_client.award_emoji(project.id, mr.iid, note.id, "eyes")
    assert (award.name, award.awardable_type) == ("eyes", "Note")
    assert (await gitlab_client.award_emoji(project.id, mr.iid, None, "thumbsup")).awardable_type == "MergeRequest"
    assert await gitlab_client.create_note(project.id, mr.iid, "/assign_reviewer @bob") is None


async def test_the_notes_of_a_discussion(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    first = state.add_note(mr, "ann", "Who can look at this?")
    reply = state.add_note(mr, "bob", "Me, tomorrow", reply_to=first)
    state.add_note(mr, "cid", "Unrelated")
    notes = await gitlab_client.discussion_notes(project.id, mr.iid, first.discussion_id)
    assert [(n.id, n.author.username) for n in notes] == [(first.id, "ann"), (reply.id, "bob")]
    assert await gitlab_client.discussion_notes(project.id, mr.iid, "f" * 40) is None


async def test_notes_after_a_note_read_newest_first_and_stop_there(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    older = [state.add_note(mr, "ann", f"before {i}") for i in range(7)]
    command = state.add_note(mr, "bob", "/reviewers help")
    newer = [state.add_note(mr, "cid", f"after {i}") for i in range(4)]
    client = client_for(http_session, url, per_page=3)
    assert [n.id for n in await client.notes_after(project.id, mr.iid, command.id)] == [n.id for n in newer[::-1]]
    assert [(r.query["sort"], r.query["page"]) for r in state.calls("GET", "/notes")] == [("desc", "1"), ("desc", "2")]
    assert len(await client.notes_after(project.id, mr.iid, older[0].id)) == 11


async def test_create_hook_sends_push_events_false(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    state.add_token(state.root, "admin-token")
    hook = await client_for(http_session, url, "admin-token").create_hook(
        project.id, "http://bot.example/webhook", token="hook-secret")
    assert (hook.merge_requests_events, hook.note_events, hook.emoji_events, hook.push_events) == (
        True, True, True, False)
    assert project.hooks[0].token == "hook-secret"
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, url).create_hook(project.id, "http://bot.example/webhook")
    assert caught.value.status == 403 and "Maintainer" in str(caught.value)


# --- retries and errors -----------------------------------------------------------------------------------------
async def test_retries_5xx_then_succeeds_and_counts_errors(simulator: Sim, http_session) -> None:
    state, url = simulator
    team(state)
    errors: list[int] = []
    state.fail_next(2, 500)
    project = await client_for(http_session, url, on_error=errors.append).get_project(1)
    assert project.id == 1 and errors == [500, 500]
    assert [r.status for r in state.calls("GET", "/projects/1")] == [500, 500, 200]


async def test_429_honours_retry_after_capped(simulator: Sim, http_session) -> None:
    state, url = simulator
    team(state)
    state.fail_next(2, 429, retry_after=3600)  # capped to FAST_RETRY.max_retry_after (10 ms)
    assert (await client_for(http_session, url).current_user()).username == "reviewbot"
    assert [r.status for r in state.calls("GET", "/user")] == [429, 429, 200]


async def test_gives_up_after_max_attempts_with_a_clear_error(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.fail_next(10, 503)
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, url).current_user()
    assert caught.value.status == 503 and "after 4 attempts;" in str(caught.value)
    assert len(state.calls("GET", "/user")) == FAST_RETRY.max_attempts
    state._fail_queue.clear()


@pytest.mark.parametrize("status, title", [(502, "502 Bad Gateway"), (504, "504 Gateway Time-out")])
async def test_a_proxys_error_page_is_told_by_its_title(simulator: Sim, http_session, status, title) -> None:
    """A proxy in front of GitLab answers 502/504 with its HTML page, which was pasted whole into the error
    (and so into logs and each dead-lettered event's reason)."""
    state, url = simulator
    state.fail_next(FAST_RETRY.max_attempts, status)
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, url).current_user()
    assert caught.value.status == status and caught.value.message.startswith(f"{title}. GitLab kept failing")
    assert "<" not in str(caught.value) and "nginx" not in str(caught.value)


async def test_post_is_not_retried_on_500(simulator: Sim, http_session) -> None:
    state, url = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    state.fail_next(1, 500)
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, url).create_note(project.id, mr.iid, "hello")
    assert caught.value.status == 500 and mr.notes == []
    state.fail_next(1, 429, retry_after=1)
    assert await client_for(http_session, url).create_note(project.id, mr.iid, "hello") is not None


async def test_wrong_token_says_how_to_fix_and_never_shows_the_token(simulator: Sim, http_session, caplog) -> None:
    _, url = simulator
    caplog.set_level(logging.DEBUG)
    client = client_for(http_session, url, token="glpat-SECRET-VALUE")
    with pytest.raises(GitLabError) as caught:
        await client.current_user()
    message = str(caught.value)
    assert caught.value.status == 401 and "GITLAB_TOKEN is wrong or expired; create a token with api scope" in message
    assert "SECRET" not in message and "SECRET" not in caplog.text and "SECRET" not in repr(client)


async def test_a_proxy_echoing_the_token_does_not_put_it_in_the_error(aiohttp_server, http_session, caplog) -> None:
    """GitLab never echoes the token, but a proxy's or firewall's error page in front of it may: the error's
    text goes to the logs and to `reviewbot events`."""
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"message": f"denied: {dict(request.headers)}"}, status=401)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = await aiohttp_server(app)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, str(server.make_url("")), token="glpat-SECRET-VALUE").current_user()
    assert "denied" in str(caught.value) and "<token>" in str(caught.value)
    assert "SECRET" not in str(caught.value) and "SECRET" not in caplog.text


async def test_a_proxy_page_cut_short_keeps_no_part_of_the_token(aiohttp_server, http_session) -> None:
    """The error text is cut to 200 characters: a cut inside the echoed token kept its first characters."""
    token = "glpat-Zq7Xk2Lw9Rt4Vb8Nm3Pd"

    async def echo(request: web.Request) -> web.Response:
        text = "Forbidden by policy. Request headers follow. " + "." * 118 + \
            f" Authorization: {request.headers.get('Authorization')}"
        return web.Response(text=text, status=403)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    server = await aiohttp_server(app)
    with pytest.raises(GitLabError) as caught:
        await client_for(http_session, str(server.make_url("")), token=token).current_user()
    assert "Forbidden by policy" in str(caught.value) and token[:12] not in str(caught.value)


async def test_token_scopes_where_gitlab_tells_them(simulator: Sim, http_session) -> None:
    state, url = simulator
    state.add_token(state.bot, "read-only", scopes=("read_api",))
    assert await client_for(http_session, url).token_scopes() == ["api"]
    assert await client_for(http_session, url, "read-only").token_scopes() == ["read_api"]
    for version in ((15, 4), (15, 0)):  # "self" read as a token id (401), then no such endpoint (404)
        state.version = version
        assert await client_for(http_session, url).token_scopes() is None
    assert [r.status for r in state.calls("GET", "/personal_access_tokens/self")] == [200, 200, 401, 404]


async def test_a_write_refused_for_the_tokens_scope_says_so(simulator: Sim, http_session) -> None:
    """GitLab's 403 for a read_api token is `{"error":"insufficient_scope", ...}`: not the bot user's access."""
    state, url = simulator
    project = team(state)
    mr = state.open_mr(project, "ann", ["a.py"])
    state.add_token(state.bot, "read-only", scopes=("read_api",))
    client = client_for(http_session, url, "read-only")
    assert (await client.get_mr(project.id, mr.iid)).iid == mr.iid
    with pytest.raises(GitLabError) as caught:
        await client.create_note(project.id, mr.iid, "hello")
    assert caught.value.status == 403 and caught.value.no_scope and mr.notes == []
    assert "GITLAB_TOKEN lacks the api scope" in str(caught.value) and "Developer" not in str(caught.value)


async def test_not_found_error_names_the_fix(simulator: Sim, gitlab_client: GitLabClient) -> None:
    with pytest.raises(GitLabError) as caught:
        await gitlab_client.get_mr("acme/none", 1)
    assert caught.value.not_found and "404 Project Not Found" in str(caught.value) and "member" in str(caught.value)


async def test_unknown_endpoint_is_a_404_and_recorded(simulator: Sim, gitlab_client: GitLabClient) -> None:
    state, _ = simulator
    with pytest.raises(GitLabError) as caught:
        await gitlab_client._get("/projects/1/merge_requests/1/pipelines")
    assert caught.value.status == 404 and "404 Not Found" in str(caught.value)
    assert caught.value.no_route and "no such API endpoint" in str(caught.value)
    assert "check the project id" not in str(caught.value)
    assert [r.path for r in state.unknown] == ["/api/v4/projects/1/merge_requests/1/pipelines"]
    state.unknown.clear()


async def test_unreachable_gitlab_is_retried_then_reported(http_session, refused_port: int) -> None:
    errors: list[int] = []
    client = client_for(http_session, f"http://127.0.0.1:{refused_port}", on_error=errors.append)
    with pytest.raises(GitLabError) as caught:
        await client.current_user()
    assert caught.value.status is None and "check GITLAB_URL" in str(caught.value)
    assert errors == [0] * FAST_RETRY.max_attempts


def test_no_server_can_take_the_refused_port_meanwhile(refused_port: int) -> None:
    """Another test process's server could take a port picked and closed, and answer in GitLab's place."""
    import socket

    with socket.socket() as other, pytest.raises(OSError, match="in use"):
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's servers bind
        other.bind(("127.0.0.1", refused_port))


async def test_flaky_gitlab_still_completes_a_backfill(sim_state: SimState, http_session) -> None:
    from bot.gitlab.simulator import run_simulator

    seeded = seed_project(sim_state, n_people=10, n_merged=60, n_open=0, seed=4)
    sim_state.failure_rate = 0.2
    retry = RetryPolicy(max_attempts=8, base_delay=0.001, max_delay=0.005, max_retry_after=0.005)
    async with run_simulator(sim_state) as (_, url):
        client = client_for(http_session, url, retry=retry, per_page=10)
        iids = [mr.iid async for page in client.iter_merged_mrs(seeded.project.id) for mr in page.items]
        files = [await client.mr_changed_files(seeded.project.id, iid) for iid in iids[:10]]
    assert len(iids) == 60 and all(files)
    assert {r.status for r in sim_state.requests} >= {200, 429, 500}


def test_retry_after_reads_seconds_dates_and_reset() -> None:
    assert _retry_after({"Retry-After": "30"}) == 30.0
    soon = formatdate(time.time() + 120, usegmt=True)
    assert 100 < _retry_after({"Retry-After": soon}) <= 120
    assert 50 < _retry_after({"RateLimit-Reset": str(int(time.time()) + 60)}) <= 60
    assert _retry_after({}) is None


async def test_full_flow_webhook_to_bot_to_gitlab(simulator: Sim, gitlab_client: GitLabClient,
                                                  webhook_receiver: Receiver) -> None:
    """simulator → POST /webhook → (the bot) → simulator: the loop the real bot runs."""
    state, _ = simulator
    project = team(state)
    state.add_hook(project, webhook_receiver.url, token="hook-secret")
    state.open_mr(project, "ann", ["src/a.py"])
    await state.flush_hooks()
    event = webhook_receiver.events("Merge Request Hook")[0].body
    pid, iid = event["project"]["id"], event["object_attributes"]["iid"]
    files = await gitlab_client.mr_changed_files(pid, iid)
    kept = (await gitlab_client.set_reviewers(pid, iid, [state.user("bob").id])).reviewers
    await gitlab_client.create_note(pid, iid, f"Asked `@bob` to review {files[0].path}")
    await state.flush_hooks()
    kinds = [(r.event, r.body["object_attributes"].get("action")) for r in webhook_receiver.received]
    assert [u.username for u in kept] == ["bob"]
    assert kinds == [("Merge Request Hook", "open"), ("Merge Request Hook", "update"), ("Note Hook", "create")]
    assert webhook_receiver.received[-1].body["user"]["username"] == "reviewbot"  # the bot must ignore its own


@pytest.mark.parametrize("content_type, body", [("text/html", "<html>Sign in</html>"),
                                                ("application/json", "{not json")])
async def test_a_page_that_is_not_json_names_the_url_to_fix(aiohttp_server, http_session, content_type, body):
    """A sign-in page or a proxy where GitLab should be (or GITLAB_URL ending in /api/v4): a GitLabError that
    says so, not a pydantic or JSON traceback."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    server = await aiohttp_server(app)
    client = client_for(http_session, str(server.make_url("")).rstrip("/"))
    with pytest.raises(GitLabError, match="not JSON .*GITLAB_URL must be GitLab's base URL"):
        await client.get_project("acme/widgets")


@settings(deadline=None)  # microseconds an example, but a loaded machine can stall one past the 200 ms default
@given(st.text("ab*/", min_size=1, max_size=7), st.text("ab/", max_size=9))
def test_a_branch_protection_wildcard_matches_as_a_regex_of_lazy_runs_would(pattern, branch):
    """`*` is any run of characters, `/` included (GitLab's RefMatcher), found without backtracking."""
    regex = ".*?".join(re.escape(part) for part in pattern.split("*"))
    expected = branch == pattern or ("*" in pattern and re.fullmatch(regex, branch, re.DOTALL) is not None)
    assert ProtectedBranch(id=1, name=pattern).protects(branch) == expected


def test_a_branch_protection_wildcard_of_many_stars_is_matched_at_once():
    assert not ProtectedBranch(id=1, name="*a" * 12 + "*b").protects("a" * 40)  # a regex took minutes
