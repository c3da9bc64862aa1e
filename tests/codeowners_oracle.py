"""The CODEOWNERS glob matcher as it was before it became backtracking-safe: a plain regex translation.

Kept only as an oracle: the property test in `tests/test_codeowners.py` checks that `graph.codeowners` agrees
with it on small random patterns and paths, and `benchmarks/bench_codeowners.py` times both. Do not use it on
untrusted input: a pattern such as `/*a*a*a*a*a*a*a*a*a*a*b` makes Python's regex engine backtrack for minutes
(nested `[^/]*` and `(?:[^/]*/)*` try every split of the path).
"""
from __future__ import annotations

import re

from graph.codeowners import _bracket  # character classes were and are translated alike

__all__ = ["regex_fnmatch_pathname", "regex_compile"]


def regex_fnmatch_pathname(pattern: str, path: str) -> bool:
    """Ruby's `File.fnmatch(pattern, path, FNM_PATHNAME | FNM_DOTMATCH)` by a direct regex translation."""
    return regex_compile(pattern).fullmatch(path) is not None


def regex_compile(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if (i == 0 or pattern[i - 1] == "/") and pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            cls, i = _bracket(pattern, i)
            out.append(cls)
            continue
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "\\":
            pass  # a trailing backslash escapes the end of the pattern: Ruby drops it
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)

