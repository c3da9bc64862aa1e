"""Feedback labels from storage into a project's recommender, and models trained from them kept in storage.

Why from storage and not straight from the handlers: the labels live in the same durable table as the
events (`storage.feedback`), written by any worker process. A recommender keeps `label_mark`, the id of the
last row it learned (saved in its snapshots), and the engine feeds it every row above that mark, in time
order together with the history rows it has not observed: after a restart or on another process nothing is
lost nor learned twice. A label about a merge request comes before that MR's merge in the replay (except
`final_reviewer`, recorded at the merge), so rejections become hard negatives of the change. Beside the
evidence, a `suggested` row names whom the bot's comment put first: the load spreading counts first places
given against reviews done, on every process alike (`LearnedRecommender.put_first`). A label carries
its MR's author and files, stored with the suggestion it judges: a review taken enters the graph at once
(`LearnedRecommender.learn`) on every process alike, not only on the one that suggested for the MR.

Models: `retrain_and_store` fits a new ranker on a copy of the training window (in a thread of its own, at a lower
CPU priority than the threads that suggest), stores it (`storage.models`) with its backtest Top-1 on the project's
most recent changes, and makes it active only if that is not below the current model's. One model is fitted per
history, whichever process gets there first (`model_version`). `prior_model` is the
cold-start model for projects with too little history of their own: fitted once on a synthetic history
(`graph.synthetic`) and kept under project id 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import pickle
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Mapping, Protocol, Sequence

import sqlalchemy as sa

from bot.backfill import is_automated
from bot.logfmt import kv
from bot.storage import FeedbackRow, HistoryGone, Storage, SuggestionRow
from bot.threads import to_the_end
from graph.feedback import CLOSED, FEEDBACK_FEATURES, MOVED_DOWN, NEGATIVE, POSITIVE, PUT_FIRST, REOPENED, THUMBS
from graph.features import FEATURES
from graph.model import Change
from graph.recommend import DEFAULT_SETTINGS, GraphRecommender, LearnedRecommender
from graph.retrain import Retrained, retrain, training_window
from graph.snapshot import fingerprint
from graph.synthetic import synthetic_history

__all__ = ["Label", "new_labels", "interleave", "label_change", "replay", "retrain_and_store", "adopt",
           "enough_history", "serving_suffix", "PRIOR_SERVING", "stored_model", "prior_model", "model_version",
           "Observed", "EVIDENCE", "LEARNED", "PRIOR_PROJECT"]

log = logging.getLogger("bot.learning")

EVIDENCE = POSITIVE | NEGATIVE  # the labels that say something about a person (not "why", "command")
LEARNED = EVIDENCE | {PUT_FIRST, CLOSED, REOPENED, *MOVED_DOWN.values()}  # what a recommender reads: evidence,
# first places, closes and reopenings, who a hand-set term moved down
PRIOR_PROJECT = 0               # `storage.models` rows of the project-independent prior model
PRIOR_VERSION = "prior-synthetic-v1"
PRIOR_SERVING = "prior"  # the end of a suggestion's model_version while the prior ranks (`serving_suffix`)
MODEL_WIDTH = len(FEATURES) + len(FEEDBACK_FEATURES) + 1  # `LearnedRecommender.model_input` columns


RETRAIN_NICE = 10  # CPU priority of the retraining thread, below the threads that suggest
RETRAIN_SWITCH_INTERVAL = 0.001  # seconds: how long a thread may hold the interpreter while others wait


def give_way() -> None:
    """Make the calling (retraining) thread give way to suggestions: a lower CPU priority when the CPU is
    short (on Linux each thread has its own nice value, so only this one is lowered), and a shorter
    interpreter switch interval for the process, so a suggestion waiting while the fit runs Python code
    gets its turn within 1 ms instead of Python's 5 (p99 beside a retraining went from 1.7-2.0x idle to
    1.3x in `benchmarks/retrain_latency.py`)."""
    sys.setswitchinterval(min(sys.getswitchinterval(), RETRAIN_SWITCH_INTERVAL))
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RETRAIN_NICE)
    except (AttributeError, OSError) as exc:
        log.debug(kv("retraining thread keeps its priority", error=f"{type(exc).__name__}: {exc}"))


# One thread per process retrains, one project at a time: retraining never takes the threads that suggest,
# and several projects due at once do not fit side by side.
_RETRAINING = ThreadPoolExecutor(1, thread_name_prefix="reviewbot-retrain", initializer=give_way)


@dataclass(frozen=True)
class Label:
    """One stored feedback row as the recommender learns it: `rank` = the person's place in the suggestion;
    `author`, `files` = its MR as suggested for ("" and () when unknown); `merged` = the MR was in the
    history when the label was read."""

    id: int
    mr_iid: int
    person: str
    label: str
    time: float
    rank: int | None
    author: str = ""
    files: tuple[str, ...] = ()
    merged: bool = False
    automated: bool = False  # a reviewer row no person's choice: a review the bot or another automation
    # requested, or an automation's removal (`bot.backfill.is_automated`)


def _rank(people: Sequence[str] | None, person: str) -> int | None:
    folded = [p.casefold() for p in people or ()]
    return folded.index(person.casefold()) + 1 if person.casefold() in folded else None


def _revoked(row: FeedbackRow) -> bool:
    """An emoji taken back: no evidence. A thumb counts once per person and MR (the recommender keeps which
    it learned, `LearnedRecommender.learn`: given again after being taken back, it is not learned twice, and
    one never learned is learned when given again); one taken back after it was learned stays learned and
    fades with decay, one taken back before it was read (same batch) is not learned at all (`_net_thumbs`)."""
    return isinstance(row.value, Mapping) and row.value.get("action") == "revoke"


def _net_thumbs(rows: list[FeedbackRow]) -> list[FeedbackRow]:
    """Drop a batch's awards of a thumb that the batch ends by taking back (same MR, person and thumb)."""
    last: dict[tuple[int, str, str], str] = {}
    for r in rows:
        if isinstance(r.value, Mapping) and r.value.get("action") in ("award", "revoke"):
            last[(r.mr_iid, r.person.casefold(), r.label)] = r.value["action"]
    return [r for r in rows if last.get((r.mr_iid, r.person.casefold(), r.label)) != "revoke"]


def _label(row: FeedbackRow, shown: SuggestionRow | None, merged: bool) -> Label:
    """`row` as learned: `shown` is the suggestion it judges (else the MR's latest, which gives no rank)."""
    people = [str(p.get("username")) for p in shown.people or [] if isinstance(p, Mapping)] if shown else None
    return Label(row.id, row.mr_iid, row.person, row.label, row.created_at.timestamp(),
                 _rank(people, row.person) if row.suggestion_id else None,
                 author=(shown.author or "") if shown else "", files=tuple(shown.files or ()) if shown else (),
                 merged=merged, automated=is_automated(row))


async def new_labels(storage: Storage, project_id: int, after_id: int) -> tuple[list[Label], int]:
    """The rows a recommender learns (`LEARNED`) above `after_id`, oldest first, and the new mark (the last
    row id read).

    Each label's MR (author, files) comes from the suggestion the row judges, or from the MR's latest
    suggestion when it names none (an MR never suggested for has none): storage, not this process's memory,
    so any process learns a label alike. A 👍 / 👎 on the bot's comment is evidence about the person who
    gave it only when they were among the people it suggested ("me: yes / no"); the author's or a
    bystander's thumb judges the list, not themselves, and stays in storage for the dashboard. Three
    statements for the whole batch, whatever its size: the rows, the suggestions they judge, and which of
    their MRs the history holds (merged: see `label_change`)."""
    rows = await storage.feedback.since(project_id, after_id)
    mark = rows[-1].id if rows else after_id
    rows = [r for r in _net_thumbs(rows) if r.label in LEARNED and not _revoked(r)]
    if not rows:
        return [], mark
    shown = await storage.suggestions.judged(project_id, (r.suggestion_id for r in rows if r.suggestion_id),
                                             latest_of=(r.mr_iid for r in rows if not r.suggestion_id))
    by_id = {s.id: s for s in shown}
    latest = {s.mr_iid: s for s in shown}  # in id order: each MR's last one stays
    merged = await storage.history.present(project_id, {mr_change_id(r.mr_iid) for r in rows})
    labels = [_label(r, by_id.get(r.suggestion_id) if r.suggestion_id else latest.get(r.mr_iid),
                     mr_change_id(r.mr_iid) in merged) for r in rows]
    labels = [x for x in labels if x.label not in THUMBS or x.rank is not None]
    return sorted(labels, key=lambda x: (x.time, x.id)), mark


def mr_change_id(iid: int) -> str:
    """The history id of an MR (as `bot.backfill.change_id`), which the engine also suggests under."""
    return f"!{iid}"


def interleave(history: Sequence[Change], labels: Sequence[Label]) -> list[Change | Label]:
    """History and labels in time order; a label about a change in `history` comes before its merge
    (`final_reviewer` after it), whatever clocks stamped them.

    >>> c = Change("!1", 100, "ann", ("bob",), ("a",))
    >>> [type(x).__name__ for x in interleave([c], [Label(1, 1, "bob", "removed", 500.0, 1)])]
    ['Label', 'Change']
    """
    merged_at = {c.id: c.time for c in history}
    keyed: list[tuple[tuple[float, int, int], Change | Label]] = [
        ((c.time, 1, i), c) for i, c in enumerate(history)]
    for j, label in enumerate(labels):
        t, order = label.time, 0
        merged = merged_at.get(mr_change_id(label.mr_iid))
        if merged is not None:
            t, order = (max(t, merged), 2) if label.label == "final_reviewer" else (min(t, merged), 0)
        keyed.append(((t, order, j), label))
    return [item for _, item in sorted(keyed, key=lambda k: k[0])]


def label_change(label: Label, authors: Mapping[int, str], replayed: Collection[str]) -> Change:
    """The MR a label is about, as `learn` takes it: its author (from `authors` when known, else the
    label's) and its files, unless the MR merged before this replay (`replayed`: the ids of the changes in
    it). Then the graph has counted its reviewers at the merge already, and a late label must not count
    one again as a review taken early.

    >>> late = Label(1, 4, "bob", "accepted", 50.0, 1, author="ann", files=("a.c",), merged=True)
    >>> label_change(late, {}, {"!4"}).files, label_change(late, {4: "ann"}, ()).files
    (('a.c',), ())
    """
    cid = mr_change_id(label.mr_iid)
    files = label.files if not label.merged or cid in replayed else ()
    return Change(cid, int(label.time), authors.get(label.mr_iid) or label.author, (), files)


def replay(rec: GraphRecommender, items: Iterable[Change | Label], authors: Mapping[int, str]) -> int:
    """Observe the changes and learn the labels, in order (run it in a thread); returns labels learned.

    A label's change carries its MR's author (from `authors`, the history replayed, or the label) and files
    (`label_change`), so `learn` needs nothing this process remembered from suggesting for it.
    """
    learner = rec if isinstance(rec, LearnedRecommender) else None
    items = list(items)
    known = dict(authors)
    known.update((int(c.id[1:]), c.author) for c in items
                 if isinstance(c, Change) and c.id.startswith("!") and c.id[1:].isdigit())
    replayed = {c.id for c in items if isinstance(c, Change)}
    learned = 0
    for item in items:
        if isinstance(item, Change):
            rec.observe(item)
        elif learner is not None and not item.automated:  # no choice of the team's (learned, the bot's request
            change = label_change(item, known, replayed)  # reset the streak of someone the team removed, and a
            # roulette's removal read as the team turning them down)
            learner.learn(change, item.person, item.label, time=item.time, rank=item.rank)
            learned += 1
    return learned


def enough_history(rec: LearnedRecommender) -> bool:
    """Whether `rec` has seen the changes its own refit waits for (`min_train_changes`, 150): below that the
    graph score (or the prior) ranks, and a model fitted on a dozen changes and compared on four must not
    replace it."""
    return rec.labelled >= rec.settings.min_train_changes


def serving_suffix(rec: GraphRecommender) -> str:
    """What ranks beside the graph, for a suggestion's `model_version` (the dashboard shows it): `/{version}`
    of the stored model adopted, `/prior` while the prior ranks a project without a model of its own, else
    nothing (the graph score, or the recommender's own refit)."""
    stored = getattr(rec, "model_version", None)
    if stored:
        return f"/{stored}"
    if isinstance(rec, LearnedRecommender) and rec.model_ is None and rec.prior is not None:
        return f"/{PRIOR_SERVING}"
    return ""


def adopt(rec: GraphRecommender, model: Any) -> bool:
    """Make `model` the one ranking for `rec` (False when it is not a learned recommender or the model's
    input width is not this code's). The recommender no longer refits itself as the history grows: that
    refit would replace an adopted model without the hold-out comparison."""
    if not isinstance(rec, LearnedRecommender) or getattr(model, "n_features_in_", None) != MODEL_WIDTH:
        return False
    rec.model_ = model
    rec._trained_at = max(rec._trained_at, rec._labelled)
    rec.self_refit = False  # from now on a model replaces this one only through `retrain_and_store`'s check
    return True


def _loads(blob: bytes) -> Any | None:
    try:
        return pickle.loads(blob)  # our own database's rows, written by `retrain_and_store`
    except Exception as exc:  # noqa: BLE001 - an unreadable model means "no stored model", not a crash
        log.warning(kv("stored model unreadable, ignored", error=f"{type(exc).__name__}: {exc}"))
        return None


async def stored_model(storage: Storage, project_id: int) -> tuple[str, Any] | None:
    """The project's active model (version, estimator), or None."""
    row = await storage.models.active(project_id)
    if row is None:
        return None
    model = await asyncio.to_thread(_loads, row.blob)
    return None if model is None else (row.version, model)


async def follow_active(storage: Storage, project_id: int, rec: LearnedRecommender, lock: asyncio.Lock | None,
                        *, skip: str | None = None) -> str | None:
    """Rank with the model active in storage when it is not the recommender's (another process stored and
    activated one: every process learns every label, so their retrainings start together, and the one that
    lost the race kept ranking with a model no longer active); the active version, or None. Only its version
    is read unless it differs, and it is not read at all when it is `skip` (one that could not be adopted).
    `lock`: held while adopting (None: the caller holds the recommender already)."""
    summary = await storage.models.active_summary(project_id)
    if summary is None or summary[0] in (getattr(rec, "model_version", None), skip):  # (older snapshots lack it)
        return summary[0] if summary else None
    found = await stored_model(storage, project_id)
    if found is None:
        return summary[0]
    async with lock if lock is not None else contextlib.nullcontext():
        if adopt(rec, found[1]):
            rec.model_version = found[0]
    return found[0]


class Observed(Protocol):
    """Which stored history rows a recommender has observed (`bot.engine`'s entry): `count` rows, the newest at
    `last_time`, `boundary` the ids of the rows at that time."""

    count: int
    last_time: int | None
    boundary: Collection[int]


async def retrain_and_store(storage: Storage, project_id: int, rec: LearnedRecommender, lock: asyncio.Lock, *,
                            history: Observed, holdout: int = 200, built_on: Collection[int] = ()) -> Retrained | None:
    """Copy the window under `lock`, fit and compare in a thread, store the model, adopt it if not worse.

    The candidate is compared with the model active in storage: one another process activated since this
    recommender adopted its model is adopted first. It becomes active only if that is still the active one
    when it is stored (`ModelStore.save_replacing`), else it is kept inactive. Nothing is fitted when a model
    of its version (`model_version`: this history, estimator, settings and code) is stored already, by this
    process or another: then the active one is followed. `built_on`: ids of history rows `rec` has observed;
    once `reviewbot forget` deleted them (during the fit, say), no model is stored (`HistoryGone`).
    """
    current = await follow_active(storage, project_id, rec, lock)
    async with lock:
        window = await to_the_end(asyncio.to_thread(training_window, rec))
        version = model_version(rec, history)
    if window is None:
        return None
    if await storage.models.exists(project_id, version):  # fitted on this very history already, here or elsewhere
        log.info(kv("model for this history stored already; not retrained", project_id=project_id,
                    version=version))
        await follow_active(storage, project_id, rec, lock)
        return None
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(_RETRAINING, functools.partial(retrain, window, holdout=holdout))
    if result.model is None:
        return result
    blob = await asyncio.to_thread(pickle.dumps, result.model, 5)
    score = round(result.score, 4)
    try:
        if result.better_or_equal:
            active = await storage.models.save_replacing(project_id, version, blob, backtest_score=score,
                                                         expected=current, built_on=built_on)
        else:
            await storage.models.save(project_id, version, blob, backtest_score=score, activate=False,
                                      built_on=built_on)
            active = False
    except HistoryGone:  # `reviewbot forget` deleted the project during the fit: nothing of it is stored again
        log.info(kv("model not stored: the project was forgotten meanwhile", project_id=project_id,
                    version=version))
        return None
    except sa.exc.IntegrityError:  # another process fitted on the same history at the same time, stored it first
        log.info(kv("model for this history stored by another process", project_id=project_id,
                    version=version))
        await follow_active(storage, project_id, rec, lock)
        return result
    if active:
        async with lock:
            adopt(rec, result.model)
            rec.model_version = version
    else:  # not better, or another process activated its model meanwhile: rank with the active one
        await follow_active(storage, project_id, rec, lock)
    log.info(kv("model retrained", project_id=project_id, version=version, top1=round(result.score, 4),
                current_top1=round(result.current_score, 4), held_out=result.changes, active=active))
    return result


def model_version(rec: LearnedRecommender, history: Observed) -> str:
    """The version a model fitted now on `rec`'s window is stored under: `{rows}c-{digest}` of the history
    observed (row count, newest time, the rows at that time), the estimator and its parameters, the
    recommender's settings and the code (`graph.snapshot.fingerprint`).

    Why the history and not the window's bytes: the window differs from process to process on the same
    history and labels. A change's training rows are its candidates as ranked when this process last
    suggested for it (`LearnedRecommender._remember`), or at its merge when another process did, so each
    process had a window, a digest and a model of its own and stored them all. Named by the history, a
    version is fitted once, by whichever process gets there first; the others follow the active model. Labels
    alone add no training rows (a merge does): with no merge since, the version is the same and nothing is
    fitted again.

    >>> from types import SimpleNamespace
    >>> seen = SimpleNamespace(count=315, last_time=1_700_000_000, boundary={41})
    >>> model_version(LearnedRecommender(), seen) == model_version(LearnedRecommender(), seen)
    True
    """
    estimator = rec.estimator
    h = hashlib.sha256()
    for part in (history.count, history.last_time, sorted(history.boundary),
                 f"{type(estimator).__module__}.{type(estimator).__qualname__}",
                 sorted(estimator.get_params().items()), rec.settings, fingerprint(), MODEL_WIDTH):
        h.update(repr(part).encode() + b"\0")
    return f"{history.count}c-{h.hexdigest()[:12]}"


def fit_prior(n_changes: int = 1200, seed: int = 7) -> Any | None:
    """A ranker fitted on a synthetic history (slow: seconds; run it in a thread)."""
    rec = LearnedRecommender(settings=DEFAULT_SETTINGS)
    for change in synthetic_history(n_changes, 400, 40, seed=seed):
        rec.observe(change)
    rec.refit()
    return rec.model_


async def prior_model(storage: Storage, *, n_changes: int = 1200) -> Any | None:
    """The cold-start prior: read from `storage.models` (project 0), or fitted once and stored there."""
    found = await stored_model(storage, PRIOR_PROJECT)
    if found is not None and getattr(found[1], "n_features_in_", None) == MODEL_WIDTH:
        return found[1]
    model = await asyncio.to_thread(fit_prior, n_changes)
    if model is None:
        return None
    blob = await asyncio.to_thread(pickle.dumps, model, 5)
    try:
        await storage.models.save(PRIOR_PROJECT, f"{PRIOR_VERSION}-{uuid.uuid4().hex[:8]}", blob)
    except Exception as exc:  # noqa: BLE001 - another process stored one first: ours serves as well
        log.info(kv("prior model not stored", error=f"{type(exc).__name__}: {exc}"))
    return model
