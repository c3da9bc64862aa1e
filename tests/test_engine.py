"""`bot.engine`: per-project recommenders kept up to date from storage, and `bot.suggesting.suggest_for_mr`
against the simulator (eligibility, CODEOWNERS coverage, the domain errors)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from bot.backfill import backfill_project
from bot.comment import NO_ELIGIBLE, NO_FILES, NO_HISTORY
from bot.config import ProjectSettings
from bot.engine import Engine
from bot.gitlab.models import Member
from bot.gitlab.sim_model import SimDiff
from bot.storage import Storage
from bot.suggesting import MRFacts, boost_owners, explain_person, owner_usernames, suggest_for_mr
from graph.codeowners import parse_codeowners
from graph.model import Change, Suggestion
from tests.bot_harness import tiny_project

SETTINGS = ProjectSettings()
T0 = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())


def change(i: int, t: int, files=("src/a.py",), reviewer="bob") -> Change:
    return Change(f"!{i}", T0 + t, "ann", (reviewer,), tuple(files))


@pytest.fixture
async def store(sqlite_url):
    storage = Storage(sqlite_url)
    yield storage
    await storage.close()


async def test_recommender_is_built_once_and_caught_up_incrementally(store):
    engine = Engine(store)
    await store.history.upsert(1, [change(i, i * 3600) for i in range(5)])
    async with engine.use(1, SETTINGS) as first:
        assert first.og.changes == 5
    await store.history.upsert(1, [change(5, 6 * 3600, reviewer="cy")])
    async with engine.use(1, SETTINGS) as again:
        assert again is first and again.og.changes == 6
    assert engine.changes_seen(1) == 6


async def test_a_built_project_has_its_paths_edge_blocks_ready(store):
    engine = Engine(store)
    await store.history.upsert(1, [change(i, i * 3600, files=("src/a.py", "doc/b.md")) for i in range(3)])
    async with engine.use(1, SETTINGS) as rec:
        assert sorted(rec.og._derived.blocks) == ["/doc/", "/doc/b.md", "/src/", "/src/a.py"]


async def test_older_rows_rebuild_the_recommender(store):
    engine = Engine(store)
    await store.history.upsert(1, [change(i, 10 * 3600 + i) for i in range(3)])
    async with engine.use(1, SETTINGS) as first:
        pass
    await store.history.upsert(1, [change(99, 0)])  # a backfill filling in the past
    async with engine.use(1, SETTINGS) as rebuilt:
        assert rebuilt is not first and rebuilt.og.changes == 4


async def test_changed_settings_rebuild_and_the_cache_is_bounded(store):
    engine = Engine(store, max_projects=1)
    await store.history.upsert(1, [change(1, 0)])
    await store.history.upsert(2, [change(1, 0)])
    async with engine.use(1, SETTINGS) as first:
        pass
    async with engine.use(1, ProjectSettings(half_life_days=30)) as other:
        assert other is not first
    async with engine.use(2, SETTINGS):
        pass
    assert 2 in engine and 1 not in engine


async def test_add_merged_stores_and_updates_a_cached_graph(store):
    engine = Engine(store)
    await store.history.upsert(1, [change(1, 0)])
    async with engine.use(1, SETTINGS):
        pass
    await engine.add_merged(1, change(2, 60, files=("docs/x.md",)), SETTINGS)
    assert await store.history.count(1) == 2 and engine.changes_seen(1) == 2


def test_boost_moves_owners_up_but_keeps_order_among_equals():
    ranked = [Suggestion("a", 3.0), Suggestion("b", 2.9), Suggestion("c", 1.0), Suggestion("d", 0.0)]
    assert [s.person for s in boost_owners(ranked, {"c"})] == ["a", "b", "c", "d"]
    assert [s.person for s in boost_owners(ranked, {"B"})] == ["b", "a", "c", "d"]


def test_owner_usernames_resolve_users_and_roles_and_groups_or_emails_only_as_resolved():
    members = {name: Member(id=i, username=name, access_level=level)
               for i, (name, level) in enumerate([("Ann", 30), ("max", 40), ("owner", 50), ("zed", 30)])}
    section = parse_codeowners("docs/ @ann @team/docs @@maintainer nobody@example.com\n").owners_for_files(
        ["docs/a.md"])["codeowners"]
    facts = MRFacts(("docs/a.md",), members, frozenset(), {}, None)
    assert owner_usernames(section, facts) == ["Ann"]  # the rest as GitLab resolves them (`bot.owners`)
    group, role, email = section.owners[1], section.owners[2], section.owners[3]
    resolved = replace(facts, owner_users={group: ("ZED", "outsider"), role: ("max",), email: ("ann",)})
    assert owner_usernames(section, resolved) == ["Ann", "zed", "max"]  # non-members left out


@pytest.fixture
async def tiny(simulator, gitlab_client, store):
    state, _ = simulator
    tiny = tiny_project(state)
    await backfill_project(gitlab_client, store, tiny.project.id)
    return tiny


async def suggest(simulator, gitlab_client, store, tiny, files, **kwargs):
    state, _ = simulator
    sim_mr = state.open_mr(tiny.project, tiny.ann, files)
    mr = await gitlab_client.get_mr(tiny.project.id, sim_mr.iid)
    engine = kwargs.pop("engine", None) or Engine(store)
    settings = kwargs.pop("settings", SETTINGS)
    result = await suggest_for_mr(gitlab_client, engine, store, tiny.project.id, mr, settings,
                                  bot_username="reviewbot", **kwargs)
    return result, engine


async def test_suggests_reviewers_of_the_files_with_reasons_and_loads(simulator, gitlab_client, store, tiny):
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m1.py"])
    people = [s.person for s in result.suggestions]
    assert result.cannot is None and people[:2] == ["bob", "cy"]
    assert "ann" not in people and "rep" not in people and "reviewbot" not in people
    assert result.dropped["rep"].startswith("has Reporter access")
    assert result.suggestions[0].reasons and set(result.loads) >= {"bob", "cy"}


async def test_required_codeowners_section_gets_an_owner_without_history(simulator, gitlab_client, store, tiny):
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m1.py", "docs/guide.md"])
    dee = next(s for s in result.suggestions if s.person == "dee")
    assert "Docs" in dee.reasons[0] and any("Docs" in note and "@dee" in note for note in result.notes)


async def test_busy_opted_out_and_excluded_people_are_skipped_with_a_note(simulator, gitlab_client, store, tiny):
    state, _ = simulator
    state.set_busy(tiny.bob)
    await store.optouts.set(tiny.project.id, "cy")
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m2.py"])
    people = [s.person for s in result.suggestions]
    assert people == [] and result.cannot == NO_ELIGIBLE
    assert any("@bob" in n and "Busy" in n for n in result.notes)
    assert any("@cy" in n and "opted out" in n for n in result.notes)


@pytest.mark.parametrize(("status", "said"), [
    ({"emoji": "palm_tree"}, "away (out of office, on leave)"),
    ({"message": "OOO until 3 Dec, ask @cy"}, "away (out of office, on leave)"),
    ({"emoji": "red_circle", "message": "at capacity"}, "at capacity"),
])
async def test_people_whose_status_says_they_are_away_are_skipped(simulator, gitlab_client, store, tiny, status,
                                                                    said):
    """A 🌴 or "OOO" is how most people say they are on holiday (GitLab's own reviewer roulette reads it so,
    and a 🔴 as at capacity); only Busy was honoured, so the bot asked people on holiday."""
    state, _ = simulator
    state.set_status(tiny.bob, **status)
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m1.py"])
    assert "bob" not in [s.person for s in result.suggestions]
    assert any("@bob" in n and said in n for n in result.notes), result.notes
    state.set_status(tiny.bob, message="Back from my vacation!")
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m1.py"])
    assert "bob" in [s.person for s in result.suggestions]


async def test_overloaded_reviewers_are_skipped(simulator, gitlab_client, store, tiny):
    state, _ = simulator
    for i in range(2):
        state.open_mr(tiny.project, tiny.cy, [f"x{i}.py"], reviewers=[tiny.bob])
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m3.py"],
                              settings=ProjectSettings(max_open_reviews=2))
    assert "bob" not in [s.person for s in result.suggestions]
    assert result.dropped["bob"] == "already has 2 open reviews (the limit is 2)"


async def test_a_review_of_this_very_merge_request_is_no_load_against_it(simulator, gitlab_client, store, tiny):
    """bob reviews this MR and one other: at a limit of 2 he is not overloaded here (its comment, edited after a
    push, keeps him), and the column shows the one other review."""
    state, _ = simulator
    state.open_mr(tiny.project, tiny.cy, ["x.py"], reviewers=[tiny.bob])
    sim_mr = state.open_mr(tiny.project, tiny.ann, ["src/core/m3.py"], reviewers=[tiny.bob])
    mr = await gitlab_client.get_mr(tiny.project.id, sim_mr.iid)
    result = await suggest_for_mr(gitlab_client, Engine(store), store, tiny.project.id, mr,
                                  ProjectSettings(max_open_reviews=2), bot_username="reviewbot")
    assert "bob" in [s.person for s in result.suggestions] and result.loads["bob"] == 1
    other, _ = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m3.py"],
                             settings=ProjectSettings(max_open_reviews=2))
    assert other.dropped["bob"] == "already has 2 open reviews (the limit is 2)"


async def test_domain_errors_are_results_not_exceptions(simulator, gitlab_client, store, tiny):
    result, _ = await suggest(simulator, gitlab_client, store, tiny, ["brand/new/file.rs"])
    assert result.cannot == NO_HISTORY and result.suggestions == []
    empty, _ = await suggest(simulator, gitlab_client, store, tiny, [])
    assert empty.cannot == NO_FILES


async def test_renamed_files_count_under_their_new_path(simulator, gitlab_client, store, tiny):
    result, _ = await suggest(simulator, gitlab_client, store, tiny, [SimDiff.renamed("old/x.py", "src/core/m0.py")])
    assert result.change.files == ("src/core/m0.py",) and result.cannot is None


async def test_explain_a_dropped_and_an_unknown_person(simulator, gitlab_client, store, tiny):
    state, _ = simulator
    state.set_busy(tiny.cy)
    result, engine = await suggest(simulator, gitlab_client, store, tiny, ["src/core/m1.py"])
    found, rank, dropped = await explain_person(gitlab_client, engine, tiny.project.id, SETTINGS, result, "cy",
                                                bot_username="reviewbot")
    assert found is not None and found.person == "cy" and dropped == "has set their GitLab status to Busy"
    found, rank, dropped = await explain_person(gitlab_client, engine, tiny.project.id, SETTINGS, result, "bob",
                                                bot_username="reviewbot")
    assert (found.person, rank, dropped) == ("bob", 1, None)
    found, rank, dropped = await explain_person(gitlab_client, engine, tiny.project.id, SETTINGS, result, "zed",
                                                bot_username="reviewbot")
    assert found is None and dropped == "is not a member of this project"


async def test_inactive_history_is_not_suggested(simulator, gitlab_client, store):
    state, _ = simulator
    project = state.add_project("acme/old")
    ann, bob = state.add_user("ann"), state.add_user("bob")
    state.add_member(project, ann)
    state.add_member(project, bob)
    state.add_merged_mr(project, ann, ["a.py"], reviewers=[bob],
                        merged_at=datetime.now(timezone.utc) - timedelta(days=400))
    await backfill_project(gitlab_client, store, project.id)
    sim_mr = state.open_mr(project, ann, ["a.py"])
    mr = await gitlab_client.get_mr(project.id, sim_mr.iid)
    result = await suggest_for_mr(gitlab_client, Engine(store), store, project.id, mr, SETTINGS,
                                  bot_username="reviewbot")
    assert result.suggestions == [] and result.cannot is not None


async def test_using_a_loaded_project_reads_nothing_until_its_refresh_then_three_statements(store):
    """Pinned: the bot takes the lock of a loaded project for every suggestion, so a statement added here is paid
    on each of them (`benchmarks/warm_start.py` times the uses after a warm start)."""
    now = [0.0]
    engine = Engine(store, clock=lambda: now[0])
    await store.history.upsert(1, [change(i, i * 3600) for i in range(5)])
    async with engine.use(1, SETTINGS):
        pass
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for _ in range(3):
        async with engine.use(1, SETTINGS):
            pass
    assert statements == []
    now[0] += engine.refresh_seconds  # nothing new stored: the row count, the feedback and the active model
    async with engine.use(1, SETTINGS):
        pass
    tables = [s.split("FROM", 1)[1].split()[0] for s in statements]
    assert tables == ["history", "feedback", "models"], statements


async def test_a_project_without_history_reads_its_newest_label_learned_in_the_same_three_statements(store):
    """No history row tells the forget of a project without merged MRs: the newest label its recommender learned
    is read with the row count (`reviewbot forget` deleted it if gone), by its id, in the same statement."""
    now = [0.0]
    engine = Engine(store, clock=lambda: now[0])
    await store.feedback.record(2, 7, "bob", "accepted")
    async with engine.use(2, SETTINGS) as rec:
        assert rec.label_mark > 0 and engine.changes_seen(2) == 0
    statements: list[str] = []
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    now[0] += engine.refresh_seconds
    async with engine.use(2, SETTINGS) as same:
        assert same is rec
    tables = [s.split("FROM", 1)[1].split()[0] for s in statements]
    assert tables == ["history", "feedback", "models"] and "feedback" in statements[0], statements
