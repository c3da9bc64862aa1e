"""Merge requests opened from forks, end to end over real HTTP.

On a public project most outside contributions come from forks: the MR is the target project's (its hooks, notes,
diffs and approvals; GitLab runs MR hooks on the target alone, pushes to the fork's branch included), only
`source_project_id` and `source` name the fork, and its author is often no member. A fork may have a hook to the
bot of its own (GitLab copies none; an admin may add one): the fork's own MRs are another project's, and must stay
apart from the upstream's history even where their iids are the same.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from bot.backfill import backfill_project, change_id
from bot.handlers.notes import ACK_PROBLEM
from bot.storage import Storage
from tests.bot_harness import SECRET, bot_notes, bot_settings, marker_notes, running_bot, settle, tiny_project

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def fork_world(state):
    """The tiny project made public, an outsider (no member) and their fork of it."""
    tiny = tiny_project(state)
    tiny.project.visibility = "public"
    ola = state.add_user("ola")
    return tiny, ola, state.fork_project(tiny.project, ola)


def calls_to(state, project) -> list[str]:
    """The API calls that named `project` by its id."""
    prefix = f"/api/v4/projects/{project.id}/"
    return [f"{r.method} {r.path}" for r in state.requests if f"{r.path}/".startswith(prefix)]


@sqlite_only
async def test_an_outsiders_mr_from_a_fork_from_open_to_history(simulator, database_url):
    """Open, suggest, push to the fork's branch, a command from the author (no member), merge: every call is the
    target project's, the author is never suggested, the merge joins the target's history under the author.
    The fork's own hook and its own MR with the same iid stay the fork's."""
    state, url = simulator
    tiny, ola, fork = fork_world(state)
    storage = Storage(database_url)
    try:
        async with running_bot(bot_settings(state, url, database_url), storage, backfill_wait=2.0) as bot:
            state.add_hook(tiny.project, bot.url, token=SECRET)
            state.add_hook(fork, bot.url, token=SECRET)
            mr = state.open_mr(tiny.project, ola, ["src/core/m1.py"], source_project=fork, source_branch="main")
            await settle(state, storage)
            [comment] = marker_notes(state, mr)
            opened = await storage.suggestions.latest(tiny.project.id, mr.iid)
            state.push_to_mr(mr, ["src/core/m2.py"], user=ola)
            reroll = state.add_note(mr, ola, "/reviewers reroll")
            await settle(state, storage)
            pushed = await storage.suggestions.latest(tiny.project.id, mr.iid)
            upstream_calls = calls_to(state, fork)
            for i in range(mr.iid - 1):  # the fork's own merged MRs, then its own MR with the upstream MR's iid
                state.add_merged_mr(fork, ola, [f"src/core/m{i % 4}.py"], merged_at=state.now() - timedelta(days=3))
            own = state.open_mr(fork, ola, ["src/core/m1.py"], source_branch="experiment")
            await settle(state, storage)
            state.set_reviewers(mr, [tiny.bob], by=tiny.cy)
            state.approve(mr, tiny.bob)
            state.merge_mr(mr, by=tiny.bob)
            state.merge_mr(own, by=ola)
            await settle(state, storage)
        people = [p["username"] for p in opened.people]
        assert people[0] == "bob" and "ola" not in people and opened.author == "ola"
        assert sorted(pushed.files) == ["src/core/m1.py", "src/core/m2.py"] and pushed.id != opened.id
        assert [n.id for n in marker_notes(state, mr)] == [comment.id] and upstream_calls == []
        assert [a.name for a in reroll.awards if a.user_id == state.bot.id] == [ACK_PROBLEM]
        assert any("has no access" in n.body for n in bot_notes(state, mr))
        upstream = {c.id: c for c in await storage.history.load(tiny.project.id)}
        assert len(upstream) == 13 and upstream[change_id(mr.iid)].author == "ola"
        assert upstream[change_id(mr.iid)].reviewers == ("bob",)
        assert set(upstream[change_id(mr.iid)].files) == {"src/core/m1.py", "src/core/m2.py"}
        assert own.iid == mr.iid and len(marker_notes(state, own)) == 1 and "`@bob`" in comment.body
        forks = {c.id: c for c in await storage.history.load(fork.id)}
        assert len(forks) == own.iid and forks[change_id(own.iid)].files == ("src/core/m1.py",)
        events = await storage.events.list_events()
        assert {e.status for e in events} == {"done"}, [(e.kind, e.action, e.last_error) for e in events]
        assert {e.project_id for e in events} == {tiny.project.id, fork.id}
    finally:
        await storage.close()


async def test_backfill_reads_merged_mrs_from_forks_and_from_deleted_forks(simulator, gitlab_client, sqlite_url):
    """Merged MRs from forks are the target project's history like any other, also once the fork is gone
    (GitLab then lists `source_project_id` null), and nothing is asked of the forks."""
    state, _ = simulator
    tiny, ola, fork = fork_world(state)
    uma = state.add_user("uma")
    gone = state.fork_project(tiny.project, uma)
    now = state.now()
    kept = state.add_merged_mr(tiny.project, ola, ["src/core/m1.py"], reviewers=[tiny.bob], approvers=[tiny.bob],
                               merged_at=now - timedelta(days=2), source_project=fork)
    orphan = state.add_merged_mr(tiny.project, uma, ["docs/a.md"], reviewers=[tiny.dee],
                                 merged_at=now - timedelta(days=1), source_project=gone)
    del state.projects[gone.id]
    orphan.source_project_id = None
    storage = Storage(sqlite_url)
    try:
        progress = await backfill_project(gitlab_client, storage, tiny.project.id)
        history = {c.id: c for c in await storage.history.load(tiny.project.id)}
    finally:
        await storage.close()
    assert len(history) == 14 and progress.skipped == 0
    assert (history[change_id(kept.iid)].author, history[change_id(kept.iid)].reviewers) == ("ola", ("bob",))
    assert (history[change_id(orphan.iid)].author, history[change_id(orphan.iid)].files) == ("uma", ("docs/a.md",))
    assert calls_to(state, fork) == calls_to(state, gone) == []
