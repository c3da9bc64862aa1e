"""Shared by `evaluate` and `simulate`: load histories, run replays in worker processes, show progress."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_COUNTER = None
_STEP = 50  # changes a worker replays between two reports to the progress counter


def load(source: str, is_git: bool) -> list:
    """The changes of a history file or of a local git checkout, in time order: sorted (stably, so changes
    of one second keep their order), as an export or a concatenation of files may not be, and a replay that
    met a later change first would rank with what was not known yet."""
    if is_git:
        from bot.git_history import read_git_changes
        changes = list(read_git_changes(source))
    else:
        from bot.history_files import read_changes
        changes = list(read_changes(source))
    return sorted(changes, key=lambda c: c.time)


def usage_error(command: str, message: str) -> SystemExit:
    """Say `message` on stderr; the exit to raise: 2, as argparse exits for a command line it refuses (a
    `SystemExit` holding the message would exit 1, the code of a failure)."""
    print(f"reviewbot {command}: {message} (see reviewbot {command} --help)", file=sys.stderr)
    return SystemExit(2)


HISTORY_SUFFIXES = (".jsonl", ".jsonl.gz")


def sources_of(paths: list[str], gits: list[str], command: str) -> list[tuple[str, bool]]:
    """(source, is_git) pairs, a directory given as a history standing for its history files (`HISTORY_SUFFIXES`,
    not its subdirectories, in name order: `../shared/data/bench` replays the five); exits with a message naming
    what is missing."""
    sources = [(p, False) for p in paths] + [(g, True) for g in gits]
    if not sources:
        raise usage_error(command, "give at least one history file, --git REPO or --project ID")
    out: list[tuple[str, bool]] = []
    for path, is_git in sources:
        if not Path(path).exists():
            raise SystemExit(f"reviewbot {command}: {path}: no such {'repository' if is_git else 'file'}")
        out += [(f, False) for f in _histories_in(path, command)] if not is_git and Path(path).is_dir() else \
            [(path, is_git)]
    return out


def _histories_in(folder: str, command: str) -> list[str]:
    found = sorted(str(f) for f in Path(folder).iterdir() if f.is_file() and f.name.endswith(HISTORY_SUFFIXES))
    if not found:
        raise SystemExit(f"reviewbot {command}: {folder}: a directory without a .jsonl or .jsonl.gz file in it; "
                         f"give history files, or --git {folder} if it is a git checkout")
    return found


def scored(results: list[dict]) -> list[dict]:
    """The results that scored something: a row of zeros is no result (it would read as a recommender that
    never finds anyone), so neither the table nor `--json` shows one; `unscored` says why instead."""
    return [r for r in results if r["evaluated"]]


def unscored(results: list[dict], command: str) -> int:
    """Say on stderr which histories had nothing to score (no change at all, or none naming a reviewer) and
    return the exit status: 1 if any, else 0."""
    empty = {r["file"]: r["records"] for r in results if not r["evaluated"]}
    for name, records in empty.items():
        why = ("holds no change, nothing to score" if not records else "no change names a reviewer, nothing to "
               "score (a history record needs `reviewers` or `ackers`; a git history, Reviewed-by:, Acked-by: "
               "or Approved-by: trailers)")
        print(f"reviewbot {command}: {name}: {why}", file=sys.stderr)
    return 1 if empty else 0


def names_of(sources: list[tuple[str, bool]], named: dict[str, str] | None = None) -> list[str]:
    """What to call each history in the results: its file name, or the path as given where two share a name
    (`teamA/history.jsonl` and `teamB/history.jsonl` must not be told apart by name alone); `named` gives
    some sources their name (a stored project's path).

    >>> names_of([("a/h.jsonl", False), ("b/h.jsonl", False), ("c/x.jsonl", False)])
    ['a/h.jsonl', 'b/h.jsonl', 'x.jsonl']
    >>> names_of([("src/wayland/.git", True), ("/srv/weston.git", True), ("tools/", True)])
    ['wayland', 'weston', 'tools']
    """
    named = named or {}
    base = [named.get(s) or (_repo_name(s) if is_git else Path(s).name) for s, is_git in sources]
    return [s if base.count(b) > 1 and s not in named else b for (s, _), b in zip(sources, base)]


def _repo_name(path: str) -> str:
    """A git checkout's name as its owner knows it: `wayland` for `wayland/.git` or a bare `wayland.git`."""
    where = Path(path).resolve() if Path(path).exists() else Path(path)
    name = where.parent.name if where.name == ".git" else where.name
    return name.removesuffix(".git") or name


def tick_factory() -> Callable[[int], None]:
    """A progress callback for a worker process: reports every few hundred changes."""
    seen = [0]

    def tick(n: int) -> None:
        seen[0] += n
        if seen[0] % _STEP == 0 and _COUNTER is not None:
            with _COUNTER.get_lock():
                _COUNTER.value += _STEP

    return tick


def _init(counter) -> None:
    global _COUNTER
    _COUNTER = counter


class TenthLines:
    """Progress as plain lines on stderr, one each time the work passes a further tenth, for a log or a CI
    job, where a progress bar is not drawn at all (a run of minutes said nothing until its table).

    >>> import io
    >>> out = io.StringIO()
    >>> lines = TenthLines("evaluating", 200, out, start=0.0)
    >>> for done in (15, 20, 90, 200):
    ...     lines.update(done, now=3.0)
    >>> print(out.getvalue(), end="")
    evaluating: 10% (20 of 200 changes replayed, 3 s)
    evaluating: 40% (90 of 200 changes replayed, 3 s)
    evaluating: 100% (200 of 200 changes replayed, 3 s)
    """

    def __init__(self, label: str, total: int, stream: TextIO, *, start: float | None = None) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.start = time.monotonic() if start is None else start
        self.shown = 0  # tenths said so far

    def update(self, done: int, *, now: float | None = None) -> None:
        done = min(done, self.total)
        tenth = 10 * done // self.total if self.total else 10
        if tenth <= self.shown:
            return
        self.shown = tenth
        elapsed = (time.monotonic() if now is None else now) - self.start
        self.stream.write(f"{self.label}: {10 * tenth}% ({done} of {self.total} changes replayed, "
                          f"{elapsed:.0f} s)\n")
        self.stream.flush()


def run_jobs(fn: Callable, jobs: list[tuple], total: int, *, workers: int, label: str) -> list:
    """Run `fn(*job)` for every job in `workers` processes (one numeric thread each), showing progress on
    stderr: a bar on a terminal, else a plain line every tenth (`TenthLines`); stdout stays for the results
    (`--json`). Results in job order."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # no oversubscription of the two cores
    ctx = mp.get_context("spawn")
    counter = ctx.Value("l", 0)
    err = Console(stderr=True)
    lines = None if err.is_terminal or not total else TenthLines(label, total, sys.stderr)
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=_init,
                             initargs=(counter,)) as pool, \
            Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task(label, total=total)
        futures = [pool.submit(fn, *job) for job in jobs]
        while not all(f.done() for f in futures):
            bar.update(task, completed=min(total, counter.value))
            if lines is not None:
                lines.update(counter.value)
            time.sleep(0.2)
        results = [f.result() for f in futures]
    if lines is not None:
        lines.update(total)
    return results


def stdout_console() -> Console:
    """A console for tables: wide when piped, so a table is not squeezed to 80 columns. No markup: file names
    and the summary lines are printed as written (a file named `run[red]2.jsonl` keeps its brackets: Rich
    would read them as a style and drop them)."""
    out = Console(markup=False)
    return out if out.is_terminal else Console(width=140, markup=False)
