"""The hand-set terms the learned ranker adds to its model's score, and how the team's choices tune them.

Three terms (`graph.feedback.TERMS`): load spreading (first places given against reviews really done),
the rejection streak's penalty (and the drop rule: turned down again and again, no longer proposed) and the
lift for people on duty (who took other open merge requests). Each is applied at a share (`levels`) that
the team's choices move: where a term changed who came first, whom the team takes of the two is a vote
(`HandSetTerms._vote`). A mixin of `graph.recommend.LearnedRecommender`, which owns the state it reads:
`settings`, `feedback`, `og`, `levels`, the first places (`_first`), the pairs awaiting a vote (`_moved`),
the spreading's counts (`_suggested`, `_reviewed`, and the reviews counted before their merge, `_taken`) and
the last ranking's picks (`_pick`).
"""
from __future__ import annotations

import numpy as np

from graph.explain import on_duty, put_first, rejected
from graph.feedback import FEEDBACK_FEATURES, NEGATIVE, TAKEN, TERMS
from graph.features import Candidates
from graph.model import Change, Contribution

__all__ = ["HandSetTerms", "TERM_WORDS", "first_of", "fb_column"]


class HandSetTerms:
    """The terms, their votes and the drop rule, for `LearnedRecommender` (see the module docstring)."""

    _pick: tuple | None = None  # (rows, first, {term: first without it}) of the last ranking: a cache

    def moved_down(self, change: Change) -> list[tuple[str, str, str]]:
        """(term, who would have come first without it, who came first) for each hand-set term that changed
        the first place of the last ranking of `change`. The bot stores each as a `MOVED_DOWN[term]` label
        beside `PUT_FIRST` when its comment shows that first: whom the team then takes of the two is a vote
        on the term (`_vote`)."""
        pick = self._pick
        if pick is None or pick[0] is not self._candidates(change):
            return []
        return [(term, down, pick[1]) for term, down in pick[2].items() if down != pick[1]]

    def put_first(self, change_id: str, person: str, at: float) -> None:
        """Count `person` as put first on `change_id` for the load spreading (`_imbalance`). A later first
        place on the same change replaces the earlier one: the bot suggests again after pushes. The first
        place is kept even with the spreading off: a `MOVED_DOWN` label pairs with it (`learn`)."""
        spreading = self.settings.balance > 0
        was = self._first.get(change_id)
        if was is not None:
            if was[0] == person:
                return
            if spreading:
                self._note(self._suggested, was[0], was[1], -1.0)
        self._first[change_id] = (person, at)
        self._first.move_to_end(change_id)
        if spreading:
            self._note(self._suggested, person, at, 1.0)
        while len(self._first) > self.settings.pending_limit:
            self._first.popitem(last=False)

    def _moved_over(self, change_id: str, term: str, down: str, up: str) -> None:
        """Hand-set `term` put `up` first on `change_id`, ahead of `down`: the team's choice will vote (kept
        only when the terms learn, `terms_learn`)."""
        if not self.settings.terms_learn:
            return
        self._moved.setdefault(change_id, {})[term] = [down, up, set()]
        self._moved.move_to_end(change_id)
        while len(self._moved) > self.settings.pending_limit:
            self._moved.popitem(last=False)

    def _vote(self, change_id: str, person: str) -> None:
        """Where a hand-set term (`TERMS`) changed who came first, the team's choice is a vote: taking the
        one it moved up says the term works here, taking the one it moved down says it cost the team the
        reviewer it wanted. Each vote moves the share of the term applied (`levels`) by a factor
        `term_step` up or down, within [`term_floor`, 1]: it settles where what is left of the term wins
        as often as it loses. Each of the two votes once per merge request and term."""
        step, floor = self.settings.term_step, self.settings.term_floor
        for term, pair in self._moved.get(change_id, {}).items():
            if person in pair[:2] and person not in pair[2]:
                pair[2].add(person)
                level = self.levels[term] * (step if person == pair[1] else 1.0 / step)
                self.levels[term] = min(1.0, max(floor, level))

    def _pick_firsts(self, cands: Candidates, people: list[str], total: np.ndarray, terms,
                     gone: np.ndarray) -> None:
        """Remember who comes first with every term and without each one (`moved_down`), among the people
        `_drop_rejected` keeps (not `gone`)."""
        kept = np.flatnonzero(~gone)
        if not len(kept):
            self._pick = None
            return
        names = [people[j] for j in kept]
        self._pick = (cands, names[first_of(total[kept], names)],
                      {name: names[first_of((total - term)[kept], names)] for name, term in zip(TERMS, terms)
                       if term.any()})

    def _gone(self, streaks: np.ndarray) -> np.ndarray:
        """Per person: turned down `rejection_drop` times in a row (for days; `streaks`, see `_streaks`)."""
        return streaks >= self.settings.rejection_drop

    def _drop_rejected(self, people: list[str], scores: np.ndarray, gone: np.ndarray | None = None) -> np.ndarray:
        """People turned down `rejection_drop` times in a row (`_gone`) are last, whoever else there is:
        they have most likely left or moved on (one review taken brings them back)."""
        gone = self._gone(self._streaks(people)) if gone is None else gone
        if gone.any():
            scores = scores.copy()
            scores[gone] = -np.inf  # not proposed at all (see `_order`)
        return scores

    def _terms(self, people: list[str], X: np.ndarray,
               streaks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The hand-set terms added to the model's score of these rows (logit units): load spreading, the
        rejection streak's penalty, the lift for people on duty, each at the share the team's votes left
        it (`levels`, see `_vote`). `streaks`: the people's `_streaks`, when the caller has them."""
        streaks = self._streaks(people) if streaks is None else streaks
        return (-self._imbalance(people), -self.levels["streak"] * self._rejection_penalty(streaks),
                self.levels["duty"] * self._on_duty(X))

    def _term_contributions(self, cands: Candidates, idx: list[int], rows: list[int]) -> list[list[Contribution]]:
        """Each of `rows`' `_terms` against the other top rows' average, with the figure behind it."""
        people = [cands.people[i] for i in idx]
        X, streaks = cands.X[idx], self._streaks(people)
        terms = self._terms(people, X, streaks)
        open_reviews = np.expm1(X[:, [fb_column(X, "fb_open_reviews")]])
        # behind each term, per row: the very figures the term is computed from (the streak past its grace)
        figures = (np.column_stack(self._balance_counts(people)), self._counted_streak(streaks)[:, None],
                   open_reviews)
        said = (lambda f: put_first(f[0], f[1]), lambda f: rejected(f[0]), lambda f: on_duty(f[0]))
        named, out = self._term_words(), []
        for i in rows:
            me, found = idx.index(i), []
            others = np.delete(np.arange(len(idx)), me)
            if len(others):  # each term averaged alone: a 2-d mean sums in another order, off in the last digit
                for words, term, figure, say in zip(named, terms, figures, said):
                    effect = float(term[me] - term[others].mean())
                    if abs(effect) > 1e-6:
                        found.append(Contribution(words, effect, say(figure[me]), say(figure[others].mean(axis=0))))
            out.append(found)
        return out

    def _term_words(self) -> list[str]:
        """`TERM_WORDS` with the streak's grace, each marked as a hand-set rule (the model's own signals read
        alike: "times turned down since they last took a review") and saying how much of it is left when the
        team's votes turned it down."""
        grace = self.settings.rejection_grace
        return [words.format(grace=grace) + (" (hand-set rule)" if self.levels[term] >= 1.0 else
                                             f" (hand-set rule, at {self.levels[term]:.0%} after the team's choices)")
                for term, words in zip(TERMS, TERM_WORDS)]

    def _on_duty(self, X: np.ndarray) -> np.ndarray:
        """A lift for people who took other open merge requests (`duty_boost` mixes: any, this author's,
        in these directories, on these files): the history learns who is on duty only at the merges,
        feedback says it at once."""
        w = np.asarray(self.settings.duty_boost, dtype=float)
        if not w.any():
            return np.zeros(len(X))
        first = fb_column(X, "fb_open_reviews")
        return X[:, first:first + len(w)] @ w

    def _rejection_penalty(self, streaks: np.ndarray) -> np.ndarray:
        """Grows with each rejection since the person last took a review (`streaks`, see `_streaks`): someone
        who left, or who is always replaced by a colleague, drops within a few suggestions; one review
        resets it."""
        return self.settings.rejection_penalty * self._counted_streak(streaks)

    def _counted_streak(self, streaks: np.ndarray) -> np.ndarray:
        """Per person: the rejections in a row that count now (`streaks`) past the first `rejection_grace`,
        at most 10: the figure the penalty multiplies."""
        grace = self.settings.rejection_grace
        return np.array([min(10, max(0, s - grace)) for s in streaks.tolist()], dtype=float)

    def _streaks(self, people: list[str]) -> np.ndarray:
        """`_streak` of each person: read once per ranking, for the penalty, its explanation and the drop
        rule alike (each reads the feedback memory per person)."""
        return np.array([self._streak(p) for p in people], dtype=float)

    def _streak(self, person: str) -> float:
        """The rejections in a row that count against `person` now (see `rejection_days`)."""
        s = self.settings
        return self.feedback.idle_streak(person, now=self._now, days=s.rejection_days, burst=s.rejection_burst)

    # -- spreading the load ---------------------------------------------------------------------------
    def _note(self, table: dict[str, float], person: str, t: float, amount: float) -> float:
        """Add `amount` at time `t` to `person`'s count in `table`; the scaled figure added (to take back)."""
        hl = self.settings.balance_half_life_days * 86400.0
        added = amount * 2.0 ** ((t - (self.og.t0 or t)) / hl)
        table[person] = table.get(person, 0.0) + added
        return added

    def _count_taken(self, change: Change, person: str, label: str, at: float) -> None:
        """A review taken (`TAKEN`, not by the author) counts as a whole review done at once, a removal
        (`NEGATIVE`) takes it back: counted only at the merge, days later, the person kept being put first
        meanwhile as if they were idle. Whole, not 1/n as the merge counts each of n reviewers: while it is
        open, the review is a whole review's work for each who took it (and 1/n, re-weighted as people take
        it or leave, measured worse in `reviewbot simulate`: Top-1 53.3 against 53.9 on Go, 56.2 against
        56.8 on React). The merge settles these counts (`_settle_taken`)."""
        if self.settings.balance <= 0 or person == change.author:
            return
        taken = self._taken.get(change.id)
        if label in TAKEN and (taken is None or person not in taken):
            self._taken.setdefault(change.id, {})[person] = self._note(self._reviewed, person, at, 1.0)
            self._keep_taken(change.id)
        elif label in NEGATIVE and taken is not None and person in taken:
            self._reviewed[person] -= taken.pop(person)
            if not taken:
                del self._taken[change.id]

    def _keep_taken(self, change_id: str) -> None:
        """Mark `change_id`'s counts the newest; past `pending_limit` changes the oldest are taken back (a
        change still open after so many others, if it merges, is counted at its merge)."""
        self._taken.move_to_end(change_id)
        while len(self._taken) > self.settings.pending_limit:
            self._untake(self._taken.popitem(last=False)[1])

    def _untake(self, taken: dict[str, float]) -> None:
        """Take back the counts `_count_taken` gave the people who took one change."""
        for person, added in taken.items():
            self._reviewed[person] -= added

    def _settle_taken(self, change: Change, truth: frozenset[str]) -> None:
        """At the merge the counts taken early give way to the merge's: each of its n reviewers counts 1/n
        at the merge time, whether they took it early or not (never twice), and those who took it but are
        not among them count nothing (as without the early counts)."""
        self._untake(self._taken.pop(change.id, {}))
        for person in truth:
            self._note(self._reviewed, person, change.time, 1.0 / len(truth))

    def _imbalance(self, people: list[str]) -> np.ndarray:
        """balance · log((first places given + 1) / (reviews done + 1)), both decayed: positive for people
        the recommender has put first more often than they really review."""
        beta = self.settings.balance * self.levels["spreading"]
        if beta <= 0:
            return np.zeros(len(people))
        s, a = self._balance_counts(people)  # zeros before any change: log(1) = 0
        return beta * np.log((s + 1.0) / (a + 1.0))

    def _balance_counts(self, people: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(first places given, reviews done) per person, decayed to now."""
        if self.og.t0 is None:
            return np.zeros(len(people)), np.zeros(len(people))
        hl = self.settings.balance_half_life_days * 86400.0
        d = 2.0 ** (-(self.og.now - self.og.t0) / hl)
        return (np.array([self._suggested.get(p, 0.0) * d for p in people]),
                np.array([self._reviewed.get(p, 0.0) * d for p in people]))


def first_of(scores: np.ndarray, people: list[str]) -> int:
    """The position of the best row (ties by name, as `_order`)."""
    return min(range(len(scores)), key=lambda j: (-scores[j], people[j]))


def fb_column(X: np.ndarray, name: str) -> int:
    """The column of feedback feature `name` in candidate rows (they end with `FEEDBACK_FEATURES`)."""
    return X.shape[1] - len(FEEDBACK_FEATURES) + FEEDBACK_FEATURES.index(name)


# The terms `_terms` adds to the model's score, in words for `/reviewers why` (in that order; `_term_words`
# fills in the grace and marks each as a hand-set rule).
TERM_WORDS = ("load spreading: first places given against reviews done",
              "penalty for rejections in a row for days, past the first {grace}",
              "lift for other open merge requests they took")
