"""Who a username stands for, by GitLab user id: a user who renamed themselves is still one person.

GitLab lets a user change their username (`alice` to `alice.w`); their numeric id stays. The bot keeps its
history, feedback and opt-outs under usernames, and the graph names its people nodes by them, so the bot
learns (id, username) pairs from GitLab's API answers (`bot.storage.people`; a webhook body's pairs are only a
hint to ask GitLab again, as anyone holding a webhook secret can write them) and maps names at read time: a
name a current member had before is that member (`former_names`).

Why at read time, not by rewriting the stored rows: every process keeps its own graph built from the stored
history (`bot.engine`); a rewrite would have to rebuild every one of them, while a map applied to what the
recommender returns needs nothing from the others. The history stays as it happened.

Pure functions, no I/O.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Mapping

from bot.storage.db import as_id

__all__ = ["payload_users", "last_holders", "former_names", "own_names"]

Sighting = tuple[int, str, datetime]  # (user id, username, last seen), as `bot.storage.people.Sighting`


def payload_users(body: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The (id, username) pairs a webhook body names: `user` (who acted), the top-level `reviewers` and
    `assignees`, and their `changes` (previous and current). Other user fields carry an id alone
    (`object_attributes.author_id`). A hint that someone renamed themselves, never a fact to record.

    >>> payload_users({"user": {"id": 7, "username": "alice"}, "reviewers": [{"id": 8, "username": "bob"}],
    ...                "changes": {"reviewers": {"previous": [], "current": [{"id": 8, "username": "bob"}]}}})
    [(7, 'alice'), (8, 'bob')]
    """
    users: list[Any] = [body.get("user")]
    changes = body.get("changes") if isinstance(body.get("changes"), Mapping) else {}
    for key in ("reviewers", "assignees"):
        users += _list(body.get(key))
        change = changes.get(key)
        if isinstance(change, Mapping):
            users += _list(change.get("previous")) + _list(change.get("current"))
    pairs: dict[tuple[int, str], None] = {}
    for user in users:
        if isinstance(user, Mapping) and (uid := as_id(user.get("id"))) is not None \
                and isinstance(user.get("username"), str) and user["username"]:
            pairs[(uid, user["username"])] = None
    return list(pairs)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def last_holders(sightings: Iterable[Sighting]) -> dict[str, tuple[int, str]]:
    """Each username (casefolded: GitLab's ignore case) with the id seen with it last, and its spelling then.

    >>> t0, t1 = datetime(2025, 1, 1), datetime(2025, 2, 1)
    >>> last_holders([(7, "alice", t0), (9, "Alice", t1), (7, "alice.w", t1)])
    {'alice': (9, 'Alice'), 'alice.w': (7, 'alice.w')}
    """
    last: dict[str, tuple[datetime, int, str]] = {}
    for uid, name, at in sightings:
        folded = name.casefold()
        if folded not in last or at >= last[folded][0]:
            last[folded] = (at, uid, name)
    return {folded: (uid, name) for folded, (_, uid, name) in last.items()}


def former_names(members: Iterable[tuple[int, str]], sightings: Iterable[Sighting]) -> dict[str, str]:
    """Each former username of a current member (casefolded) and the member's username now.

    `members`: (id, username) as GitLab lists them now. A name a member holds now is theirs, and a name
    someone else was seen with later is no longer this member's (GitLab frees a username on a rename, and
    anyone may take it).

    >>> t0, t1 = datetime(2025, 1, 1), datetime(2025, 2, 1)
    >>> former_names([(7, "alice.w"), (8, "bob")], [(7, "alice", t0), (7, "alice.w", t1), (7, "al", t0),
    ...                                           (9, "al", t1), (8, "bob", t1)])
    {'alice': 'alice.w'}
    """
    now = dict(members)
    taken = {name.casefold() for name in now.values()}
    return {folded: now[uid] for folded, (uid, _) in last_holders(sightings).items()
            if uid in now and folded not in taken}


def own_names(user_id: int, sightings: Iterable[Sighting]) -> list[str]:
    """The usernames `user_id` was seen with that nobody else was seen with since, as spelled then: every
    name their opt-out may be stored under.

    >>> t0, t1 = datetime(2025, 1, 1), datetime(2025, 2, 1)
    >>> own_names(7, [(7, "alice", t0), (7, "alice.w", t1), (7, "al", t0), (9, "al", t1)])
    ['alice', 'alice.w']
    """
    sightings = list(sightings)
    found: dict[str, None] = {}
    for uid, name, _ in sightings:
        if uid == user_id:
            found[name] = None
    holders = last_holders(sightings)
    return [name for name in found if holders[name.casefold()][0] == user_id]
