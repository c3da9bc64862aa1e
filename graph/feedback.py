"""What the team did with past suggestions, remembered per person, as features for the learned ranker.

Labels come from GitLab events (see the bot's handlers): a suggested person became a reviewer, approved,
was removed, was passed over for someone else, was rerolled or excluded, got a 👍/👎. Each label is
positive or negative evidence about a person, overall and for one author. Counts decay with time, so a
person who was rejected a lot last year can come back; a person who stops accepting (someone who left)
is rejected again and again and drops fast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FeedbackMemory", "POSITIVE", "NEGATIVE", "FEEDBACK_FEATURES"]

POSITIVE = frozenset({"accepted", "assigned", "approved", "reviewed", "thumbs_up", "final_reviewer"})
_TAKEN = frozenset({"accepted", "assigned"})  # the labels that mean "this person took the review"
NEGATIVE = frozenset({"removed", "passed_over", "reroll", "exclude", "thumbs_down"})

FEEDBACK_FEATURES = (
    "fb_acceptance",        # smoothed share of this person's suggestions that were taken (decayed)
    "fb_rejections",        # log(1 + decayed number of rejections)
    "fb_streak",            # log(1 + rejections since this person last accepted or reviewed)
    "fb_author_rejections", # log(1 + decayed rejections on this author's merge requests)
    "fb_recent_reviews",    # log(1 + reviews taken these last days): who is on duty now
    "fb_recent_author",     # log(1 + reviews of this author's merge requests taken these last days)
)


@dataclass
class FeedbackMemory:
    """Decayed positive/negative label counts per person and per (person, author).

    >>> m = FeedbackMemory(half_life_days=30)
    >>> for t in range(3):
    ...     m.record("bob", "removed", time=t, author="ann")
    >>> m.record("cid", "accepted", time=3, author="ann")
    >>> m.features(["bob", "cid"], author="ann", now=3)[:, 2].round(2).tolist()  # fb_streak
    [1.39, 0.0]
    >>> m.record("bob", "removed", time=4, author="ann", rank=2)
    >>> m.streak["bob"]
    3.5
    """

    half_life_days: float = 60.0
    t0: float | None = None
    pos: dict[str, float] = field(default_factory=dict)
    neg: dict[str, float] = field(default_factory=dict)
    streak: dict[str, float] = field(default_factory=dict)
    author_neg: dict[tuple[str, str], float] = field(default_factory=dict)
    recent_half_life_days: float = 3.0
    recent: dict[str, float] = field(default_factory=dict)
    recent_author: dict[tuple[str, str], float] = field(default_factory=dict)
    labels: int = 0

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
               rank: int | None = None) -> None:
        """Remember one label; unknown labels (e.g. "why") carry no evidence and are ignored.

        `rank` is where the bot had put the person (1 = first): turning down the first choice says more
        than passing over the third, so a rejection adds 1/rank to the person's streak.
        """
        if label in POSITIVE:
            self.pos[person] = self.pos.get(person, 0.0) + self._w(time)
            self.streak[person] = 0.0
            if label in _TAKEN:  # one count per review taken, not one per label about it
                r = self._w(time, self.recent_half_life_days)
                self.recent[person] = self.recent.get(person, 0.0) + r
                if author is not None:
                    key = (person, author)
                    self.recent_author[key] = self.recent_author.get(key, 0.0) + r
        elif label in NEGATIVE:
            w = self._w(time)
            self.neg[person] = self.neg.get(person, 0.0) + w
            self.streak[person] = self.streak.get(person, 0.0) + (1.0 / rank if rank else 1.0)
            if author is not None:
                key = (person, author)
                self.author_neg[key] = self.author_neg.get(key, 0.0) + w
        else:
            return
        self.labels += 1

    def features(self, people: list[str], *, author: str, now: float) -> np.ndarray:
        """One row per person, columns in `FEEDBACK_FEATURES` order."""
        out = np.zeros((len(people), len(FEEDBACK_FEATURES)))
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
