"""Who a username stands for by GitLab user id (`bot.people`), and the ranking under members' names now
(`bot.suggesting.as_members`): a user who renamed themselves is one person."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from bot.gitlab.simulator import SimState
from bot.people import former_names, own_names, payload_users
from bot.suggesting import MRFacts, as_members
from graph.model import Suggestion

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
T1, T2 = T0 + timedelta(days=1), T0 + timedelta(days=2)


def test_a_webhook_teaches_who_acted_and_the_reviewers_and_assignees_before_and_after():
    state = SimState()
    project = state.add_project("acme/app")
    ann, bob, cy = (state.add_user(n) for n in ("ann", "bob", "cy"))
    for user in (ann, bob, cy):
        state.add_member(project, user)
    state.add_hook(project, "http://127.0.0.1:9/hook")
    mr = state.open_mr(project, ann, ["a.py"], reviewers=[bob], assignees=[ann])
    state.set_reviewers(mr, [cy], by=ann)
    opened, changed = (event.body for event in state.outbox)
    assert payload_users(opened) == [(ann.id, "ann"), (bob.id, "bob")]
    assert payload_users(changed) == [(ann.id, "ann"), (cy.id, "cy"), (bob.id, "bob")]


def test_a_payload_without_usable_users_teaches_nothing():
    assert payload_users({"user": {"id": "7", "username": "ann"}, "reviewers": None, "changes": []}) == []
    assert payload_users({"user": {"id": 7, "username": ""}, "assignees": [{"id": 8}]}) == []


def test_a_former_username_maps_to_the_member_holding_the_id_now():
    seen = [(7, "alice", T0), (7, "alice.w", T1), (8, "bob", T1)]
    assert former_names([(7, "alice.w"), (8, "bob")], seen) == {"alice": "alice.w"}
    assert former_names([(8, "bob")], seen) == {}  # alice left: her old name is nobody's here


def test_a_username_someone_took_since_or_holds_now_is_theirs():
    seen = [(7, "alice", T0), (7, "alice.w", T1), (9, "alice", T2)]
    assert former_names([(7, "alice.w"), (9, "alice")], seen) == {}
    assert former_names([(7, "alice.w")], seen) == {}  # the newer alice left; not alice.w's name any more
    assert former_names([(7, "alice.w"), (9, "Alice")], [(7, "alice", T0), (7, "alice.w", T1)]) == {}


def test_an_optin_clears_the_names_of_the_id_nobody_took_since():
    seen = [(7, "alice", T0), (7, "al", T0), (7, "alice.w", T1), (9, "al", T2)]
    assert own_names(7, seen) == ["alice", "alice.w"] and own_names(8, seen) == []


def facts(*members: str, aliases: dict[str, str] | None = None) -> MRFacts:
    return MRFacts((), dict.fromkeys(members), frozenset(), {}, None, aliases=aliases or {})


def test_the_ranking_names_a_renamed_member_once_keeping_the_better_rank_and_its_reasons():
    f = facts("alice.w", "bob", aliases={"alice": "alice.w"})
    ranked = [Suggestion("alice", 0.9, ("reviewed src/a.py 8 times",)), Suggestion("bob", 0.5),
              Suggestion("alice.w", 0.2, ("reviewed src/b.py once",))]
    out, gone = as_members(ranked, f)
    assert out == [Suggestion("alice.w", 0.9, ("reviewed src/a.py 8 times",)), Suggestion("bob", 0.5)] and gone == 1
    later = [Suggestion("alice.w", 0.9, ("new",)), Suggestion("ALICE", 0.8, ("old",))]
    assert as_members(later, f) == ([Suggestion("alice.w", 0.9, ("new",))], 1)


def test_a_name_no_member_had_stays_as_it_is_and_is_dropped_later_as_someone_who_left():
    out, gone = as_members([Suggestion("carol", 0.9), Suggestion("bob", 0.5)], facts("bob"))
    assert [s.person for s in out] == ["carol", "bob"] and gone == 0
