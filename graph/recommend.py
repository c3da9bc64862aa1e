"""Recommenders over the ownership graph: the hand-weighted `graph` score and the `learned` ranker.

Both follow the `graph.backtest.Recommender` protocol (``recommend`` then ``observe``, in time order) and
offer `suggest`, which the bot uses: the same ranking, with reasons and an optional filter of who may be
suggested.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from graph.feedback import (CLOSED, FEEDBACK_FEATURES, FEEDBACK_WORDS, MOVED_BY, NEGATIVE, PUT_FIRST, REOPENED,
                            REVIEWED, TAKEN, TERMS, THUMBS, FeedbackMemory)
from graph.features import FEATURE_WORDS, FEATURES, Candidates, candidates, in_pool
from graph.explain import compare, span
from graph.model import Change, Contribution, Suggestion
from graph.ownership import DAY, OwnershipGraph, ReviewTimes
from graph.ranker import ReviewerRanker, scores_among
from graph.reasons import contributions, reasons
from graph.terms import HandSetTerms

__all__ = ["RecommenderSettings", "GraphRecommender", "LearnedRecommender", "make_recommender", "METHODS"]

ONCE = THUMBS | {"approved"}  # labels a person gives a change once, however often they take them back


@dataclass(frozen=True)
class RecommenderSettings:
    """Hyper-parameters of the recommenders (the bot's `[defaults]` settings map onto these)."""

    half_life_days: float = 180.0
    short_half_life_days: float = 30.0
    inactive_days: float = 365.0
    candidate_limit: int = 40
    min_train_changes: int = 150
    retrain_growth: float = 1.5
    retrain_every: int = 3000
    train_window: int = 6000
    train_half_life: float | None = None  # in changes: older training rows weigh less (None: all alike)
    rerank: int = 20
    balance: float = 0.0          # > 0: spread first places over people in proportion to their real reviews
    balance_half_life_days: float = 90.0
    terms_learn: bool = True      # each hand-set term gives way when the team keeps taking whom it moved down
    term_step: float = 1.1        # ... by this factor per vote (see `LearnedRecommender._vote`)
    term_floor: float = 0.1       # ... down to this share of its setting
    feedback_half_life_days: float = 60.0
    pending_limit: int = 2000     # suggested changes whose merge is still to come
    rejection_grace: int = 2       # rejections in a row before they count against a person
    rejection_penalty: float = 1.0  # per further rejection (logit units of the model score)
    rejection_drop: float = 6.0     # rejections in a row (weighted by 1/rank) that put a person last
    rejection_days: float = 3.0     # a streak counts once it has lasted this long (and grows with its length);
    # 3, not 5: the replays that chose it ranked at the merge, two days after the labels, so 5 acted as 3
    rejection_burst: float = 12.0   # ... or at once when it is this long (a series turned down in a row)
    hard_negatives: bool = False   # rows of people the team turned down count twice in training
    early_reviews: bool = True     # a review taken enters the graph at once, not at the merge (see `learn`)
    duty_boost: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)  # logit units per fb_open_* column (see `_on_duty`)


class GraphRecommender:
    """Ranks candidates by the hand-weighted graph score."""

    name = "graph"

    def __init__(self, *, allow_author: bool = False, settings: RecommenderSettings | None = None):
        self.allow_author = allow_author
        self.settings = settings or RecommenderSettings()
        s = self.settings
        self.og = OwnershipGraph(half_life_days=s.half_life_days, short_half_life_days=s.short_half_life_days)
        self._cache: tuple[tuple, Candidates] | None = None

    # -- the backtest protocol ------------------------------------------------------------------------
    def recommend(self, change: Change, k: int) -> list[str]:
        cands = self._candidates(change)
        return [cands.people[i] for i in self._order(cands)[:k]]

    def observe(self, change: Change, *, reviewed: Iterable[str] = ()) -> None:
        """Add the merged change to the graph (`reviewed`: people whose review is in it already)."""
        self.og.add_change(change, allow_author=self.allow_author, reviewed=reviewed)
        self._cache = None

    def observe_history(self, changes: Sequence[Change]) -> None:
        """`observe` each change in turn, at once: the graph takes them in bulk (`OwnershipGraph.add_changes`,
        the same state, several times faster). For loading a stored history."""
        self.og.add_changes(changes, allow_author=self.allow_author)
        self._cache = None

    # -- for the bot ----------------------------------------------------------------------------------
    def suggest(self, change: Change, k: int = 3, *, allowed: Callable[[str], bool] | None = None,
                explain: bool = True) -> list[Suggestion]:
        """The best `k` people for `change` (who pass `allowed`), each with the evidence behind them."""
        cands = self._candidates(change)
        scores = self._scores(cands)
        chosen: list[int] = []
        order = self._order(cands, scores)
        for i in order:
            if allowed is None or allowed(cands.people[i]):
                chosen.append(i)
                if len(chosen) == k:
                    break
        if not explain:
            return [Suggestion(cands.people[i], float(scores[i]), (), ()) for i in chosen]
        contribs = self._contributions_many(cands, chosen)
        # for "reviewed ... together with": the people suggested or already reviewing, else the top ranked
        beside = [*change.reviewers, *(cands.people[i] for i in chosen), *(cands.people[i] for i in order[:3])]
        return [Suggestion(cands.people[i], float(scores[i]),
                           tuple(reasons(self.og, change, cands.people[i], beside)), tuple(c), self._basis(cands, i))
                for i, c in zip(chosen, contribs)]

    def _basis(self, cands: Candidates, i: int) -> str:
        """What row i's score is when it is not this recommender's own ranking (`Suggestion.basis`)."""
        return ""

    def absent(self, change: Change, matches: Callable[[str], bool]) -> str:
        """Why the person the history names as one of those `matches` accepts is no candidate for `change`,
        in plain words, when the history knows them: idle too long, or outside the candidate limit. Empty
        when it does not know them, when they are a candidate, and when they have no evidence for `change`
        (not `in_pool`: no limit kept them out): they then have no evidence here at all."""
        cands, s = self._candidates(change), self.settings
        pool: set[str] | None = None
        for name in [n[1:] for n in self.og.people_table().nodes if matches(n[1:])]:
            if name in cands.people:
                continue
            idle = (change.time - self.og.G._node["@" + name]["last"]) / DAY
            if idle > s.inactive_days:
                return (f"no review or change of theirs in this project's history for {span(idle)} (people "
                        f"inactive for over {s.inactive_days:g} days are not suggested)")
            pool = in_pool(self.og, change) if pool is None else pool
            if len(cands) >= s.candidate_limit and "@" + name in pool:
                return f"not among the {s.candidate_limit} candidates with the highest ownership score"
        return ""

    # -- internals ------------------------------------------------------------------------------------
    def _candidates(self, change: Change) -> Candidates:
        # keyed by more than the id: the bot suggests for one merge request again after pushes and feedback
        key = (change.id, change.time, change.author, change.files, change.renames)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        cands = self._extend(candidates(self.og, change, allow_author=self.allow_author,
                                        inactive_days=self.settings.inactive_days,
                                        limit=self.settings.candidate_limit), change)
        self._cache = (key, cands)
        return cands

    def _extend(self, cands: Candidates, change: Change) -> Candidates:
        """Add columns to the candidate rows (the learned ranker adds feedback features)."""
        return cands

    def _contributions(self, cands: Candidates, i: int) -> list[Contribution]:
        """How each signal moved row i's score, in words, largest first."""
        return self._contributions_many(cands, [i])[0]

    def _contributions_many(self, cands: Candidates, rows: list[int]) -> list[list[Contribution]]:
        """`_contributions` of several rows (the learned ranker scores all their probes at once)."""
        X = cands.X[:, : len(FEATURES)]  # each row against the *other* candidates, as the model's probes are
        return [contributions(X[i], np.delete(X, i, axis=0) if len(X) > 1 else X) for i in rows]

    def _scores(self, cands: Candidates) -> np.ndarray:
        return cands.score

    def _order(self, cands: Candidates, scores: np.ndarray | None = None) -> list[int]:
        if not len(cands):
            return []
        scores = self._scores(cands) if scores is None else scores
        # ties by name, so a replay is the same on every run; -inf marks people not to propose
        kept = [i for i in range(len(cands)) if scores[i] != -np.inf]
        return sorted(kept, key=lambda i: (-scores[i], cands.people[i]))


class LearnedRecommender(HandSetTerms, GraphRecommender):
    """The graph's candidates re-ranked by a `ReviewerRanker` trained on the project's own past changes.

    Every observed change adds its candidate rows (labelled by who really reviewed) to a bounded window;
    the ranker is refit when the history has grown by `retrain_growth`× or `retrain_every` changes, on past
    data only. Until the first fit, the `prior` model ranks when one is given (a model trained elsewhere,
    e.g. on a synthetic history, for projects with too little history of their own), else the graph score.
    `label_mark` is for the caller: a watermark of the labels it has passed to `learn` (kept in snapshots);
    `model_version` too: the name under which the caller stored the model it gave the recommender.
    The hand-set terms added to the model's score, their votes and the drop rule are in `graph.terms`.
    """

    name = "learned"
    # refit itself as the history grows (`_due`); a caller that manages its models (the bot: stored versions,
    # adopted only when not worse on held-out changes) turns it off (`bot.learning.adopt`)
    self_refit: bool = True

    def __init__(self, *, allow_author: bool = False, settings: RecommenderSettings | None = None,
                 estimator: ReviewerRanker | None = None):
        super().__init__(allow_author=allow_author, settings=settings)
        self.estimator = estimator if estimator is not None else ReviewerRanker()
        self.feedback = FeedbackMemory(half_life_days=self.settings.feedback_half_life_days)
        self._rejected: dict[str, set[str]] = {}
        self._pending: OrderedDict[str, Candidates] = OrderedDict()  # rows as seen when suggested
        self._changes: dict[str, Change] = {}  # the pending changes (labels from GitLab name only the change)
        # change id -> person -> (when, the change as then, the times it moved) of a review put in the graph early
        self._early: dict[str, dict[str, tuple[float, Change, ReviewTimes | None]]] = {}
        self._now = 0.0  # the time of the change being ranked
        self.model_: ReviewerRanker | None = None
        self.prior: ReviewerRanker | None = None
        self.label_mark = 0
        self.model_version: str | None = None
        self._rows: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.settings.train_window)
        self._labelled = 0
        self._trained_at = 0
        self._suggested: dict[str, float] = {}
        self._reviewed: dict[str, float] = {}
        # change id -> person -> the scaled count added for a review taken, before the merge (`_count_taken`)
        self._taken: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._first: OrderedDict[str, tuple[str, float]] = OrderedDict()  # change id -> (put first, when)
        # change id -> term -> [first without the term, first with it, who of the two took the review]
        self._moved: OrderedDict[str, dict[str, list]] = OrderedDict()
        self.levels = dict.fromkeys(TERMS, 1.0)  # the share of each hand-set term applied (`_vote`)
        self._once: set[tuple[str, str, str]] = set()  # (change id, person, label) of `ONCE` labels learned
        # change id -> what closing it took away (its open review, early reviews, rows as suggested, change,
        # rejections, term pairs, the spreading's early counts): reopening restores it
        self._shut: OrderedDict[str, tuple] = OrderedDict()

    def recommend(self, change: Change, k: int) -> list[str]:
        """The best `k` people, the first of them counted as put first (`put_first`): the replays call this
        once per change. The bot calls `suggest` (several times per merge request, to rank and to explain)
        and counts the person its comment shows first through a stored label instead (`PUT_FIRST`)."""
        ranked = super().recommend(change, k)
        moved = self.moved_down(change)
        self._remember(change)
        if ranked:
            self.put_first(change.id, ranked[0], change.time)
            for term, down, up in moved:
                if up == ranked[0]:
                    self._moved_over(change.id, term, down, up)
        return ranked

    def suggest(self, change: Change, k: int = 3, **kw) -> list[Suggestion]:
        out = super().suggest(change, k, **kw)
        self._remember(change)
        return out

    def _remember(self, change: Change) -> None:
        """Keep the rows as they were when suggesting: they become training rows at the merge, which
        may come after other changes (merge requests overlap)."""
        self._pending[change.id] = self._candidates(change)
        self._pending.move_to_end(change.id)
        self._changes[change.id] = change
        while len(self._pending) > self.settings.pending_limit:
            gone, _ = self._pending.popitem(last=False)
            self._changes.pop(gone, None)

    def learn(self, change: Change, person: str, label: str, *, time: float | None = None,
              rank: int | None = None) -> None:
        """Feedback from the team on a suggestion for `change` (labels in `graph.feedback`).

        With `hard_negatives`, rejections also make that person's row of this change count twice when the
        change is observed (off by default: it did not help in the simulations). A review taken counts
        as the person's current work on this merge request until it merges (`FeedbackMemory.open`), counts
        as a review done for the load spreading at once (`_count_taken`, settled at the merge), and with
        `early_reviews` it enters the graph at once (`_review_early`). A label may name only the
        change (as the bot's do): its author and files are then those remembered when it was suggested.
        `PUT_FIRST` is no feedback: the person was shown first, which the load spreading counts;
        `MOVED_DOWN[term]` names who would have been first but for that hand-set term (whom the team then
        takes is a vote on it, `_vote`). `CLOSED` neither: the merge request was closed unmerged (`_closed`);
        `REOPENED`: ... and reopened (`_reopened`).
        Only the team's labels come here: a review the bot requested itself is none, nor is another automation's
        request or removal of a reviewer (`bot.learning.replay`).
        A thumb or an approval counts once per person and change, however often it is given, taken back and
        given again (`ONCE`).
        """
        at = change.time if time is None else time
        if label == PUT_FIRST:
            self.put_first(change.id, person, at)
            return
        if label == CLOSED:
            self._closed(change.id)
            return
        if label == REOPENED:
            self._reopened(change.id)
            return
        if label in MOVED_BY:
            first = self._first.get(change.id)
            if first is not None and first[0] != person:
                self._moved_over(change.id, MOVED_BY[label], person, first[0])
            return
        if label in ONCE:  # given, taken back and given again: one thumb, one approval
            key = (change.id, person.casefold(), label)
            if key in self._once:
                return
            self._once.add(key)
        known = self._changes.get(change.id)
        if known is not None and not (change.files and change.author):
            change = replace(change, author=change.author or known.author, files=change.files or known.files)
        self.feedback.record(person, label, time=at, author=change.author, rank=rank, change_id=change.id,
                             files=change.files)
        if label in NEGATIVE:
            self._rejected.setdefault(change.id, set()).add(person)
        if label in REVIEWED:
            self._vote(change.id, person)
        if self.settings.early_reviews and change.author:
            self._review_early(change, person, label, at)
        self._count_taken(change, person, label, at)
        self._cache = None  # the feedback columns of the cached rows are out of date

    def _closed(self, change_id: str) -> None:
        """A merge request closed without merging will never be observed: its reviewers are no longer on
        duty for it, its rows will not become training rows, and the reviews taken on it leave the graph
        (the history, which holds merged changes only, never has them) and the spreading's counts. What its
        reviews were is kept aside in case it is reopened (`_reopened`)."""
        review = self.feedback.open.get(change_id)
        self.feedback.close(change_id)
        kept = (review, self._early.pop(change_id, {}), self._pending.pop(change_id, None),
                self._changes.pop(change_id, None), self._rejected.pop(change_id, None),
                self._moved.pop(change_id, None), self._taken.pop(change_id, {}))
        for person, (at, then, before) in kept[1].items():
            self.og.retract_review(then, person, at, before)
        self._untake(kept[6])
        if change_id in self._shut and not any(kept):  # closed twice: keep what the first close kept
            return
        self._shut[change_id] = kept
        self._shut.move_to_end(change_id)
        while len(self._shut) > self.settings.pending_limit:
            self._shut.popitem(last=False)
        self._cache = None

    def _reopened(self, change_id: str) -> None:
        """A closed merge request reopened: the reviews taken on it count again, on duty, in the graph and for
        the spreading, and its rows as suggested are back (recomputed at the merge, they would see those early
        reviews)."""
        shut = self._shut.pop(change_id, None)
        if shut is None:
            return
        review, early, rows, change, rejected, moved, taken = shut
        for table, value in ((self.feedback.open, review), (self._pending, rows), (self._changes, change),
                             (self._rejected, rejected), (self._moved, moved)):
            if value is not None:
                table[change_id] = value
        for person, (at, then, _) in early.items():
            self._early.setdefault(change_id, {})[person] = (at, then, self.og.add_review(then, person, at))
        if taken:
            for person, added in taken.items():
                self._reviewed[person] = self._reviewed.get(person, 0.0) + added
            self._taken[change_id] = taken
            self._keep_taken(change_id)
        self._cache = None

    def _review_early(self, change: Change, person: str, label: str, at: float) -> None:
        """A review taken goes into the graph now (`OwnershipGraph.add_review`), a removal takes it back:
        the history alone hears of it at the merge, days later, and ranks the next merge requests without it.
        A change without files has nothing to add (`add_review` returns None): no early review is kept, else
        the merge took the person for counted already and their review never entered the graph."""
        early = self._early.get(change.id)
        if label in TAKEN and person != change.author and (early is None or person not in early):
            before = self.og.add_review(change, person, at)
            if before is None:
                return
            self._early.setdefault(change.id, {})[person] = (at, change, before)
            while len(self._early) > self.settings.pending_limit:  # never merged: their reviews stay learned
                del self._early[next(iter(self._early))]
        elif label in NEGATIVE and early is not None and person in early:
            at, then, before = early.pop(person)
            self.og.retract_review(then, person, at, before)  # the files as they were: a push may change them

    @property
    def labelled(self) -> int:
        """The changes seen with a reviewer among the model's shortlist: the rows it can be trained on."""
        return self._labelled

    @property
    def ranking_model(self) -> ReviewerRanker | None:
        """The model that ranks now: the project's own once fitted, else the prior (None: the graph score)."""
        return self.model_ if self.model_ is not None else self.prior

    def _extend(self, cands: Candidates, change: Change) -> Candidates:
        self._now = float(change.time)
        fb = self.feedback.features(cands.people, author=change.author, now=float(change.time),
                                    files=change.files, change_id=change.id)
        return Candidates(cands.people, np.hstack([cands.X, fb]), cands.score)

    def observe_history(self, changes: Sequence[Change]) -> None:
        """One change at a time: each change's candidate rows (training data) are read before it is added."""
        for change in changes:
            self.observe(change)

    def observe(self, change: Change) -> None:
        cands = self._pending.pop(change.id, None)
        if cands is None:  # an empty row set is kept as such: recomputed now, it would see the early reviews
            cands = self._candidates(change)
        self._changes.pop(change.id, None)
        self._moved.pop(change.id, None)
        self._shut.pop(change.id, None)
        self.feedback.close(change.id)
        truth = change.truth(allow_author=self.allow_author)
        if len(cands) and truth:
            self._keep_rows(cands, truth, self._rejected.pop(change.id, ()))
        self._settle_taken(change, truth)
        super().observe(change, reviewed=self._settle_early(change, truth))
        if change.renames:
            self._follow_renames(dict(change.renames))
        if self._due():
            self.refit()

    def _settle_early(self, change: Change, truth: frozenset[str]) -> list[str]:
        """At the merge: the early reviewers the graph already counts. Those removed without a label, or all
        of them when the files changed since (a push), are taken back and counted afresh by the merge."""
        kept = []
        for person, (at, then, before) in self._early.pop(change.id, {}).items():
            if person in truth and then.files == change.files and then.author == change.author:
                kept.append(person)
            else:
                self.og.retract_review(then, person, at, before)
        return kept

    def _follow_renames(self, renames: dict[str, str]) -> None:
        """The early reviews of the other open merge requests (and of closed ones, kept for a reopening)
        were put on paths a merge just renamed: they are on the new paths now (`OwnershipGraph.move_history`),
        and a review taken back, or settled at the merge, must be found there (taken back from the old path,
        it stayed on the new one; settled, it counted twice)."""
        def moved(then: Change) -> Change:
            files = tuple(renames.get(f, f) for f in then.files)
            return then if files == then.files else replace(then, files=files)

        for reviews in [*self._early.values(), *(kept[1] for kept in self._shut.values())]:
            for person, (at, then, before) in reviews.items():
                reviews[person] = (at, moved(then), before)

    @staticmethod
    def model_input(X: np.ndarray, score: np.ndarray) -> np.ndarray:
        """The features plus the graph score itself, which the model may lean on when data is scarce."""
        return np.column_stack([X, score])

    def _keep_rows(self, cands: Candidates, truth: frozenset[str], rejected=()) -> None:
        y = np.fromiter((p in truth for p in cands.people), dtype=np.int8, count=len(cands))
        if not y.any():
            return
        idx = self._top(cands)
        if not y[idx].any():
            return
        hard = [i for i in idx if self.settings.hard_negatives and cands.people[i] in rejected and not y[i]]
        idx = np.r_[idx, hard].astype(int)
        self._rows.append((self.model_input(cands.X[idx], cands.score[idx]), y[idx]))
        self._labelled += 1

    def _due(self) -> bool:
        s = self.settings
        n, last = self._labelled, self._trained_at
        if n < s.min_train_changes or not self.self_refit:
            return False
        return last == 0 or n >= last * s.retrain_growth or n - last >= s.retrain_every

    def training_data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, groups) of the current window, one group per past change."""
        Xs, ys, gs = [], [], []
        for g, (X, y) in enumerate(self._rows):
            Xs.append(X)
            ys.append(y)
            gs.append(np.full(len(y), g))
        return np.vstack(Xs), np.concatenate(ys), np.concatenate(gs)

    def refit(self) -> None:
        """Fit a fresh clone of the estimator on the window (past changes only)."""
        from sklearn.base import clone

        X, y, groups = self.training_data()
        if len(np.unique(y)) < 2:
            return
        weight = None
        if self.settings.train_half_life:  # recent changes weigh more (slower: weighted binning)
            weight = 0.5 ** ((groups.max() - groups) / self.settings.train_half_life)
        self.model_ = clone(self.estimator).fit(X, y, groups=groups, sample_weight=weight)
        self.model_version = None  # its own: not a version the caller stored
        self._trained_at = self._labelled

    def _top(self, cands: Candidates) -> np.ndarray:
        """The rows the model ranks (and learns from): the best `rerank` by graph score."""
        return np.argsort(-cands.score, kind="stable")[: self.settings.rerank]

    def _scores(self, cands: Candidates) -> np.ndarray:
        """Model scores for the top rows, placed above the graph-ordered rest; minus the penalties for
        over-suggested people and for people the team keeps turning down."""
        base = super()._scores(cands)
        if not len(cands):
            return base
        ranker = self.ranking_model
        streaks = self._streaks(cands.people)
        if ranker is None:
            return self._drop_rejected(cands.people, base / (1.0 + self._rejection_penalty(streaks)),
                                       self._gone(streaks))
        idx = self._top(cands)
        model = ranker.decision_function(self.model_input(cands.X[idx], cands.score[idx]))
        people = [cands.people[i] for i in idx]
        terms = self._terms(people, cands.X[idx], streaks[idx])
        model = model + sum(terms)
        gone = self._gone(streaks)
        self._pick_firsts(cands, people, model, terms, gone[idx])
        scores = base - base.max() - 1.0 + (model.min() if len(model) else 0.0) - 1.0
        scores[idx] = model
        return self._drop_rejected(cands.people, scores, gone)

    def _contributions_many(self, cands: Candidates, rows: list[int]) -> list[list[Contribution]]:
        """With a model: how much the score of each row changes when one signal at a time is set to the
        other candidates' average (the rest of the change's candidates unchanged). Every probe of every row
        goes through one `decision_function` call, each probe as its own group. The terms added to the
        model's score (`_terms`) count the same way: the row's term against the others' average."""
        idx = list(self._top(cands))
        ranker = self.ranking_model
        ranked = [i for i in rows if i in idx] if ranker is not None else []
        out = dict(zip(ranked, self._probed(ranker, cands, idx, ranked))) if ranked else {}
        for i, extra in zip(ranked, self._term_contributions(cands, idx, ranked)):
            out[i] = sorted([*out[i], *extra], key=lambda c: -abs(c.effect))
        rest = [i for i in rows if i not in out]
        out.update(zip(rest, super()._contributions_many(cands, rest)))
        return [out[i] for i in rows]

    def _basis(self, cands: Candidates, i: int) -> str:
        """Rows outside the model's shortlist (`_top`) are ranked below it by the ownership score alone, and
        explained by that score's parts: said, since their score is a placement, not the model's."""
        if self.ranking_model is None or i in self._top(cands):
            return ""
        n = self.settings.rerank
        shortlist = f"the {n} candidates" if n != 1 else "the candidate"
        return (f"The model ranks only {shortlist} with the highest ownership score: this person is not among "
                "them, so they rank below by that score alone, and the signals below are its parts")

    def _probed(self, ranker: ReviewerRanker, cands: Candidates, idx: list[int],
                rows: list[int]) -> list[list[Contribution]]:
        """Each probe is scored in a group of two rows: the probe and the other candidates' column maxima.
        The ranker reads a group only through its maxima (`graph.ranker.relative_features`), so the probe
        scores as it would among all the other rows, at a tenth of the rows (`scores_among`: the maxima's
        row itself is not scored). A column where the row has the others' average already is not probed:
        its probe is the row itself, which moves nothing (the effect would be 0 and left out); only the
        signals that moved the score are put in words."""
        Z = self.model_input(cands.X[idx], cands.score[idx])
        probes, tops, compared = [], [], []  # compared: (the row, the others' average, the columns probed)
        for i in rows:
            me = idx.index(i)
            others = np.delete(Z, me, axis=0)
            mean = others.mean(axis=0) if len(others) else Z[me]
            cols = np.flatnonzero(Z[me] != mean)
            compared.append((Z[me], mean, cols))
            P = np.repeat(Z[me][None], len(cols) + 1, axis=0)  # the last probe is the unchanged row
            P[np.arange(len(cols)), cols] = mean[cols]
            probes.append(P)
            if len(others):
                tops.append(np.repeat(others.max(axis=0)[None], len(P), axis=0))
        s = scores_among(ranker, np.vstack(probes), np.vstack(tops) if tops else None)
        names = [*FEATURES, *FEEDBACK_FEATURES, "graph_score"]
        words = {**FEATURE_WORDS, **FEEDBACK_WORDS}
        out, at = [], 0
        for i, (value, mean, cols) in zip(rows, compared):
            mine, at = s[at:at + len(cols) + 1], at + len(cols) + 1
            effects = mine[-1] - mine[:-1]
            found = [Contribution(words[names[j]], float(e), *self._compare(cands.people[i], names[j], value[j],
                                                                            mean[j]))
                     for j, e in zip(cols.tolist(), effects) if abs(float(e)) > 1e-6]
            out.append(sorted(found, key=lambda c: -abs(c.effect)))
        return out

    def _compare(self, person: str, name: str, mine: float, others: float) -> tuple[str, str]:
        """`compare`, but a share the team's feedback never measured says so: someone without any feedback
        has the prior's 50% taken, which read as if half their suggestions had been taken."""
        said = compare(name, mine, others)
        if name == "fb_acceptance" and not self.feedback.heard_of(person):
            return f"no feedback yet: {said[0]} assumed", said[1]
        return said


DEFAULT_SETTINGS = RecommenderSettings(balance=3.0)

METHODS: dict[str, Callable[..., GraphRecommender]] = {
    "graph": GraphRecommender,
    "learned": LearnedRecommender,
}


def make_recommender(method: str = "default", *, allow_author: bool = False,
                     settings: RecommenderSettings | None = None) -> GraphRecommender:
    """The recommender for a method name; ``"default"`` is what the bot uses."""
    if method == "default":
        rec = LearnedRecommender(allow_author=allow_author, settings=settings or DEFAULT_SETTINGS)
        rec.name = "default"
        return rec
    try:
        return METHODS[method](allow_author=allow_author, settings=settings)
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose from default, {', '.join(METHODS)}") from None
