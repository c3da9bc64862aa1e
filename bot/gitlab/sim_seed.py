"""A realistic, seeded project for the demo and tests: skewed activity, owned directories, owner-led review.

People act with Zipf-like frequency (a few do most of the work); each directory is owned by one to three people,
listed in `.gitlab/CODEOWNERS`, whose approval the default branch's protection requires; reviewers mostly follow
ownership. Two bots author dependency updates, one active reviewer is Busy, and one former owner is blocked
(present in old history only).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

from bot.gitlab.sim_model import SimDiff, SimProject, SimUser
from bot.gitlab.sim_state import SimState

__all__ = ["SeededProject", "seed_project"]

_FIRST = ("ada", "ben", "chen", "dana", "eli", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena", "mio",
          "nils", "omar", "pia", "quinn", "ravi", "sara", "tomas", "uma", "vik", "wen", "xavi", "yara", "zeno")
_LAST = ("Lovelace", "Okafor", "Nakamura", "Silva", "Novak", "Haddad", "Berg", "Moreau", "Kowalski", "Osei")
_DIRS = ("src/api", "src/core", "src/ui", "src/db", "src/auth", "docs", "tests", "ci", "deploy", "tools",
         "src/search", "src/billing")
_VERBS = ("Fix", "Add", "Refactor", "Speed up", "Document", "Clean up", "Harden")
_DEPS = ("requirements.txt", "package.json", "package-lock.json", "ci/base-image.yml")


@dataclass(frozen=True)
class SeededProject:
    """What `seed_project` built, so tests can state expectations about it."""

    project: SimProject
    people: tuple[SimUser, ...]
    bots: tuple[SimUser, ...]
    owners: dict[str, tuple[str, ...]]
    busy: SimUser
    blocked: SimUser


def _people(state: SimState, n: int) -> list[SimUser]:
    users = []
    for i in range(n):
        first = _FIRST[i % len(_FIRST)] + (str(i // len(_FIRST)) if i >= len(_FIRST) else "")
        users.append(state.add_user(first, f"{first.title()} {_LAST[i % len(_LAST)]}"))
    return users


def _zipf(n: int, exponent: float = 1.1) -> list[float]:
    return [1.0 / (rank + 1) ** exponent for rank in range(n)]


def _pick(rng: random.Random, people: Sequence[SimUser], weights: Sequence[float],
          exclude: set[int] | frozenset[int] = frozenset()) -> SimUser | None:
    pool = [(p, w) for p, w in zip(people, weights) if p.id not in exclude]
    if not pool:
        return None
    return rng.choices([p for p, _ in pool], [w for _, w in pool])[0]


def _owners(rng: random.Random, people: list[SimUser], weights: list[float], dirs: Sequence[str]) -> dict:
    owners: dict[str, list[SimUser]] = {}
    for d in dirs:
        chosen: list[SimUser] = []
        for _ in range(rng.choice((1, 2, 2, 3))):
            person = _pick(rng, people, weights, {p.id for p in chosen})
            if person is not None:
                chosen.append(person)
        owners[d] = chosen
    return owners


def _files(rng: random.Random, home: str, dirs: Sequence[str]) -> list[str]:
    files = {f"{home}/{rng.choice(('main', 'util', 'models', 'views', 'index', 'config', 'handlers'))}"
             f"{rng.randint(1, 6)}.{'md' if home == 'docs' else 'py'}" for _ in range(rng.choice((1, 1, 2, 3, 5)))}
    if rng.random() < 0.2:
        files.add(f"{rng.choice(dirs)}/shared.py")
    return sorted(files)


def _reviewers(rng: random.Random, author: SimUser, owners: list[SimUser], people: list[SimUser],
               weights: list[float], gone: set[int]) -> list[SimUser]:
    chosen: list[SimUser] = []
    for _ in range(1 if rng.random() < 0.7 else 2):
        exclude = {author.id} | gone | {p.id for p in chosen}
        local = [o for o in owners if o.id not in exclude]
        person = rng.choice(local) if local and rng.random() < 0.8 else _pick(rng, people, weights, exclude)
        if person is not None:
            chosen.append(person)
    return chosen


def _codeowners(owners: dict[str, list[SimUser]]) -> str:
    lines = ["# Owners per directory (later rules win)", "* @root"]
    lines += [f"/{d}/ " + " ".join(f"@{u.username}" for u in people) for d, people in owners.items() if people]
    return "\n".join(lines) + "\n"


def seed_project(state: SimState, *, path: str = "acme/widgets", n_people: int = 24, n_merged: int = 300,
                 n_open: int = 4, seed: int = 0, start: datetime | None = None, days: int = 365) -> SeededProject:
    """Fill `state` with one project and its merged history; same `seed`, same project.

    >>> s = SimState(); seeded = seed_project(s, n_people=8, n_merged=30, seed=1)
    >>> len([m for m in seeded.project.mrs.values() if m.state == "merged"])
    30
    """
    if n_people < 4:
        raise ValueError(f"seed_project needs n_people >= 4 (got {n_people}) for owners, a busy and a blocked user")
    rng = random.Random(seed)
    project = state.add_project(path, approvals_required=1)
    state.protect_branch(project, project.default_branch, code_owner_approval_required=True)
    people, weights = _people(state, n_people), _zipf(n_people)
    bots = [state.add_user("renovate-bot", "Renovate Bot", bot=True),
            state.add_user("release-bot", "Release Bot", bot=True)]
    for rank, person in enumerate(people + bots):
        state.add_member(project, person, 40 if rank < 3 else 30)
    dirs = _DIRS[: max(4, min(len(_DIRS), n_people // 2))]
    owners = _owners(rng, people, weights, dirs)
    blocked, busy = people[n_people // 3], people[1]
    begin = start or datetime(2025, 1, 1, tzinfo=timezone.utc)
    times = sorted(begin + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(n_merged))
    cutoff = begin + timedelta(days=days * 0.6)
    for when in times:
        _merge_one(state, rng, project, when, people, weights, bots, owners, dirs,
                   gone={blocked.id} if when > cutoff else set())
    state.add_file(project, ".gitlab/CODEOWNERS", _codeowners(owners))
    for _ in range(n_open):
        author = _pick(rng, people, weights, {blocked.id}) or people[0]
        home = rng.choice(dirs)
        crew = _reviewers(rng, author, owners[home], people, weights, {blocked.id})
        state.open_mr(project, author, _files(rng, home, dirs), title=f"{rng.choice(_VERBS)} {home}",
                      reviewers=crew)
    state.block_user(blocked)
    state.set_busy(busy, message="On call this week")
    return SeededProject(project, tuple(people), tuple(bots),
                         {d: tuple(u.username for u in o) for d, o in owners.items()}, busy, blocked)


def _merge_one(state: SimState, rng: random.Random, project: SimProject, when: datetime, people: list[SimUser],
               weights: list[float], bots: list[SimUser], owners: dict[str, list[SimUser]],
               dirs: Sequence[str], gone: set[int]) -> None:
    """One merged MR: a bot's dependency bump (8 %) or a person's change reviewed mostly by owners."""
    if rng.random() < 0.08:
        author, home = rng.choice(bots), "ci"
        files: list[str | SimDiff] = [rng.choice(_DEPS)]
        title = f"Update dependency {rng.choice(('aiohttp', 'react', 'numpy', 'postgres'))}"
    else:
        author = _pick(rng, people, weights, gone) or people[0]
        owned = [d for d, o in owners.items() if author in o]
        home = rng.choice(owned) if owned and rng.random() < 0.7 else rng.choice(dirs)
        files = list(_files(rng, home, dirs))
        title = f"{rng.choice(_VERBS)} {home.split('/')[-1]} {rng.choice(('handling', 'tests', 'docs', 'layout'))}"
    crew = _reviewers(rng, author, owners.get(home, []), people, weights, gone)
    approvers = [p for p in crew if rng.random() < 0.85] or crew[:1]
    state.add_merged_mr(project, author, files, reviewers=crew, approvers=approvers, merged_at=when,
                        created_at=when - timedelta(hours=rng.uniform(1, 96)), title=title)
