"""CODEOWNERS matching: pathological patterns and ordinary files, the current matcher against the old regex.

`graph.codeowners` used to translate a glob straight into a regex (`*` → `[^/]*`, `**/` → `(?:[^/]*/)*`),
whose backtracking is exponential in the number of stars; the old translation is kept in
`tests/codeowners_oracle.py`. This script times both in the same run and prints the ratio old / new. It is not
a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/bench_codeowners.py [--timeout 30] [--quick]

Each pathological case runs the old matcher in a child process killed after `--timeout` seconds (shown as
`>30 s`, with the ratio as a lower bound); the new matcher compiles the pattern afresh every time (no cache).
Ordinary cases (the documented example file, a generated 2,000-line file) are timed in this process, best of
several rounds taken in turn, the old matcher being swapped in for the end-to-end figures. `cold` parses with
no compiled pattern cached; `again` parses the same file a second time, as the bot does on each event
(compiled patterns of up to 512 characters are kept, 4,096 of them; the old code had only `re`'s cache of 512).
`owners_for_files` matches afresh each time; `the same 300 again` is the answer a parsed file keeps for the
last few changes (one suggestion asks several times).
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import graph.codeowners as codeowners  # noqa: E402
from graph.codeowners import _compile, _compile_cached, _glob_regex, _normalize, parse_codeowners  # noqa: E402
from tests.codeowners_oracle import regex_compile  # noqa: E402

DEEP = "/" + "/".join(["d"] * 30) + "/y"
PATHOLOGICAL: list[tuple[str, str, str]] = [
    ("`*a`×8 b, 30 a", "/" + "*a" * 8 + "b", "/" + "a" * 30),
    ("`*a`×10 b, 30 a", "/" + "*a" * 10 + "b", "/" + "a" * 30),
    ("`*a`×12 b, 40 a", "/" + "*a" * 12 + "b", "/" + "a" * 40),
    ("`**/`×8 x, depth 30", "/" + "**/" * 8 + "x", DEEP),
    ("`**/`×10 x, depth 30", "/" + "**/" * 10 + "x", DEEP),
    ("`**/d/`×8 x, depth 30", "/" + "**/d/" * 8 + "x", DEEP),
    ("line `*`+`*a`×9+`b`, 60 a", _normalize("*" + "*a" * 9 + "b"), "/" + "a" * 60),
    ("`*a`×200 b, 4,000 a", "/" + "*a" * 200 + "b", "/" + "a" * 4000),
    ("`**/*a*/`×40 x, 300 dirs", "/" + "**/*a*/" * 40 + "x", "/" + "/".join(["aaaa"] * 300) + "/y"),
    ("`**/`+`a/`×1,000 b, 2,000 dirs", "/**/" + "a/" * 1000 + "b", "/" + "a/" * 2000 + "c"),
    ("`**/`+`*/`×2,040 x, 2,047 dirs", "/**/" + "*/" * 2040 + "x", "/" + "a/" * 2047 + "y"),
]
MINUTES = (2, 4, 6, 7, 8)  # the old matcher needs minutes or more: --quick skips it there

DOCUMENTED_PATTERNS = [
    "*", "*.rb", "\\#file_with_pound.rb", "LICENSE", "README", "/docs/", "/docs/*", "/docs/**/*.md", "lib/",
    "/config/", "path\\ with\\ spaces/", "docs/", "README.md", "model/db/", "config/db/database-setup.md",
]
PATHS = [
    "/app/assets/something.vue", "/hello.rb", "/app/models/repository.rb", "/examples/#file_with_pound.rb",
    "/LICENSE", "/docs/projects/index.txt", "/docs/index.txt", "/docs/a/b/c.md", "/lib/gitlab/git/repository.py",
    "/ee/lib/gitlab/git/repository.py", "/config/database.yml", "/other/config/database.yml",
    "/path with spaces/docs.md", "/README.md", "/model/db/schema.sql", "/config/db/database-setup.md",
    "/.gitignore", "/src/very/deep/tree/of/directories/with/a/file.py", "/a.rb", "/spec/models/user_spec.rb",
]


def calls_for(fn: Callable[[], object], min_time: float) -> int:
    """How many calls of `fn` last at least `min_time` seconds."""
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_time:
            return calls
        calls *= 4


def per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def best(fn: Callable[[], object], rounds: int = 5, min_time: float = 0.05) -> float:
    """Best seconds per call over `rounds` rounds of enough calls to last `min_time`."""
    calls = calls_for(fn, min_time)
    return min(per_call(fn, calls) for _ in range(rounds))


def best_pair(old: Callable[[], object], new: Callable[[], object], rounds: int = 7,
              min_time: float = 0.05) -> tuple[float, float]:
    """Best seconds per call of each, their rounds taken in turn (the machine's load moves)."""
    old_calls, new_calls = calls_for(old, min_time), calls_for(new, min_time)
    old_times, new_times = [], []
    for _ in range(rounds):
        old_times.append(per_call(old, old_calls))
        new_times.append(per_call(new, new_calls))
    return min(old_times), min(new_times)


def new_once(pattern: str, path: str) -> bool:
    return _glob_regex(pattern).fullmatch(path) is not None


def old_in_child(index: int, timeout: float) -> float | None:
    """Seconds the old matcher took on case `index` in a child process; None when it was killed."""
    try:
        done = subprocess.run([sys.executable, __file__, "--old-case", str(index)], capture_output=True,
                              text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(done.stdout.strip())


def seconds(value: float | None, timeout: float) -> str:
    if value is None:
        return f">{timeout:g} s"
    return f"{value * 1e3:.3f} ms" if value < 1 else f"{value:.2f} s"


def ratio(old: float | None, new: float, timeout: float) -> str:
    return f">{timeout / new:,.0f}" if old is None else f"{old / new:,.1f}"


def pathological(timeout: float, quick: bool) -> None:
    print(f"{'pathological case':36} {'old':>12} {'new':>12} {'old/new':>10}  match")
    for index, (name, pattern, path) in enumerate(PATHOLOGICAL):
        new = best(lambda: new_once(pattern, path), rounds=3, min_time=0.02)
        if quick and index in MINUTES:
            old_shown, shown_ratio = "skipped", "-"
        else:
            old = old_in_child(index, timeout)
            old_shown, shown_ratio = seconds(old, timeout), ratio(old, new, timeout)
        print(f"{name:36} {old_shown:>12} {seconds(new, timeout):>12} {shown_ratio:>10}  {new_once(pattern, path)}")


def ordinary() -> None:
    patterns = [_normalize(p) for p in DOCUMENTED_PATTERNS]
    print(f"\n{'ordinary case':36} {'old':>12} {'new':>12} {'old/new':>10}")

    def compile_all(compile_: Callable[[str], re.Pattern[str]]) -> None:
        re.purge()
        for pattern in patterns:
            compile_(pattern)

    row("compile 15 documented patterns",
        *best_pair(lambda: compile_all(regex_compile), lambda: compile_all(_glob_regex)))
    old_rx = [regex_compile(p) for p in patterns]
    new_rx = [_compile(p) for p in patterns]
    row("15 patterns × 20 paths (compiled)", *best_pair(lambda: [r.fullmatch(p) for r in old_rx for p in PATHS],
                                                         lambda: [r.fullmatch(p) for r in new_rx for p in PATHS]))
    text = "\n".join(f"/dir{i % 200}/**/sub{i}/*.py @owner{i % 50}\n[S{i % 7}]" if i % 97 == 0
                     else f"dir{i % 200}/**/sub{i}/*.py @owner{i % 50}" for i in range(2000))
    files = [f"dir{i % 200}/x/sub{i}/f.py" for i in range(300)]

    def cold() -> None:
        _compile_cached.cache_clear()
        re.purge()
        parse_codeowners(text)

    parsed = parse_codeowners(text)
    with old_matcher():
        old_parsed = parse_codeowners(text)
    row("parse 2,000 lines, cold", *best_pair(with_old(cold), cold, rounds=3, min_time=0.2))
    row("parse 2,000 lines, again", *best_pair(with_old(lambda: parse_codeowners(text)),
                                               lambda: parse_codeowners(text), rounds=3, min_time=0.2))

    def matched(owners: codeowners.CodeOwners) -> Callable[[], object]:
        """Each call matches afresh: a parsed file keeps the rules of its last few changes (`rules_for_files`),
        so a repeated call would time that lookup, not the matching."""
        def run() -> object:
            owners._matched.clear()
            return owners.owners_for_files(files)
        return run

    row("owners_for_files(300 files)", *best_pair(matched(old_parsed), matched(parsed), rounds=3))
    row("owners_for_files, the same 300 again", *best_pair(lambda: old_parsed.owners_for_files(files),
                                                           lambda: parsed.owners_for_files(files), rounds=3))


@contextlib.contextmanager
def old_matcher() -> Iterator[None]:
    """Parse with the old regex translation (no cache of its own beyond `re`'s 512 patterns)."""
    saved = codeowners._compile
    codeowners._compile = regex_compile
    try:
        yield
    finally:
        codeowners._compile = saved


def with_old(fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        with old_matcher():
            fn()
    return run


def row(name: str, old: float, new: float) -> None:
    print(f"{name:36} {seconds(old, 0):>12} {seconds(new, 0):>12} {old / new:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds the old matcher gets per case")
    parser.add_argument("--quick", action="store_true", help="skip the old matcher on the cases of minutes")
    parser.add_argument("--old-case", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.old_case is not None:
        _, pattern, path = PATHOLOGICAL[args.old_case]
        start = time.perf_counter()
        regex_compile(pattern).fullmatch(path)
        print(time.perf_counter() - start)
        return
    print(f"Python {platform.python_version()} on {platform.machine()}, "
          f"old matcher timeout {args.timeout:g} s\n")
    pathological(args.timeout, args.quick)
    ordinary()


if __name__ == "__main__":
    main()
