"""CODEOWNERS `@group`, `@group/subgroup`, top-level `@name` groups and e-mail owners resolved to people
(`bot.owners`), against the simulator over real HTTP: the group and users endpoints, the engine's coverage of
required sections, and one webhook delivered to the running bot."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from bot.backfill import backfill_project
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.models import Group, Namespace, Project, User
from bot.gitlab.sim_model import SimDiff
from bot.gitlab.simulator import SimState
from bot.lookups import Recent
from bot.owners import email_matches, group_linked, owners_to_resolve, resolve_owners
from bot.storage import Storage
from bot.suggesting import suggest_for_mr
from graph.codeowners import parse_codeowners
from tests.bot_harness import SECRET, Tiny, bot_settings, marker_notes, running_bot, settle, tiny_project
from tests.bot_harness import handler_env  # noqa: F401 - fixture
from tests.gitlab_fixtures import FAST_RETRY

CODEOWNERS = """\
[Docs][1]
docs/ @dee
^[Src]
src/ @bob @cy
[Web][1]
web/ @acme/web
[UI][1]
ui/ @acme/web/ui
[Ops][1]
ops/ jo@corp.example nobody@corp.example
[QA][1]
qa/ @qa
[Legal][1]
legal/ @acme/nope
[Other][1]
other/ @other/team
"""
HISTORY = "src/core/m1.py"  # every MR touches a file with history, so ranking (and coverage) runs


@dataclass
class Org:
    """The tiny project inside group `acme`, with groups invited to it, a group that is not, and e-mails."""

    state: SimState
    tiny: Tiny


def build_org(state: SimState) -> Org:
    tiny = tiny_project(state)
    state.add_group("acme")  # the project's own group: no members, so nobody inherits access from it
    web, ui = state.add_group("acme/web"), state.add_group("acme/web/ui")
    people = {name: state.add_user(name) for name in ("eve", "fay", "gus", "hal", "ivy", "kim", "lou")}
    state.block_user(people["gus"])
    state.set_busy(people["hal"])
    for name in ("eve", "gus", "hal"):
        state.add_group_member(web, people[name], 30)
    state.add_group_member(web, tiny.ann, 40)           # the MR author is a group member too
    state.add_group_member(web, people["fay"], 20)      # Reporter in the group: not an approver
    state.add_group_member(ui, people["ivy"], 30)       # direct member of the subgroup only
    state.share_project(tiny.project, web, 30)
    state.share_project(tiny.project, ui, 30)
    qa = state.add_group("qa")
    state.add_group_member(qa, people["kim"], 30)
    state.share_project(tiny.project, qa, 40)
    other = state.add_group("other/team", visibility="internal")  # bob is in it, but it is never invited
    state.add_group_member(other, tiny.bob, 30)
    jo = state.add_user("jo", public_email="Jo@Corp.example")
    state.add_member(tiny.project, jo, 30)
    state.add_member(tiny.project, people["lou"], 30)   # lou's address is private: never found by e-mail
    people["lou"].email = "nobody@corp.example"
    state.add_file(tiny.project, ".gitlab/CODEOWNERS", CODEOWNERS)
    return Org(state, tiny)


@pytest.fixture
async def org(simulator, gitlab_client, store):
    state, _ = simulator
    org = build_org(state)
    await backfill_project(gitlab_client, store, org.tiny.project.id)
    return org


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    yield storage
    await storage.close()


async def suggest(org: Org, gitlab_client, store, *files: str | SimDiff, target_branch: str | None = None):
    sim_mr = org.state.open_mr(org.tiny.project, org.tiny.ann, [HISTORY, *files], target_branch=target_branch)
    mr = await gitlab_client.get_mr(org.tiny.project.id, sim_mr.iid)
    return await suggest_for_mr(gitlab_client, Engine(store), store, org.tiny.project.id, mr, ProjectSettings(),
                                bot_username="reviewbot")


def added_owner(result, section: str) -> str:
    [note] = [n for n in result.notes if f"`{section}`" in n]
    assert "added code owner @" in note, note
    person = note.rsplit("@", 1)[1].rstrip(".")
    [chosen] = [s for s in result.suggestions if s.person == person]
    assert f"section `{section}` needs their approval" in chosen.reasons[0]
    return person


# --- the simulator's endpoints -----------------------------------------------------------------------------------
async def test_group_endpoints_have_gitlabs_shapes_and_pagination(simulator, http_session):
    state, url = simulator
    org = build_org(state)
    headers = {"PRIVATE-TOKEN": state.token}
    async with http_session.get(f"{url}/api/v4/groups/acme%2Fweb%2Fui", headers=headers) as resp:
        group = await resp.json()
    assert resp.status == 200 and group["full_path"] == "acme/web/ui" and group["path"] == "ui"
    assert group["parent_id"] == state.group("acme/web").id
    members_url = f"{url}/api/v4/groups/{group['id']}/members/all?per_page=2"
    async with http_session.get(members_url, headers=headers) as resp:
        first = await resp.json()
        pages = resp.headers
    assert pages["X-Total"] == "6" and pages["X-Next-Page"] == "2" and 'rel="next"' in pages["Link"]
    assert {"id", "username", "state", "access_level", "created_by", "expires_at"} <= set(first[0])
    async with http_session.get(f"{url}/api/v4/groups/{group['id']}/members", headers=headers) as resp:
        assert [m["username"] for m in await resp.json()] == ["ivy"]
    async with http_session.get(f"{url}/api/v4/groups/acme%2Fnope", headers=headers) as resp:
        assert resp.status == 404 and await resp.json() == {"message": "404 Group Not Found"}
    async with http_session.get(f"{url}/api/v4/projects/{org.tiny.project.id}", headers=headers) as resp:
        project = await resp.json()
    assert project["namespace"]["full_path"] == "acme" and project["namespace"]["id"] == state.group("acme").id
    assert {g["group_full_path"]: g["group_access_level"] for g in project["shared_with_groups"]} == {
        "acme/web": 30, "acme/web/ui": 30, "qa": 40}


async def test_project_members_all_include_shared_groups_capped_at_the_share(simulator, http_session):
    state, url = simulator
    org = build_org(state)
    headers = {"PRIVATE-TOKEN": state.token}
    pid = org.tiny.project.id
    async with http_session.get(f"{url}/api/v4/projects/{pid}/members/all?per_page=100", headers=headers) as resp:
        levels = {m["username"]: m["access_level"] for m in await resp.json()}
    assert levels["eve"] == 30 and levels["ann"] == 30 and levels["fay"] == 20 and levels["kim"] == 30
    assert levels["ivy"] == 30 and "bob" in levels and "root" in levels
    async with http_session.get(f"{url}/api/v4/projects/{pid}/members", headers=headers) as resp:
        assert "eve" not in {m["username"] for m in await resp.json()}


async def test_user_search_matches_public_emails_and_any_email_for_an_admin(simulator, http_session):
    state, url = simulator
    build_org(state)
    state.add_token("root", "admin-token")

    async def search(token: str, query: str) -> list[dict]:
        async with http_session.get(f"{url}/api/v4/users", params={"search": query},
                                    headers={"PRIVATE-TOKEN": token}) as resp:
            assert resp.status == 200 and resp.headers["X-Page"] == "1"
            return await resp.json()

    [jo] = await search(state.token, "jo@corp.example")
    assert jo["username"] == "jo" and "email" not in jo and "public_email" not in jo
    assert await search(state.token, "nobody@corp.example") == []
    [lou] = await search("admin-token", "nobody@corp.example")
    assert lou["username"] == "lou" and lou["email"] == "nobody@corp.example"
    assert {u["username"] for u in await search(state.token, "fay")} == {"fay"}


# --- the client ----------------------------------------------------------------------------------------------------
async def test_client_reads_groups_members_and_users(simulator, http_session):
    state, url = simulator
    build_org(state)
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY, per_page=2)
    group = await client.get_group("acme/web")
    assert group is not None and group.full_path == "acme/web"
    assert await client.get_group("acme/nope") is None
    members = await client.list_group_members(group.id)
    assert sorted(m.username for m in members) == ["ann", "eve", "fay", "gus", "hal"]
    assert len(state.calls("GET", f"/groups/{group.id}/members")) == 3  # five direct members, two a page
    assert not state.calls("GET", f"/groups/{group.id}/members/all")
    assert [u.username for u in await client.search_users("jo@corp.example")] == ["jo"]


BUSY = "has set their GitLab status to Busy"


# --- pure helpers --------------------------------------------------------------------------------------------------
def test_owners_to_resolve_are_groups_emails_roles_and_names_that_are_no_member():
    co = parse_codeowners("* @ann @Acme @acme/web jo@x.org @@maintainer\n")
    assert [o.ref for o in owners_to_resolve(co, ["a.py"], {"ANN"})] == [
        "@Acme", "@acme/web", "jo@x.org", "@@maintainer"]
    assert owners_to_resolve(None, ["a.py"], set()) == []


def test_owners_to_resolve_are_capped_so_a_file_naming_thousands_costs_no_thousands_of_calls():
    co = parse_codeowners("*.py " + " ".join(f"@team-{i}" for i in range(5000)) + "\n")
    found = owners_to_resolve(co, ["a.py"], set())
    assert len(found) == 200 and found[0].ref == "@team-0" and found[-1].ref == "@team-199"


def test_a_group_counts_when_it_is_the_projects_group_an_ancestor_or_invited():
    project = Project(id=1, path_with_namespace="acme/web/app", namespace=Namespace(id=9, full_path="acme/web"),
                      shared_with_groups=[{"group_id": 7, "group_full_path": "qa", "group_access_level": 30}])
    linked = {path: group_linked(project, Group(id=gid, full_path=path))
              for gid, path in ((9, "acme/web"), (8, "Acme"), (7, "qa"), (6, "acme/web/ui"), (5, "acme/we"))}
    assert linked == {"acme/web": True, "Acme": True, "qa": True, "acme/web/ui": False, "acme/we": False}
    assert group_linked(None, Group(id=1, full_path="x"))


def test_email_matches_needs_the_address_or_one_hit_without_addresses():
    jo = User(id=1, username="jo", public_email="Jo@x.org")
    other = User(id=2, username="jon", public_email="jon@x.org")
    bare, bare2 = User(id=3, username="al"), User(id=4, username="bo")
    assert email_matches([other, jo], "jo@X.org") == [jo]
    assert email_matches([other], "jo@x.org") == []
    assert email_matches([bare], "al@x.org") == [bare]
    assert email_matches([bare, bare2], "al@x.org") == []


# --- the engine, over HTTP -----------------------------------------------------------------------------------------
async def test_a_required_group_section_gets_an_eligible_group_member(org, gitlab_client, store):
    result = await suggest(org, gitlab_client, store, "web/app.ts")
    assert added_owner(result, "Web") == "eve"
    dropped = result.dropped
    assert dropped["gus"] == "has a blocked account" and "Busy" in dropped["hal"]
    assert dropped["ann"] == "is the author of this merge request" and "fay" not in dropped  # Reporter in group
    people = {s.person for s in result.suggestions}
    assert not people & {"ann", "fay", "gus", "hal"}


async def test_a_nested_subgroup_stands_for_its_direct_members_only(org, gitlab_client, store):
    """GitLab: only a group's direct members are its code owners; eve, in the parent group, is none of ui's."""
    result = await suggest(org, gitlab_client, store, "ui/button.ts")
    assert added_owner(result, "UI") == "ivy"
    assert org.state.calls("GET", "/groups/acme%2Fweb%2Fui")
    assert not [r for r in org.state.calls("GET", "/members/all") if r.path.startswith("/api/v4/groups/")]
    org.state.set_busy("ivy")
    again = await suggest(org, gitlab_client, store, "ui/button.ts")
    [note] = [n for n in again.notes if "`UI`" in n]
    assert note.endswith(f"from @ivy, but they cannot be suggested right now (`@ivy` {BUSY}; GitLab still "
                         "requires the approval).") and "eve" not in {s.person for s in again.suggestions}


async def test_an_email_owner_is_the_user_showing_that_address(org, gitlab_client, store, caplog):
    caplog.set_level(logging.DEBUG, logger="bot.owners")
    result = await suggest(org, gitlab_client, store, "ops/deploy.sh")
    assert added_owner(result, "Ops") == "jo"
    assert "lou" not in {s.person for s in result.suggestions}
    assert any("nobody@corp.example" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)


async def test_a_top_level_group_named_like_a_user(org, gitlab_client, store):
    result = await suggest(org, gitlab_client, store, "qa/plan.md")
    assert added_owner(result, "QA") == "kim"


async def test_unknown_and_uninvited_groups_are_skipped_with_a_log_line(org, gitlab_client, store, caplog):
    """GitLab ignores both groups too: nobody can approve those entries, so GitLab approves them itself."""
    caplog.set_level(logging.INFO, logger="bot.owners")
    result = await suggest(org, gitlab_client, store, "legal/terms.md", "other/x.md")
    assert result.cannot is None and result.suggestions
    for section in ("Legal", "Other"):
        [note] = [n for n in result.notes if f"`{section}`" in n]
        assert note == (f"CODEOWNERS section `{section}` asks for 1 approval, but none of its owners can approve "
                        "(active project members other than the author): GitLab approves it automatically.")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "@acme/nope" in logged and "@other/team" in logged and "nor invited to it" in logged


async def test_answers_are_cached_and_gitlab_errors_skip_the_owner(org, gitlab_client, store, caplog):
    recent = Recent()
    owners = parse_codeowners("* @acme/web jo@corp.example\n").rules[0].owners
    pid = org.tiny.project.id
    first = await resolve_owners(gitlab_client, recent, pid, owners)
    calls = len(org.state.requests)
    assert await resolve_owners(gitlab_client, recent, pid, owners) == first and len(org.state.requests) == calls
    assert set(first[owners[0]]) == {"ann", "eve", "gus", "hal"} and first[owners[1]] == ("jo",)
    org.state.fail_next(3 * FAST_RETRY.max_attempts, 503)  # the project, the group, the e-mail: every try fails
    caplog.set_level(logging.WARNING, logger="bot.owners")
    failed = await resolve_owners(gitlab_client, Recent(), pid, owners)
    assert failed == {} and "GitLab did not answer" in caplog.text  # unknown this time, not "nobody"
    assert org.state.take_failure() is None


# --- one webhook through the running bot -----------------------------------------------------------------------------
async def comment_through_webhook(simulator, gitlab_client, database_url: str, org: Org,
                                  files: list[str]) -> tuple[str, dict[str, int]]:
    """The bot's one comment on a merge request of `files` that ann opens while the bot runs behind the project's
    webhook (its history imported first), and the event queue's depth once the event settled."""
    state, url = simulator
    storage = Storage(database_url)
    try:
        await backfill_project(gitlab_client, storage, org.tiny.project.id)
        async with running_bot(bot_settings(state, url, database_url), storage) as bot:
            state.add_hook(org.tiny.project, bot.url, token=SECRET)
            mr = state.open_mr(org.tiny.project, org.tiny.ann, files)
            depth = await settle(state, storage)
        [comment] = marker_notes(state, mr)
        return comment.body, depth
    finally:
        await storage.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_comment_names_a_group_owner(simulator, gitlab_client, database_url):
    org = build_org(simulator[0])
    body, _ = await comment_through_webhook(simulator, gitlab_client, database_url, org, [HISTORY, "web/app.ts"])
    assert "`@eve`" in body and "`Web`" in body
    assert "gus" not in body and "hal" not in body


# --- GitLab's rules for which file, which paths, which roles and how many owners ------------------------------
def codeowners_file(org: Org, text: str, path: str = ".gitlab/CODEOWNERS") -> None:
    org.state.add_file(org.tiny.project, path, text)


async def test_a_role_stands_for_direct_members_holding_exactly_that_role(org, gitlab_client, store):
    """`@@maintainer` is neither Owners (roles do not include higher ones) nor Maintainers through a group."""
    state = org.state
    for name, level in (("max", 40), ("own", 50)):
        state.add_member(org.tiny.project, state.add_user(name), level)
    leads = state.add_group("leads")
    state.add_group_member(leads, state.add_user("lee"), 40)
    state.share_project(org.tiny.project, leads, 40)  # lee is a Maintainer of the project, but not a direct one
    codeowners_file(org, CODEOWNERS + "[Roles][1]\nroles/ @@maintainer\n")
    result = await suggest(org, gitlab_client, store, "roles/x.py")
    assert added_owner(result, "Roles") == "max"
    assert [r for r in state.calls("GET", f"/projects/{org.tiny.project.id}/members") if r.path.endswith("/members")]
    state.set_busy("max")
    again = await suggest(org, gitlab_client, store, "roles/x.py")
    [note] = [n for n in again.notes if "`Roles`" in n]
    assert note.endswith(f"from @max, but they cannot be suggested right now (`@max` {BUSY}; GitLab still "
                         "requires the approval).")
    assert not {"own", "lee"} & {s.person for s in again.suggestions}


async def test_a_section_needing_two_approvals_gets_two_owners(org, gitlab_client, store):
    codeowners_file(org, "[Pair][2]\npair/ @dee @jo @lou\n")
    result = await suggest(org, gitlab_client, store, "pair/x.py")
    [note] = [n for n in result.notes if "`Pair`" in n]
    assert note == "CODEOWNERS section `Pair` needs 2 approvals: added code owners @dee, @jo."
    assert {"dee", "jo"} <= {s.person for s in result.suggestions}
    org.state.set_busy("jo")
    org.state.set_busy("lou")
    again = await suggest(org, gitlab_client, store, "pair/x.py")
    [note] = [n for n in again.notes if "`Pair`" in n]
    assert note == ("CODEOWNERS section `Pair` needs 2 approvals: added code owner @dee; no other owner can be "
                    f"suggested right now (`@jo` {BUSY}; `@lou` {BUSY}; GitLab still requires the approval).")


async def test_each_matched_entry_of_a_section_needs_its_own_owners_approval(org, gitlab_client, store):
    """GitLab makes one approval rule per matched entry: `docs/` wants @dee and `*.txt` wants @jo, both
    (one approval from either for the section would leave the other rule, and the merge, blocked)."""
    codeowners_file(org, "[Docs]\ndocs/ @dee\n*.txt @jo\n")
    result = await suggest(org, gitlab_client, store, "docs/a.md", "notes.txt")
    assert [n for n in result.notes if "`Docs`" in n] == [
        "CODEOWNERS section `Docs` needs 1 approval for `docs/`: added code owner @dee.",
        "CODEOWNERS section `Docs` needs 1 approval for `*.txt`: added code owner @jo."]
    reasons = {s.person: s.reasons[0] for s in result.suggestions if s.person in ("dee", "jo")}
    assert reasons == {"dee": "code owner: section `Docs` needs their approval for `docs/`",
                       "jo": "code owner: section `Docs` needs their approval for `*.txt`"}


async def test_one_owner_of_several_entries_covers_them_all(org, gitlab_client, store):
    """@jo owns both matched entries: asking jo alone meets both rules, so dee is not asked too."""
    codeowners_file(org, "[Docs]\ndocs/ @dee @jo\n*.txt @jo\n[Ops][2]\nops/ @dee @jo\n[ops]\nops/*.sh @lou\n")
    result = await suggest(org, gitlab_client, store, "docs/a.md", "notes.txt")
    assert [n for n in result.notes if "`Docs`" in n] == [
        "CODEOWNERS section `Docs` needs 1 approval for `docs/`: added code owner @jo.",
        "CODEOWNERS section `Docs` needs 1 approval for `*.txt`: @jo can give it."]
    assert "dee" not in {s.person for s in result.suggestions}
    again = await suggest(org, gitlab_client, store, "ops/run.sh", "ops/x.yml")
    assert [n for n in again.notes if "`Ops`" in n] == [  # each entry keeps the count of its own header
        "CODEOWNERS section `Ops` needs 2 approvals for `ops/`: added code owners @dee, @jo.",
        "CODEOWNERS section `Ops` needs 1 approval for `ops/*.sh`: added code owner @lou."]


async def test_entries_of_a_section_with_the_same_owners_make_one_note(org, gitlab_client, store):
    codeowners_file(org, "[Docs]\ndocs/ @dee\n*.txt @dee\n")
    result = await suggest(org, gitlab_client, store, "docs/a.md", "notes.txt")
    assert [n for n in result.notes if "`Docs`" in n] == [
        "CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]


async def test_an_owner_already_suggested_counts_toward_the_approvals(org, gitlab_client, store):
    codeowners_file(org, "[Core][2]\nsrc/ @bob @dee\n")
    result = await suggest(org, gitlab_client, store)
    [note] = [n for n in result.notes if "`Core`" in n]
    assert note == "CODEOWNERS section `Core` needs 2 approvals: added code owner @dee (@bob can give 1 approval)."


async def test_a_renamed_file_needs_the_owners_of_its_old_path_too(org, gitlab_client, store):
    moved = SimDiff.renamed("docs/guide.md", "misc/guide.md")
    result = await suggest(org, gitlab_client, store, moved)
    assert added_owner(result, "Docs") == "dee"
    assert result.facts.files == (HISTORY, "misc/guide.md")  # the ranking sees where the file lives now


async def test_the_root_codeowners_file_wins_over_docs_and_dot_gitlab(org, gitlab_client, store):
    """GitLab reads the first of CODEOWNERS, docs/CODEOWNERS, .gitlab/CODEOWNERS that exists."""
    codeowners_file(org, "[Docs][1]\ndocs/ @cy\n", "docs/CODEOWNERS")
    result = await suggest(org, gitlab_client, store, "docs/a.md")
    assert "cy" in {s.person for s in result.suggestions} and not added_owner_in(result, "dee")
    codeowners_file(org, "[Docs][1]\ndocs/ @jo\n", "CODEOWNERS")
    again = await suggest(org, gitlab_client, store, "docs/a.md")
    assert added_owner(again, "Docs") == "jo"


async def test_codeowners_is_read_from_the_target_branch_not_a_tag_of_its_name(org, gitlab_client, store):
    """GitLab reads the file at `refs/heads/<target branch>` (`target_branch_ref`): for a bare name git takes a tag
    of that name first, so a tag `main` stood in for the branch."""
    org.state.add_file(org.tiny.project, ".gitlab/CODEOWNERS", "[Docs][1]\ndocs/ @cy\n", ref="refs/tags/main")
    result = await suggest(org, gitlab_client, store, "docs/a.md")
    assert added_owner(result, "Docs") == "dee"


def added_owner_in(result, person: str) -> bool:
    return any(f"added code owner @{person}" in n for n in result.notes)


# --- only where the target branch's protection requires code owner approval -------------------------------------
def owner_notes(result) -> list[str]:
    return [n for n in result.notes if n.startswith("CODEOWNERS")]


async def test_owners_are_asked_only_where_the_branch_protection_requires_their_approval(org, gitlab_client, store):
    """GitLab requires code owners' approval only on a protected branch with "Code owner approval required"
    (by name or wildcard, Premium): elsewhere owners move up the ranking but nobody is added for them."""
    state, project = org.state, org.tiny.project
    state.protect_branch(project, "main")  # still protected, but code owner approval is no longer required
    quiet = await suggest(org, gitlab_client, store, "docs/a.md", "web/app.ts")
    assert owner_notes(quiet) == [] and not {"dee", "eve"} & {s.person for s in quiet.suggestions}
    for ref in ("release/2.0", "feature/x"):
        state.add_file(project, ".gitlab/CODEOWNERS", CODEOWNERS, ref=ref)
    state.protect_branch(project, "release/*", code_owner_approval_required=True)
    released = await suggest(org, gitlab_client, store, "docs/a.md", target_branch="release/2.0")
    assert owner_notes(released) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    unprotected = await suggest(org, gitlab_client, store, "docs/a.md", target_branch="feature/x")
    assert owner_notes(unprotected) == [] and state.calls("GET", "/protected_branches")
    state.free_tier = True  # the setting is Premium's: GitLab shows it false on the free tier
    free = await suggest(org, gitlab_client, store, "docs/a.md", target_branch="release/2.0")
    assert owner_notes(free) == []


@pytest.mark.parametrize("status", [403, 503])
async def test_unreadable_branch_protections_count_as_requiring_owners(org, gitlab_client, store, caplog, status):
    """Older GitLab versions let only Maintainers read branch protections, and GitLab may fail on them: the
    bot then asks the owners as before (one review request too many costs less than a blocked merge request),
    logs why, and the suggestion goes on."""
    org.state.fail_path("/protected_branches", status)
    caplog.set_level(logging.INFO, logger="bot.lookups")
    result = await suggest(org, gitlab_client, store, "docs/a.md")
    assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]
    assert "branch protections not readable" in caplog.text and org.state.token not in caplog.text


async def test_no_branch_protection_is_read_without_owners_to_approve(org, gitlab_client, store):
    await suggest(org, gitlab_client, store, "src/core/m2.py")  # only the optional [Src] section
    assert not org.state.calls("GET", "/protected_branches")


# --- entries no owner can approve ----------------------------------------------------------------------------------
AUTO = "(active project members other than the author): GitLab approves it automatically."


async def test_an_entry_whose_owners_cannot_approve_is_approved_by_gitlab(org, gitlab_client, store):
    """GitLab approves a code owner rule automatically when fewer owners can approve (active project members
    other than the author) than it asks: a blocked owner, the author alone, a member awaiting a seat, two
    approvals and one approver. Owners who can approve but are Busy keep the rule waiting for them."""
    codeowners_file(org, "[Own]\nown/ @gus\n[Mine]\nmine/ @ann\n[Seat]\nseat/ @lou\n[Pair][2]\npair/ @dee @gus\n"
                         "[Busy]\nbusy/ @hal\n")
    org.state.await_seat(org.tiny.project, "lou")
    result = await suggest(org, gitlab_client, store, "own/a.md", "mine/b.md", "seat/s.md", "pair/c.md", "busy/d.md")
    assert owner_notes(result) == [
        f"CODEOWNERS section `Own` asks for 1 approval, but none of its owners can approve {AUTO}",
        f"CODEOWNERS section `Mine` asks for 1 approval, but none of its owners can approve {AUTO}",
        f"CODEOWNERS section `Seat` asks for 1 approval, but none of its owners can approve {AUTO}",
        f"CODEOWNERS section `Pair` asks for 2 approvals, but only 1 of its owners can approve {AUTO}",
        f"CODEOWNERS section `Busy` needs 1 approval from @hal, but they cannot be suggested right now (`@hal` "
        f"{BUSY}; GitLab still requires the approval)."]
    assert "dee" not in {s.person for s in result.suggestions}


async def test_owners_gitlab_could_not_name_are_not_taken_for_nobody(org, gitlab_client, store):
    """A group GitLab did not answer for may have approvers: the bot does not claim GitLab approves alone."""
    codeowners_file(org, "[Web][1]\nweb/ @acme/web\n")
    org.state.fail_path("/groups/acme/web", 503)  # the decoded path
    result = await suggest(org, gitlab_client, store, "web/app.ts")
    assert owner_notes(result) == ["CODEOWNERS section `Web` needs 1 approval from owners the bot could not name "
                                   "(groups, e-mails, roles: GitLab did not answer, or there were too many to look "
                                   "up), but none of them can be suggested right now."]


# --- a CODEOWNERS file GitLab will not give ------------------------------------------------------------------------
UNREADABLE = ("CODEOWNERS could not be read from GitLab this time, so code owners are left out of these "
              "suggestions (`/reviewers` suggests again).")


@pytest.mark.parametrize("status", [500, 403])
async def test_an_unreadable_codeowners_file_leaves_owners_out_this_time(org, gitlab_client, store, caplog, status):
    """A 403, or a 5xx for the file while the rest of GitLab answers, no longer fails the event (retried until
    dead-lettered, with no suggestion ever): the bot suggests without CODEOWNERS, says so, keeps no failure."""
    caplog.set_level(logging.WARNING, logger="bot.lookups")
    pid, engine = org.tiny.project.id, Engine(store)
    sim_mr = org.state.open_mr(org.tiny.project, org.tiny.ann, [HISTORY, "docs/a.md"])
    mr = await gitlab_client.get_mr(pid, sim_mr.iid)
    org.state.fail_path("/CODEOWNERS/raw", status)
    result = await suggest_for_mr(gitlab_client, engine, store, pid, mr, ProjectSettings(), bot_username="reviewbot")
    assert result.suggestions and owner_notes(result) == [UNREADABLE]
    assert "CODEOWNERS not readable this time" in caplog.text and f"status={status}" in caplog.text
    assert org.state.token not in caplog.text
    org.state.broken_paths.clear()
    again = await suggest_for_mr(gitlab_client, engine, store, pid, mr, ProjectSettings(), bot_username="reviewbot")
    assert owner_notes(again) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]


async def test_a_codeowners_file_that_is_not_utf8_is_read_as_gitlab_reads_it(org, gitlab_client, store):
    """GitLab serves a text file that is not UTF-8 (saved as Latin-1, say) as `text/plain; charset=utf-8` all the
    same: the bot failed on it (UnicodeDecodeError, the event retried until dead-lettered, no suggestion ever)."""
    codeowners_file(org, "# Dokumentation: Jürgen\n[Docs][1]\ndocs/ @dee\n".encode("latin-1"))
    result = await suggest(org, gitlab_client, store, "docs/a.md")
    assert owner_notes(result) == ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee."]


async def test_a_codeowners_file_gitlab_takes_for_binary_names_no_owners(org, gitlab_client, store):
    """A NUL byte in the first 8,000 bytes (a file saved as UTF-16, say) makes GitLab read the file as empty; it
    is still the file found first, so `.gitlab/CODEOWNERS` is not read instead."""
    codeowners_file(org, "[Docs][1]\ndocs/ @cy\n".encode("utf-16"), "CODEOWNERS")
    result = await suggest(org, gitlab_client, store, "docs/a.md")
    assert owner_notes(result) == []  # `.gitlab/CODEOWNERS` would have `[Docs]` ask @dee
    assert not any("code owner" in reason for s in result.suggestions for reason in s.reasons)


async def test_a_gitlab_outage_still_fails_the_suggestion_to_be_retried(org, gitlab_client, store):
    pid = org.tiny.project.id
    sim_mr = org.state.open_mr(org.tiny.project, org.tiny.ann, [HISTORY, "docs/a.md"])
    mr = await gitlab_client.get_mr(pid, sim_mr.iid)
    org.state.fail_path("", 503)  # every request
    with pytest.raises(GitLabError) as failed:
        await suggest_for_mr(gitlab_client, Engine(store), store, pid, mr, ProjectSettings(), bot_username="reviewbot")
    assert failed.value.status == 503


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_comment_is_posted_when_codeowners_cannot_be_read(simulator, gitlab_client, database_url):
    org = build_org(simulator[0])
    simulator[0].fail_path("/CODEOWNERS/raw", 500)
    body, depth = await comment_through_webhook(simulator, gitlab_client, database_url, org, [HISTORY, "docs/a.md"])
    assert "could not be read from GitLab this time" in body and depth.get("dead", 0) == 0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_latin_1_codeowners_file_gets_its_comment_through_the_webhook(simulator, gitlab_client, database_url):
    """The webhook path of `test_a_codeowners_file_that_is_not_utf8_is_read_as_gitlab_reads_it`: the event used
    to fail on the file at every try and end dead, and the merge request got no comment."""
    org = build_org(simulator[0])
    codeowners_file(org, "# J\u00fcrgen\n[Docs][1]\ndocs/ @dee\n".encode("latin-1"))
    body, depth = await comment_through_webhook(simulator, gitlab_client, database_url, org, [HISTORY, "docs/a.md"])
    assert "needs 1 approval: added code owner `@dee`" in body and depth.get("dead", 0) == 0


async def test_an_e_mail_nobody_shows_is_not_taken_for_an_owner_gitlab_approves_for(org, gitlab_client, store):
    """GitLab matches any confirmed address, private ones too, which the API shows only to an admin: an address
    the bot finds on nobody may well be a member's, so it claims no automatic approval for its entry."""
    codeowners_file(org, "[Mail]\nmail/ nobody@corp.example\n")
    result = await suggest(org, gitlab_client, store, "mail/a.txt")
    assert not any("approves it automatically" in note for note in owner_notes(result))


async def test_an_owner_the_team_set_aside_is_named_and_the_approval_gitlab_still_requires_said(
        org, gitlab_client, store):
    """`/reviewers exclude @dee` takes dee off the suggestions, not off GitLab's rule: the note says why dee is
    not suggested and that the approval is still required (not that nobody "can review")."""
    codeowners_file(org, "[Docs][1]\ndocs/ @dee\n")
    sim_mr = org.state.open_mr(org.tiny.project, org.tiny.ann, [HISTORY, "docs/a.md"])
    mr = await gitlab_client.get_mr(org.tiny.project.id, sim_mr.iid)
    result = await suggest_for_mr(gitlab_client, Engine(store), store, org.tiny.project.id, mr, ProjectSettings(),
                                  bot_username="reviewbot", extra_excluded=("dee",))
    assert owner_notes(result) == [
        "CODEOWNERS section `Docs` needs 1 approval from @dee, but they cannot be suggested right now (`@dee` was "
        "excluded from this merge request with `/reviewers exclude`; GitLab still requires the approval)."]


async def test_a_change_matching_many_rules_lists_twenty_of_them(org, gitlab_client, store):
    codeowners_file(org, "".join(f"[S{i}]\ns{i}/ @dee\n" for i in range(25)))
    result = await suggest(org, gitlab_client, store, *(f"s{i}/a.md" for i in range(25)))
    notes = owner_notes(result)
    assert len(notes) == 20 and notes[0] == "CODEOWNERS section `S0` needs 1 approval: added code owner @dee."
    assert result.notes[-1] == "… and 5 more CODEOWNERS approvals not listed here."


async def test_a_section_of_many_entries_names_five_patterns_and_counts_the_others(org, gitlab_client, store):
    """Per-file entries of one section with the same owners make one approval: its note and the reason of each
    owner added for it name five patterns, then how many more (a thousand long paths, each listed in the note
    and again in every added owner's reason, made a comment GitLab refuses: over 1,000,000 characters)."""
    files = [f"pay/f{i:02d}.py" for i in range(14)]
    codeowners_file(org, "[Pay][2]\n" + "".join(f"/{f} {'@dee @jo' if i % 2 else '@lou @jo'}\n"
                                                for i, f in enumerate(files)))
    result = await suggest(org, gitlab_client, store, *files)
    even = "`/pay/f00.py`, `/pay/f02.py`, `/pay/f04.py`, `/pay/f06.py`, `/pay/f08.py` and 2 more"
    assert owner_notes(result)[0] == f"CODEOWNERS section `Pay` needs 2 approvals for {even}: added code owners " \
        "@jo, @lou."
    assert {s.person: s.reasons[0] for s in result.suggestions}["lou"] == \
        f"code owner: section `Pay` needs their approval for {even}"


async def test_owners_who_cannot_be_suggested_are_named_five_and_counted(org, gitlab_client, store):
    names = [f"m{i}" for i in range(8)]
    for name in names:
        org.state.add_member(org.tiny.project, org.state.add_user(name, busy=True), 30)
    codeowners_file(org, "[Many][1]\nmany/ " + " ".join(f"@{n}" for n in names) + "\n")
    result = await suggest(org, gitlab_client, store, "many/a.py")
    assert owner_notes(result) == [
        "CODEOWNERS section `Many` needs 1 approval from @m0, @m1, @m2, @m3, @m4 and 3 more, but none of them can "
        f"be suggested right now (`@m0` {BUSY}; `@m1` {BUSY}; `@m2` {BUSY}; GitLab still requires the approval)."]


async def test_the_comment_of_a_big_mr_matching_long_per_file_entries_is_posted(handler_env):
    """Every matched pattern listed in the note and again in each added owner's reason made the comment pass
    GitLab's 1,000,000 characters: refused, on this event and every later one of the MR."""
    env = await handler_env()
    for name in ("e0", "e1", "e2", "e3"):
        env.state.add_member(env.tiny.project, env.state.add_user(name), 30)
    files = [f"pay/m{i:03d}/" + "src/main/java/com/acme/payments/" * 30 + f"F{i:03d}.java" for i in range(400)]
    env.state.add_file(env.tiny.project, ".gitlab/CODEOWNERS", "[Payments][2]\n" + "".join(
        f"/{f} {'@e0 @e1' if i % 2 else '@e2 @e3'}\n" for i, f in enumerate(files)))
    mr = env.state.open_mr(env.tiny.project, env.tiny.ann, [HISTORY, *files])
    await env.run()
    [comment] = marker_notes(env.state, mr)
    assert comment.body.count("and 195 more") == 6 and len(comment.body) < 40_000  # two notes, four reasons


async def test_entries_of_one_section_gitlab_approves_alike_make_one_note(handler_env):
    """Nine entries of `[Backend][2]`, each owned by another blocked member: GitLab approves each by itself. One
    note names the section once with its patterns (the first five, then how many more), not nine near-identical
    ones; an entry with another outcome (one owner able to approve) and other sections keep notes of their own."""
    env = await handler_env()
    state, project = env.state, env.tiny.project
    for i in range(10):
        user = state.add_user(f"x{i}")
        state.add_member(project, user, 30)
        state.block_user(user)
    entries = "".join(f"src/a{i}/ @x{i}\n" for i in range(9))
    state.add_file(project, ".gitlab/CODEOWNERS", f"[Backend][2]\n{entries}src/b/ @x9 @bob\n[Docs][1]\ndocs/ @x0\n")
    files = [HISTORY, *(f"src/a{i}/f.py" for i in range(9)), "src/b/f.py", "docs/a.md"]
    mr = state.open_mr(project, env.tiny.ann, files)
    await env.run()
    [comment] = marker_notes(state, mr)
    notes = [line[2:] for line in comment.body.splitlines() if line.startswith("- CODEOWNERS")]
    assert notes == [
        "CODEOWNERS section `Backend` asks for 2 approvals for `src/a0/`, `src/a1/`, `src/a2/`, `src/a3/`, "
        "`src/a4/` and 4 more, but none of their owners can approve (active project members other than the author): "
        "GitLab approves each automatically.",
        f"CODEOWNERS section `Backend` asks for 2 approvals for `src/b/`, but only 1 of its owners can approve {AUTO}",
        f"CODEOWNERS section `Docs` asks for 1 approval, but none of its owners can approve {AUTO}"]
