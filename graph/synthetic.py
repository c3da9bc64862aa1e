"""A synthetic, realistically skewed review history, for benchmarks and tests at sizes no fixture has.

Real review histories are lopsided, and a recommender's speed and accuracy depend on that shape, so the
generator reproduces the main skews seen in the real data sets:

* a directory tree 1–5 levels deep (file paths of 2–6 components) whose directories hold heavy-tailed numbers
  of files, some of them much more often changed than others;
* people with Zipf-like activity who join and leave over time; a few bot accounts (``renovate-bot``, …);
* *areas* (the directories at the first two levels) that each have one to three owners, who review most
  changes there and are replaced when they leave;
* authors who mostly work in one to three home areas and have usual reviewers of their own;
* heavy-tailed change sizes: most touch 1–5 files, a few hundreds or up to 2,000 (those span a top-level tree);
* reviewers drawn mostly from the area's owners, then the author's usual reviewers, sometimes anyone active;
  never the author, never a bot.

It is pure and deterministic: the same arguments and seed give the same history (with the same numpy, whose
generators keep their streams across releases in practice but do not promise to). Changes are generated in
blocks and streamed, so only the tree, the people and one block are held at a time.

>>> changes = list(synthetic_history(50, 40, 10, seed=1))
>>> len(changes), all(a.time <= b.time for a, b in zip(changes, changes[1:]))
(50, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from graph.model import Change

__all__ = ["synthetic_history", "BOT_NAMES"]

BOT_NAMES = ("renovate-bot", "dependabot[bot]", "gitlab-bot", "release-bot", "translation-bot")
DAY = 86400
_WORDS = ("core", "net", "api", "util", "docs", "drivers", "fs", "mm", "ui", "tests", "lib", "tools", "cmd",
          "server", "client", "auth", "db", "cache", "build", "plugins", "web", "io", "crypto", "sched")
_EXTS = ("c", "h", "py", "go", "md", "js", "ts", "rs", "yml", "java")
_BLOCK = 2048
_MAX_FILES = 2000
_SMALL = 8  # larger changes take distinct files, uniformly
_WIDE = 50  # larger changes span a top-level tree
_REVIEWERS_CDF = np.array([0.04, 0.64, 0.92, 1.0])  # 0, 1, 2 or 3 reviewers
_TRIES = 6


@dataclass(frozen=True)
class _Tree:
    """Files in depth-first order, so every directory's subtree is one contiguous range of file indices."""

    paths: list[str]
    hot_cum: np.ndarray  # cumulative per-file change weights
    area_lo: np.ndarray  # area a holds files area_lo[a] .. area_hi[a] - 1
    area_hi: np.ndarray
    top_lo: np.ndarray  # the range of the top-level directory each area lies in
    top_hi: np.ndarray
    area_cum: np.ndarray  # cumulative area weights, to pick an area


@dataclass(frozen=True)
class _People:
    names: list[str]
    weight: np.ndarray  # Zipf-like activity
    join: np.ndarray  # active for change indices join <= i < leave
    leave: np.ndarray
    bot: np.ndarray
    homes: np.ndarray  # (people, 3) home areas, padded by repeating the first
    home_n: np.ndarray
    buddies: list[tuple[int, ...]]


def synthetic_history(
    n_changes: int,
    n_files: int,
    n_people: int,
    *,
    seed: int = 0,
    start_time: int = 1_600_000_000,
    span_days: float = 3 * 365,
    bot_share: float = 0.02,
    leaver_share: float = 0.3,
) -> Iterator[Change]:
    """Yield `n_changes` changes over `n_files` files by at most `n_people` people, oldest first.

    Times run from `start_time` (unix seconds) over `span_days`; about `bot_share` of the changes are by bots
    (``bot_author=True``); `leaver_share` of the people leave before the end. Arguments are checked here;
    the history itself is generated lazily.
    """
    if n_changes < 0 or n_files < 1:
        raise ValueError(f"need n_changes >= 0 and n_files >= 1, got {n_changes} and {n_files}")
    if n_people < 3:
        raise ValueError(f"need n_people >= 3 (an author and reviewers), got {n_people}")
    if not (0 <= bot_share < 1 and 0 <= leaver_share < 1):
        raise ValueError(f"bot_share and leaver_share must lie in [0, 1), got {bot_share}, {leaver_share}")
    if n_changes == 0:
        return iter(())
    return _generate(n_changes, n_files, n_people, seed, start_time, span_days, bot_share, leaver_share)


def _generate(
    n_changes: int, n_files: int, n_people: int, seed: int, start_time: int, span_days: float,
    bot_share: float, leaver_share: float,
) -> Iterator[Change]:
    rng = np.random.default_rng(seed)
    tree = _build_tree(rng, n_files)
    people = _make_people(rng, n_people, n_changes, len(tree.area_lo), bot_share, leaver_share)
    owners = _Owners(rng, people, tree)
    gaps = rng.exponential(size=n_changes)
    times = (start_time + np.cumsum(gaps) / gaps.sum() * span_days * DAY).astype(np.int64).tolist()
    for start in range(0, n_changes, _BLOCK):
        size = min(_BLOCK, n_changes - start)
        owners.refresh(start)
        yield from _block(rng, tree, people, owners, start, times[start:start + size], bot_share)


def _dirs(rng: np.random.Generator, n_dirs: int, n_top: int) -> tuple[list[int], list[int], list[str]]:
    """A random directory tree: parent, level and name of each directory (-1 is the root).

    New directories attach preferentially to older ones, which keeps the tree shallow and its fan-out skewed.
    """
    parent, level, kids = [-1] * n_top, [1] * n_top, [0] * n_dirs
    names = [_WORDS[i % len(_WORDS)] + (str(i // len(_WORDS)) if i >= len(_WORDS) else "") for i in range(n_top)]
    open_dirs = list(range(n_top))
    for d, u in zip(range(n_top, n_dirs), rng.random(max(0, n_dirs - n_top)).tolist()):
        p = open_dirs[int(u * u * len(open_dirs))]
        k = kids[p]
        kids[p] += 1
        parent.append(p)
        level.append(level[p] + 1)
        names.append(_WORDS[(k + p) % len(_WORDS)] + (str(k // len(_WORDS)) if k >= len(_WORDS) else ""))
        if level[d] < 5:
            open_dirs.append(d)
    return parent, level, names


def _dfs(parent: list[int]) -> list[int]:
    """Directories in depth-first pre-order (children in creation order)."""
    children: list[list[int]] = [[] for _ in parent]
    roots = []
    for d, p in enumerate(parent):
        (roots if p < 0 else children[p]).append(d)
    order, stack = [], roots[::-1]
    while stack:
        d = stack.pop()
        order.append(d)
        stack.extend(children[d][::-1])
    return order


def _build_tree(rng: np.random.Generator, n_files: int) -> _Tree:
    n_top = int(np.clip(round(n_files**0.25), 2, 30))
    n_dirs = max(n_top, n_files // 15)
    parent, level, names = _dirs(rng, n_dirs, n_top)
    counts = rng.multinomial(n_files, _normalised(rng.pareto(1.2, n_dirs) + 0.05))
    full, top, area = [""] * n_dirs, [0] * n_dirs, [0] * n_dirs
    paths, file_area, file_top = [], [], []
    for d in _dfs(parent):
        p = parent[d]
        full[d] = names[d] if p < 0 else f"{full[p]}/{names[d]}"
        top[d] = d if p < 0 else top[p]
        area[d] = d if level[d] <= 2 else area[p]
        ext = _EXTS[top[d] % len(_EXTS)]
        for j in range(int(counts[d])):
            paths.append(f"{full[d]}/f{j}.{ext}")
            file_area.append(area[d])
            file_top.append(top[d])
    return _tree_from(rng, paths, np.array(file_area), np.array(file_top))


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _ranges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For keys sorted in runs: each run's key, first index and end index."""
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], starts, np.r_[starts[1:], len(keys)]


def _tree_from(rng: np.random.Generator, paths: list[str], file_area: np.ndarray, file_top: np.ndarray) -> _Tree:
    """Index the areas (runs of files sharing an area directory) and give files heavy-tailed hotness."""
    _, area_lo, area_hi = _ranges(file_area)
    tops, t_lo, t_hi = _ranges(file_top)
    which_top = np.searchsorted(t_lo, area_lo, side="right") - 1
    hot = rng.pareto(1.1, len(paths)) + 0.01
    sizes = (area_hi - area_lo).astype(float)
    return _Tree(paths, np.cumsum(hot), area_lo, area_hi, t_lo[which_top], t_hi[which_top],
                 np.cumsum(sizes**0.8 * (rng.pareto(1.5, len(sizes)) + 0.2)))


def _make_people(
    rng: np.random.Generator, n_people: int, n_changes: int, n_areas: int, bot_share: float, leaver_share: float
) -> _People:
    """People 0, 1, 2 … in decreasing activity; the last few are bots, active throughout, never reviewing."""
    n_bots = 0 if bot_share == 0 else min(len(BOT_NAMES), max(1, n_people // 800), n_people - 3)
    humans = n_people - n_bots
    weight = 1.0 / np.arange(1, n_people + 1) ** 1.1
    join = np.where(rng.random(n_people) < 0.2, 0, (rng.random(n_people) * 0.9 * n_changes)).astype(np.int64)
    join[: max(3, humans // 20)] = 0
    leaves = rng.random(n_people) < leaver_share
    leaves[:3] = False
    leave_at = join + 0.1 * n_changes + rng.random(n_people) * (n_changes - join)
    leave = np.where(leaves, leave_at, n_changes + 1).astype(np.int64)
    bot = np.zeros(n_people, dtype=bool)
    bot[humans:] = True
    join[humans:], leave[humans:] = 0, n_changes + 1
    names = [f"dev{p:05d}" for p in range(humans)] + list(BOT_NAMES[:n_bots])
    home_n = rng.integers(1, 4, n_people)
    homes = _home_areas(rng, n_people, n_areas, home_n)
    buddies = [tuple(int(b) for b in rng.integers(0, humans, 2)) for _ in range(n_people)]
    return _People(names, weight, join, leave, bot, homes, home_n, buddies)


def _home_areas(rng: np.random.Generator, n_people: int, n_areas: int, home_n: np.ndarray) -> np.ndarray:
    """Up to three home areas each, popular areas more often (Zipf over a random area order)."""
    popularity = _normalised(1.0 / np.arange(1, n_areas + 1) ** 0.9)[rng.permutation(n_areas)]
    homes = rng.choice(n_areas, size=(n_people, 3), p=popularity)
    homes[home_n < 2, 1] = homes[home_n < 2, 0]
    homes[home_n < 3, 2] = homes[home_n < 3, 0]
    return homes


class _Owners:
    """The owners of each area, replaced (by active people, weighted by activity) when they leave."""

    def __init__(self, rng: np.random.Generator, people: _People, tree: _Tree) -> None:
        self._rng, self._people = rng, people
        self._leave = people.leave.tolist()
        n_areas = len(tree.area_lo)
        self.want = (1 + (rng.random(n_areas) < 0.6) + (rng.random(n_areas) < 0.25)).tolist()
        self.by_area: list[list[int]] = [[] for _ in range(n_areas)]
        self._done = -1

    def active_cum(self, at: int) -> np.ndarray:
        """Cumulative activity weights of the humans active at change index `at`."""
        p = self._people
        return np.cumsum(p.weight * ((p.join <= at) & (p.leave > at) & ~p.bot))

    def refresh(self, at: int) -> None:
        """Drop owners who have left by `at` and fill every area back up to its wanted number of owners."""
        if self._done >= 0 and not any(self._done < self._leave[o] <= at for a in self.by_area for o in a):
            self._done = at
            return
        cum = self.active_cum(at)
        for area, current in enumerate(self.by_area):
            current[:] = [o for o in current if self._leave[o] > at]
            for _ in range(2 * self.want[area]):
                if len(current) >= self.want[area]:
                    break
                o = int(np.searchsorted(cum, self._rng.random() * cum[-1], side="right"))
                if o not in current:
                    current.append(o)
        self._done = at


def _draw_files(rng: np.random.Generator, tree: _Tree, lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> np.ndarray:
    """`k[j]` file indices from files lo[j] .. hi[j] - 1, by hotness, all changes at once (with repeats)."""
    lo_r, hi_r = np.repeat(lo, k), np.repeat(hi, k)
    base = np.where(lo_r > 0, tree.hot_cum[lo_r - 1], 0.0)
    u = base + rng.random(len(lo_r)) * (tree.hot_cum[hi_r - 1] - base)
    return np.clip(np.searchsorted(tree.hot_cum, u, side="right"), lo_r, hi_r - 1)


def _block(
    rng: np.random.Generator, tree: _Tree, people: _People, owners: _Owners, start: int, times: list[int],
    bot_share: float,
) -> Iterator[Change]:
    """Draw one block of changes with array operations, then assemble each change."""
    size = len(times)
    cum = owners.active_cum(start)
    authors = np.searchsorted(cum, rng.random(size) * cum[-1], side="right")
    bots = np.flatnonzero(people.bot)
    if len(bots):
        is_bot = rng.random(size) < bot_share
        authors[is_bot] = bots[rng.integers(0, len(bots), int(is_bot.sum()))]
    area = _areas(rng, tree, people, authors)
    k = np.minimum(np.floor(rng.pareto(1.3, size) * 1.8).astype(np.int64) + 1, min(_MAX_FILES, len(tree.paths)))
    wide = (k >= 4) & (rng.random(size) < 0.3) | (k > _WIDE)
    lo = np.where(wide, tree.top_lo[area], tree.area_lo[area])
    hi = np.where(wide, tree.top_hi[area], tree.area_hi[area])
    small = np.where(k > _SMALL, 0, k)
    picks = _draw_files(rng, tree, lo, hi, small).tolist()
    offsets = np.r_[0, np.cumsum(small)].tolist()
    n_rev = np.searchsorted(_REVIEWERS_CDF, rng.random(size), side="right").tolist()
    src, pick = rng.random((size, _TRIES)).tolist(), rng.random((size, _TRIES)).tolist()
    anyone = np.searchsorted(cum, rng.random((size, _TRIES)) * cum[-1], side="right").tolist()
    k_, lo_, hi_, area_ = k.tolist(), lo.tolist(), hi.tolist(), area.tolist()
    names, bot, join, leave = people.names, people.bot.tolist(), people.join.tolist(), people.leave.tolist()
    for j, author in enumerate(authors.tolist()):
        if k_[j] > _SMALL:
            files = _distinct_files(rng, tree, lo_[j], hi_[j], k_[j])
        else:
            files = tuple(dict.fromkeys(tree.paths[f] for f in picks[offsets[j]:offsets[j + 1]]))
        buddies = [b for b in people.buddies[author] if join[b] <= start + j < leave[b]]
        reviewers = _reviewers(author, n_rev[j], (owners.by_area[area_[j]], buddies, anyone[j]), src[j], pick[j])
        yield Change(f"s{start + j}", times[j], names[author], tuple(names[r] for r in reviewers), files,
                     title=f"Update {files[0].rsplit('/', 1)[-1]}",
                     committer=names[reviewers[0] if reviewers else author], bot_author=bot[author])


def _areas(rng: np.random.Generator, tree: _Tree, people: _People, authors: np.ndarray) -> np.ndarray:
    """Each change's area: mostly one of the author's homes (the first most), else any area by weight."""
    which = np.minimum((rng.random(len(authors)) ** 1.5 * people.home_n[authors]).astype(np.int64), 2)
    home = people.homes[authors, which]
    roam = np.searchsorted(tree.area_cum, rng.random(len(authors)) * tree.area_cum[-1], side="right")
    return np.where(rng.random(len(authors)) < 0.85, home, np.minimum(roam, len(tree.area_lo) - 1))


def _distinct_files(rng: np.random.Generator, tree: _Tree, lo: int, hi: int, k: int) -> tuple[str, ...]:
    """A larger change: `k` distinct files of lo .. hi - 1 (all of them when fewer), in path order."""
    if k >= hi - lo:
        return tuple(tree.paths[lo:hi])
    chosen = np.sort(rng.choice(hi - lo, size=k, replace=False)) + lo
    return tuple(tree.paths[f] for f in chosen.tolist())


def _reviewers(
    author: int, wanted: int, candidates: tuple[list[int], list[int], list[int]], src: list[float],
    pick: list[float],
) -> list[int]:
    """Up to `wanted` reviewers: an area owner (65 %, the first owners most), one of the author's usual
    reviewers (20 %, those active now) or anyone active (15 %); never the author, never twice."""
    owners, buddies, anyone = candidates
    chosen: list[int] = []
    for t in range(_TRIES):
        if len(chosen) >= wanted:
            break
        if src[t] < 0.65 and owners:
            person = owners[int(pick[t] * pick[t] * len(owners))]
        elif src[t] < 0.85 and buddies:
            person = buddies[t % len(buddies)]
        else:
            person = anyone[t]
        if person != author and person not in chosen:
            chosen.append(person)
    return chosen
