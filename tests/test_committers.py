"""Code owners GitLab will not accept as approvers because they added commits to the merge request ("Prevent
approvals by users who add commits"): the simulator's `GET /projects/:id/approvals` and
`GET .../merge_requests/:iid/commits` against GitLab's documented shapes, and the suggestion that neither
counts nor adds such an owner for a CODEOWNERS approval (they may still review), all over real HTTP."""
from __future__ import annotations

import logging

import pytest

from bot.approvals import owned_by
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.storage import Storage
from bot.suggesting import explain_person
from tests.bot_harness import Team, suggest_on, suggested, tiny_team

FILES = ["src/core/m1.py"]  # bob and cy reviewed these; dee, jo and kim never did
SETTINGS_KEYS = {"approvers", "approver_groups", "approvals_before_merge", "reset_approvals_on_push",
                 "selective_code_owner_removals", "disable_overriding_approvers_per_merge_request",
                 "merge_requests_author_approval", "merge_requests_disable_committers_approval",
                 "require_password_to_approve", "require_reauthentication_to_approve"}
COMMIT_KEYS = {"id", "short_id", "created_at", "parent_ids", "title", "message", "author_name", "author_email",
               "authored_date", "committer_name", "committer_email", "committed_date", "web_url"}


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    yield storage
    await storage.close()


@pytest.fixture
async def team(simulator, gitlab_client, store) -> Team:
    """The tiny team; jo's address is public."""
    return await tiny_team(simulator[0], gitlab_client, store, public_email="Jo@Corp.example")


def prevent_committers(team: Team, on: bool = True) -> None:
    team.tiny.project.merge_requests_disable_committers_approval = on


def owner_notes(result) -> list[str]:
    return [n for n in result.notes if n.startswith("CODEOWNERS")]


# --- the simulator's endpoints -------------------------------------------------------------------------------------
async def test_the_approval_settings_and_commits_have_gitlabs_shapes(simulator, http_session):
    """As GitLab's docs show them; the rules' eligible approvers leave out whoever made one of the merge
    request's commits (its `committer_email`, any of their addresses) once the project prevents it, and not the
    one who only wrote it."""
    state, url = simulator
    project = state.add_project("acme/app")
    ann, bob, cy = (state.add_user(n) for n in ("ann", "bob", "cy"))
    for user in (ann, bob, cy):
        state.add_member(project, user, 30)
    state.add_approval_rule(project, "Backend", 1, users=[bob, cy])
    mr = state.open_mr(project, ann, ["a.py"])
    state.add_commit(mr, cy, committer=state.commit_email(bob))  # cy wrote it, bob rebased it
    base = f"{url}/api/v4/projects/{project.id}"

    async def get(path: str) -> tuple[int, object]:
        async with http_session.get(base + path, headers={"PRIVATE-TOKEN": state.token}) as response:
            return response.status, await response.json()

    status, settings = await get("/approvals")
    assert status == 200 and set(settings) == SETTINGS_KEYS
    assert settings["merge_requests_disable_committers_approval"] is False
    status, commits = await get(f"/merge_requests/{mr.iid}/commits")
    assert status == 200 and all(COMMIT_KEYS <= set(c) for c in commits) and len(commits) == 2
    assert (commits[0]["author_email"], commits[0]["committer_email"]) == (cy.email, state.commit_email(bob))
    assert state.commit_email(bob).startswith(f"{bob.id}-bob@users.noreply.")
    assert commits[1]["author_email"] == commits[1]["committer_email"] == ann.email  # oldest last
    approvers = lambda body: [u["username"] for u in body["rules"][0]["eligible_approvers"]]  # noqa: E731
    assert approvers((await get(f"/merge_requests/{mr.iid}/approval_state"))[1]) == ["bob", "cy"]
    project.merge_requests_disable_committers_approval = True
    assert (await get("/approvals"))[1]["merge_requests_disable_committers_approval"] is True
    assert approvers((await get(f"/merge_requests/{mr.iid}/approval_state"))[1]) == ["cy"]
    state.version = (12, 0)  # before the field
    assert "merge_requests_disable_committers_approval" not in (await get("/approvals"))[1]
    state.community_edition = True
    assert await get("/approvals") == (404, {"error": "404 Not Found"}) and not state.unknown


# --- the suggestion ------------------------------------------------------------------------------------------------
async def test_a_code_owner_who_added_commits_is_not_added_for_the_approval(team, gitlab_client, store):
    """jo rebased dee's commit: GitLab counts the one who made a commit (its committer), so jo may not approve
    and dee, who only wrote it, may."""
    state, tiny = team.state, team.tiny
    state.add_file(tiny.project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @jo @dee\n")
    mr = state.open_mr(tiny.project, tiny.ann, [*FILES, "docs/a.md"])
    state.add_commit(mr, state.commit_email(tiny.dee), committer="jo@corp.example")
    as_today = await suggest_on(team, gitlab_client, store, mr)
    assert owner_notes(as_today) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @jo."]
    assert not state.calls("GET", "/commits")  # the project lets committers approve: no commit is read
    prevent_committers(team)
    result = await suggest_on(team, gitlab_client, store, mr)
    assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    assert "jo" not in suggested(result)
    assert owned_by("jo", result.facts, suggested(result), "ann") == [
        "They are a code owner of `docs/` (section `Docs`), but GitLab does not accept their approval on this merge "
        "request: they added commits to it."]


async def test_a_private_commit_address_of_another_gitlab_names_nobody_here(team, gitlab_client, store):
    """Commits brought over from another instance (an upstream project on gitlab.com) carry its private commit
    addresses: GitLab reads the id only under its own commit e-mail host, so `<dee's id>-x@users.noreply.gitlab.com`
    is not dee's here, and dee may approve."""
    state, tiny = team.state, team.tiny
    prevent_committers(team)
    mr = state.open_mr(tiny.project, tiny.ann, [*FILES, "docs/a.md"])
    state.add_commit(mr, tiny.ann, committer=f"{tiny.dee.id}-upstream@users.noreply.gitlab.com")
    result = await suggest_on(team, gitlab_client, store, mr)
    assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    assert result.facts.committers == frozenset()  # and no users search was spent on that address
    assert not [c for c in state.calls("GET", "/users") if "noreply" in c.query.get("search", "")]


async def test_a_section_only_committers_own_is_approved_by_gitlab(team, gitlab_client, store):
    """GitLab approves a rule with fewer eligible approvers than it asks; a committer is none."""
    state, tiny = team.state, team.tiny
    prevent_committers(team)
    mr = state.open_mr(tiny.project, tiny.ann, [*FILES, "docs/a.md"])
    state.push_to_mr(mr, ["docs/b.md"], user=tiny.dee)
    tiny.dee.public_email = "dee@example.com"
    result = await suggest_on(team, gitlab_client, store, mr)
    assert owner_notes(result) == [
        "CODEOWNERS section `Docs` asks for 1 approval, but none of its owners can approve (active project members "
        "other than the author and those who added commits): GitLab approves it automatically."]
    assert "dee" not in suggested(result)


async def test_a_committer_still_reviews_but_does_not_count_for_the_approval(team, gitlab_client, store):
    """Reviewing is not approving: bob, ranked first, stays suggested; another owner is added to approve."""
    state, tiny = team.state, team.tiny
    state.add_file(tiny.project, ".gitlab/CODEOWNERS", "[Src][1]\nsrc/ @bob @kim\n")
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    assert owner_notes(await suggest_on(team, gitlab_client, store, mr)) == [
        "CODEOWNERS section `Src` needs 1 approval: @bob can give it."]
    prevent_committers(team)
    state.add_commit(mr, state.commit_email(tiny.bob))
    result = await suggest_on(team, gitlab_client, store, mr)
    assert "bob" in suggested(result) and "kim" in suggested(result)
    assert owner_notes(result) == ["CODEOWNERS section `Src` needs 1 approval: added code owner @kim."]
    why = await explain_person(gitlab_client, Engine(store), tiny.project.id, ProjectSettings(), result, "bob",
                               bot_username="reviewbot")
    assert why[0] is not None  # suggested, as a reviewer


async def test_settings_the_token_may_not_read_leave_committers_counted_and_are_asked_hourly(
        team, gitlab_client, store, caplog):
    """A 403 (or a GitLab without the field) is logged once: the bot suggests as it did before it read the
    setting, and asks again an hour later."""
    caplog.set_level(logging.INFO, logger="bot.lookups")
    state, tiny = team.state, team.tiny
    prevent_committers(team)
    state.fail_path(f"/projects/{tiny.project.id}/approvals", 403)
    engine, now = Engine(store), [0.0]
    engine.recent.clock = lambda: now[0]
    mr = state.open_mr(tiny.project, tiny.ann, [*FILES, "docs/a.md"])
    state.add_commit(mr, state.commit_email(tiny.dee))
    for _ in range(2):
        result = await suggest_on(team, gitlab_client, store, mr, engine)
        assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    assert len(state.calls("GET", f"/projects/{tiny.project.id}/approvals")) == 1 and not state.calls("GET", "/commits")
    assert caplog.text.count("committers' approval setting not readable") == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    state.broken_paths.clear()
    state.version = (12, 0)
    now[0] = 3601.0
    for _ in range(2):
        result = await suggest_on(team, gitlab_client, store, mr, engine)
        assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    assert len(state.calls("GET", f"/projects/{tiny.project.id}/approvals")) == 2
    assert caplog.text.count("GitLab does not say whether committers may approve") == 1
    state.version = (17, 0)
    now[0] = 7202.0
    result = await suggest_on(team, gitlab_client, store, mr, engine)
    assert owner_notes(result)[0].startswith("CODEOWNERS section `Docs` asks for 1 approval, but none")


async def test_a_regular_rule_follows_gitlabs_eligible_approvers(team, gitlab_client, store):
    """GitLab's own list leaves committers out already: the bot asks the others."""
    state, tiny = team.state, team.tiny
    prevent_committers(team)
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee, "kim"])
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    state.add_commit(mr, state.commit_email(tiny.dee))
    result = await suggest_on(team, gitlab_client, store, mr)
    assert [n for n in result.notes if n.startswith("Approval rule")] == [
        "Approval rule `Backend` needs 1 approval: added approver @kim."]
