"""Who may be suggested, table-tested one rule at a time; member items shaped like GitLab's members API."""
from __future__ import annotations

import json

import pytest

from bot.eligibility import AWAITING_SEAT, Member, access_level_name, eligible, is_bot_username
from bot.gitlab.models import UserStatus
from graph.model import Suggestion
from tests.shared_samples import GITLAB_API

MEMBERS_SAMPLE = GITLAB_API / "project_members_all.gitlab-docs.json"

MEMBERS = {
    "ann": Member(30),
    "bob": Member(40),
    "cy": Member(30),
    "dee": Member(20),
    "eve": Member(10),
    "fay": Member(30, state="blocked"),
    "gus": Member(30, state="deactivated"),
    "hal": Member(30, bot=True),
    "ivy": Member(50),
    "jo": Member(30, membership_state="awaiting"),
    "renovate-bot": Member(30),
}


def run(candidates, **overrides):
    args = dict(members=MEMBERS, statuses={}, author="cy", optouts=set(), excluded=set(), bots=set(),
                open_loads={}, max_open_reviews=None)
    args.update(overrides)
    return eligible(candidates, **args)


@pytest.mark.parametrize(
    ("name", "overrides", "reason"),
    [
        ("ann", {}, None),
        ("bob", {}, None),
        ("cy", {}, "is the author of this merge request"),
        ("CY", {}, "is the author of this merge request"),
        ("dee", {}, "has Reporter access; reviewers need at least Developer"),
        ("eve", {}, "has Guest access; reviewers need at least Developer"),
        ("bob", {"min_access_level": 50}, "has Maintainer access; reviewers need at least Owner"),
        ("dee", {"min_access_level": 20}, None),
        ("fay", {}, "has a blocked account"),
        ("gus", {}, "has a deactivated account"),
        ("hal", {}, "is a bot account"),
        ("jo", {}, AWAITING_SEAT),
        ("renovate-bot", {}, "is a bot account"),
        ("ann", {"bots": {"ANN"}}, "is a bot account"),
        ("zoe", {}, "is not a member of this project"),
        ("zoe", {"members": None}, None),
        ("ann", {"excluded": {"@ann"}}, "was excluded from this merge request with `/reviewers exclude`"),
        ("ann", {"optouts": {"Ann"}}, "has opted out of review suggestions"),
        ("ann", {"statuses": {"ann": "busy"}}, "has set their GitLab status to Busy"),
        ("ann", {"statuses": {"ann": "not_set"}}, None),
        ("ann", {"statuses": {"Ann": "BUSY"}}, "has set their GitLab status to Busy"),
        ("ann", {"open_loads": {"ann": 5}, "max_open_reviews": 5}, "already has 5 open reviews (the limit is 5)"),
        ("ann", {"open_loads": {"ann": 4}, "max_open_reviews": 5}, None),
        ("ann", {"open_loads": {"ann": 50}, "max_open_reviews": None}, None),
        ("ann", {"max_open_reviews": 0}, "already has 0 open reviews (the limit is 0)"),
        ("ann", {"open_loads": {"ann": 1}, "max_open_reviews": 1}, "already has 1 open review (the limit is 1)"),
        ("Ann", {}, None),
    ],
)
def test_one_rule_at_a_time(name, overrides, reason):
    kept, dropped = run([name], **overrides)
    if reason is None:
        assert (kept, dropped) == ([name], {})
    else:
        assert (kept, dropped) == ([], {name: reason})


def test_first_reason_wins():
    _, dropped = run(["cy", "dee"], optouts={"cy", "dee"}, statuses={"dee": "busy"})
    assert dropped == {"cy": "is the author of this merge request", "dee": "has opted out of review suggestions"}


def test_keeps_order_and_objects():
    people = [Suggestion("bob", 0.9), Suggestion("dee", 0.8), Suggestion("ann", 0.7)]
    kept, dropped = run(people)
    assert kept == [people[0], people[2]]
    assert list(dropped) == ["dee"]


def test_empty():
    assert run([]) == ([], {})


@pytest.mark.parametrize(
    ("username", "bot"),
    [
        ("ghost", True),
        ("ghost1", True),
        ("renovate-bot", True),
        ("Support_Bot", True),
        ("project_123_bot_4f8a91", True),
        ("project_7_bot", True),
        ("project_7_bot1", True),  # a project's second access token (GitLab numbers them from the second on)
        ("group_9_bot12", True),
        ("group_9_bot_77aa", True),
        ("service_account_group_5_abcd", True),
        ("abbot", False),
        ("robot", False),
        ("bot", False),
        ("ghostwriter", False),
        ("project_x_bot_1", False),
        ("alice", False),
    ],
)
def test_is_bot_username(username, bot):
    assert is_bot_username(username) is bot


@pytest.mark.parametrize(
    ("level", "name"), [(30, "Developer"), (40, "Maintainer"), (15, "Planner"), (33, "access level 33")]
)
def test_access_level_name(level, name):
    assert access_level_name(level) == name


def test_member_from_api_item():
    assert Member.from_api({"access_level": 40, "state": "blocked", "extra": 1}) == Member(40, "blocked")
    assert Member.from_api({"access_level": 30, "bot": True}) == Member(30, "active", True)
    awaiting = Member.from_api({"access_level": 30, "state": "active", "membership_state": "awaiting"})
    assert awaiting == Member(30, membership_state="awaiting")  # a missing membership_state is active (above)
    assert run(["jo"], members={"jo": awaiting})[1] == {"jo": AWAITING_SEAT}


def test_members_api_sample():
    if not MEMBERS_SAMPLE.exists():
        pytest.skip("shared GitLab samples not present")
    members = {item["username"]: Member.from_api(item) for item in json.loads(MEMBERS_SAMPLE.read_text())}
    kept, dropped = run(list(members), members=members, author="john_doe")
    assert "john_doe" in dropped
    assert set(kept) | set(dropped) == set(members)


@pytest.mark.parametrize(("status", "condition"), [
    ({"emoji": "coffee", "availability": "busy", "message": "I crave coffee :coffee:"}, "busy"),  # GitLab's docs
    ({"emoji": "palm_tree", "availability": "not_set", "message": None}, "away"),
    ({"emoji": "face_with_thermometer"}, "away"),
    ({"message": "ooo till Monday"}, "away"),
    ({"message": "Out of office, back 3 Dec"}, "away"),
    ({"message": "On parental leave"}, "away"),
    ({"emoji": "red_circle", "message": "Heads down"}, "at_capacity"),
    ({"message": "Coooool release week"}, "available"),
    ({"message": "Back from vacation"}, "available"),
    ({"emoji": None, "availability": "not_set", "message": None}, "available"),
])
def test_what_a_gitlab_status_says_of_reviewing(status, condition):
    assert UserStatus.model_validate(status).condition == condition

