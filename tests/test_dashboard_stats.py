"""The dashboard's numbers on tiny hand-made rows (the full seeded project is in tests/test_dashboard.py)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from bot.dashboard_stats import NO_MODEL, ModelInfo, project_stats, week_start, window_start
from bot.storage import FeedbackRow, SuggestionRow

NOW = datetime(2025, 3, 19, 12, tzinfo=timezone.utc)  # a Wednesday
_ids = iter(range(1, 10_000))


def day(offset: float) -> datetime:
    return NOW - timedelta(days=offset)


def suggestion(iid: int, *people: str, ago: float = 1) -> SuggestionRow:
    return SuggestionRow(next(_ids), 1, iid, day(ago), [{"username": p} for p in people], "v1", None)


def feedback(iid: int, person: str, label: str, *, ago: float = 0.5) -> FeedbackRow:
    return FeedbackRow(next(_ids), None, 1, iid, person, label, None, day(ago), None)


def stats(suggestions, rows, **kw):
    return project_stats(1, "g/p", suggestions, rows, ModelInfo(), now=NOW, **kw)


def test_weeks_start_on_monday_and_the_window_ends_with_this_week():
    assert week_start(NOW) == date(2025, 3, 17) and week_start(day(2)) == date(2025, 3, 17)
    assert week_start(day(3)) == date(2025, 3, 10)
    assert window_start(NOW, 2) == datetime(2025, 3, 10, tzinfo=timezone.utc)


def test_nothing_stored_gives_empty_weeks_and_no_rates():
    result = stats([], [], weeks=3)
    assert [(w.week, w.suggested, w.rate) for w in result.weeks] == [
        (date(2025, 3, 3), 0, None), (date(2025, 3, 10), 0, None), (date(2025, 3, 17), 0, None)]
    assert (result.acceptance, result.top1, result.top3, result.recent, result.load) == (None, None, None, [], [])
    assert result.model_label == NO_MODEL


def test_only_a_suggested_person_who_took_part_later_counts_as_accepted():
    cases = {
        "accepted": ([feedback(1, "ann", "accepted")], True),
        "approved, other case": ([feedback(1, "ANN", "approved")], True),
        "final reviewer": ([feedback(1, "bob", "final_reviewer")], True),
        "bot assignment only": ([feedback(1, "ann", "assigned")], False),
        "the team added someone not suggested": ([feedback(1, "cy", "assigned")], False),
        "someone else reviewed": ([feedback(1, "cy", "final_reviewer")], False),
        "before the suggestion": ([feedback(1, "ann", "approved", ago=2)], False),
        "thumbs up": ([feedback(1, "ann", "thumbs_up")], False),
    }
    for name, (rows, accepted) in cases.items():
        assert stats([suggestion(1, "ann", "bob")], rows).accepted == accepted, name


def test_one_merge_request_counts_once_in_the_week_of_its_first_suggestion():
    rows = [suggestion(1, "ann", ago=8), suggestion(1, "bob", ago=1)]
    result = stats(rows, [feedback(1, "bob", "accepted")], weeks=2)
    assert [(w.suggested, w.accepted) for w in result.weeks] == [(1, 1), (0, 0)]
    assert result.recent[0].top1 == "bob" and result.recent[0].suggested_at == day(8)


def test_actual_reviewers_are_the_final_ones_once_merged_else_the_current_ones():
    rows = [feedback(1, "ann", "assigned", ago=0.9), feedback(1, "bob", "accepted", ago=0.8),
            feedback(1, "ann", "removed", ago=0.7)]
    open_mr = stats([suggestion(1, "ann", "bob")], rows).recent[0]
    assert open_mr.reviewers == ["bob"] and not open_mr.merged and open_mr.top1_hit is None
    added = stats([suggestion(1, "ann", "bob")], [*rows, feedback(1, "cy", "assigned", ago=0.6)])
    assert added.recent[0].reviewers == ["bob", "cy"]  # a reviewer the team added unsuggested is one too
    merged = stats([suggestion(1, "ann", "bob")], [*rows, feedback(1, "Cy", "final_reviewer")])
    assert merged.recent[0].reviewers == ["Cy"] and merged.recent[0].top3_hit is False
    assert (merged.judged, merged.top1, merged.top3) == (1, 0.0, 0.0)


def test_load_counts_merge_requests_in_the_window_and_open_reviews_whatever_their_age():
    rows = [suggestion(1, "ann", ago=40), suggestion(2, "ann", "bob", ago=5), suggestion(3, "bob", ago=4)]
    reactions = [feedback(1, "ann", "assigned", ago=39), feedback(2, "bob", "accepted", ago=4),
                 feedback(2, "bob", "final_reviewer", ago=3), feedback(3, "bob", "approved", ago=3)]
    load = {r.person: r for r in stats(rows, reactions, weeks=8).load}
    assert (load["ann"].open, load["ann"].suggested, load["ann"].top1, load["ann"].reviewing) == (1, 1, 1, 0)
    assert (load["bob"].open, load["bob"].suggested, load["bob"].reviewing, load["bob"].approved) == (1, 2, 1, 1)


def test_an_approval_taken_back_is_no_approval_in_the_load_until_given_again():
    rows = [suggestion(1, "bob", ago=5), suggestion(2, "bob", ago=5)]
    reactions = [feedback(1, "bob", "approved", ago=4), feedback(1, "bob", "unapproved", ago=3),
                 feedback(2, "bob", "approved", ago=4), feedback(2, "BOB", "unapproved", ago=3),
                 feedback(2, "bob", "approved", ago=2)]
    [bob] = stats(rows, reactions, weeks=8).load
    assert bob.approved == 1


def test_a_suggestion_of_nobody_is_not_a_suggestion():
    result = stats([suggestion(1), suggestion(2, "ann")],
                   [feedback(1, "dan", "final_reviewer"), feedback(2, "ann", "accepted"),
                    feedback(2, "ann", "final_reviewer")])
    assert (result.suggested, result.accepted, result.judged, result.top1) == (1, 1, 1, 1.0)
    assert [r.mr_iid for r in result.recent] == [2]


def test_an_mr_the_history_holds_is_merged_without_final_reviewer_rows():
    """The bot's own pick never acted (passed over at the merge), nobody else reviewed: merged, a miss."""
    rows = [feedback(1, "ann", "assigned", ago=0.9), feedback(1, "ann", "passed_over", ago=0.1)]
    result = stats([suggestion(1, "ann")], rows, merged=[1])
    [row] = result.recent
    assert (row.merged, row.reviewers, row.top1_hit, result.judged) == (True, [], False, 1)
    assert [r.open for r in result.load] == [0]


def test_a_closed_mr_ends_its_open_reviews_and_a_reopened_one_counts_again():
    rows = [feedback(1, "bob", "accepted", ago=0.9), feedback(1, "ann", "closed", ago=0.5)]
    result = stats([suggestion(1, "bob")], rows)
    assert (result.recent[0].closed, [(r.person, r.open) for r in result.load]) == (True, [("bob", 0)])
    result = stats([suggestion(1, "bob")], [*rows, feedback(1, "ann", "reopened", ago=0.2)])
    assert (result.recent[0].closed, [(r.person, r.open) for r in result.load]) == (False, [("bob", 1)])


def test_a_reviewer_removed_whom_the_suggestion_did_not_list_is_no_longer_a_reviewer():
    rows = [feedback(1, "cy", "assigned", ago=0.9), feedback(1, "cy", "removed", ago=0.5)]
    result = stats([suggestion(1, "ann")], rows)
    assert result.recent[0].reviewers == [] and {(r.person, r.open) for r in result.load} == {("ann", 0), ("cy", 0)}


def test_an_approval_taken_back_alone_is_no_open_review_but_a_reviewer_still_requested_keeps_theirs():
    """Someone who approved and took it back counted as an open review (and an actual reviewer) for as long as
    the merge request stayed open, though GitLab shows them neither as a reviewer nor as an approver."""
    taken_back = [("approved", 4), ("unapproved", 3)]
    histories = {
        "bob": (1, taken_back, 0),                                    # approved only, then took it back
        "cy": (2, [("assigned", 5), *taken_back], 1),                 # still requested as a reviewer
        "dan": (3, [("accepted", 5), *taken_back, ("removed", 2)], 0),
        "eve": (4, [("reviewed", 5), *taken_back], 1),                # commented: still took part
        "fay": (5, [*taken_back, ("approved", 2)], 1),                # approved again
    }
    rows = [suggestion(iid, "zed", ago=6) for iid, _, _ in histories.values()]
    reactions = [feedback(iid, person, label, ago=ago)
                 for person, (iid, labels, _) in histories.items() for label, ago in labels]
    result = stats(rows, reactions, weeks=8)
    load = {r.person: r.open for r in result.load}
    assert {person: load.get(person, 0) for person in histories} == {
        person: open_ for person, (_, _, open_) in histories.items()}
    assert {r.mr_iid: r.reviewers for r in result.recent} == {1: [], 2: ["cy"], 3: [], 4: ["eve"], 5: ["fay"]}


def test_an_mr_nobody_answered_yet_is_awaiting_the_team_and_left_out_of_the_rate():
    """Right after install the page read "Accepted 0%, 0 of 1": the one merge request was simply not answered
    yet. The bot's own rows (whom it put first, whom a term moved down, its own review request) are no answer,
    nor is another automation's reviewer change (a roulette asking someone, or taking them off); any person's
    row is, and so is a merge or a close."""
    from bot.backfill import AUTOMATION, BOT_PICK

    bots_own = [feedback(1, "ann", "suggested"), feedback(1, "bob", "moved_down_spreading"),
                FeedbackRow(next(_ids), None, 1, 1, "ann", "assigned", BOT_PICK, day(0.5), None),
                FeedbackRow(next(_ids), None, 1, 1, "bob", "assigned", AUTOMATION, day(0.5), None),
                FeedbackRow(next(_ids), None, 1, 1, "bob", "removed", AUTOMATION, day(0.5), None)]
    fresh = stats([suggestion(1, "ann", "bob")], bots_own, weeks=1)
    assert (fresh.suggested, fresh.accepted, fresh.pending, fresh.acceptance) == (1, 0, 1, None)
    assert [(w.suggested, w.accepted, w.pending, w.rate) for w in fresh.weeks] == [(1, 0, 1, None)]
    answers = {"a thumbs up": [feedback(1, "zed", "thumbs_up")],
               "someone else assigned": [feedback(1, "cy", "assigned")], "closed": [feedback(1, "ann", "closed")],
               "a person took one off": [feedback(1, "ann", "removed")],
               "why asked": [feedback(1, "cy", "why")]}
    for name, rows in answers.items():
        answered = stats([suggestion(1, "ann", "bob")], [*bots_own, *rows], weeks=1)
        assert (answered.pending, answered.acceptance) == (0, 0.0), name
    merged = stats([suggestion(1, "ann", "bob")], bots_own, weeks=1, merged=[1])
    assert (merged.pending, merged.acceptance) == (0, 0.0)
    two = stats([suggestion(1, "ann"), suggestion(2, "ann")], [feedback(2, "ann", "accepted")], weeks=1)
    assert (two.suggested, two.accepted, two.pending, two.acceptance) == (2, 1, 1, 1.0)
