"""Early reviews through the bot: a suggested person added as reviewer of an open MR (`accepted`) counts as a
review of its files at once, so the next MR on those files already sees it; a removal takes it back, and the
merge does not count it twice.

The path: the update webhook the simulator fires -> `record_reviewer_changes` stores the label -> the engine
learns it at its next use (`Engine._catch_up` -> `bot.learning.new_labels`, which gives the label the MR's
author and files stored with the suggestion it judges -> `replay` -> `LearnedRecommender.learn`).

The project: ann wrote `src/a.c` four times; bob reviewed three of those changes (the last twenty days ago),
cy one (ten days ago); eve, the author of the second MR, has no history. Without the early review cy is second
on eve's MR; with it, first (the counter-case below shows the same MR without it).

Another worker (or this one after a restart without a later snapshot) learns the label alike: the author and
files come from storage, not from the memory of the process that suggested.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from bot.backfill import backfill_project, change_id
from bot.config import Settings
from bot.engine import Engine
from bot.gitlab.sim_model import SimMR, SimProject, SimUser
from bot.gitlab.simulator import SimState
from bot.storage import Storage
from bot.worker import Dispatch
from tests.bot_harness import SECRET, bot_settings, dispatch_outbox, dispatching, event_row, marker_notes

PATH = "src/a.c"
NODE = "/src/a.c"  # the file's node in the ownership graph


@dataclass
class Early:
    """The simulator with the small project (history imported), storage and the real dispatch."""

    state: SimState
    storage: Storage
    dispatch: Dispatch
    settings: Settings
    project: SimProject
    ann: SimUser
    bob: SimUser
    cy: SimUser
    eve: SimUser
    stack: contextlib.AsyncExitStack

    @property
    def pid(self) -> int:
        return self.project.id

    @property
    def engine(self) -> Engine:
        return self.dispatch.args[0].engine

    async def run(self, dispatch: Dispatch | None = None) -> int:
        """Dispatch every queued webhook (and those the bot's own calls queue)."""
        return await dispatch_outbox(self.state, dispatch or self.dispatch)

    async def other_worker(self) -> Dispatch:
        """The dispatch of a second worker process: same storage and GitLab, an engine of its own."""
        return await self.stack.enter_async_context(dispatching(self.settings, self.storage))

    async def labels(self, mr: SimMR) -> list[tuple[str, str]]:
        """(person, label) of the feedback rows stored about `mr`, oldest first, but for who was shown first
        (`suggested`: the load spreading's count, not evidence about the person)."""
        return [(r.person, r.label) for r in await self.storage.feedback.list(self.pid, mr_iid=mr.iid)
                if r.label != "suggested"]

    async def reviews_of_a_c(self, person: str) -> int:
        """How many reviews of `src/a.c` the engine's graph gives `person`, after learning the stored labels."""
        async with self.engine.use(self.pid, self.settings.project_settings(self.pid, None)) as rec:
            edge = rec.og.G[NODE].get("@" + person)
            return edge["rc"] if edge else 0

    def row(self, mr: SimMR, person: str) -> tuple[str, str]:
        """(rank, Why cell) of `person` in the bot's suggestion comment on `mr`."""
        [comment] = marker_notes(self.state, mr)
        [line] = [x for x in comment.body.splitlines() if f"| `@{person}` " in x]
        rank, _, why, _ = [cell.strip() for cell in line.strip("| ").split(" | ")]
        return rank, why


@pytest.fixture
async def early_env(simulator: tuple[SimState, str], sqlite_url: str,
                    gitlab_client: Any) -> AsyncIterator[Callable[..., Awaitable[Early]]]:
    """A factory: `env = await early_env(assign="top1")` builds the project with those [defaults]."""
    state, url = simulator
    stack = contextlib.AsyncExitStack()

    async def make(**defaults: Any) -> Early:
        project = state.add_project("acme/early")
        ann, bob, cy, eve = (state.add_user(n) for n in ("ann", "bob", "cy", "eve"))
        for user in (ann, bob, cy, eve):
            state.add_member(project, user, 30)
        now = datetime.now(timezone.utc)
        for days, reviewer in ((40, bob), (30, bob), (20, bob), (10, cy)):
            state.add_merged_mr(project, ann, [PATH], reviewers=[reviewer], merged_at=now - timedelta(days=days))
        state.auto_hooks = False  # events wait in state.outbox; the test dispatches them
        state.add_hook(project, "http://127.0.0.1:9/not-delivered", token=SECRET)
        storage = Storage(sqlite_url)
        stack.push_async_callback(storage.close)
        await backfill_project(gitlab_client, storage, project.id)
        settings = bot_settings(state, url, sqlite_url, **defaults)
        dispatch = await stack.enter_async_context(dispatching(settings, storage))
        return Early(state, storage, dispatch, settings, project, ann, bob, cy, eve, stack)

    try:
        yield make
    finally:
        await stack.aclose()


CY_BEFORE = "reviewed `src/a.c` once (last 10 days ago); reviewed 1 change under `src/` (last 10 days ago)"
CY_TAKEN = "reviewed `src/a.c` twice (last one today); reviewed 2 changes under `src/` (last one today)"


async def open_first(env: Early) -> SimMR:
    """ann's MR 1 on `src/a.c`, suggested: bob then cy (ann, its author, is left out)."""
    mr1 = env.state.open_mr(env.project, env.ann, [PATH])
    await env.run()
    assert env.row(mr1, "bob")[0] == "1"
    assert env.row(mr1, "cy") == ("2", f"{CY_BEFORE}; reviewed 1 of this author's changes")
    assert await env.reviews_of_a_c("cy") == 1
    return mr1


async def test_a_suggested_reviewer_counts_for_the_next_mr_before_the_merge_and_a_removal_takes_it_back(early_env):
    env = await early_env()
    mr1 = await open_first(env)
    env.state.set_reviewers(mr1, [env.cy], by=env.ann)
    await env.run()
    assert await env.labels(mr1) == [("cy", "accepted")]
    assert await env.reviews_of_a_c("cy") == 2

    mr2 = env.state.open_mr(env.project, env.eve, [PATH])  # MR 1 still open
    await env.run()
    assert env.row(mr2, "cy") == ("1", CY_TAKEN)

    env.state.set_reviewers(mr1, [], by=env.ann)
    await env.run()
    assert await env.labels(mr1) == [("cy", "accepted"), ("cy", "removed")]
    assert await env.reviews_of_a_c("cy") == 1
    env.state.push_to_mr(mr2, [PATH])  # the bot suggests again and edits its comment
    await env.run()
    # the count and the last review time are back (`retract_review`)
    assert env.row(mr2, "cy") == ("2", "reviewed `src/a.c` once (last 10 days ago); "
                                       "reviewed 1 change under `src/` (last 10 days ago)")

    env.state.set_reviewers(mr1, [env.cy], by=env.ann)  # taken again, then merged: counted once
    await env.run()
    assert await env.reviews_of_a_c("cy") == 2
    env.state.merge_mr(mr1, by=env.ann)
    await env.run()
    assert (await env.storage.history.count(env.pid), await env.reviews_of_a_c("cy")) == (5, 2)


async def test_a_reviewer_chosen_when_the_mr_is_opened_counts_at_once_too(early_env):
    """The reviewers set on the new MR form come in the `open` webhook (not as a change): the same early
    review as one added afterwards."""
    env = await early_env()
    mr1 = env.state.open_mr(env.project, env.ann, [PATH], reviewers=[env.cy])
    await env.run()
    assert await env.labels(mr1) == [("cy", "accepted")]
    assert await env.reviews_of_a_c("cy") == 2
    mr2 = env.state.open_mr(env.project, env.eve, [PATH])
    await env.run()
    assert env.row(mr2, "cy") == ("1", CY_TAKEN)


async def test_without_early_reviews_the_review_counts_only_at_the_merge(early_env):
    """The counter-case. The bot's config has no switch for `early_reviews` (`recommender_settings` keeps
    the default), so it is turned off on the engine's recommender of the project once built."""
    env = await early_env()
    mr1 = await open_first(env)
    async with env.engine.use(env.pid, env.settings.project_settings(env.pid, None)) as rec:
        rec.settings = replace(rec.settings, early_reviews=False)
    env.state.set_reviewers(mr1, [env.cy], by=env.ann)
    await env.run()
    assert await env.labels(mr1) == [("cy", "accepted")]
    assert await env.reviews_of_a_c("cy") == 1

    mr2 = env.state.open_mr(env.project, env.eve, [PATH])
    await env.run()
    assert env.row(mr2, "cy") == ("2", CY_BEFORE)

    env.state.merge_mr(mr1, by=env.ann)
    await env.run()
    assert await env.reviews_of_a_c("cy") == 2
    env.state.push_to_mr(mr2, [PATH])
    await env.run()
    assert env.row(mr2, "cy") == ("1", CY_TAKEN)


async def test_a_review_the_bot_requests_is_no_evidence_until_it_is_done(early_env):
    """In `assign` mode the bot's own request is not the team taking the review: it neither enters the graph
    early nor resets the person's rejection streak (it did, so a person the team removed every time stayed
    first and was requested again and again). Removing them is a rejection as usual."""
    env = await early_env(assign="top1")
    mr1 = env.state.open_mr(env.project, env.ann, [PATH])
    await env.run()
    assert [env.state.users[u].username for u in mr1.reviewer_ids] == ["bob"]
    assert await env.labels(mr1) == [("bob", "assigned")]
    assert await env.reviews_of_a_c("bob") == 3  # not counted at once: the bot asked, nobody took it yet

    env.state.set_reviewers(mr1, [], by=env.ann)
    await env.run()
    assert await env.labels(mr1) == [("bob", "assigned"), ("bob", "removed")]
    assert await env.reviews_of_a_c("bob") == 3
    async with env.engine.use(env.pid, env.settings.defaults) as rec:
        assert rec.feedback.streak["bob"] == 1.0  # the removal counts; the bot's request did not reset it


async def test_a_decline_in_the_bots_thread_is_no_review_and_the_request_stays_out_of_the_history(early_env):
    """bob, whom the bot requested, answers in its comment's thread that he cannot take it; cy approves and
    the MR is merged. His answer is no review (`commented`): the request he left lying is `passed_over` and
    out of the history, whose reviewer is cy; the graph does not count bob a review of `src/a.c`."""
    env = await early_env(assign="top1")
    mr1 = env.state.open_mr(env.project, env.ann, [PATH])
    await env.run()
    assert [env.state.users[u].username for u in mr1.reviewer_ids] == ["bob"]
    [comment] = marker_notes(env.state, mr1)
    env.state.add_note(mr1, env.bob, "I'm out until the 20th, can someone else take this one?", reply_to=comment)
    env.state.approve(mr1, env.cy)
    env.state.merge_mr(mr1, by=env.ann)
    await env.run()
    bob = [label for person, label in await env.labels(mr1) if person == "bob"]
    assert bob == ["assigned", "commented", "passed_over"]
    merged = {c.id: c for c in await env.storage.history.load(env.pid)}[change_id(mr1.iid)]
    assert sorted(merged.truth()) == ["cy"] and await env.reviews_of_a_c("bob") == 3


async def test_a_label_read_after_the_merge_does_not_count_the_review_again(early_env):
    """The label of a review taken, stored late (its worker was slower than the merge's): the merge counted
    cy already, so the label is feedback only, not a second review of the MR's files."""
    env = await early_env()
    mr1 = await open_first(env)
    env.state.set_reviewers(mr1, [env.cy], by=env.ann)
    [late] = env.state.outbox[:]  # the update event, handled only after the merge
    env.state.outbox.clear()
    env.state.merge_mr(mr1, by=env.ann)
    await env.run()
    passed = ("bob", "passed_over")  # shown first, did nothing: turned down at the merge
    assert (await env.labels(mr1), await env.reviews_of_a_c("cy")) == ([("cy", "final_reviewer"), passed], 2)
    await env.dispatch(event_row(late.event_name, late.body))
    assert await env.labels(mr1) == [("cy", "final_reviewer"), passed, ("cy", "accepted")]
    assert await env.reviews_of_a_c("cy") == 2


async def test_another_worker_ranks_with_the_review_taken(early_env):
    env = await early_env()
    mr1 = await open_first(env)
    env.state.set_reviewers(mr1, [env.cy], by=env.ann)
    await env.run()
    other = await env.other_worker()
    mr2 = env.state.open_mr(env.project, env.eve, [PATH])
    await env.run(other)
    assert env.row(mr2, "cy") == ("1", CY_TAKEN)
