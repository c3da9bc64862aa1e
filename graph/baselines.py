"""Baseline reviewer recommenders: the yardsticks any smarter ranker has to beat in the backtest.

Each class follows the `graph.backtest.Recommender` protocol: `recommend(change, k)` ranks people using only
the changes passed to `observe` so far, best first. With `allow_author=False` (the default, the field's
convention) a change's author is never proposed; `allow_author=True` replicates the classic Gerrit benchmarks,
where self-approvals count as reviews. The people of a past change are its ground truth,
`change.truth(allow_author=...)`, i.e. reviewers ∪ ackers.

* `RevFinder` — Thongtanunam et al., SANER 2015: file-path similarity to past reviews, four comparators
  fused by Borda count.
* `Frequency` — reviewers of the same files, then of their directories (deepest first), then overall.
* `AuthorsReviewers` — who reviewed this author's past changes, then overall.
* `MostFrequent` — the most frequent reviewers so far (a sanity check of the harness).
* `RandomReviewer` — past reviewers drawn at random (the floor).

>>> from graph.model import Change
>>> rec = Frequency()
>>> rec.observe(Change("1", 1, "ann", ("bob",), ("src/a.c",)))
>>> rec.recommend(Change("2", 2, "cid", (), ("src/a.c",)), 3)
['bob']
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Hashable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from scipy import sparse

from graph.model import Change

__all__ = [
    "BASELINES",
    "AuthorsReviewers",
    "Frequency",
    "MostFrequent",
    "RandomReviewer",
    "RevFinder",
    "borda_count",
    "longest_common_prefix",
    "longest_common_subsequence",
    "longest_common_substring",
    "longest_common_suffix",
    "path_similarity",
]

T = TypeVar("T", bound=Hashable)
Parts = tuple[str, ...]


# --- RevFinder's four string comparators, over path components -------------------------------------------


def longest_common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """Number of leading components `a` and `b` share.

    >>> longest_common_prefix(("src", "net", "a.c"), ("src", "net", "b.c"))
    2
    """
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def longest_common_suffix(a: Sequence[str], b: Sequence[str]) -> int:
    """Number of trailing components `a` and `b` share.

    >>> longest_common_suffix(("x", "doc", "index.md"), ("y", "doc", "index.md"))
    2
    """
    return longest_common_prefix(tuple(reversed(a)), tuple(reversed(b)))


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive components found in both.

    >>> longest_common_substring(("a", "net", "phy", "x.c"), ("b", "net", "phy", "y.c"))
    2
    """
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def longest_common_subsequence(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest sequence of components found in both in the same order, gaps allowed.

    >>> longest_common_subsequence(("src", "a", "net", "x.c"), ("src", "net", "b", "x.c"))
    3
    """
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


COMPARATORS = (
    longest_common_prefix,
    longest_common_suffix,
    longest_common_substring,
    longest_common_subsequence,
)


def _split(path: str) -> Parts:
    return tuple(path.split("/"))


def _raw_comparators(a: Parts, b: Parts) -> tuple[int, int, int, int]:
    lcp, lcsuff, lcsubstr, lcsubseq = (fn(a, b) for fn in COMPARATORS)
    return lcp, lcsuff, lcsubstr, lcsubseq


def path_similarity(p: str, q: str) -> tuple[float, float, float, float]:
    """RevFinder's four file-path similarities (LCP, LCSuff, LCSubstr, LCSubseq), each over `/`-separated
    components and divided by the longer path's number of components.

    >>> path_similarity("src/net/a.c", "src/net/b.c")
    (0.6666666666666666, 0.0, 0.6666666666666666, 0.6666666666666666)
    """
    a, b = _split(p), _split(q)
    longest = max(len(a), len(b))
    return tuple(v / longest for v in _raw_comparators(a, b))  # type: ignore[return-value]


def borda_count(rankings: Iterable[Sequence[T]]) -> Counter[T]:
    """Borda points of every candidate: in a ranking of M, the first gets M points, the last 1, absentees 0.

    >>> sorted(borda_count([["ann", "bob"], ["bob"]]).items())
    [('ann', 2), ('bob', 2)]
    """
    points: Counter[T] = Counter()
    for ranking in rankings:
        for i, candidate in enumerate(ranking):
            points[candidate] += len(ranking) - i
    return points


# --- RevFinder's exact speed-up: directories as the unit, basenames as corrections --------------------------


class _GrowingWeights:
    """A sparse rows × people matrix of weights that grows by additions and is read through products.

    Additions land in a small numpy buffer that is folded into a CSR matrix whenever it fills, so both adding
    a change and scoring one stay cheap over a history of tens of thousands of changes.
    """

    def __init__(self, flush_every: int = 4096) -> None:
        self._csr = sparse.csr_matrix((0, 0))
        self._rows = np.zeros(flush_every, dtype=np.int64)
        self._cols = np.zeros(flush_every, dtype=np.int64)
        self._vals = np.zeros(flush_every)
        self._n = 0

    def add(self, row: int, cols: Sequence[int], weight: float) -> None:
        end = self._n + len(cols)
        if end > len(self._rows):
            self._flush()
            end = len(cols)
            if end > len(self._rows):
                buffers = (self._rows, self._cols, self._vals)
                self._rows, self._cols, self._vals = (np.resize(a, end) for a in buffers)
        self._rows[self._n : end] = row
        self._cols[self._n : end] = cols
        self._vals[self._n : end] = weight
        self._n = end

    def _flush(self) -> None:
        n = self._n
        if not n:
            return
        rows, cols = self._rows[:n], self._cols[:n]
        shape = (max(self._csr.shape[0], int(rows.max()) + 1), max(self._csr.shape[1], int(cols.max()) + 1))
        head = self._csr
        head.resize(shape)
        self._csr = (head + sparse.csr_matrix((self._vals[:n], (rows, cols)), shape=shape)).tocsr()
        self._n = 0

    def left_multiply(self, coef: np.ndarray, n_cols: int, rows: np.ndarray | None = None) -> np.ndarray:
        """`coef.T @ self`, transposed: shape (n_cols, k) for a dense `coef` of shape (rows, k).

        `rows`, when given, lists the only rows where `coef` is non-zero, to skip the others.
        """
        out = np.zeros((n_cols, coef.shape[1]))
        head_rows, width = self._csr.shape
        if head_rows and width:
            if rows is None:
                out[:width] = self._csr.T @ coef[:head_rows]
            else:
                rows = rows[rows < head_rows]
                out[:width] = self._csr[rows].T @ coef[rows]
        if self._n:
            tail_rows, tail_cols, vals = self._rows[: self._n], self._cols[: self._n], self._vals[: self._n]
            for j in range(coef.shape[1]):
                out[:, j] += np.bincount(tail_cols, weights=coef[tail_rows, j] * vals, minlength=n_cols)
        return out


class _PathIndex:
    """Every past file and directory, as component ids, with the look-ups RevFinder's speed-up needs."""

    def __init__(self) -> None:
        self.component: dict[str, int] = {}
        self.file_id: dict[str, int] = {}
        self.file_parts: list[Parts] = []
        self.file_dir: list[int] = []
        self.dir_id: dict[Parts, int] = {}
        self.named: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        self.in_dir: dict[str, set[int]] = defaultdict(set)
        self._left = np.full((0, 0), -1, dtype=np.int32)
        self._right = np.full((0, 0), -1, dtype=np.int32)
        self._len = np.zeros(0, dtype=np.int32)
        self.n_dirs = 0

    def dir_matrices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Past directories as component ids padded with -1: left-aligned, right-aligned, and lengths."""
        n = self.n_dirs
        return self._left[:n], self._right[:n], self._len[:n]

    def encode(self, parts: Parts) -> np.ndarray:
        """Component ids of `parts`; a component never seen becomes -2, which matches nothing."""
        return np.array([self.component.get(c, -2) for c in parts], dtype=np.int32)

    def add_file(self, path: str) -> tuple[int, int]:
        """Register `path` (once) and return its file id and directory id."""
        if path in self.file_id:
            f = self.file_id[path]
            return f, self.file_dir[f]
        parts = _split(path)
        d = self._add_dir(parts[:-1])
        f = self.file_id[path] = len(self.file_parts)
        self.file_parts.append(parts)
        self.file_dir.append(d)
        files, dirs = self.named[parts[-1]]
        files.append(f)
        dirs.append(d)
        for c in set(parts[:-1]):
            self.in_dir[c].add(f)
        return f, d

    def _add_dir(self, parts: Parts) -> int:
        if parts in self.dir_id:
            return self.dir_id[parts]
        d = self.dir_id[parts] = self.n_dirs
        ids = [self.component.setdefault(c, len(self.component)) for c in parts]
        self._grow(d + 1, len(ids))
        if ids:
            self._left[d, : len(ids)] = ids
            self._right[d, -len(ids) :] = ids
        self._len[d] = len(ids)
        self.n_dirs += 1
        return d

    def _grow(self, rows: int, width: int) -> None:
        cap, old_width = self._left.shape
        if rows <= cap and width <= old_width:
            return
        new_cap, new_width = max(rows, 2 * cap, 64), max(width, old_width)
        left = np.full((new_cap, new_width), -1, dtype=np.int32)
        right = np.full((new_cap, new_width), -1, dtype=np.int32)
        left[:cap, :old_width] = self._left
        right[:cap, new_width - old_width :] = self._right
        self._left, self._right, self._len = left, right, np.resize(self._len, new_cap)


def _dir_comparators(query: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """LCP, LCSuff, LCSubstr and LCSubseq (rows of the result) of one directory against many at once.

    `query` holds component ids; `left` one directory a row, padded with -1 on the right, `right` the same rows
    aligned to the right. Padding never equals a component, so it never extends a match.
    """
    n, width = left.shape
    out = np.zeros((4, n), dtype=np.int32)
    m = min(len(query), width)
    if m == 0 or n == 0:
        return out
    eq = left[:, None, :] == query[None, :, None]
    out[0] = np.cumprod(eq[:, np.arange(m), np.arange(m)], axis=1).sum(axis=1)
    tail_eq = right[:, ::-1][:, :m] == query[::-1][None, :m]
    out[1] = np.cumprod(tail_eq, axis=1).sum(axis=1)
    out[2], out[3] = _runs_and_subsequences(eq)
    return out


def _runs_and_subsequences(eq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longest common substring and subsequence from the (n, a, width) equality cube, one DP row at a time.

    The subsequence row uses max(up, diagonal + match) followed by a running maximum along the row, which
    equals the textbook recurrence because each LCS row is non-decreasing.
    """
    n, a, width = eq.shape
    run = np.zeros((n, width), dtype=np.int32)
    lcs = np.zeros((n, width + 1), dtype=np.int32)
    best = np.zeros(n, dtype=np.int32)
    for i in range(a):
        match = eq[:, i, :]
        shifted = np.zeros_like(run)
        shifted[:, 1:] = run[:, :-1]
        run = (shifted + 1) * match
        best = np.maximum(best, run.max(axis=1))
        lcs[:, 1:] = np.maximum.accumulate(np.maximum(lcs[:, 1:], lcs[:, :-1] + match), axis=1)
    return best, lcs[:, -1]


class _People:
    """People seen as reviewers so far, numbered in order of first appearance (the deterministic tie-break)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def add(self, people: Iterable[str]) -> list[int]:
        """Number `people` (sorted, so numbering never depends on set order) and return their numbers."""
        numbers = []
        for person in sorted(people):
            if person not in self.index:
                self.index[person] = len(self.names)
                self.names.append(person)
            numbers.append(self.index[person])
        return numbers


class RevFinder:
    """RevFinder (Thongtanunam et al., SANER 2015): people who reviewed files with similar paths.

    For a new change R and every past change P, each comparator c (LCP, LCSuff, LCSubstr, LCSubseq over path
    components, divided by the longer path's length) gives the review similarity
    ``sum(sim_c(f, g) for f in R for g in P) / (|R| |P|)``, credited to every reviewer of P. The four score
    maps become four rankings fused by Borda count; ties go to whoever started reviewing first.

    The result is exact, but computed without visiting past changes: per past file g the recommender keeps
    ``reviewer -> sum of 1/|P| over P containing g``, folded per directory. Outside rare cases (a file name that
    is also a directory name in the other path), the four comparators of two paths follow from those of their
    directories plus whether their file names are equal, so R is compared with every past *directory* at once
    (numpy) and corrected with the past files sharing a file name with R's — both exact.

    >>> rec = RevFinder()
    >>> rec.observe(Change("1", 1, "ann", ("bob",), ("src/net/a.c",)))
    >>> rec.observe(Change("2", 2, "ann", ("eve",), ("doc/index.md",)))
    >>> rec.recommend(Change("3", 3, "cid", (), ("src/net/b.c",)), 5)
    ['bob']
    """

    name = "revfinder"

    def __init__(self, *, allow_author: bool = False, cache_size: int = 2048) -> None:
        self.allow_author = allow_author
        self.cache_size = cache_size
        self._people = _People()
        self._index = _PathIndex()
        self._by_dir = _GrowingWeights()
        self._by_file = _GrowingWeights()
        self._dir_cache: dict[Parts, np.ndarray] = {}

    def observe(self, change: Change) -> None:
        """Credit `1/|files|` per file of `change` to each of its reviewers."""
        people = change.truth(allow_author=self.allow_author)
        if not people or not change.files:
            return
        cols = self._people.add(people)
        weight = 1.0 / len(change.files)
        for path in change.files:
            f, d = self._index.add_file(path)
            self._by_file.add(f, cols, weight)
            self._by_dir.add(d, cols, weight)

    def comparator_scores(self, change: Change) -> list[dict[str, float]]:
        """The four score maps (LCP, LCSuff, LCSubstr, LCSubseq): person -> summed review similarity > 0."""
        scores = self._scores(change)
        return [{self._people.names[i]: float(row[i]) for i in np.flatnonzero(row > 0)} for row in scores]

    def recommend(self, change: Change, k: int) -> list[str]:
        """Up to `k` people by Borda count over the four comparators; people with no similarity are left out."""
        scores = self._scores(change)
        if not self.allow_author and change.author in self._people.index:
            scores[:, self._people.index[change.author]] = 0.0
        return [self._people.names[i] for i in _borda_order(scores)[:k]]

    def _scores(self, change: Change) -> np.ndarray:
        """The four comparators' scores, shape (4, people)."""
        n_people = len(self._people)
        if not change.files or not n_people:
            return np.zeros((4, n_people))
        dir_coef = np.zeros((self._index.n_dirs, 4))
        file_coef = np.zeros((len(self._index.file_parts), 4))
        lengths = self._index.dir_matrices()[2]
        for parts, bases in _group_by_dir(change.files).items():
            raw = self._dir_raw(parts)
            norm = np.maximum(len(parts), lengths) + 1.0
            dir_coef[:, [0, 2, 3]] += (len(bases) * raw[[0, 2, 3]] / norm).T
            for base in bases:
                self._correct(file_coef, parts, base, raw, norm)
        total = self._by_dir.left_multiply(dir_coef, n_people)
        touched = np.flatnonzero(file_coef.any(axis=1))
        total += self._by_file.left_multiply(file_coef, n_people, rows=touched)
        return total.T / len(change.files)

    def _dir_raw(self, parts: Parts) -> np.ndarray:
        """Integer comparators of directory `parts` against every past directory, cached and extended."""
        left, right, _ = self._index.dir_matrices()
        cached = self._dir_cache.pop(parts, np.zeros((4, 0), dtype=np.int32))
        if cached.shape[1] < len(left):
            query = self._index.encode(parts)
            fresh = _dir_comparators(query, left[cached.shape[1] :], right[cached.shape[1] :])
            cached = np.concatenate([cached, fresh], axis=1)
        while self._dir_cache and len(self._dir_cache) >= self.cache_size:
            self._dir_cache.pop(next(iter(self._dir_cache)))  # least recently used: re-inserted on use
        if self.cache_size > 0:
            self._dir_cache[parts] = cached
        return cached

    def _correct(self, coef: np.ndarray, parts: Parts, base: str, raw: np.ndarray, norm: np.ndarray) -> None:
        """Add, per past file, what the directory-level formula missed for file `parts/base`.

        The directory formula assumes file names match nothing. A past file with the same name gains
        [same directory, 1 + LCSuff, max(LCSubstr, 1 + LCSuff) - LCSubstr, 1]; files where a file name also
        appears as a directory name in the other path ("crossing") are recomputed exactly.
        """
        index = self._index
        crossing = set(index.in_dir.get(base, ()))
        for c in parts:
            crossing.update(index.named[c][0] if c in index.named else ())
        if base in index.named:
            if base in parts:
                crossing.update(index.named[base][0])
            else:
                self._same_name(coef, parts, base, crossing, raw, norm)
        for g in crossing:
            d = index.file_dir[g]
            exact = np.array(_raw_comparators(parts + (base,), index.file_parts[g]), dtype=float)
            coef[g] += (exact - (raw[0, d], 0, raw[2, d], raw[3, d])) / norm[d]

    def _same_name(
        self, coef: np.ndarray, parts: Parts, base: str, crossing: set[int], raw: np.ndarray, norm: np.ndarray
    ) -> None:
        """Corrections for the past files named `base`, outside the crossing cases, all at once."""
        files, dirs = self._index.named[base]
        f_ids, d_ids = np.asarray(files), np.asarray(dirs)
        if crossing:
            keep = np.array([f not in crossing for f in files], dtype=bool)
            f_ids, d_ids = f_ids[keep], d_ids[keep]
        here = self._index.dir_id.get(parts, -1)
        suffix, substring, n = raw[1, d_ids] + 1, raw[2, d_ids], norm[d_ids]
        coef[f_ids, 0] += (d_ids == here) / n
        coef[f_ids, 1] += suffix / n
        coef[f_ids, 2] += (np.maximum(substring, suffix) - substring) / n
        coef[f_ids, 3] += 1.0 / n


def _group_by_dir(paths: Iterable[str]) -> dict[Parts, list[str]]:
    groups: dict[Parts, list[str]] = defaultdict(list)
    for path in paths:
        parts = _split(path)
        groups[parts[:-1]].append(parts[-1])
    return groups


def _borda_order(scores: np.ndarray) -> np.ndarray:
    """Candidate indices by Borda points over the rows of `scores`; only positive scores rank.

    Within a row, scores within 1e-9 of the row's best tie (the same sum taken in a different order must not
    split them) and ties go to the lower index, i.e. the person seen first; the fused order breaks ties the
    same way.
    """
    points = np.zeros(scores.shape[1])
    for row in scores:
        ranked = np.flatnonzero(row > 0)
        if not len(ranked):
            continue
        rounded = np.round(row[ranked] / row[ranked].max(), 9)
        ranked = ranked[np.lexsort((ranked, -rounded))]
        points[ranked] += len(ranked) - np.arange(len(ranked))
    fused = np.flatnonzero(points > 0)
    return fused[np.lexsort((fused, -points[fused]))]


# --- Counting baselines ------------------------------------------------------------------------------------


class _Tallies:
    """Shared bookkeeping of the counting baselines: who reviewed how often, and who came first (tie-break)."""

    def __init__(self, allow_author: bool) -> None:
        self.allow_author = allow_author
        self.overall: Counter[str] = Counter()
        self.first_seen: dict[str, int] = {}

    def people_of(self, change: Change) -> list[str]:
        """The change's ground-truth people, sorted, after noting who is new."""
        people = sorted(change.truth(allow_author=self.allow_author))
        for person in people:
            self.first_seen.setdefault(person, len(self.first_seen))
        self.overall.update(people)
        return people

    def fill(self, ranked: list[str], counts: Mapping[str, float], k: int, author: str) -> list[str]:
        """Append people of `counts` (most first, then first seen) not ranked yet, until `k` are ranked."""
        taken = set(ranked)
        if not self.allow_author:
            taken.add(author)
        for person in sorted(counts, key=lambda p: (-counts[p], self.first_seen[p])):
            if len(ranked) >= k:
                break
            if person not in taken and counts[person] > 0:
                ranked.append(person)
                taken.add(person)
        return ranked


class MostFrequent:
    """The people who reviewed the most changes so far, whatever the change: the harness's sanity check.

    >>> rec = MostFrequent()
    >>> for i, who in enumerate(["bob", "eve", "bob"]):
    ...     rec.observe(Change(str(i), i, "ann", (who,), ("a",)))
    >>> rec.recommend(Change("9", 9, "cid", (), ("b",)), 5)
    ['bob', 'eve']
    """

    name = "most-frequent"

    def __init__(self, *, allow_author: bool = False) -> None:
        self.allow_author = allow_author
        self._tallies = _Tallies(allow_author)

    def observe(self, change: Change) -> None:
        self._tallies.people_of(change)

    def recommend(self, change: Change, k: int) -> list[str]:
        return self._tallies.fill([], self._tallies.overall, k, change.author)


class AuthorsReviewers:
    """Whoever reviewed this author's past changes most often, then the most frequent reviewers overall.

    >>> rec = AuthorsReviewers()
    >>> rec.observe(Change("1", 1, "ann", ("bob",), ("a",)))
    >>> rec.observe(Change("2", 2, "cid", ("eve",), ("a",)))
    >>> rec.observe(Change("3", 3, "dan", ("eve",), ("a",)))
    >>> rec.recommend(Change("4", 4, "ann", (), ("b",)), 2)
    ['bob', 'eve']
    """

    name = "author"

    def __init__(self, *, allow_author: bool = False) -> None:
        self.allow_author = allow_author
        self._tallies = _Tallies(allow_author)
        self._by_author: dict[str, Counter[str]] = defaultdict(Counter)

    def observe(self, change: Change) -> None:
        self._by_author[change.author].update(self._tallies.people_of(change))

    def recommend(self, change: Change, k: int) -> list[str]:
        ranked = self._tallies.fill([], self._by_author.get(change.author, {}), k, change.author)
        return self._tallies.fill(ranked, self._tallies.overall, k, change.author)


class Frequency:
    """Reviewers of the same files, then of their directories walking up, then the most frequent overall.

    A person's file score is the number of past changes touching each of the new change's files that they
    reviewed, summed over the files. Remaining slots go to the reviewers of the files' parent directories
    (changes touching anything below them), then of the grandparents, and so on; then to the overall ranking.

    >>> rec = Frequency()
    >>> rec.observe(Change("1", 1, "ann", ("bob",), ("src/net/a.c",)))
    >>> rec.observe(Change("2", 2, "ann", ("eve",), ("src/usb/b.c",)))
    >>> rec.observe(Change("3", 3, "ann", ("joe",), ("doc/x.md",)))
    >>> rec.recommend(Change("4", 4, "cid", (), ("src/net/c.c",)), 3)
    ['bob', 'eve', 'joe']
    """

    name = "frequency"

    def __init__(self, *, allow_author: bool = False) -> None:
        self.allow_author = allow_author
        self._tallies = _Tallies(allow_author)
        self._by_file: dict[str, Counter[str]] = defaultdict(Counter)
        self._by_dir: dict[Parts, Counter[str]] = defaultdict(Counter)

    def observe(self, change: Change) -> None:
        people = self._tallies.people_of(change)
        if not people:
            return
        dirs = {parts[:depth] for parts in map(_split, change.files) for depth in range(1, len(parts))}
        for path in change.files:
            self._by_file[path].update(people)
        for parts in dirs:
            self._by_dir[parts].update(people)

    def recommend(self, change: Change, k: int) -> list[str]:
        fill, author = self._tallies.fill, change.author
        ranked = fill([], _sum_counts(self._by_file, change.files), k, author)
        for dirs in _ancestors_by_level(change.files):
            if len(ranked) >= k:
                return ranked
            ranked = fill(ranked, _sum_counts(self._by_dir, dirs), k, author)
        return fill(ranked, self._tallies.overall, k, author)


def _sum_counts(table: Mapping[T, Counter[str]], keys: Iterable[T]) -> Counter[str]:
    total: Counter[str] = Counter()
    for key in keys:
        if key in table:
            total.update(table[key])
    return total


def _ancestors_by_level(paths: Iterable[str]) -> Iterator[set[Parts]]:
    """The files' parent directories, then their grandparents, ... up to (not including) the root."""
    dirs = {_split(path)[:-1] for path in paths}
    while dirs := {d for d in dirs if d}:
        yield dirs
        dirs = {d[:-1] for d in dirs}


class RandomReviewer:
    """Past reviewers drawn uniformly at random: the floor any recommender must clear.

    >>> rec = RandomReviewer(random_state=0)
    >>> rec.observe(Change("1", 1, "ann", ("bob", "eve"), ("a",)))
    >>> sorted(rec.recommend(Change("2", 2, "cid", (), ("a",)), 5))
    ['bob', 'eve']
    """

    name = "random"

    def __init__(self, *, allow_author: bool = False, random_state: int | None = 0) -> None:
        self.allow_author = allow_author
        self.random_state = random_state
        self._rng = random.Random(random_state)
        self._tallies = _Tallies(allow_author)

    def observe(self, change: Change) -> None:
        self._tallies.people_of(change)

    def recommend(self, change: Change, k: int) -> list[str]:
        pool = [p for p in self._tallies.first_seen if self.allow_author or p != change.author]
        return self._rng.sample(pool, min(k, len(pool)))


BASELINES = {
    "revfinder": RevFinder,
    "frequency": Frequency,
    "author": AuthorsReviewers,
    "random": RandomReviewer,
    "most-frequent": MostFrequent,
}
