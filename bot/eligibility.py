"""Who may be suggested as a reviewer: a pure filter over data the runner fetched from GitLab.

A candidate is dropped, with the first reason that applies, when they are the author; a bot account (the
user's `bot` flag, a configured bot name, or a name GitLab gives bots: `ghost`, `*-bot`, `*_bot`,
`project_<id>_bot_*`, `group_<id>_bot_*`, `service_account_*`); excluded (by the project's settings, or on
this merge request with `/reviewers exclude` or `/reviewers reroll`); opted out;
not a member of the project; below the minimum access level (Developer, 30, by default: Guests and
Reporters cannot approve); not `active` (blocked, deactivated, banned…); a member awaiting a seat (GitLab's
`membership_state` "awaiting": no access until an Owner approves them); showing the Busy status; or already
at the open-review cap. Usernames are compared case-insensitively, as GitLab does.

Reasons are plain words that complete the sentence "`@user` …", for logs and `/reviewers why`.

>>> kept, dropped = eligible(["ann", "bob", "renovate-bot"], members={"ann": Member(30), "bob": Member(20)},
...                          statuses={}, author="cy", optouts=set(), excluded=set(), bots=set(),
...                          open_loads={}, max_open_reviews=None)
>>> kept, dropped["bob"]
(['ann'], 'has Reporter access; reviewers need at least Developer')
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, TypeVar

from bot.comment import count_of

__all__ = ["ACCESS_LEVELS", "AWAITING_SEAT", "DEVELOPER", "REPORTER", "Member", "access_level_name", "eligible",
           "is_bot_username", "for_now"]

REPORTER, DEVELOPER = 20, 30
ACCESS_LEVELS = {0: "No access", 5: "Minimal Access", 10: "Guest", 15: "Planner", 20: "Reporter",
                 30: "Developer", 40: "Maintainer", 50: "Owner"}

_BOT_NAME = re.compile(
    r"ghost\d*|.+[-_]bot|(?:project|group)_\d+_bot(?:\d+|_\w+)?|service_account_\w+", re.IGNORECASE
)

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Member:
    """A project member as the eligibility filter needs it (from `GET /projects/:id/members/all`)."""

    access_level: int
    state: str = "active"
    bot: bool = False
    membership_state: str = "active"  # "awaiting": the membership waits for a seat (the member has no access)

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> "Member":
        """Build from one members API item; unknown keys are ignored, a missing `state` or `membership_state`
        counts as active."""
        return cls(int(item.get("access_level", 0)), str(item.get("state") or "active"), bool(item.get("bot")),
                   str(item.get("membership_state") or "active"))


def access_level_name(level: int) -> str:
    """GitLab's name for an access level (`30` → `Developer`); unknown levels are shown as numbers."""
    return ACCESS_LEVELS.get(level, f"access level {level}")


def is_bot_username(username: str) -> bool:
    """Whether a username is one GitLab gives to bots, or follows the `*-bot` convention.

    >>> [is_bot_username(u) for u in ("project_42_bot_9f3a", "dependency-bot", "ghost", "abbot")]
    [True, True, True, False]
    """
    return _BOT_NAME.fullmatch(username) is not None


def _name(candidate: object) -> str:
    return candidate if isinstance(candidate, str) else str(getattr(candidate, "person"))


def _how_excluded(excluded: Collection[str] | Mapping[str, str]) -> dict[str, str]:
    how = excluded if isinstance(excluded, Mapping) else dict.fromkeys(excluded, "exclude")
    return {name.lstrip("@").casefold(): way for name, way in how.items()}


def _folded(names: Iterable[str]) -> frozenset[str]:
    return frozenset(name.lstrip("@").casefold() for name in names)


def _lookup(table: Mapping[str, C], name: str) -> C | None:
    if name in table:
        return table[name]
    folded = name.casefold()
    return next((value for key, value in table.items() if key.casefold() == folded), None)


def _member_reason(member: Member | None, min_access_level: int) -> str | None:
    if member is None:
        return "is not a member of this project"
    if member.bot:
        return "is a bot account"
    if member.access_level < min_access_level:
        return (f"has {access_level_name(member.access_level)} access; reviewers need at least "
                f"{access_level_name(min_access_level)}")
    if member.state != "active":
        return f"has a {member.state} account"
    if member.membership_state == "awaiting":
        return AWAITING_SEAT
    if member.membership_state != "active":
        return f"has a membership GitLab shows as {member.membership_state}, not active"
    return None


AWAITING_SEAT = "is awaiting a seat (GitLab gives them no access to this project until an Owner approves them)"


@dataclass(frozen=True, slots=True)
class _Rules:
    """The filter's inputs, names case-folded once."""

    author: str
    bots: frozenset[str]
    excluded: Mapping[str, str]  # folded name -> how: "exclude", "reroll" (feedback labels) or "settings"
    optouts: frozenset[str]
    members: Mapping[str, Member] | None
    statuses: Mapping[str, str]
    open_loads: Mapping[str, int]
    max_open_reviews: int | None
    min_access_level: int

    def reason(self, name: str) -> str | None:
        """The first reason `name` cannot be suggested, or None."""
        folded = name.casefold()
        if folded == self.author:
            return "is the author of this merge request"
        if folded in self.bots or is_bot_username(name):
            return "is a bot account"
        if folded in self.excluded:
            return EXCLUDED_WORDS.get(self.excluded[folded], EXCLUDED_WORDS["exclude"])
        if folded in self.optouts:
            return OPTED_OUT
        if self.members is not None:
            if reason := _member_reason(_lookup(self.members, name), self.min_access_level):
                return reason
        if reason := STATUS_WORDS.get(str(_lookup(self.statuses, name) or "").casefold()):
            return reason
        return _load_reason(_lookup(self.open_loads, name) or 0, self.max_open_reviews)


STATUS_WORDS = {
    "busy": "has set their GitLab status to Busy",
    "away": "has a GitLab status saying they are away (out of office, on leave)",
    "at_capacity": "has a 🔴 GitLab status (at capacity)",
}


EXCLUDED_WORDS = {
    "exclude": "was excluded from this merge request with `/reviewers exclude`",
    "reroll": "was set aside on this merge request with `/reviewers reroll`",
    "settings": "is on the project's `exclude` list (the bot's settings)",
    "internal": "was set aside on this merge request by the team",  # in an internal note: which is not said
}
OPTED_OUT = "has opted out of review suggestions"
_FOR_NOW = frozenset({*STATUS_WORDS.values(), AWAITING_SEAT, OPTED_OUT, EXCLUDED_WORDS["exclude"],
                      EXCLUDED_WORDS["reroll"]})


_AT_LIMIT = re.compile(r"already has \d+ open reviews? \(the limit is \d+\)")


def for_now(reason: str) -> bool:
    """Whether `reason` holds someone back for now, in a way worth telling on each merge request: a status, the
    open-review limit, an opt-out, this merge request's `exclude` or `reroll`, a seat still awaited. The others
    (the author, a bot, the project's `exclude` list, access, a blocked account, set aside in an internal note)
    are no news, or none for a public comment.

    >>> for_now(STATUS_WORDS["busy"]), for_now(_load_reason(5, 5) or ""), for_now(EXCLUDED_WORDS["settings"])
    (True, True, False)
    """
    return reason in _FOR_NOW or _AT_LIMIT.fullmatch(reason) is not None


def _load_reason(load: int, cap: int | None) -> str | None:
    if cap is not None and load >= cap:
        return f"already has {count_of(load, 'open review')} (the limit is {cap})"
    return None


def eligible(
    candidates: Iterable[C],
    *,
    members: Mapping[str, Member] | None,
    statuses: Mapping[str, str],
    author: str,
    optouts: Collection[str],
    excluded: Collection[str] | Mapping[str, str],
    bots: Collection[str],
    open_loads: Mapping[str, int],
    max_open_reviews: int | None,
    min_access_level: int = DEVELOPER,
) -> tuple[list[C], dict[str, str]]:
    """Split candidates (usernames, or objects with a `.person` such as `Suggestion`) into kept and dropped.

    `members=None` means the member list is unknown: membership, access, state and the `bot` flag are then
    not checked. `statuses` maps a username to what their GitLab status says (`busy`, `away`, `at_capacity`,
    else available: `UserStatus.condition`);
    `max_open_reviews=None` means no cap. `excluded` may map each name to how they were excluded
    ("exclude", "reroll", "settings"), which the reason names. Kept candidates keep their order;
    `dropped` maps each dropped username to the reason, in plain words.
    """
    rules = _Rules(
        author.lstrip("@").casefold(), _folded(bots), _how_excluded(excluded), _folded(optouts), members, statuses,
        open_loads, max_open_reviews, min_access_level,
    )
    kept: list[C] = []
    dropped: dict[str, str] = {}
    for candidate in candidates:
        name = _name(candidate)
        reason = rules.reason(name)
        if reason is None:
            kept.append(candidate)
        else:
            dropped[name] = reason
    return kept, dropped
