"""The few payload fields the handlers rely on, checked before routing.

Why: a payload with a verified secret but a field of the wrong type (an `iid` that is a string, a note
without an id) made a handler raise a TypeError or ValueError, and the worker retried the event for minutes
while every later event of that merge request waited behind it. GitLab never sends such payloads; when one
comes, it is dead-lettered at once with the field named (`reviewbot events show ID`), and nothing else waits.
"""
from __future__ import annotations

from typing import Any, Mapping

from bot.storage.db import as_id

__all__ = ["shape_problem"]

NOTE_HOOKS = ("Note Hook", "Confidential Note Hook")  # comments, and internal notes (when the hook sends them)
# (object, field) that must hold an id, per event kind; a Note Hook's merge request only on MR notes
IDS: dict[str, tuple[tuple[str, str], ...]] = {
    "Merge Request Hook": (("object_attributes", "iid"),),
    **{kind: (("object_attributes", "id"),) for kind in NOTE_HOOKS},
}


def shape_problem(kind: str, body: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields the handlers read, or None.

    >>> shape_problem("Merge Request Hook", {"object_attributes": {"iid": "abc"}})
    "object_attributes.iid is 'abc', not an id"
    >>> shape_problem("Note Hook", {"object_attributes": {"id": 5}, "merge_request": {"iid": None}})
    'merge_request.iid is None, not an id'
    """
    needed = list(IDS.get(kind, ()))
    attrs = body.get("object_attributes")
    if kind in IDS and not isinstance(attrs, Mapping):
        return "object_attributes is missing or not an object"
    if kind in (*NOTE_HOOKS, "Emoji Hook") and body.get("merge_request") is not None:  # absent: not on an MR
        if not isinstance(body["merge_request"], Mapping):
            return "merge_request is not an object"
        needed.append(("merge_request", "iid"))
    for where, name in needed:
        value = body[where].get(name)
        if as_id(value) is None:
            return f"{where}.{name} is {value!r}, not an id"
    user = body.get("user")
    if user is not None and not (isinstance(user, Mapping) and isinstance(user.get("username", ""), str)
                                 and (user.get("id") is None or as_id(user.get("id")) is not None)):
        return "user is not an object with a username and an id"
    return None
