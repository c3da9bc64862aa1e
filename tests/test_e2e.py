"""End to end over real HTTP both ways: simulator → POST /webhook → stored event → worker → handlers → simulator.

The last test is the bar of issue 3: 200 webhook deliveries (opens, pushes, notes, merges over 50 MRs) plus
10 % re-sent duplicates, processed while the simulator fails 20 % of API calls with 500 or 429; when the queue
has drained every MR has exactly one bot comment, every command is acknowledged, every merge is in the
history, and nothing is doubled.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, replace
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web

from bot.backfill import backfill_project, change_id
from bot.cli import serve
from bot.comment import has_marker
from bot.config import Settings
from bot.gitlab.sim_model import SimDiff
from bot.gitlab.simulator import SeededProject, SimState
from bot.handlers.notes import ACK_OK, ACK_PROBLEM
from bot.handlers.publish import REPLY_MARKER
from bot.storage import Storage
from tests.bot_harness import (
    FAST_WORKER, SECRET, bot_notes, bot_settings, marker_notes, running_bot, seed_recent, settle, take_events,
    tiny_project,
)
from tests.gitlab_fixtures import FAST_RETRY

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class World:
    state: SimState
    url: str
    seeded: SeededProject
    storage: Storage
    database_url: str

    @property
    def project(self):
        return self.seeded.project

    def person(self, i: int):
        active = [p for p in self.seeded.people if p.id != self.seeded.blocked.id]
        return active[i % len(active)]

    def files(self, i: int) -> list[str]:
        dirs = list(self.seeded.owners)
        return [f"{dirs[i % len(dirs)]}/main{i % 3 + 1}.py"]

    def settings(self, **defaults):
        return bot_settings(self.state, self.url, self.database_url, **defaults)


async def make_world(simulator, gitlab_client, database_url, *, backfill: bool = True) -> World:
    state, url = simulator
    seeded = seed_recent(state)
    storage = Storage(database_url)
    if backfill:
        await backfill_project(gitlab_client, storage, seeded.project.id)
    return World(state, url, seeded, storage, database_url)


@pytest.fixture
async def world(simulator, gitlab_client, database_url):
    w = await make_world(simulator, gitlab_client, database_url)
    yield w
    await w.storage.close()


def acks(w: World, note) -> list[str]:
    return [a.name for a in note.awards if a.user_id == w.state.bot.id]


def replies(state: SimState, mr, note) -> list:
    """The bot's answers to one command note."""
    marker = REPLY_MARKER.format(note_id=note.id)
    return [n for n in bot_notes(state, mr) if has_marker(n.body, marker)]


@sqlite_only
async def test_open_push_and_draft_over_http(world):
    w = world
    async with running_bot(w.settings(), w.storage) as bot:
        hook = w.state.add_hook(w.project, bot.url, token=SECRET)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        draft = w.state.open_mr(w.project, w.person(1), w.files(1), draft=True)
        await settle(w.state, w.storage)
        [comment] = marker_notes(w.state, mr)
        assert "| # | Reviewer | Why | Open reviews |" in comment.body and bot_notes(w.state, draft) == []
        w.state.push_to_mr(mr, w.files(5))
        w.state.mark_ready(draft)
        await settle(w.state, w.storage)
    assert [n.id for n in marker_notes(w.state, mr)] == [comment.id] and comment.updated_at > comment.created_at
    assert len(marker_notes(w.state, draft)) == 1
    assert {d.status for d in w.state.deliveries if d.hook_id == hook.id} == {200}
    own = [d for d in w.state.deliveries if d.body.get("user", {}).get("id") == w.state.bot.id]
    assert {d.event_name for d in own} == {"Note Hook"}  # its comment, posted then edited: handled, ignored
    depth = await w.storage.events.depth()
    assert depth["done"] == len(w.state.deliveries) and depth["dead"] == depth["failed"] == 0


@sqlite_only
async def test_reviewbot_serve_loads_these_handlers(world):
    w = world
    app = await serve.build_app(w.settings(), serve.load_dispatch_factory(serve.DEFAULT_DISPATCH), storage=w.storage)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        w.state.add_hook(w.project, f"http://{host}:{port}/webhook", token=SECRET)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
        assert len(marker_notes(w.state, mr)) == 1
    finally:
        await runner.cleanup()


@sqlite_only
async def test_slash_commands_over_http(world):
    w = world
    async with running_bot(w.settings(), w.storage) as bot:
        w.state.add_hook(w.project, bot.url, token=SECRET)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
        first = [p["username"] for p in (await w.storage.suggestions.latest(w.project.id, mr.iid)).people]
        dev = w.person(3)
        notes = {text: w.state.add_note(mr, dev, text) for text in (
            "/reviewers", f"/reviewers why @{first[0]}", "/reviewers reroll", f"/reviewers exclude @{first[0]}",
            "/reviewers optout 1w", "/reviewers optin", "/reviewers assign 1", "/reviewers help", "/reviewers nope")}
        await settle(w.state, w.storage)
    assert all(acks(w, note) == ([ACK_PROBLEM] if text.endswith("nope") else [ACK_OK])
               for text, note in notes.items())
    assert len(marker_notes(w.state, mr)) == 1
    latest = [p["username"] for p in (await w.storage.suggestions.latest(w.project.id, mr.iid)).people]
    assert not set(first) & set(latest) and len(mr.reviewer_ids) == 1
    assert "**Why" in replies(w.state, mr, notes[f"/reviewers why @{first[0]}"])[0].body
    assert replies(w.state, mr, notes["/reviewers"]) == []


@sqlite_only
async def test_a_reviewer_who_renamed_themselves_keeps_their_history_and_their_opt_out(simulator, database_url):
    """alice reviews src/ under `alice` and opts out; then she renames herself `alice.w` on GitLab (same id).
    The next MR counts her history and her opt-out under her new name (by name alone, `alice` was someone who
    left and the opt-out named nobody); `/reviewers optin` as `alice.w` ends the opt-out made as `alice`, and
    she is suggested as `@alice.w` with the evidence of her reviews as `alice`."""
    state, url = simulator
    project = state.add_project("acme/people")
    alice, carl, dan = (state.add_user(n) for n in ("alice", "carl", "dan"))
    for user in (alice, carl, dan):
        state.add_member(project, user, 30)
    now = state.now()
    for i in range(10):
        reviewer = alice if i % 5 else dan
        state.add_merged_mr(project, carl, [f"src/app/m{i % 3}.py"], reviewers=[reviewer], approvers=[reviewer],
                            merged_at=now - timedelta(days=30 - i))
    storage = Storage(database_url)
    try:
        async with running_bot(bot_settings(state, url, database_url), storage) as bot:
            state.add_hook(project, bot.url, token=SECRET)
            draft = state.open_mr(project, carl, ["src/app/m0.py"], draft=True)  # the bot imports the history
            optout = state.add_note(draft, alice, "/reviewers optout")
            await settle(state, storage)
            assert "`@alice` will not be suggested" in replies(state, draft, optout)[0].body
            state.rename_user(alice, "alice.w")
            mr = state.open_mr(project, carl, ["src/app/m1.py"])
            await settle(state, storage)
            first = marker_notes(state, mr)[0].body
            assert "Skipped `@alice.w`: has opted out of review suggestions." in first and "`@alice`" not in first
            optin = state.add_note(mr, alice, "/reviewers optin\n/reviewers")
            await settle(state, storage)
        assert "`@alice.w` can be suggested as a reviewer again." in replies(state, mr, optin)[0].body
        rows = [line for line in marker_notes(state, mr)[0].body.splitlines() if line.startswith("| 1 |")]
        assert "`@alice.w`" in rows[0] and "reviewed `src/app/m1.py`" in rows[0]
        assert await storage.optouts.active(project.id) == set()
    finally:
        await storage.close()


@sqlite_only
async def test_a_group_secret_cannot_teach_the_bot_a_former_name_for_a_user_of_another_project(simulator, database_url,
                                                                                              gitlab_client):
    """The names a user id had serve every project. mallory holds the webhook secret of her group `evil` and
    sends a note event for her own project naming eve (a member of acme/tiny, with no history there) as `bob`,
    who reviewed acme/tiny's src/ most and left it. Learned from the payload, the pair made eve bob's renamed
    self: ranked first in acme/tiny on bob's history. Names are learned from GitLab's answers alone."""
    state, url = simulator
    tiny = tiny_project(state)
    eve = state.add_user("eve")
    state.add_member(tiny.project, eve, 30)
    del tiny.project.members[tiny.bob.id]
    evil, mallory = state.add_project("evil/app"), state.add_user("mallory")
    state.add_member(evil, mallory, 40)
    secrets = [{"secret": "tiny-project-secret-0123456789", "project": tiny.project.id},
               {"secret": "evil-group-secret-0123456789", "group": "evil"}]
    settings = Settings(gitlab={"url": url, "token": state.token}, database={"url": database_url},
                        worker=FAST_WORKER, defaults={"top_k": 3}, webhook_secrets=secrets)
    storage = Storage(database_url)
    state.auto_hooks = False
    try:
        await backfill_project(gitlab_client, storage, tiny.project.id)
        async with running_bot(settings, storage) as bot, aiohttp.ClientSession() as http:
            async def deliver(event, secret: str) -> None:
                async with http.post(bot.url, json=event.body, headers={
                        "X-Gitlab-Event": event.event_name, "X-Gitlab-Token": secret["secret"]}) as answer:
                    assert answer.status == 200, await answer.text()

            for project, secret in ((tiny.project, secrets[0]), (evil, secrets[1])):
                state.add_hook(project, bot.url, token=secret["secret"])
            state.add_note(state.open_mr(evil, mallory, ["x.py"]), mallory, "hello")
            note = next(e for e in take_events(state) if e.event_name == "Note Hook")
            note.body["user"] = {"id": eve.id, "username": "bob", "name": "Bob"}
            await deliver(note, secrets[1])
            await settle(state, storage)
            mr = state.open_mr(tiny.project, tiny.ann, ["src/core/m1.py"])
            for event in take_events(state):
                await deliver(event, secrets[0])
            await settle(state, storage)
        body = marker_notes(state, mr)[0].body
        assert "`@eve`" not in body and "`@cy`" in body
        assert [s.username for s in await storage.people.sightings([eve.id])] == ["eve"]
    finally:
        await storage.close()


@sqlite_only
async def test_free_tier_top1_assignment_says_it_did_not_stick(world):
    w = world
    w.state.free_tier = True
    async with running_bot(w.settings(assign="top1"), w.storage) as bot:
        w.state.add_hook(w.project, bot.url, token=SECRET)
        author, existing = w.person(0), w.person(5)
        mr = w.state.open_mr(w.project, author, w.files(0), reviewers=[existing])
        await settle(w.state, w.storage)
    assert mr.reviewer_ids == [existing.id]
    [comment] = marker_notes(w.state, mr)
    assert "as reviewer." in comment.body and "GitLab did not keep" in comment.body
    assert "GitLab Free allows one" in comment.body


@sqlite_only
async def test_emoji_feedback_over_http(world):
    w = world
    async with running_bot(w.settings(), w.storage) as bot:
        w.state.add_hook(w.project, bot.url, token=SECRET)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
        [comment] = marker_notes(w.state, mr)
        w.state.award(comment, w.person(2), "thumbsup")
        w.state.award(comment, w.person(4), "thumbsdown")
        await settle(w.state, w.storage)
    labels = sorted((f.person, f.label) for f in await w.storage.feedback.list(w.project.id, mr_iid=mr.iid)
                    if f.label.startswith("thumbs"))
    assert labels == sorted([(w.person(2).username, "thumbs_up"), (w.person(4).username, "thumbs_down")])


@sqlite_only
async def test_the_first_event_of_a_new_project_imports_its_history(simulator, gitlab_client, database_url):
    w = await make_world(simulator, gitlab_client, database_url, backfill=False)
    try:
        async with running_bot(w.settings(), w.storage) as bot:
            w.state.add_hook(w.project, bot.url, token=SECRET)
            mr = w.state.open_mr(w.project, w.person(0), w.files(0))
            await settle(w.state, w.storage)
        assert await w.storage.history.count(w.project.id) == 80
        assert (await w.storage.projects.get(w.project.id)).backfill_done
        [comment] = marker_notes(w.state, mr)
        assert "**Suggested reviewers**" in comment.body
    finally:
        await w.storage.close()


def new_project(w: World, i: int):
    """A project the bot has not seen, with four merged MRs reviewed by the world's people."""
    project = w.state.add_project(f"acme/new-{i}")
    people = [w.person(k) for k in range(4)]
    for person in people:
        w.state.add_member(project, person, 30)
    for k in range(4):
        w.state.add_merged_mr(project, people[k % 2], [f"src/m{k % 2}.py"], reviewers=[people[2 + k % 2]],
                              approvers=[people[2 + k % 2]], merged_at=w.state.now() - timedelta(days=20 - k))
    return project


async def until(condition, what: str, timeout: float = 30.0) -> None:
    """Wait for `condition()`; fail naming `what` if it does not come within `timeout` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.05)


async def test_new_projects_waiting_for_their_imports_do_not_hold_up_an_imported_project(world):
    """Three projects the bot has never seen send their first events at once, and GitLab does not answer their
    history listings (large imports): their events are parked in the queue rather than holding the worker's two
    slots, so the imported project's MR gets its suggestion while those imports are still blocked, and only two
    imports run at a time. Once GitLab answers, every new MR gets its suggestion, on the imported history."""
    w = world
    fresh = [new_project(w, i) for i in range(3)]
    gates = [w.state.hold_path(f"/projects/{p.id}/merge_requests", state="merged") for p in fresh]
    settings = w.settings()
    slow = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"dispatch_timeout": 300.0, "lease_seconds": 600.0})})  # a wait is no timeout
    async with running_bot(slow, w.storage, backfill_wait=600.0, retry=replace(FAST_RETRY, timeout=300.0)) as bot:
        for project in (w.project, *fresh):
            w.state.add_hook(project, bot.url, token=SECRET)
        waiting = [w.state.open_mr(p, w.person(0), ["src/m0.py"]) for p in fresh]
        await w.state.flush_hooks()
        await until(lambda: len(w.state.held) == 2, "two history imports asking GitLab")
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await until(lambda: marker_notes(w.state, mr), "the imported project's suggestion")
        assert len(w.state.held) == 2 and not any(gate.is_set() for gate in gates)  # still blocked, two at a time
        assert not any(marker_notes(w.state, m) for m in waiting)
        for gate in gates:
            gate.set()
        await settle(w.state, w.storage, timeout=60.0)
    for project, m in zip(fresh, waiting):
        assert len(marker_notes(w.state, m)) == 1 and await w.storage.history.count(project.id) == 4
        assert (await w.storage.projects.get(project.id)).backfill_done
    depth = await w.storage.events.depth()
    assert depth["dead"] == depth["failed"] == 0


async def test_a_small_new_project_waiting_its_turn_behind_two_large_imports_is_ranked_on_its_history(world):
    """Two large imports take both turns; a small project's first MR waits its turn longer than `backfill_wait`
    (3 s here): its wait counts from its import's start (bounded), so once a turn comes, its four merged MRs are
    imported and its MR is ranked on them — not told "no review history yet", which nothing corrects later."""
    w = world
    large = [new_project(w, i) for i in range(2)]
    gates = [w.state.hold_path(f"/projects/{p.id}/merge_requests", state="merged") for p in large]
    small = new_project(w, 9)
    async with running_bot(w.settings(), w.storage, backfill_wait=3.0) as bot:
        for project in (*large, small):
            w.state.add_hook(project, bot.url, token=SECRET)
        for project in large:
            w.state.open_mr(project, w.person(0), ["src/m0.py"])
        await w.state.flush_hooks()
        await until(lambda: len(w.state.held) == 2, "two large imports asking GitLab")
        mr = w.state.open_mr(small, w.person(0), ["src/m0.py"])
        await w.state.flush_hooks()
        await asyncio.sleep(4.0)  # longer than backfill_wait, still without a turn
        gates[0].set()
        await until(lambda: marker_notes(w.state, mr), "the small project's comment")
        for gate in gates:
            gate.set()
        await settle(w.state, w.storage, timeout=60.0)
    assert "Suggested reviewers" in marker_notes(w.state, mr)[0].body
    assert await w.storage.history.count(small.id) == 4


@sqlite_only
async def test_a_renamed_file_keeps_its_reviewers_before_and_after_the_merge(simulator, gitlab_client, database_url):
    """Rosa's only reviews are of `legacy/report.py`, long enough ago that she reviews little these weeks. An MR
    moving it to `reports/report.py` gets her suggested for her reviews of the old path; once it is merged, an
    MR changing `reports/report.py` gets her suggested for the same reviews, now under the new path."""
    w = await make_world(simulator, gitlab_client, database_url, backfill=False)
    rosa = w.state.add_user("rosa", "Rosa Marsh")
    w.state.add_member(w.project, rosa)
    now = w.state.now()
    for days in (60, 50, 40):
        w.state.add_merged_mr(w.project, w.person(1), ["legacy/report.py"], reviewers=[rosa], approvers=[rosa],
                              merged_at=now - timedelta(days=days))
    await backfill_project(gitlab_client, w.storage, w.project.id)
    try:
        async with running_bot(w.settings(), w.storage) as bot:
            w.state.add_hook(w.project, bot.url, token=SECRET)
            move = w.state.open_mr(w.project, w.person(0), [SimDiff.renamed("legacy/report.py", "reports/report.py")])
            await settle(w.state, w.storage)
            [comment] = marker_notes(w.state, move)
            assert "`@rosa` (Rosa Marsh) | reviewed `legacy/report.py` 3 times (last 40 days ago)" in comment.body
            w.state.approve(move, w.person(2))
            w.state.merge_mr(move, by=w.person(2))
            await settle(w.state, w.storage)
            edit = w.state.open_mr(w.project, w.person(3), ["reports/report.py"])
            await settle(w.state, w.storage)
        [merged] = [c for c in await w.storage.history.load(w.project.id) if c.id == change_id(move.iid)]
        assert merged.files == ("reports/report.py",) and merged.renames == (("legacy/report.py", "reports/report.py"),)
        [comment] = marker_notes(w.state, edit)
        assert "`@rosa` (Rosa Marsh) | reviewed `reports/report.py` 3 times (last 40 days ago)" in comment.body
    finally:
        await w.storage.close()


# --- the bar --------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    mrs: list
    commands: list            # (mr, note, text)
    merged: list


def play(w: World, rng: random.Random, deliveries: int = 200) -> Scenario:
    """Queue exactly `deliveries` webhook events over 50 MRs: opens, ready, pushes, notes, approvals, merges."""
    state, s = w.state, Scenario([], [], [])
    for i in range(50):
        s.mrs.append(state.open_mr(w.project, w.person(i), w.files(i), draft=i % 7 == 0, title=f"Change {i}"))
    for mr in s.mrs:
        if mr.draft:
            state.mark_ready(mr)
    for i in range(40):
        state.push_to_mr(rng.choice(s.mrs), w.files(rng.randrange(100)))
    for mr in rng.sample(s.mrs, 15):
        author = state.users[mr.author_id]
        reviewer = next(p for p in w.seeded.people if p.id not in (author.id, w.seeded.blocked.id))
        state.approve(mr, reviewer)
        state.merge_mr(mr, by=reviewer)
        s.merged.append(mr)
    texts = ["/reviewers", "/reviewers why @{who}", "/reviewers reroll", "/reviewers help", "LGTM, thanks",
             "/reviewers exclude @{who}", "/reviewers assign 1", "/reviewers optout 1w"]
    while len(state.outbox) < deliveries:
        mr, i = rng.choice(s.mrs), rng.randrange(1000)
        text = rng.choice(texts).format(who=w.person(i + 1).username)
        note = state.add_note(mr, w.person(i), text)
        if text.startswith("/"):
            s.commands.append((mr, note, text))
    return s


async def check_bar(w: World, s: Scenario) -> None:
    state = w.state
    assert sum(mr.state == "opened" for mr in s.mrs) >= len(s.mrs) // 3
    for mr in s.mrs:  # one comment on every MR still open; one merged or closed before the bot heard of it
        wanted = (1,) if mr.state == "opened" else (0, 1)  # gets none (a late suggestion is noise)
        assert len(marker_notes(state, mr)) in wanted, f"!{mr.iid} has {len(marker_notes(state, mr))} bot comments"
        row = await w.storage.comments.get(w.project.id, mr.iid)
        assert (row.note_id if row else None) == next((n.id for n in marker_notes(state, mr)), None)
    for mr, note, text in s.commands:
        assert len(acks(w, note)) == 1, f"command {text!r} on !{mr.iid} acknowledged {acks(w, note)}"
        assert len(replies(w.state, mr, note)) <= 1
        if text.split()[1:2] in (["why"], ["help"]):
            assert len(replies(w.state, mr, note)) == 1, f"{text!r} on !{mr.iid} got no answer"
    history = {c.id for c in await w.storage.history.load(w.project.id)}
    assert {change_id(mr.iid) for mr in s.merged} <= history and len(history) == 80 + len(s.merged)
    once = [(f.mr_iid, f.person, f.label) for f in await w.storage.feedback.list(w.project.id)
            if f.label in ("final_reviewer", "approved")]
    assert len(once) == len(set(once)) and {iid for iid, _, _ in once} == {mr.iid for mr in s.merged}


async def test_bar_200_deliveries_duplicates_and_a_failing_gitlab(world):
    w, rng = world, random.Random(7)
    async with running_bot(w.settings(assign="top1"), w.storage, start_worker=False) as bot:
        w.state.auto_hooks = False
        w.state.rate_limit = 10**6  # GitLab's per-user limit would pause the run for a minute: not this test's subject
        w.state.add_hook(w.project, bot.url, token=SECRET)
        scenario = play(w, rng)
        first = await w.state.flush_hooks()
        again = [await w.state.sender.resend(d) for d in rng.sample(first, len(first) // 10)]
        assert len(first) == 200 and len(again) == 20 and {d.status for d in first + again} == {200}
        assert sum((await w.storage.events.depth()).values()) == 200
        w.state.auto_hooks, w.state.failure_rate = True, 0.2
        bot.start()
        depth = await settle(w.state, w.storage, timeout=150.0)
        w.state.failure_rate = 0.0
        failed_calls = sum(1 for r in w.state.requests if r.status in (429, 500))
    assert depth["dead"] == 0 and failed_calls > 50
    await check_bar(w, scenario)


@sqlite_only
async def test_two_hooks_sending_every_event_count_each_event_once(world):
    """A project hook beside a group hook (here: two hooks on the project, each with its own UUID and
    Idempotency-Key): every event is stored twice and the copy that runs second is skipped, so a reviewer
    change and a reroll are learned once and the reroll does not reroll twice."""
    w = world
    async with running_bot(w.settings(), w.storage) as bot:
        for name in ("project hook", "group hook"):
            w.state.add_hook(w.project, bot.url, token=SECRET, name=name)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
        shown = [p["username"] for p in (await w.storage.suggestions.latest(w.project.id, mr.iid)).people]
        w.state.set_reviewers(mr, [w.state.user(shown[1])], by=w.person(0))
        note = w.state.add_note(mr, w.person(3), "/reviewers reroll")
        await settle(w.state, w.storage)
    assert len({d.headers["Idempotency-Key"] for d in w.state.deliveries}) == len(w.state.deliveries)
    rows = [(f.person, f.label) for f in await w.storage.feedback.list(w.project.id, mr_iid=mr.iid)]
    assert rows.count((shown[1], "accepted")) == 1 and rows.count((shown[2], "reroll")) == 1
    assert acks(w, note) == [ACK_OK] and len(replies(w.state, mr, note)) <= 1
    assert len(await w.storage.suggestions.list(w.project.id)) == 2  # the open and the reroll
    assert (await w.storage.events.depth())["done"] == len(w.state.deliveries)


@sqlite_only
async def test_an_approval_given_again_within_the_minute_is_recorded(world):
    """Approved, taken back and approved again within a minute: GitLab's system note touches the MR at most once
    a minute, so the first and the third hooks carry the same body. GitLab draws `X-Gitlab-Webhook-UUID` anew
    for every delivery (`WebHookService#build_headers`: `SecureRandom.uuid`), so it names no hook, and the
    third was taken for the first's copy from another hook and skipped: the approval was lost."""
    w = world
    async with running_bot(w.settings(), w.storage) as bot:
        w.state.add_hook(w.project, bot.url, token=SECRET)
        mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
        for act in (w.state.approve, w.state.unapprove, w.state.approve):
            act(mr, w.person(2))
            await settle(w.state, w.storage)
    hooks = [d for d in w.state.deliveries if d.body["object_attributes"].get("action") in ("approved", "unapproved")]
    assert len(hooks) == 3 and hooks[0].body == hooks[2].body
    person = w.person(2).username
    labels = [f.label for f in await w.storage.feedback.list(w.project.id, mr_iid=mr.iid)
              if f.person == person and f.label in ("approved", "unapproved")]
    assert labels == ["approved", "unapproved", "approved"]


@sqlite_only
async def test_projects_the_bot_cannot_act_on_finish_their_events_as_skipped(world, caplog):
    """A group hook delivers a private project the bot user is not a member of (GitLab answers 404): each of its
    events started the history import again and its MR event was dead-lettered at ERROR with a traceback. An
    archived project refuses every write: its events were retried for minutes. Now both finish done at once,
    the reason on the event, the 404 asked once and warned about once, naming the fix."""
    w = world
    hidden = w.state.add_project("other/secret", bot_access_level=None)
    for i in range(2):
        w.state.add_member(hidden, w.person(i))
    caplog.set_level(logging.INFO)
    async with running_bot(w.settings(), w.storage, backfill_wait=2.0) as bot:
        w.state.add_hook(hidden, bot.url, token=SECRET)
        w.state.add_hook(w.project, bot.url, token=SECRET)
        w.state.archive(w.project)
        mr = w.state.open_mr(hidden, w.person(0), ["src/a.py"])
        for i in range(3):
            w.state.add_note(mr, w.person(1), f"looks fine {i}")
        archived_mr = w.state.open_mr(w.project, w.person(0), w.files(0))
        await settle(w.state, w.storage)
    events = await w.storage.events.list_events()
    assert len(events) == 5 and {e.status for e in events} == {"done"}
    hidden_reasons = [e.last_error for e in events if e.project_id == hidden.id]
    assert len(hidden_reasons) == 4 and all(r.startswith("skipped: GitLab answers 404 for project other/secret")
                                            and "add the bot user" in r for r in hidden_reasons)
    [archived] = [e.last_error for e in events if e.project_id == w.project.id]
    assert archived.startswith(f"skipped: project {w.project.path_with_namespace} is archived")
    assert [r.path for r in w.state.calls(contains=f"/projects/{hidden.id}")] == [f"/api/v4/projects/{hidden.id}"]
    assert await w.storage.projects.get(hidden.id) is None and bot_notes(w.state, archived_mr) == []
    [warning] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "add the bot user to the project" in warning.getMessage() and warning.exc_info is None


@sqlite_only
async def test_a_merge_requests_life_over_http_pings_nobody_early_and_requests_nobody_twice(simulator, gitlab_client,
                                                                                            database_url):
    """One merge request from draft to merge, every event through POST /webhook and the worker: nothing while
    it is a draft, one comment edited ever after, bob requested once and never again once the team swapped him
    for cy, the title and labels edits leave the comment alone, cy (first once the label is off) stays the
    team's pick, and the feedback says what the team did."""
    state, url = simulator
    tiny = tiny_project(state)
    storage = Storage(database_url)
    await backfill_project(gitlab_client, storage, tiny.project.id)
    settings = bot_settings(state, url, database_url, assign="top1")
    ann, bob, cy = tiny.ann, tiny.bob, tiny.cy
    try:
        async with running_bot(settings, storage) as bot:
            state.add_hook(tiny.project, bot.url, token=SECRET)
            mr = state.open_mr(tiny.project, ann, ["src/core/m1.py"], draft=True)
            state.push_to_mr(mr, ["src/core/m2.py"])
            await settle(state, storage)
            assert bot_notes(state, mr) == [] and not state.calls("PUT")
            state.mark_ready(mr)
            await settle(state, storage)
            [comment] = marker_notes(state, mr)
            assert mr.reviewer_ids == [bob.id] and "Review requested from `@bob`." in comment.body
            state.set_reviewers(mr, [cy], by=ann)
            state.approve(mr, cy)
            state.unapprove(mr, cy)
            state.push_to_mr(mr, ["src/core/m3.py"])
            await settle(state, storage)
            assert "Review requested from" not in comment.body
            edited = comment.body, comment.updated_at
            state.update_mr(mr, by=ann, title="A better title")
            state.update_mr(mr, by=ann, labels=["backend", "no-reviewer-bot"])
            state.push_to_mr(mr, ["docs/notes.md"])
            await settle(state, storage)
            assert (comment.body, comment.updated_at) == edited
            state.update_mr(mr, by=ann, labels=["backend"])
            await settle(state, storage)
            assert comment.updated_at > edited[1] and "`@dee`" in comment.body
            assert comment.body.index("`@cy`") < comment.body.index("`@bob`")  # first now, and the team's pick
            assert "Review requested from" not in comment.body
            state.approve(mr, cy)
            state.merge_mr(mr, by=cy)
            await settle(state, storage)
        depth = await storage.events.depth()
        rows = await storage.feedback.list(tiny.project.id, mr_iid=mr.iid)
    finally:
        await storage.close()
    assert marker_notes(state, mr) == [comment] and mr.reviewer_ids == [cy.id] and mr.labels == ["backend"]
    assert sum(r.path.endswith(f"/merge_requests/{mr.iid}") for r in state.calls("PUT")) == 1
    assert {d.status for d in state.deliveries} == {200} and depth["dead"] == depth["failed"] == 0
    labels = [(f.person, f.label) for f in rows if f.label != "suggested"]
    assert labels == [("bob", "assigned"), ("cy", "accepted"), ("bob", "removed"), ("cy", "approved"),
                      ("cy", "unapproved"), ("cy", "approved"), ("cy", "final_reviewer"), ("dee", "passed_over")]


@sqlite_only
async def test_a_merge_delivered_while_the_import_runs_is_counted_once(simulator, gitlab_client, database_url):
    """The first event starts the history import; GitLab is slow on one MR of its first page, so the events run
    on the history so far (`backfill_wait`) and the merge of a new MR is recorded by its webhook while the import
    still runs. The import's next page meets that MR again: one history row, its final reviewers once."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=120)
    storage = Storage(database_url)
    people = [p for p in seeded.people if p.id != seeded.blocked.id]
    oldest = min((m for m in seeded.project.mrs.values() if m.state == "merged"), key=lambda m: m.updated_at)
    gate = state.hold_path(f"/merge_requests/{oldest.iid}/diffs")
    try:
        async with running_bot(bot_settings(state, url, database_url), storage, backfill_wait=0.5) as bot:
            state.add_hook(seeded.project, bot.url, token=SECRET)
            mr = state.open_mr(seeded.project, people[0], ["src/late.py"], reviewers=[people[1]])
            await until(lambda: state.held, "the import asking GitLab for the slow MR")
            state.approve(mr, people[1])
            state.merge_mr(mr, by=people[1])
            await until(lambda: any(r.path.endswith(f"/merge_requests/{mr.iid}/approvals") for r in state.requests),
                        "the merge handled while the import waits")
            await settle(state, storage)
            assert not (await storage.projects.get(seeded.project.id)).backfill_done
            gate.set()
            await settle(state, storage)
        history = {c.id: c for c in await storage.history.load(seeded.project.id)}
        rows = await storage.feedback.list(seeded.project.id, mr_iid=mr.iid)
        row = await storage.projects.get(seeded.project.id)
    finally:
        await storage.close()
    assert row.backfill_done and len(history) == 121
    assert history[change_id(mr.iid)].reviewers == (people[1].username,)
    assert [r.person for r in rows if r.label == "final_reviewer"] == [people[1].username]
    assert sum(r.path.endswith(f"/merge_requests/{mr.iid}/diffs") for r in state.requests) == 2  # webhook, import
