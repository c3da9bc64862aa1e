"""GitLab's merge request approval rules (Premium): the simulator's `GET .../approval_state` against GitLab's
documented shape, and the client, over real HTTP."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from bot.backfill import backfill_project
from bot.gitlab.models import ApprovalState
from bot.gitlab.simulator import SimState
from bot.storage import Storage
from tests.bot_harness import Tiny, tiny_project

FILES = ["src/core/m1.py"]


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    yield storage
    await storage.close()


@dataclass
class Team:
    """The tiny project (its history imported) with two more Developers who never reviewed: jo and kim."""

    state: SimState
    tiny: Tiny


@pytest.fixture
async def team(simulator, gitlab_client, store) -> Team:
    state, _ = simulator
    tiny = tiny_project(state)
    for name in ("jo", "kim"):
        state.add_member(tiny.project, state.add_user(name), 30)
    await backfill_project(gitlab_client, store, tiny.project.id)
    return Team(state, tiny)


# --- the simulator's endpoint --------------------------------------------------------------------------------------
DOCUMENTED_RULE = {"id", "name", "rule_type", "eligible_approvers", "approvals_required", "users", "groups",
                   "contains_hidden_groups", "approved_by", "source_rule", "approved", "overridden"}


async def test_the_approval_state_has_gitlabs_shape(simulator, http_session):
    """As GitLab's docs show it (`approval_rules_overwritten`, `rules` with `eligible_approvers`, `approved_by`,
    `approved`, `source_rule`, `overridden`): eligible approvers are the rule's users and its groups' direct
    members, active, without the author; a merge request's own copy of a rule is overridden once changed."""
    state, url = simulator
    project = state.add_project("acme/app")
    ann, bob, cy, gus = (state.add_user(n) for n in ("ann", "bob", "cy", "gus"))
    for user in (ann, bob, cy, gus):
        state.add_member(project, user, 30)
    state.block_user(gus)
    team = state.add_group("acme/backend")
    for user in (cy, gus):
        state.add_group_member(team, user, 30)
    state.add_approval_rule(project, "Backend", 2, users=[ann, bob], groups=[team])
    mr = state.open_mr(project, ann, ["a.py"])
    state.approve(mr, bob)
    path = f"{url}/api/v4/projects/{project.id}/merge_requests/{mr.iid}/approval_state"

    async def get() -> tuple[int, dict]:
        async with http_session.get(path, headers={"PRIVATE-TOKEN": state.token}) as response:
            return response.status, await response.json()

    status, body = await get()
    [rule] = body["rules"]
    assert status == 200 and set(body) == {"approval_rules_overwritten", "rules"} and DOCUMENTED_RULE <= set(rule)
    assert [u["username"] for u in rule["eligible_approvers"]] == ["bob", "cy"]
    assert [u["username"] for u in rule["approved_by"]] == ["bob"] and rule["approved"] is False
    assert (rule["rule_type"], rule["source_rule"], body["approval_rules_overwritten"]) == ("regular", None, False)
    state.own_approval_rules(mr)[0].approvals_required = 1
    _, body = await get()
    [rule] = body["rules"]
    assert body["approval_rules_overwritten"] and rule["overridden"] and rule["approved"] is True
    assert rule["source_rule"] == {"approvals_required": 2}
    state.free_tier = True  # GitLab.com Free: the Enterprise Edition without Premium answers no rules
    assert await get() == (200, {"approval_rules_overwritten": False, "rules": []})
    state.community_edition = True  # no such route at all
    assert await get() == (404, {"error": "404 Not Found"})
    assert state.requests[-1].status == 404 and not state.unknown


async def test_a_rule_with_fewer_eligible_approvers_than_it_asks_is_approved(simulator, http_session):
    """GitLab's `ApprovalWrappedRule#approved?`: an invalid rule (only the author named) must not block."""
    state, url = simulator
    project = state.add_project("acme/app")
    ann = state.add_user("ann")
    state.add_member(project, ann, 30)
    state.add_approval_rule(project, "Mine", 1, users=[ann])
    mr = state.open_mr(project, ann, ["a.py"])
    async with http_session.get(f"{url}/api/v4/projects/{project.id}/merge_requests/{mr.iid}/approval_state",
                                headers={"PRIVATE-TOKEN": state.token}) as response:
        [rule] = (await response.json())["rules"]
    assert (rule["eligible_approvers"], rule["approved_by"], rule["approved"]) == ([], [], True)


async def test_the_client_reads_the_rules_and_stops_asking_a_gitlab_without_the_endpoint(team, gitlab_client):
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.bob])
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    found = await gitlab_client.mr_approval_state(tiny.project.id, mr.iid)
    assert isinstance(found, ApprovalState) and found.rules[0].name == "Backend"
    assert [u.username for u in found.rules[0].eligible_approvers] == ["bob"] and found.rules[0].approvals_left == 1
    state.community_edition = True
    assert await gitlab_client.mr_approval_state(tiny.project.id, mr.iid) is None
    assert await gitlab_client.mr_approval_state(tiny.project.id, mr.iid) is None
    assert [r.status for r in state.calls("GET", "/approval_state")] == [200, 404]  # asked once, then never
