"""GitLab's merge request approval rules (Premium) honoured as CODEOWNERS sections are: the simulator's
`GET .../approval_state` against GitLab's documented shape, the client, the suggestion that covers each
regular rule still short of approvals, and the comment the running handlers post, all over real HTTP."""
from __future__ import annotations

import logging

import pytest

from bot.backfill import backfill_project
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.gitlab.models import ApprovalState
from bot.storage import Storage
from bot.comment import NO_HISTORY
from bot.suggesting import APPROVAL_RULES_UNREADABLE, APPROVERS_ONLY, suggest_for_mr
from tests.bot_harness import Team, handler_env, marker_notes, suggest_on, suggested, tiny_team  # noqa: F401 - fixture

FILES = ["src/core/m1.py"]  # bob and cy reviewed these; dee, jo and kim never did
BUSY = "has set their GitLab status to Busy"
AUTHOR = "is the author of this merge request"
NOT_MEMBER = "is not a member of this project"


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    yield storage
    await storage.close()


@pytest.fixture
async def team(simulator, gitlab_client, store) -> Team:
    return await tiny_team(simulator[0], gitlab_client, store)


async def suggest(team: Team, gitlab_client, store, *files: str, mr=None, engine: Engine | None = None):
    """`suggest_on` a merge request of `files` (`FILES` when none) ann opens now, unless `mr` is given."""
    sim_mr = mr or team.state.open_mr(team.tiny.project, team.tiny.ann, list(files) or FILES)
    return await suggest_on(team, gitlab_client, store, sim_mr, engine)


def rule_notes(result) -> list[str]:
    return [n for n in result.notes if n.startswith("Approval rule")]


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


# --- the suggestion ------------------------------------------------------------------------------------------------
async def test_a_rules_eligible_approver_is_added_to_the_suggestion(team, gitlab_client, store):
    """A team with "Backend: 1 approval from @dee, @jo" expects someone who can give it among those suggested,
    as for a CODEOWNERS section: dee and jo never reviewed these files, so the ranking alone names neither."""
    state, tiny = team.state, team.tiny
    before = await suggest(team, gitlab_client, store)
    assert not {"dee", "jo"} & set(suggested(before)) and rule_notes(before) == []
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee, "jo"])
    result = await suggest(team, gitlab_client, store)
    assert rule_notes(result) == ["Approval rule `Backend` needs 1 approval: added approver @dee."]
    [dee] = [s for s in result.suggestions if s.person == "dee"]
    assert dee.reasons[0] == "approver: rule `Backend` needs their approval"
    assert suggested(result)[:len(suggested(before))] == suggested(before) and "jo" not in suggested(result)


async def test_a_rule_someone_suggested_can_meet_adds_nobody(team, gitlab_client, store):
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.bob, tiny.cy, "kim"])
    result = await suggest(team, gitlab_client, store)
    assert rule_notes(result) == ["Approval rule `Backend` needs 1 approval: @bob, @cy can give it."]
    assert "kim" not in suggested(result)


async def test_approvals_already_given_count_and_an_approved_rule_asks_nothing(team, gitlab_client, store):
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Docs", 1, users=[tiny.dee])
    state.add_approval_rule(tiny.project, "Pair", 2, users=[tiny.dee, "jo", "kim"])
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    state.approve(mr, tiny.dee)
    result = await suggest(team, gitlab_client, store, mr=mr)
    assert rule_notes(result) == ["Approval rule `Pair` needs 1 more approval: added approver @jo."]
    assert "dee" not in suggested(result) and "kim" not in suggested(result)  # dee gave theirs; one more is enough


async def test_a_rule_only_the_author_could_approve_is_approved_by_gitlab(team, gitlab_client, store):
    """GitLab leaves the author out of the eligible approvers (approving one's own merge request is off by
    default) and approves a rule with fewer of them than it asks: the comment says so, as for CODEOWNERS.
    Where the project lets authors approve, the rule waits for the author, whom the bot does not suggest."""
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Mine", 1, users=[tiny.ann])
    state.add_approval_rule(tiny.project, "Pair", 2, users=[tiny.ann, tiny.dee])
    result = await suggest(team, gitlab_client, store)
    assert rule_notes(result) == [
        "Approval rule `Mine` asks for 1 approval, but none of the people it names can approve (active users other "
        "than the author): GitLab approves it automatically.",
        "Approval rule `Pair` asks for 2 approvals, but only 1 of the people it names can approve (active users "
        "other than the author): GitLab approves it automatically."]
    assert "dee" not in suggested(result)
    tiny.project.merge_requests_author_approval = True
    again = await suggest(team, gitlab_client, store)
    assert rule_notes(again)[0] == ("Approval rule `Mine` needs 1 approval from @ann, but they cannot be suggested "
                                    f"right now (`@ann` {AUTHOR}; GitLab still requires the approval).")


async def test_an_older_gitlab_waits_for_every_approver_of_a_rule_asking_more_and_they_are_asked(
        team, gitlab_client, store):
    """GitLab before gitlab-org/gitlab!117557 (spring 2023) approved a rule by itself only when nobody was left
    to give it: one asking more approvals than it has approvers waited for each of them (`approved` false). The
    bot trusts GitLab's `approved`: it asks them instead of saying GitLab approves the rule."""
    state, tiny = team.state, team.tiny
    state.version = (15, 11)
    state.add_approval_rule(tiny.project, "Pair", 2, users=[tiny.dee, "jo", "kim"])
    state.add_approval_rule(tiny.project, "Docs", 2, users=[tiny.dee])
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    state.approve(mr, "jo")
    result = await suggest(team, gitlab_client, store, mr=mr)
    assert rule_notes(result) == [
        "Approval rule `Pair` needs 1 more approval: added approver @dee.",
        "Approval rule `Docs` needs 1 approval: @dee can give it."]
    state.approve(mr, tiny.dee)
    assert rule_notes(await suggest(team, gitlab_client, store, mr=mr)) == []  # each approver of Docs approved
    state.version = (16, 0)
    later = state.open_mr(tiny.project, tiny.ann, FILES)
    state.approve(later, "jo")
    assert rule_notes(await suggest(team, gitlab_client, store, mr=later)) == [
        "Approval rule `Pair` needs 1 more approval: added approver @dee.",
        "Approval rule `Docs` asks for 2 approvals, but only 1 of the people it names can approve (active users "
        "other than the author): GitLab approves it automatically."]


async def test_a_codeowners_section_only_the_author_owns_waits_for_them_where_authors_may_approve(
        team, gitlab_client, store):
    """GitLab leaves the author out of a code owner rule's approvers only while "Prevent approval by author" is
    on. Where it is off, GitLab's rules list the author among their eligible approvers and GitLab waits for the
    author's approval: the comment must not say GitLab approves the section by itself."""
    state, tiny = team.state, team.tiny
    state.add_file(tiny.project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @ann\n")
    state.add_approval_rule(tiny.project, "docs/", 1, users=[tiny.ann], rule_type="code_owner", section="Docs")
    owner_notes = lambda result: [n for n in result.notes if n.startswith("CODEOWNERS")]  # noqa: E731
    default = await suggest(team, gitlab_client, store, *FILES, "docs/a.md")
    assert owner_notes(default) == [
        "CODEOWNERS section `Docs` asks for 1 approval, but none of its owners can approve (active project members "
        "other than the author): GitLab approves it automatically."]
    tiny.project.merge_requests_author_approval = True
    allowed = await suggest(team, gitlab_client, store, *FILES, "docs/a.md")
    assert owner_notes(allowed) == [
        "CODEOWNERS section `Docs` needs 1 approval from @ann, but they cannot be suggested right now "
        f"(`@ann` {AUTHOR}; GitLab still requires the approval)."]


async def test_a_rule_nobody_can_review_for_right_now_is_said(team, gitlab_client, store):
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Docs", 1, users=[tiny.dee, "jo"])
    state.set_busy(tiny.dee)
    state.set_busy("jo")
    result = await suggest(team, gitlab_client, store)
    assert rule_notes(result) == [
        "Approval rule `Docs` needs 1 approval from @dee, @jo, but none of them can be suggested right now "
        f"(`@dee` {BUSY}; `@jo` {BUSY}; GitLab still requires the approval)."]


async def test_a_rules_group_stands_for_its_members_and_outsiders_are_named_not_asked(team, gitlab_client, store):
    """GitLab counts a rule group's members who are no project members among its eligible approvers: the bot
    cannot ask them, and says why when nobody else can give the approval."""
    state, tiny = team.state, team.tiny
    backend = state.add_group("backend")
    outsider = state.add_user("zed")
    for user in ("kim", outsider):
        state.add_group_member(backend, user, 30)
    state.add_approval_rule(tiny.project, "Backend", 1, groups=[backend])
    result = await suggest(team, gitlab_client, store)
    assert rule_notes(result) == ["Approval rule `Backend` needs 1 approval: added approver @kim."]
    state.set_busy("kim")
    again = await suggest(team, gitlab_client, store)
    assert rule_notes(again) == [
        "Approval rule `Backend` needs 1 approval from @kim, @zed, but none of them can be suggested right now "
        f"(`@kim` {BUSY}; `@zed` {NOT_MEMBER}; GitLab still requires the approval)."]


async def test_code_owner_and_any_approver_rules_are_left_to_codeowners_and_the_ranking(team, gitlab_client, store):
    """GitLab lists a `code_owner` rule per matched CODEOWNERS entry: the CODEOWNERS logic covers it, once. Any
    eligible member meets the `any_approver` rule, and everyone suggested is one."""
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "docs/", 1, users=[tiny.dee], rule_type="code_owner", section="Docs")
    state.add_approval_rule(tiny.project, "All Members", 2, rule_type="any_approver")
    result = await suggest(team, gitlab_client, store, *FILES, "docs/a.md")
    assert [n for n in result.notes if "approval" in n] == [
        "CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]


async def test_one_person_covers_a_codeowners_section_and_a_rule(team, gitlab_client, store):
    """jo owns the docs with dee and is the rule's only approver: asking jo alone meets both."""
    state, tiny = team.state, team.tiny
    state.add_file(tiny.project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @dee @jo\n")
    state.add_approval_rule(tiny.project, "Writers", 1, users=["jo"])
    result = await suggest(team, gitlab_client, store, *FILES, "docs/a.md")
    assert [n for n in result.notes if "approval" in n] == [
        "CODEOWNERS section `Docs` needs 1 approval: added code owner @jo.",
        "Approval rule `Writers` needs 1 approval: @jo can give it."]
    assert "dee" not in suggested(result)


async def test_a_merge_requests_own_rules_are_what_counts(team, gitlab_client, store):
    """Rules are copied onto every merge request and editable there: GitLab reports the merge request's."""
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee])
    mr = state.open_mr(tiny.project, tiny.ann, FILES)
    state.own_approval_rules(mr)[0].user_ids = [state.user("kim").id]
    result = await suggest(team, gitlab_client, store, mr=mr)
    assert rule_notes(result) == ["Approval rule `Backend` needs 1 approval: added approver @kim."]


async def test_many_rules_are_listed_twenty_and_counted(team, gitlab_client, store):
    state, tiny = team.state, team.tiny
    for i in range(23):
        state.add_approval_rule(tiny.project, f"R{i}", 1, users=[tiny.dee])
    result = await suggest(team, gitlab_client, store)
    assert len(rule_notes(result)) == 20 and result.notes[-1] == "… and 3 more approval rules not listed here."


# --- GitLab without the rules --------------------------------------------------------------------------------------
async def test_free_tier_and_community_edition_cost_at_most_one_request_and_change_nothing(team, gitlab_client, store,
                                                                                         caplog):
    """GitLab.com Free answers no rules (one request each time); the Community Edition has no such endpoint (one
    request, then none for as long as the client lives). Neither is a failure, and the suggestion is as without
    approval rules."""
    caplog.set_level(logging.INFO)
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee])
    state.free_tier = True
    free = await suggest(team, gitlab_client, store)
    assert rule_notes(free) == [] and "dee" not in suggested(free)
    assert [r.status for r in state.calls("GET", "/approval_state")] == [200]
    state.community_edition = True
    for _ in range(2):
        ce = await suggest(team, gitlab_client, store)
        assert rule_notes(ce) == [] and "dee" not in suggested(ce)
    assert [r.status for r in state.calls("GET", "/approval_state")] == [200, 404]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_token_refused_the_rules_is_asked_again_only_an_hour_later(team, gitlab_client, store, caplog):
    """A fine-grained token without `read_merge_request_approval_state` gets 403: logged once, no failure, and
    not asked again for the project for an hour."""
    caplog.set_level(logging.INFO, logger="bot.lookups")
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee])
    state.fail_path("/approval_state", 403)
    engine, now = Engine(store), [0.0]
    engine.recent.clock = lambda: now[0]
    for _ in range(2):
        result = await suggest(team, gitlab_client, store, engine=engine)
        assert rule_notes(result) == [] and result.suggestions
    assert len(state.calls("GET", "/approval_state")) == 1
    assert "approval rules not readable with the bot's token" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    state.broken_paths.clear()
    now[0] = 3601.0
    again = await suggest(team, gitlab_client, store, engine=engine)
    assert rule_notes(again) == ["Approval rule `Backend` needs 1 approval: added approver @dee."]


async def test_gitlab_failing_on_the_rules_alone_leaves_them_out_this_time(team, gitlab_client, store, caplog):
    caplog.set_level(logging.WARNING, logger="bot.lookups")
    state, tiny = team.state, team.tiny
    state.add_approval_rule(tiny.project, "Backend", 1, users=[tiny.dee])
    state.fail_path("/approval_state", 500)
    result = await suggest(team, gitlab_client, store)
    assert result.suggestions and APPROVAL_RULES_UNREADABLE in result.notes and rule_notes(result) == []
    assert "approval rules not readable this time" in caplog.text and state.token not in caplog.text
    state.broken_paths.clear()
    again = await suggest(team, gitlab_client, store)
    assert rule_notes(again) == ["Approval rule `Backend` needs 1 approval: added approver @dee."]


# --- the comment the handlers post ---------------------------------------------------------------------------------
async def test_the_comment_names_the_rule_and_whom_it_needs(handler_env):
    env = await handler_env()
    env.state.add_member(env.tiny.project, env.state.add_user("jo"), 30)
    env.state.add_approval_rule(env.tiny.project, "Back`end @all", 1, users=[env.tiny.dee])
    env.state.add_approval_rule(env.tiny.project, "Core", 1, users=[env.tiny.bob, env.tiny.cy])
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "- Approval rule ``Back`end @all`` needs 1 approval: added approver `@dee`." in comment.body
    assert "- Approval rule `Core` needs 1 approval: `@bob`, `@cy` can give it." in comment.body
    assert "| `@dee`" in comment.body and "approver: rule ``Back`end @all`` needs their approval" in comment.body
    assert len(env.state.calls("GET", f"/merge_requests/{mr.iid}/approval_state")) == 1


async def test_a_free_tier_comment_says_nothing_of_rules(handler_env):
    env = await handler_env()
    env.state.free_tier = True
    env.state.add_approval_rule(env.tiny.project, "Backend", 1, users=[env.tiny.dee])
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, FILES)
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "Approval rule" not in comment.body and "`@dee`" not in comment.body and "`@bob`" in comment.body
    assert [r.status for r in env.state.calls("GET", "/approval_state")] == [200]


# --- files without history -----------------------------------------------------------------------------------------
async def test_a_new_project_names_whom_its_approvals_need_each_with_the_reason(simulator, gitlab_client, store):
    """A project's first merge request touches no file with history: "no history" alone hid the code owner and
    the rule's approver GitLab will wait for. They are suggested, each with why, and the comment says why no
    one else is."""
    state, _ = simulator
    project = state.add_project("acme/new")
    state.protect_branch(project, project.default_branch, code_owner_approval_required=True)
    ann, bob, jo = (state.add_user(n) for n in ("ann", "bob", "jo"))
    for user in (ann, bob, jo):
        state.add_member(project, user, 30)
    state.add_file(project, ".gitlab/CODEOWNERS", "[Src][1]\nsrc/ @bob\n")
    state.add_approval_rule(project, "Ops", 1, users=[jo])
    await backfill_project(gitlab_client, store, project.id)
    mr = await gitlab_client.get_mr(project.id, state.open_mr(project, ann, ["src/a.py"]).iid)
    result = await suggest_for_mr(gitlab_client, Engine(store), store, project.id, mr, ProjectSettings(),
                                  bot_username="reviewbot")
    assert result.cannot is None and [(s.person, s.reasons[0]) for s in result.suggestions] == [
        ("bob", "code owner: section `Src` needs their approval"), ("jo", "approver: rule `Ops` needs their approval")]
    assert result.notes[0] == APPROVERS_ONLY
    plain = await gitlab_client.get_mr(project.id, state.open_mr(project, ann, ["lib/b.py"]).iid)
    state.own_approval_rules(state.mr(project, plain.iid))[0].approvals_required = 0
    nothing = await suggest_for_mr(gitlab_client, Engine(store), store, project.id, plain, ProjectSettings(),
                                   bot_username="reviewbot")
    assert nothing.cannot == NO_HISTORY and nothing.suggestions == []  # nobody's approval asked: as before


async def test_a_change_to_files_without_history_comments_the_approvers_it_needs(handler_env):
    env = await handler_env()
    env.state.add_member(env.tiny.project, env.state.add_user("jo"), 30)
    env.state.add_approval_rule(env.tiny.project, "Ops", 1, users=["jo"])
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["docs/a.md"])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "touches no file with review history" not in comment.body and "| — |" not in comment.body
    assert "| `@dee` (Dee) | code owner: section `Docs` needs their approval |" in comment.body
    assert "| `@jo` (Jo) | approver: rule `Ops` needs their approval |" in comment.body


async def test_approvers_nobody_can_ask_on_files_without_history_are_still_said(handler_env):
    """With no history and everyone the approvals need Busy, the comment said only "no review history": the
    approval GitLab waits for, and who holds it, went unsaid."""
    env = await handler_env()
    env.state.add_member(env.tiny.project, env.state.add_user("jo"), 30)
    env.state.add_approval_rule(env.tiny.project, "Ops", 1, users=["jo"])
    env.state.set_busy("jo")
    env.state.set_busy("dee")
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, ["docs/a.md"])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert "touches no file with review history" in comment.body
    assert "rule `Ops`" in comment.body and "@jo" in comment.body and "Busy" in comment.body, comment.body
