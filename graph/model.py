"""The plain data the recommender works on: one reviewed change of a project's history.

A `Change` is what every reader (JSON Lines files, a git log, GitLab's API) turns its input into, and
what every recommender and the backtest consume. It is a frozen dataclass with tuples, not a pydantic
model: it is built hundreds of thousands of times in hot loops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

__all__ = ["Change", "Suggestion", "Contribution", "change_from_record", "record_of", "RecordError"]


class RecordError(ValueError):
    """A history record lacks a field the recommender needs, or has it in the wrong shape."""


@dataclass(frozen=True, slots=True)
class Change:
    """One merged change: who wrote it, who reviewed it, which files it touched, and when.

    `files` are the paths after the change; `renames` holds the ``(old path, new path)`` of each file it
    renamed (the new path is among `files`), so the old path's history follows the file
    (`OwnershipGraph.move_history`).

    >>> c = Change("1", 100, "ann", ("bob",), ("src/a.c",))
    >>> c.truth()
    frozenset({'bob'})
    """

    id: str
    time: int
    author: str
    reviewers: tuple[str, ...]
    files: tuple[str, ...]
    title: str = ""
    ackers: tuple[str, ...] = ()
    committer: str = ""
    bot_author: bool = False
    renames: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def truth(self, *, allow_author: bool = False) -> frozenset[str]:
        """The people who actually reviewed: reviewers ∪ ackers (the author only if allowed)."""
        people = set(self.reviewers) | set(self.ackers)
        if not allow_author:
            people.discard(self.author)
        return frozenset(people)


def _people(value: Any, name: str, rec_id: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise RecordError(f"record {rec_id}: {name!r} must be a list of names, got {value!r}")
    return tuple(dict.fromkeys(value))


def change_from_record(rec: Mapping[str, Any]) -> Change:
    """Build a `Change` from one record of the JSON Lines history schema (unknown keys are ignored).

    >>> change_from_record({"id": "x", "time": 5, "author": "a", "reviewers": ["b"], "files": ["f"]}).files
    ('f',)
    """
    if not isinstance(rec, Mapping):
        raise RecordError(f"a record must be a JSON object, got {type(rec).__name__} (see the history schema)")
    rec_id = str(rec.get("id", "?"))
    for key in ("time", "author", "files"):
        if key not in rec:
            raise RecordError(f"record {rec_id}: missing {key!r} (see the history schema in the README)")
    files, time, author = rec["files"], rec["time"], rec["author"]
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise RecordError(f"record {rec_id}: 'files' must be a list of paths, got {_short(files)}")
    if not isinstance(time, (int, float)) or isinstance(time, bool) or not 0 <= time < 2**40:
        raise RecordError(f"record {rec_id}: 'time' must be unix seconds, got {time!r}")
    if not isinstance(author, str) or not author.strip():
        raise RecordError(f"record {rec_id}: 'author' must be a name, got {author!r}")
    bot = rec.get("bot_author", False)
    if not isinstance(bot, bool) and bot is not None:
        raise RecordError(f"record {rec_id}: 'bot_author' must be true or false, got {bot!r}")
    return Change(
        id=rec_id,
        time=int(time),
        author=author,
        reviewers=_people(rec.get("reviewers"), "reviewers", rec_id),
        files=tuple(dict.fromkeys(files)),
        title=str(rec.get("title") or ""),
        ackers=_people(rec.get("ackers"), "ackers", rec_id),
        committer=str(rec.get("committer") or ""),
        bot_author=bool(bot),
        renames=_renames(rec.get("renames"), rec_id),
    )


def _short(value: Any) -> str:
    """`value` for an error message, cut to 120 characters (a list of 2,000 paths would fill the screen)."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _renames(value: Any, rec_id: str) -> tuple[tuple[str, str], ...]:
    """`"renames": [["old/path", "new/path"], ...]` (optional)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in value):
        raise RecordError(f"record {rec_id}: 'renames' must be a list of [old path, new path] pairs, got {value!r}")
    return tuple((old, new) for old, new in value)


def record_of(change: Change) -> dict[str, Any]:
    """The JSON Lines history record of a change (`change_from_record` reads it back).

    >>> c = Change("!7", 5, "ann", ("bob",), ("b.py",), renames=(("a.py", "b.py"),))
    >>> change_from_record(record_of(c)) == c
    True
    """
    rec: dict[str, Any] = {"id": change.id, "time": change.time, "author": change.author,
                           "reviewers": list(change.reviewers), "files": list(change.files)}
    for key, value in (("title", change.title), ("ackers", list(change.ackers)), ("committer", change.committer),
                       ("bot_author", change.bot_author), ("renames", [list(p) for p in change.renames])):
        if value:
            rec[key] = value
    return rec


class Contribution(NamedTuple):
    """How one signal moved a person's score (`effect`, + raises), with the person's value of it and the
    other candidates' typical value in plain units ("3 days ago", "42%"; empty when not known)."""

    signal: str
    effect: float
    value: str = ""
    others: str = ""


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggested reviewer: who, how strongly, and the evidence in plain words.

    `reasons` are short phrases ready for a comment ("reviewed 14 changes under `drivers/net/` (last 12 days
    ago)"); `contributions` say how much each feature moved this person's score, for `/reviewers why`;
    `basis` says, when it is not the recommender's own ranking, what their score and contributions are (e.g.
    the ownership score alone, for someone outside the learned ranker's shortlist).
    """

    person: str
    score: float
    reasons: tuple[str, ...] = ()
    contributions: tuple[Contribution, ...] = ()
    basis: str = ""
