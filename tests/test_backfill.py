"""`bot.backfill` and `reviewbot backfill`: merged MR history imported over the API, resumable, under failures."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import re
from datetime import timedelta

import pytest

from bot.backfill import BOT_PICK, Backfills, backfill_project, change_id
from bot.cli import backfill as cli
from bot.cli import build_parser
from bot.gitlab.client import GitLabClient, RetryPolicy
from bot.gitlab.errors import GitLabError
from bot.gitlab.sim_model import SimDiff
from bot.storage import Storage
from bot.storage.forget import forget_project
from tests.bot_harness import bot_settings, seed_recent

PATIENT = RetryPolicy(max_attempts=10, base_delay=0.001, max_delay=0.005, max_retry_after=0.01, timeout=5.0)


class Stop(Exception):
    pass


@pytest.fixture
async def store(database_url):
    storage = Storage(database_url)
    yield storage
    await storage.close()


def listings(state, project_id: int) -> list:
    """The requests for the project's merged MR list (the pages of an import)."""
    return [r for r in state.calls("GET", f"/projects/{project_id}/merge_requests")
            if r.path.endswith("/merge_requests") and r.query.get("state") == "merged"]


def merged(seeded):
    return {mr.iid: mr for mr in seeded.project.mrs.values() if mr.state == "merged"}


async def test_imports_every_merged_mr_with_people_and_files(simulator, gitlab_client, store):
    state, _ = simulator
    seeded = seed_recent(state, n_merged=40)
    report = await backfill_project(gitlab_client, store, seeded.project.id)
    history = {c.id: c for c in await store.history.load(seeded.project.id)}
    assert report.done and report.imported == 40 and len(history) == 40
    for iid, mr in merged(seeded).items():
        change = history[change_id(iid)]
        assert change.author == state.users[mr.author_id].username
        assert change.reviewers == tuple(state.users[u].username for u in mr.reviewer_ids)
        assert set(change.ackers) == {state.users[u].username for u in mr.approvals}
        assert change.files == tuple(d.new_path for d in mr.diffs)
        assert change.time == int(mr.merged_at.timestamp())
    assert any(c.bot_author for c in history.values()) == any(
        state.users[m.author_id].bot for m in merged(seeded).values())
    row = await store.projects.get(seeded.project.id)
    assert row.backfill_done and row.backfill_cursor


async def test_a_merged_mr_renaming_a_file_is_imported_with_its_old_path(simulator, gitlab_client, store):
    state, _ = simulator
    seeded = seed_recent(state, n_merged=12)
    author, reviewer = seeded.people[2], seeded.people[3]
    mr = state.add_merged_mr(seeded.project, author, [SimDiff.renamed("lib/a.py", "src/a.py"), "src/b.py"],
                             reviewers=[reviewer], merged_at=state.now() - timedelta(days=1))
    await backfill_project(gitlab_client, store, seeded.project.id)
    history = {c.id: c for c in await store.history.load(seeded.project.id)}
    change = history[change_id(mr.iid)]
    assert (change.files, change.renames) == (("src/a.py", "src/b.py"), (("lib/a.py", "src/a.py"),))
    assert all(c.renames == () for c in history.values() if c is not change)


async def test_a_review_the_bot_requested_and_nobody_did_is_not_imported_as_one(simulator, gitlab_client, store):
    """As at the merge webhook: a reviewer the bot asked for (its `assigned` row) who never approved, commented
    or merged, and whom GitLab still shows as "unreviewed", is not a reviewer of the imported change."""
    state, _ = simulator
    seeded = seed_recent(state, n_merged=12)
    author, asked, done = (state.users[uid] for uid in list(seeded.project.members)[:3])
    mr = state.open_mr(seeded.project, author, ["src/x.py"], reviewers=[asked, done])
    state.approve(mr, done)
    state.merge_mr(mr, by=author)
    for person in (asked, done):
        await store.feedback.record(seeded.project.id, mr.iid, person.username, "assigned", value=BOT_PICK)
    await backfill_project(gitlab_client, store, seeded.project.id)
    history = {c.id: c for c in await store.history.load(seeded.project.id)}
    assert history[change_id(mr.iid)].reviewers == (done.username,)
    others = [m for m in merged(seeded).values() if m.iid != mr.iid and m.reviewer_ids]
    assert all(history[change_id(m.iid)].reviewers for m in others)  # the rest as GitLab has them
    assert len(state.calls("GET", "/reviewers")) == 1  # review states asked for that MR only


async def test_an_interrupted_backfill_resumes_from_its_cursor(simulator, http_session, store):
    state, url = simulator
    seeded = seed_recent(state, n_merged=50)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    pages: list[int] = []

    def stop_after_two(progress):
        pages.append(progress.pages)
        if progress.pages == 2:
            raise Stop

    with pytest.raises(Stop):
        await backfill_project(client, store, seeded.project.id, progress=stop_after_two)
    assert await store.history.count(seeded.project.id) == 19  # the second page starts at the first's last MR
    assert not (await store.projects.get(seeded.project.id)).backfill_done
    state.requests.clear()
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and await store.history.count(seeded.project.id) == 50
    listings = state.calls("GET", f"/projects/{seeded.project.id}/merge_requests")
    assert listings[0].query.get("updated_after") and len(state.calls("GET", "/diffs")) <= 32


async def test_a_running_import_logs_each_page_with_how_far_it_got(simulator, http_session, store, caplog):
    """A large project's import runs for many minutes: the bot's log says how far it got after each page,
    not only when it started and when it is done."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=25)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    with caplog.at_level(logging.INFO, logger="bot.backfill"):
        await backfill_project(client, store, seeded.project.id)
    pages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("backfill page imported")]
    assert len(pages) == 3 and "pages=3" in pages[-1] and "imported=25" in pages[-1] and "cursor=" in pages[-1]


async def test_an_mr_updated_during_the_import_shifts_no_other_out_of_it(simulator, http_session, store):
    """Offset pages over a list ordered by update time lose the first item of the next page when an item
    already read is updated (it moves to the end): each page is asked from the last time seen instead."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    merged = sorted((m for m in seeded.project.mrs.values() if m.state == "merged"), key=lambda m: m.updated_at)

    def touch_the_first(progress):
        if progress.pages == 1:  # someone comments on an old merged MR meanwhile
            merged[0].updated_at = state.now() + timedelta(seconds=1)

    report = await backfill_project(client, store, seeded.project.id, progress=touch_the_first)
    assert len(await store.history.load(seeded.project.id)) == len(merged)
    assert report.imported == len(merged)  # the MR met again is read again, and counted once


async def test_more_than_a_page_updated_at_the_same_second_is_read_whole(simulator, http_session, store):
    state, url = simulator
    seeded = seed_recent(state, n_merged=25)
    merged = [m for m in seeded.project.mrs.values() if m.state == "merged"]
    for mr in merged[:12]:
        mr.updated_at = merged[0].updated_at
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=5)
    got = [mr.iid async for page in client.merged_mrs_since(seeded.project.id) for mr in page]
    assert sorted(got) == sorted(m.iid for m in merged)


async def test_an_mr_updated_while_a_second_is_read_page_by_page_shifts_no_other_out_of_it(simulator, http_session):
    """More than a page of MRs updated in one second (a bulk edit) is read by page numbers: one of them updated
    meanwhile moves to the end and shifts the rest left, and the MR that slid onto a page already read was lost
    for good. The second is read once more at its end."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=25)
    merged = sorted((m for m in seeded.project.mrs.values() if m.state == "merged"), key=lambda m: m.updated_at)
    for mr in merged[:12]:
        mr.updated_at = merged[0].updated_at
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=5)
    got: list[int] = []
    async for page in client.merged_mrs_since(seeded.project.id):
        if len(got) == 5:  # the second's second page read: someone comments on its first MR
            merged[0].updated_at = state.now() + timedelta(seconds=1)
        got += [mr.iid for mr in page]
    assert sorted(set(got)) == sorted(m.iid for m in merged) and len(got) == len(merged) + 1  # and that one again


async def test_mrs_updated_within_one_second_are_each_fetched_once(simulator, http_session, store):
    """GitLab's times have milliseconds, the cursor sent has whole seconds: the MRs met again from earlier in
    that second are not yielded (and fetched, and counted) twice."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    merged = sorted((m for m in seeded.project.mrs.values() if m.state == "merged"), key=lambda m: m.updated_at)
    start = merged[0].updated_at.replace(microsecond=0)
    for i, mr in enumerate(merged):  # ten in each second, 100 ms apart
        mr.updated_at = start + timedelta(seconds=i // 10, milliseconds=100 * (i % 10))
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=7)
    report = await backfill_project(client, store, seeded.project.id)
    assert report.imported == 30 and len(state.calls("GET", "/diffs")) == 30


async def test_an_mr_gitlab_cannot_serve_is_skipped_and_the_import_goes_on(simulator, http_session, store):
    """One MR whose diff GitLab fails to render every time (5xx after the client's retries) must not stop the
    import at its page on every resume; GitLab failing every MR of a page is an outage and stops it."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    broken = sorted(m.iid for m in seeded.project.mrs.values() if m.state == "merged")[3]
    state.fail_path(f"/merge_requests/{broken}/diffs", 500)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and report.skipped == 1 and await store.history.count(seeded.project.id) == 29
    state.fail_path("/diffs", 502)
    with pytest.raises(GitLabError):
        await backfill_project(client, store, seeded.project.id, restart=True)


async def test_mrs_failing_while_gitlab_goes_down_mid_page_are_not_skipped(simulator, http_session, store):
    """GitLab going down half-way through a page fails the rest of its MRs after the client's retries, while it
    served the first ones: those MRs are no broken diffs. The import stops there (no cursor past them, not
    `done`), and the next run, GitLab back, imports every one of them."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    state.after_requests(31, lambda: state.fail_path("", 502))  # four MRs into the second page
    with pytest.raises(GitLabError):
        await backfill_project(client, store, seeded.project.id)
    assert not (await store.projects.get(seeded.project.id)).backfill_done
    state.broken_paths.clear()  # GitLab is back
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and report.skipped == 0
    assert {c.id for c in await store.history.load(seeded.project.id)} == {change_id(i) for i in merged(seeded)}


async def test_gitlab_going_down_mid_page_stops_the_import_without_trying_every_mr(simulator, http_session, store):
    """Each MR costs the client's retries when GitLab is down (minutes each where it does not answer at all):
    the first MR failing makes the import ask GitLab about another MR, and GitLab failing that too stops it
    there, rather than after trying every remaining MR of the page."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=60)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=50)
    state.after_requests(21, lambda: state.fail_path("", 502))  # ten MRs into the first page
    with pytest.raises(GitLabError):
        await backfill_project(client, store, seeded.project.id)
    failed = sum(r.status == 502 for r in state.requests)
    assert failed <= 5 * PATIENT.max_attempts  # the fetches under way (4 at a time), then one about another MR


async def test_mrs_of_a_project_the_bot_lost_mid_page_are_not_taken_for_vanished(simulator, http_session, store):
    """The bot user taken off a private project half-way through a page: GitLab answers 404 Project Not Found
    for the rest of its MRs. They did not vanish (that is 404 Merge Request Not Found): the import stops, and
    once the bot is a member again the next run imports them."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    level = seeded.project.members[state.bot.id]
    state.after_requests(25, lambda: seeded.project.members.pop(state.bot.id))
    with pytest.raises(GitLabError) as caught:
        await backfill_project(client, store, seeded.project.id)
    assert caught.value.status == 404 and "Project Not Found" in str(caught.value)
    seeded.project.members[state.bot.id] = level
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and report.skipped == 0
    assert {c.id for c in await store.history.load(seeded.project.id)} == {change_id(i) for i in merged(seeded)}


async def test_a_token_revoked_mid_page_stops_the_import_and_skips_nothing(simulator, http_session, store):
    """GitLab's 401 is every MR's: the import stops at that page, and a new token's run imports all of it."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    token = state.tokens[state.token]
    state.after_requests(31, lambda: state.tokens.pop(state.token))
    with pytest.raises(GitLabError) as caught:
        await backfill_project(client, store, seeded.project.id)
    assert caught.value.status == 401 and "GITLAB_TOKEN" in str(caught.value)
    state.tokens[state.token] = token
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and report.skipped == 0
    assert {c.id for c in await store.history.load(seeded.project.id)} == {change_id(i) for i in merged(seeded)}


@pytest.mark.parametrize("n_merged", [20, 21])
async def test_a_broken_newest_mr_alone_on_its_page_does_not_stop_the_import(simulator, http_session, store,
                                                                            n_merged):
    """The newest MR broken (GitLab fails its diff every time) and alone on the last page, or on the first page
    of a run resumed after it (`reviewbot backfill` again): GitLab served nothing else there, yet it serves the
    project. The MR is skipped and the import done, not failed at that page on every run."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=n_merged)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    newest = max(merged(seeded).values(), key=lambda m: m.updated_at)
    state.fail_path(f"/merge_requests/{newest.iid}/diffs", 500)
    for _ in range(2):
        report = await backfill_project(client, store, seeded.project.id)
        assert report.done
    assert await store.history.count(seeded.project.id) == n_merged - 1


async def test_a_broken_mr_is_told_from_an_outage_when_the_mr_asked_about_was_deleted(simulator, http_session,
                                                                                       store):
    """A resumed run met only the broken newest MR, and the newest one imported, asked about instead, was
    deleted since: GitLab's 404 for it is an answer (GitLab is up), so the broken MR is skipped all the same."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=21)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    newest, before = sorted(merged(seeded).values(), key=lambda m: m.updated_at)[-1:-3:-1]
    state.fail_path(f"/merge_requests/{newest.iid}/diffs", 500)
    await backfill_project(client, store, seeded.project.id)
    del seeded.project.mrs[before.iid]
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and report.skipped == 1


async def test_history_imports_from_a_gitlab_before_15_7(simulator, gitlab_client, store):
    """Before 15.7 there is no .../diffs: each MR's 404 was taken for an MR that vanished, and the import
    finished `done` with nothing in it. The files come from /changes."""
    state, _ = simulator
    seeded = seed_recent(state, n_merged=12)
    state.version = (15, 6)
    report = await backfill_project(gitlab_client, store, seeded.project.id)
    history = {c.id: c for c in await store.history.load(seeded.project.id)}
    assert report.done and report.imported == 12 and report.skipped == 0
    assert all(history[change_id(iid)].files == tuple(d.new_path for d in mr.diffs)
               for iid, mr in merged(seeded).items())
    # the missing endpoint is asked only by the fetches running before the first answer (4 at a time)
    assert len(state.calls("GET", "/diffs")) <= 4 and len(state.calls("GET", "/changes")) == 12


async def test_who_merged_is_read_from_merged_by_on_a_gitlab_before_14_7(simulator, gitlab_client, store):
    """`merge_user` came in GitLab 14.7; before it the merger is `merged_by` alone (kept since, deprecated)."""
    state, _ = simulator
    seeded = seed_recent(state, n_merged=12)
    state.version = (14, 6)
    await backfill_project(gitlab_client, store, seeded.project.id)
    history = {c.id: c for c in await store.history.load(seeded.project.id)}
    assert all(history[change_id(iid)].committer == state.users[mr.merged_by_id].username
               for iid, mr in merged(seeded).items())


async def test_an_endpoint_gitlab_lacks_stops_the_import_instead_of_skipping_every_mr(simulator, http_session,
                                                                                      store):
    """A 404 from GitLab's catch-all route is no vanished MR: it would be the same for every one of them."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=12)
    state.fail_path("/approvals", 404)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT)
    with pytest.raises(GitLabError) as caught:
        await backfill_project(client, store, seeded.project.id)
    assert caught.value.no_route and "no such API endpoint" in str(caught.value)
    assert await store.history.count(seeded.project.id) == 0


async def test_an_mr_listed_without_its_author_is_imported_as_the_ghost_users(simulator, http_session, store):
    """Some GitLab versions list a merged MR of a deleted user with `"author": null`: the page stays readable
    and the MR's reviewers still count."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=12)
    orphan = sorted((m for m in seeded.project.mrs.values() if m.state == "merged"), key=lambda m: m.iid)[5]
    orphan.author_id = None
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT)
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and await store.history.count(seeded.project.id) == 12
    [change] = [c for c in await store.history.load(seeded.project.id) if c.id == change_id(orphan.iid)]
    assert change.author == "ghost" and change.bot_author


async def test_backfill_survives_a_flaky_gitlab(simulator, http_session, store):
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    state.failure_rate = 0.2
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT)
    report = await backfill_project(client, store, seeded.project.id)
    assert report.done and await store.history.count(seeded.project.id) == 30
    assert any(r.status in (429, 500) for r in state.requests)


async def test_background_backfill_runs_once_per_project(simulator, gitlab_client, store):
    state, _ = simulator
    seeded = seed_recent(state, n_merged=20)
    backfills = Backfills(gitlab_client, store, wait=0.0)
    try:
        assert await backfills.ensure(seeded.project.id) == 0.0  # started; no wait allowed for it
        assert backfills.running(seeded.project.id)
        await backfills.task(seeded.project.id)
        calls = len(state.requests)
        assert await backfills.ensure(seeded.project.id) == 0.0 and not backfills.running(seeded.project.id)
        assert len(state.requests) == calls
    finally:
        await backfills.close()
    assert await store.history.count(seeded.project.id) == 20


async def test_a_failed_background_backfill_is_resumed_by_the_next_event(simulator, gitlab_client, store):
    state, _ = simulator
    seeded = seed_recent(state, n_merged=10)
    now = [0.0]
    backfills = Backfills(gitlab_client, store, wait=5.0, clock=lambda: now[0])
    state.fail_next(4, 500)  # the client tries 4 times: the first import fails
    try:
        assert 0 < await backfills.ensure(seeded.project.id) <= 5.0
        with pytest.raises(GitLabError):
            await backfills.task(seeded.project.id)
        now[0] += 30  # past its delay (see the next test)
        assert await backfills.ensure(seeded.project.id) > 0  # started again, with a wait of its own
        await backfills.task(seeded.project.id)
        assert await backfills.ensure(seeded.project.id) == 0.0
    finally:
        await backfills.close()
    assert await store.history.count(seeded.project.id) == 10


async def test_a_failing_background_import_is_started_again_after_a_growing_delay(simulator, gitlab_client, store,
                                                                                 caplog):
    """GitLab down, or the token refused on the project: every event of a busy project started the failed
    import again at once, each failing after the client's retries. The next start waits 30 s, doubling up to
    15 min (less a quarter at most: jitter); the events meanwhile go on with the history there is (not parked: no
    import runs to wake them). A success starts the delays over."""
    state, _ = simulator
    pid = seed_recent(state, n_merged=10).project.id
    state.fail_path(f"/projects/{pid}/merge_requests", 502)
    now = [0.0]
    backfills = Backfills(gitlab_client, store, wait=5.0, clock=lambda: now[0])

    async def fails_then_waits(delay: float) -> None:
        assert await backfills.ensure(pid) > 0  # started: the event is parked for it
        with caplog.at_level(logging.WARNING, logger="bot.backfill"), pytest.raises(GitLabError):
            await backfills.task(pid)
        assert "next_try=" in caplog.records[-1].getMessage()
        asked, started = len(listings(state, pid)), now[0]
        now[0] = started + 0.74 * delay
        assert await backfills.ensure(pid) == 0.0 and not backfills.running(pid)  # goes on, nothing started
        assert len(listings(state, pid)) == asked
        now[0] = started + delay

    try:
        for delay in (30, 60, 120, 240, 480, 900, 900):
            await fails_then_waits(delay)
        del state.broken_paths[f"/projects/{pid}/merge_requests"]
        assert await backfills.ensure(pid) > 0
        assert (await backfills.task(pid)).done
        await forget_project(store.engine, pid)
        backfills.forget(pid)
        state.fail_path(f"/projects/{pid}/merge_requests", 502)
        await fails_then_waits(30)
    finally:
        await backfills.close()


async def test_two_processes_import_a_new_project_once_and_both_see_it_done(simulator, http_session, store):
    """Two processes (workers) handle a new project's first events: one lists its merged history and fetches
    each MR, the other waits for that import under the lease (its task ends then, waking its parked events)."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=25)
    pid = seeded.project.id
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    gate = state.hold_path(f"/projects/{pid}/merge_requests", state="merged")
    one, two = (Backfills(client, store, wait=30.0, poll=0.02) for _ in range(2))
    try:
        assert await one.ensure(pid) > 0 and await two.ensure(pid) > 0
        while not state.held:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # time enough for the other process to list too, were it allowed
        assert len(state.held) == 1 and one.running(pid) and two.running(pid)
        gate.set()
        reports = await asyncio.gather(one.task(pid), two.task(pid))
        assert all(r.done for r in reports) and sorted(r.imported for r in reports) == [0, 25]
        assert await one.ensure(pid) == 0.0 and await two.ensure(pid) == 0.0
    finally:
        await one.close()
        await two.close()
    assert len(listings(state, pid)) == sum(r.pages for r in reports) == 3  # 25 MRs, 10 a page: once
    assert len(state.calls("GET", "/diffs")) <= 27 and await store.history.count(pid) == 25
    row = await store.projects.get(pid)
    assert row.backfill_done and row.import_owner is None  # handed back


async def test_an_import_outlasting_its_lease_keeps_it_by_renewing(simulator, http_session, store):
    """A listing slower than the lease: the importing process renews it every third, so the waiting process
    never takes the import over while it runs."""
    state, url = simulator
    pid = seed_recent(state, n_merged=10).project.id
    gate = state.hold_path(f"/projects/{pid}/merge_requests", state="merged")
    # the held listing must outlast two leases without the client giving up on it (5 s in the other tests)
    client = GitLabClient(http_session, url=url, token=state.token, retry=dataclasses.replace(PATIENT, timeout=60.0))
    # a lease of 2 s renewed every 0.67 s: on a loaded machine (tests in two processes on two CPUs) the event
    # loop once stalled past a 0.3 s lease, and later past a 1 s one (a renewal 0.33 s late was enough)
    one, two = (Backfills(client, store, wait=30.0, lease=2.0, poll=0.05) for _ in range(2))
    try:
        await one.ensure(pid)
        while not state.held:
            await asyncio.sleep(0.01)
        await two.ensure(pid)
        await asyncio.sleep(4.5)  # over two leases long
        assert len(state.held) == 1 and two.running(pid)
        gate.set()
        await asyncio.gather(one.task(pid), two.task(pid))
    finally:
        await one.close()
        await two.close()
    assert len(listings(state, pid)) == 1 and await store.history.count(pid) == 10


async def test_an_import_whose_process_died_is_taken_over_from_its_cursor(simulator, http_session, storage, clock):
    """A process killed mid-import (SIGKILL: no hand-back) stops renewing its lease; when the lease expires
    another process waiting for the import takes it over and resumes from the stored cursor."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=30)
    pid = seeded.project.id
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=10)
    assert await storage.projects.claim_import(pid, "dead-host:1:abc", 60.0)

    def killed_after_two(progress):
        if progress.pages == 2:
            raise Stop

    with pytest.raises(Stop):
        await backfill_project(client, storage, pid, progress=killed_after_two)
    state.requests.clear()
    backfills = Backfills(client, storage, wait=30.0, lease=60.0, poll=0.02)
    try:
        assert await backfills.ensure(pid) > 0
        await asyncio.sleep(0.2)
        assert backfills.running(pid) and not state.calls("GET", "/merge_requests")  # held: waits
        clock.advance(61)
        report = await asyncio.wait_for(backfills.task(pid), 10)
    finally:
        await backfills.close()
    assert report.done and await storage.history.count(pid) == 30
    assert listings(state, pid)[0].query.get("updated_after") and len(state.calls("GET", "/diffs")) <= 12
    assert (await storage.projects.get(pid)).import_owner is None


def small_project(state, name: str):
    """A project with a few merged MRs (people of its own)."""
    project = state.add_project(f"acme/{name}")
    ann, bob = state.add_user(f"{name}-ann"), state.add_user(f"{name}-bob")
    for person in (ann, bob):
        state.add_member(project, person)
    for i in range(3):
        state.add_merged_mr(project, ann, [f"src/m{i}.py"], reviewers=[bob], approvers=[bob],
                            merged_at=state.now() - timedelta(days=10 - i))
    return project


async def test_imports_run_a_few_at_a_time_and_the_wait_counts_from_the_turn_within_a_bound(
        simulator, gitlab_client, store):
    """Many new projects at once: two imports page through GitLab, the others wait their turn; an event's wait
    for its project's import runs `wait` from the import's start, and at most `turn_wait` more for its turn."""
    state, _ = simulator
    projects = [small_project(state, f"new{i}") for i in range(4)]
    gates = {p.id: state.hold_path(f"/projects/{p.id}/merge_requests", state="merged") for p in projects}
    backfills = Backfills(gitlab_client, store, wait=60.0, imports=2, turn_wait=30.0)
    try:
        for i, p in enumerate(projects):  # two take the turns at once; the others wait theirs
            low, high = (0.0, 60.0) if i < 2 else (60.0, 90.0)
            assert low < await backfills.ensure(p.id) <= high
        while len(state.held) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time enough for a third listing to be asked, were it allowed
        asked = [p.id for p in projects if f"/api/v4/projects/{p.id}/merge_requests" in state.held]
        assert len(state.held) == len(asked) == 2 and all(backfills.running(p.id) for p in projects)
        assert all([await backfills.ensure(p) <= 60.0 for p in asked])  # started: `wait` from its start
        waiting = next(p.id for p in projects if p.id not in asked)
        assert 60.0 < await backfills.ensure(waiting) <= 90.0 - 0.2  # its turn's wait is bounded too
        for p in projects:
            gates[p.id].set()
            await backfills.task(p.id)
    finally:
        await backfills.close()
    for p in projects:
        assert await store.history.count(p.id) == 3 and await backfills.ensure(p.id) == 0.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_command_resolves_a_path_and_prints_progress(simulator, database_url, store):
    state, url = simulator
    seeded = seed_recent(state, n_merged=15)
    out = io.StringIO()
    settings = bot_settings(state, url, database_url)
    report = await cli.backfill(settings, seeded.project.path_with_namespace, retry=PATIENT, out=out)
    assert report.done and await store.history.count(seeded.project.id) == 15
    text = out.getvalue()
    assert f"importing {seeded.project.path_with_namespace} (id {seeded.project.id})" in text
    assert "done, 15 merged MRs imported" in text and "snapshots" not in text
    assert re.search(r"\(up to \d{4}-\d\d-\d\d \d\d:\d\d UTC\)\n", text), text  # whatever the machine's zone
    # the path, for `evaluate --project PATH` (no event has named the project yet)
    assert (await store.projects.get(seeded.project.id)).path == seeded.project.path_with_namespace


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_restarted_import_deletes_the_projects_snapshots(simulator, database_url, store):
    """Rows read again replace the old ones in place, and a stored snapshot still fits their count: a warm
    start would rank on the graph as it was (without the renames the import now stores)."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=6)
    settings = bot_settings(state, url, database_url)
    await cli.backfill(settings, str(seeded.project.id), retry=PATIENT, out=io.StringIO())
    await store.snapshots.save(seeded.project.id, b"x", format="f", config="c", history_count=6, history_time=None,
                               boundary=())
    out = io.StringIO()
    await cli.backfill(settings, str(seeded.project.id), restart=True, retry=PATIENT, out=out)
    assert await store.snapshots.list(seeded.project.id) == [] and "snapshots of the project deleted" in out.getvalue()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_unknown_project_is_named_once_with_the_fix(simulator, database_url, store):
    state, url = simulator
    with pytest.raises(GitLabError) as info:
        await cli.backfill(bot_settings(state, url, database_url), "acme/nope", retry=PATIENT, out=io.StringIO())
    said = str(info.value)
    assert "404 Project Not Found. check the project id or path" in said and "not found: " not in said


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_gitlab_url_with_no_gitlab_api_names_gitlab_url(simulator, database_url, store, aiohttp_server):
    """GITLAB_URL at a web server that is not GitLab (another service's port, a proxy's page): its 404 page said
    "check the project id or path and that the bot user is a member", sending the operator the wrong way."""
    from aiohttp import web

    async def page(request: web.Request) -> web.Response:
        return web.Response(status=404, text="<html><title>Error response</title></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    state, _ = simulator
    elsewhere = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    with pytest.raises(GitLabError) as info:
        await cli.backfill(bot_settings(state, elsewhere, database_url), "7", retry=PATIENT, out=io.StringIO())
    said = str(info.value)
    assert "check GITLAB_URL" in said and "without /api/v4" in said and "member" not in said


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_refused_token_names_the_gitlab_that_refused_it(simulator, database_url, store, tmp_path,
                                                               monkeypatch):
    """Which GitLab said no: GITLAB_URL forgotten, a self-hosted token goes to gitlab.com (the default), and
    "401 Unauthorized" alone does not say so."""
    state, url = simulator
    seed_recent(state, n_merged=1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    for var, value in (("GITLAB_URL", url), ("GITLAB_TOKEN", "wrong-token"), ("DATABASE_URL", database_url)):
        monkeypatch.setenv(var, value)
    args = build_parser().parse_args(["backfill", "--project", "7"])
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert await asyncio.to_thread(args.func, args) == 1
    assert "(401)" in err.getvalue() and err.getvalue().endswith(f" (GitLab at {url})\n"), err.getvalue()
    assert "wrong-token" not in err.getvalue()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_one_merged_mr_imported_is_said_in_the_singular(simulator, database_url, store):
    state, url = simulator
    seeded = seed_recent(state, n_merged=1)
    out = io.StringIO()
    await cli.backfill(bot_settings(state, url, database_url), str(seeded.project.id), retry=PATIENT, out=out)
    assert f"importing {seeded.project.path_with_namespace} (id {seeded.project.id}) from {url}\n" in out.getvalue()
    assert "done, 1 merged MR imported" in out.getvalue(), out.getvalue()


def test_the_command_needs_a_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("GITLAB_TOKEN", "GITLAB_WEBHOOK_SECRET", "REVIEWBOT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    args = build_parser().parse_args(["backfill", "--project", "7"])
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert args.func(args) == 2 and "GITLAB_TOKEN is not set" in err.getvalue()


async def test_a_resumed_import_with_nothing_new_imports_nothing(simulator, http_session, store):
    """GitLab's `updated_after` is inclusive: a resumed run met the MRs of its cursor's second again, fetched
    their diffs and approvals again and reported "1 merged MRs imported" with nothing new."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=12)
    client = GitLabClient(http_session, url=url, token=state.token, retry=PATIENT, per_page=5)
    first = await backfill_project(client, store, seeded.project.id)
    assert first.imported == 12
    diffs = len(state.calls("GET", "/diffs"))
    again = await backfill_project(client, store, seeded.project.id)
    assert again.done and again.imported == 0 and len(state.calls("GET", "/diffs")) == diffs
    assert await store.history.count(seeded.project.id) == 12


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_command_refuses_while_a_bot_process_imports_the_project(simulator, database_url, store):
    """A running bot holds the import's lease: the command would page through the same history beside it."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=5)
    assert await store.projects.claim_import(seeded.project.id, "web-1:42:abc", 60.0)
    with pytest.raises(cli.ImportUnderWay, match="web-1:42:abc is importing this project"):
        await cli.backfill(bot_settings(state, url, database_url), str(seeded.project.id), retry=PATIENT,
                           out=io.StringIO())
    assert await store.history.count(seeded.project.id) == 0
    await store.projects.release_import(seeded.project.id, "web-1:42:abc")
    report = await cli.backfill(bot_settings(state, url, database_url), str(seeded.project.id), retry=PATIENT,
                                out=io.StringIO())
    assert report.done and await store.history.count(seeded.project.id) == 5


async def test_a_refusal_says_when_the_import_of_a_killed_process_can_be_taken_over(simulator, database_url,
                                                                                     store):
    """`reviewbot backfill` killed (kill -9, the OOM killer) hands no lease back: run again at once, the command
    refused with "wait for it to finish", though nothing runs that would. It says when the lease of a process
    that is gone expires, after which the same command goes on from where the killed one stopped."""
    state, url = simulator
    seeded = seed_recent(state, n_merged=5)
    assert await store.projects.claim_import(seeded.project.id, "reviewbot-backfill:vm:4242:abc", 60.0)
    until = (await store.projects.get(seeded.project.id)).import_until.strftime("%H:%M:%S UTC")
    with pytest.raises(cli.ImportUnderWay) as refused:
        await cli.backfill(bot_settings(state, url, database_url), str(seeded.project.id), retry=PATIENT,
                           out=io.StringIO())
    assert f"if that process was killed, run this again after {until}" in str(refused.value)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_bot_process_waits_for_the_commands_import_instead_of_paging_beside_it(simulator, database_url, store,
                                                                                      gitlab_client):
    """`reviewbot backfill` run by hand holds the import's lease like a bot process: a worker meeting the new
    project meanwhile waits for the command's import (its events parked) instead of listing the history too."""
    state, url = simulator
    pid = seed_recent(state, n_merged=8).project.id
    gate = state.hold_path(f"/projects/{pid}/merge_requests", state="merged")
    command = asyncio.create_task(cli.backfill(bot_settings(state, url, database_url), str(pid), retry=PATIENT,
                                               out=io.StringIO()))
    backfills = Backfills(gitlab_client, store, wait=30.0, poll=0.02)
    try:
        while not state.held:
            await asyncio.sleep(0.01)
        assert (await store.projects.get(pid)).import_owner.startswith("reviewbot-backfill:")
        assert await backfills.ensure(pid) > 0
        await asyncio.sleep(0.3)  # time enough for the worker to list too, were it allowed
        assert len(state.held) == 1 and backfills.running(pid)
        gate.set()
        report = await asyncio.wait_for(command, 10)
        assert (await asyncio.wait_for(backfills.task(pid), 10)).done
    finally:
        await backfills.close()
    assert report.done and len(listings(state, pid)) == 1 and await store.history.count(pid) == 8
    assert (await store.projects.get(pid)).import_owner is None  # handed back
