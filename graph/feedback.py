"""What the team did with past suggestions, remembered per person, as features for the learned ranker.

Labels come from GitLab events (see the bot's handlers): a suggested person became a reviewer, approved,
was removed, was passed over for someone else, was rerolled or excluded, got a 👍/👎. Each label is
positive or negative evidence about a person, overall and for one author. Counts decay with time, so a
person who was rejected a lot last year can come back; a person who stops accepting (someone who left)
is rejected again and again and drops fast.

Feedback also says who is reviewing what *now*: the people who took the review of a merge request that
is still open. The merged history only learns of them at the merge, days later; the memory keeps them per
open merge request (author, directories, files) until `close`, so the ranker sees who is on duty, who
took this author's or these directories' other open merge requests, and how loaded each person is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FeedbackMemory", "OpenReview", "POSITIVE", "NEGATIVE", "TAKEN", "PUT_FIRST", "TERMS", "MOVED_DOWN",
           "MOVED_BY", "REVIEWED", "CLOSED", "REOPENED", "THUMBS", "FEEDBACK_FEATURES", "FEEDBACK_WORDS", "directories"]

POSITIVE = frozenset({"accepted", "assigned", "approved", "reviewed", "thumbs_up", "final_reviewer"})
TAKEN = frozenset({"accepted", "assigned"})  # the labels that mean "this person took the review"
# ... or did it: a vote on the hand-set terms (`LearnedRecommender._vote`), once per person and merge request
REVIEWED = TAKEN | {"approved", "reviewed", "final_reviewer"}
NEGATIVE = frozenset({"removed", "passed_over", "reroll", "exclude", "thumbs_down"})
THUMBS = frozenset({"thumbs_up", "thumbs_down"})  # award emoji on the bot's comment
# Not evidence about the person: the bot put them first on a merge request. The load spreading counts it
# (`LearnedRecommender.put_first`); the memory here ignores it.
PUT_FIRST = "suggested"
# The hand-set terms the learned ranker adds to its model's score: load spreading, the rejection streak's
# penalty, the lift for people on duty (`LearnedRecommender._terms`, in that order).
TERMS = ("spreading", "streak", "duty")
# Not evidence either: the person the bot would have put first but for one of those terms, which put the
# `PUT_FIRST` person ahead. Whom of the two the team takes tells whether the term suits the project
# (`LearnedRecommender.learn`). One label per term.
MOVED_DOWN = {term: f"moved_down_{term}" for term in TERMS}
MOVED_BY = {label: term for term, label in MOVED_DOWN.items()}
# Not evidence either: the merge request was closed without merging. Its reviews end there (it will never
# reach the history): nobody is on duty for it any more (`LearnedRecommender.learn`).
CLOSED = "closed"
# ... and reopened: the reviews taken on it count again (`LearnedRecommender.learn`).
REOPENED = "reopened"

FEEDBACK_FEATURES = (
    "fb_acceptance",        # smoothed share of this person's suggestions that were taken (decayed)
    "fb_rejections",        # log(1 + decayed number of rejections)
    "fb_streak",            # log(1 + rejections since this person last accepted or reviewed)
    "fb_author_rejections", # log(1 + decayed rejections on this author's merge requests)
    "fb_recent_reviews",    # log(1 + reviews taken these last days): who is on duty now
    "fb_recent_author",     # log(1 + reviews of this author's merge requests taken these last days)
    "fb_open_reviews",      # log(1 + open merge requests this person took): on duty now, and their load
    "fb_open_author",       # log(1 + open merge requests of this author this person took)
    "fb_open_dirs",         # log(1 + open merge requests in these directories this person took)
    "fb_open_files",        # log(1 + open merge requests touching these files this person took)
)

FEEDBACK_WORDS = {  # the words `/reviewers why` uses for the columns above that `graph.features` lacks
    "fb_open_reviews": "other open merge requests they are reviewing",
    "fb_open_author": "this author's other open merge requests they are reviewing",
    "fb_open_dirs": "open merge requests in these directories they are reviewing",
    "fb_open_files": "open merge requests on these files they are reviewing",
}


def directories(files) -> frozenset[str]:
    """The parent directories of `files` ("" for the top level).

    >>> sorted(directories(["a/b/c.py", "a/b/d.py", "e.md"]))
    ['', 'a/b']
    """
    return frozenset(f.rpartition("/")[0] for f in files)


@dataclass
class OpenReview:
    """An open merge request and who took its review (with the time each took it)."""

    author: str | None
    files: frozenset[str]
    dirs: frozenset[str]
    people: dict[str, float] = field(default_factory=dict)


@dataclass
class FeedbackMemory:
    """Decayed positive/negative label counts per person and per (person, author).

    >>> m = FeedbackMemory(half_life_days=30)
    >>> for day in range(3):
    ...     m.record("bob", "removed", time=day * 86400, author="ann")
    >>> m.record("cid", "accepted", time=3 * 86400, author="ann")
    >>> m.features(["bob", "cid"], author="ann", now=3 * 86400)[:, 2].round(2).tolist()  # fb_streak
    [1.39, 0.0]
    >>> m.record("bob", "removed", time=4 * 86400, author="ann", rank=2)
    >>> m.streak["bob"]
    3.5
    >>> for s in range(5):  # a series of ann's, turned down within minutes: one occasion
    ...     m.record("bob", "removed", time=5 * 86400 + 60 * s, author="ann")
    >>> m.streak["bob"]
    4.5
    """

    half_life_days: float = 60.0
    t0: float | None = None
    pos: dict[str, float] = field(default_factory=dict)
    neg: dict[str, float] = field(default_factory=dict)
    streak: dict[str, float] = field(default_factory=dict)
    streak_since: dict[str, float] = field(default_factory=dict)  # time of the streak's first rejection
    author_neg: dict[tuple[str, str], float] = field(default_factory=dict)
    recent_half_life_days: float = 3.0
    recent: dict[str, float] = field(default_factory=dict)
    recent_author: dict[tuple[str, str], float] = field(default_factory=dict)
    labels: int = 0
    open: dict[str, OpenReview] = field(default_factory=dict)  # by change id, oldest first
    open_limit: int = 2000
    series_seconds: float = 3600.0  # rejections on one author's merge requests this close are one occasion
    last_rejection: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # person -> (author, when)

    def _w(self, t: float, half_life_days: float | None = None) -> float:
        """The scaled weight of a label at time t (see `graph.ownership` for the scheme)."""
        if self.t0 is None:
            self.t0 = t
        if (t - self.t0) / (self.recent_half_life_days * 86400.0) > 500:
            self._rebase(t)
        return 2.0 ** ((t - self.t0) / ((half_life_days or self.half_life_days) * 86400.0))

    def _rebase(self, t: float) -> None:
        """Move the reference time to t so the scaled weights stay finite (rare)."""
        long = 2.0 ** (-(t - self.t0) / (self.half_life_days * 86400.0))
        short = 2.0 ** (-(t - self.t0) / (self.recent_half_life_days * 86400.0))
        for table, f in ((self.pos, long), (self.neg, long), (self.author_neg, long),
                         (self.recent, short), (self.recent_author, short)):
            for key in table:
                table[key] *= f
        self.t0 = t

    def record(self, person: str, label: str, *, time: float, author: str | None = None,
               rank: int | None = None, change_id: str | None = None, files=()) -> None:
        """Remember one label; unknown labels (e.g. "why") carry no evidence and are ignored.

        `rank` is where the bot had put the person (1 = first): turning down the first choice says more
        than passing over the third, so a rejection adds 1/rank to the person's streak. Rejections on one
        author's merge requests opened within `series_seconds` of each other (a series, answered at once)
        add to the streak once: passed over on a whole series that someone else reviews, a reviewer is not
        gone, yet counted one by one they were dropped at once (`idle_streak`'s burst). Only the bot's first
        choice turned down again within the series adds, half each time: someone who leaves in the middle of
        a series they used to review must still drop within it. With `change_id`,
        a review taken is also kept on that open merge request (`files` its paths) until `close`; a
        rejection there takes it back.
        """
        if change_id is not None:
            self._track_open(change_id, person, label, time=time, author=author, files=files)
        if label in POSITIVE:
            self.pos[person] = self.pos.get(person, 0.0) + self._w(time)
            self.streak[person] = 0.0
            self.streak_since.pop(person, None)
            self.last_rejection.pop(person, None)
            if label in TAKEN:  # one count per review taken, not one per label about it
                r = self._w(time, self.recent_half_life_days)
                self.recent[person] = self.recent.get(person, 0.0) + r
                if author is not None:
                    key = (person, author)
                    self.recent_author[key] = self.recent_author.get(key, 0.0) + r
        elif label in NEGATIVE:
            w = self._w(time)
            self.neg[person] = self.neg.get(person, 0.0) + w
            last = self.last_rejection.get(person)
            series = last is not None and bool(author) and last[0] == author and \
                abs(time - last[1]) < self.series_seconds
            self.last_rejection[person] = (author, time)
            step = 1.0 / rank if rank else 1.0
            if series:  # the series counts once, but the bot's first choice turned down on each MR of it
                step = 0.5 if rank == 1 else 0.0  # (someone who left mid-series) still counts, half
            self.streak[person] = self.streak.get(person, 0.0) + step
            self.streak_since.setdefault(person, time)
            if author is not None:
                key = (person, author)
                self.author_neg[key] = self.author_neg.get(key, 0.0) + w
        else:
            return
        self.labels += 1

    def _track_open(self, change_id: str, person: str, label: str, *, time: float, author: str | None,
                    files) -> None:
        if label in TAKEN:
            review = self.open.get(change_id)
            if review is None:
                files = frozenset(files)
                review = self.open[change_id] = OpenReview(author, files, directories(files))
                while len(self.open) > self.open_limit:
                    del self.open[next(iter(self.open))]
            review.people.setdefault(person, time)
        elif label in NEGATIVE and change_id in self.open:
            self.open[change_id].people.pop(person, None)

    def heard_of(self, person: str) -> bool:
        """Whether any feedback on `person` was recorded (their `fb_acceptance` is else the prior's 50%)."""
        return person in self.pos or person in self.neg

    def idle_streak(self, person: str, *, now: float, days: float, month: float = 30.0,
                    burst: float = math.inf) -> float:
        """The person's rejection streak if it has lasted `days` (else 0), growing by its length (twice
        as much after `month` days): someone turned down a few times within a day or two while others
        took the reviews is busy, not gone; someone turned down now and then for weeks has left. A streak
        of `burst` rejections counts at once, however short: turned down on a whole series of merge
        requests in a row, they are not reviewing these days.

        >>> m = FeedbackMemory()
        >>> for t in (0, 1, 2):
        ...     m.record("bob", "removed", time=t * 86400.0)
        >>> [round(m.idle_streak("bob", now=d * 86400.0, days=3), 2) for d in (2, 3, 30)]
        [0.0, 3.3, 6.0]
        >>> m.idle_streak("bob", now=2 * 86400.0, days=3, burst=3)
        3.0
        """
        since = self.streak_since.get(person)
        if since is None:
            return 0.0
        streak = self.streak.get(person, 0.0)
        if now - since < days * 86400.0:
            return streak if streak >= burst else 0.0
        return streak * (1.0 + (now - since) / (month * 86400.0))

    def close(self, change_id: str) -> None:
        """The merge request was merged (or closed): its reviewers are in the history from now on."""
        self.open.pop(change_id, None)

    def open_counts(self, people: list[str], *, author: str, now: float, files=(),
                    skip: str | None = None) -> np.ndarray:
        """Per person: the open merge requests (but `skip`) they took, overall, of `author`, sharing a
        directory with `files`, sharing a file; each weighs 2^(-days since taken / recent half-life).

        >>> m = FeedbackMemory(recent_half_life_days=1)
        >>> m.record("bob", "accepted", time=0, author="ann", change_id="1", files=["a/x.c"])
        >>> m.record("cid", "assigned", time=0, author="dan", change_id="2", files=["a/y.c"])
        >>> m.open_counts(["bob", "cid"], author="ann", now=86400, files=["a/x.c"]).tolist()
        [[0.5, 0.5, 0.5, 0.5], [0.5, 0.0, 0.5, 0.0]]
        """
        index = {p: i for i, p in enumerate(people)}
        out = np.zeros((len(people), 4))
        if not self.open:
            return out
        files = frozenset(files)
        dirs = directories(files)
        hl = self.recent_half_life_days * 86400.0
        for cid, review in self.open.items():
            mine = [(index[p], t) for p, t in review.people.items() if p in index]
            if not mine or cid == skip:
                continue
            match = (1.0, float(author is not None and review.author == author),
                     float(not dirs.isdisjoint(review.dirs)), float(not files.isdisjoint(review.files)))
            for i, t in mine:
                out[i] += np.multiply(match, 2.0 ** (-max(0.0, now - t) / hl))
        return out

    def features(self, people: list[str], *, author: str, now: float, files=(),
                 change_id: str | None = None) -> np.ndarray:
        """One row per person, columns in `FEEDBACK_FEATURES` order (`change_id`: the merge request
        being ranked, whose own reviewers are not counted as other work)."""
        out = np.zeros((len(people), len(FEEDBACK_FEATURES)))
        out[:, 6:10] = np.log1p(self.open_counts(people, author=author, now=now, files=files, skip=change_id))
        if self.t0 is None:
            out[:, 0] = 0.5
            return out
        d = 2.0 ** (-(now - self.t0) / (self.half_life_days * 86400.0))
        dr = 2.0 ** (-(now - self.t0) / (self.recent_half_life_days * 86400.0))
        for i, p in enumerate(people):
            pos, neg = self.pos.get(p, 0.0) * d, self.neg.get(p, 0.0) * d
            out[i, 0] = (pos + 1.0) / (pos + neg + 2.0)
            out[i, 1] = math.log1p(neg)
            out[i, 2] = math.log1p(self.streak.get(p, 0))
            out[i, 3] = math.log1p(self.author_neg.get((p, author), 0.0) * d)
            out[i, 4] = math.log1p(self.recent.get(p, 0.0) * dr)
            out[i, 5] = math.log1p(self.recent_author.get((p, author), 0.0) * dr)
        return out
