"""Plain-word evidence for a suggested person, e.g. "reviewed 14 changes under `drivers/net/` (last 12 days
ago); wrote `net/eth.c`; reviewed 9 of this author's changes"."""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

import numpy as np

from graph.explain import compare, span
from graph.model import Change, Contribution
from graph.ownership import DAY, OwnershipGraph
from graph.words import count_of

__all__ = ["reasons", "contributions", "code_span", "bidi_closed", "bidi_isolated", "count_of"]

_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")  # LRE, RLE, LRO, RLO: closed by PDF (U+202C)
_ISOLATES = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI: closed by PDI (U+2069), with what opened after them
# What turns the text around it: right-to-left letters (R, AL) and the explicit controls
_TURNING = frozenset({"R", "AL", "LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})


def bidi_closed(text: str) -> str:
    """`text` with the explicit embeddings, overrides and isolates it leaves open closed at its end.

    A path or a display name may hold U+202E (right-to-left override) and nothing closing it: put in a comment,
    it would show the bot's words after it, up to the end of the line or table cell, backwards.

    >>> bidi_closed("src/\u202egnp.exe") == "src/\u202egnp.exe\u202c", bidi_closed("a\u2067b\u2069c")
    (True, 'a\u2067b\u2069c')
    """
    if not (_EMBEDDINGS | _ISOLATES).intersection(text):
        return text
    stack: list[str] = []
    for char in text:
        if char in _EMBEDDINGS or char in _ISOLATES:
            stack.append(char)
        elif char == "\u202c" and stack and stack[-1] in _EMBEDDINGS:
            stack.pop()
        elif char == "\u2069" and not _ISOLATES.isdisjoint(stack):
            while stack.pop() not in _ISOLATES:
                pass
    return text + "".join("\u202c" if char in _EMBEDDINGS else "\u2069" for char in reversed(stack))


def _turns(text: str) -> bool:
    return not text.isascii() and any(unicodedata.bidirectional(char) in _TURNING for char in text)


def bidi_isolated(text: str, shown: str | None = None) -> str:
    """`shown` (by default `text`, closed: `bidi_closed`) set apart between FSI and PDI when `text` holds
    right-to-left letters or bidi controls, as HTML's `<bdi>` does; other text is left as it is.

    A number written after right-to-left letters joins them: "reviewed `docs/שלום` 2 times" showed as
    "reviewed `docs/2 `םולש times", and the words after an override closed at its end moved the same way. An
    isolate is one neutral character to the text around it, which then reads in its own order.

    >>> bidi_isolated("src/a.py"), bidi_isolated("\u05d3\u05e0\u05d9") == "\u2068\u05d3\u05e0\u05d9\u2069"
    ('src/a.py', True)
    """
    shown = bidi_closed(text) if shown is None else shown
    return f"\u2068{shown}\u2069" if _turns(text) else shown


def code_span(text: str) -> str:
    """`text` as a Markdown inline code span, with a fence longer than any backtick run inside it (a
    path or a name may hold backticks; a hand-made `` `...` `` would end early and leave the rest live),
    and the bidirectional embeddings it opens closed inside it (`bidi_closed`). Text with right-to-left
    letters or bidi controls is set apart as an isolate around the span (`bidi_isolated`), outside it so that
    a path copied from the span has no invisible characters added.

    >>> code_span("@alice"), code_span("a`b")
    ('`@alice`', '``a`b``')
    """
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return bidi_isolated(text, f"{fence}{pad}{bidi_closed(text)}{pad}{fence}")


def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    days = max(0.0, now - t) / DAY
    return "today" if days < 1 else f"{span(days)} ago"


def _last(t: float | None, now: float) -> str:
    """ "last 12 days ago", or "last one today" ("last today" read as a slip).

    >>> _last(0.0, 12 * DAY), _last(0.0, 3600.0)
    ('last 12 days ago', 'last one today')
    """
    ago = _ago(t, now)
    return "last one today" if ago == "today" else f"last {ago}"


def _times(n: int) -> str:
    """How often, as people say it: "reviewed `a.py` once", not "1 time".

    >>> _times(1), _times(2), _times(7)
    ('once', 'twice', '7 times')
    """
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def reasons(og: OwnershipGraph, change: Change, person: str, together: Iterable[str] = ()) -> list[str]:
    """The evidence behind `person` for `change`, strongest first (empty if there is none).

    `together`: people suggested beside this one (or already reviewing); the one this person reviewed with
    most often (twice at least) is named.

    The change's paths are listed once per change (`_walk`), then met with the person's own dict of paths
    (their incoming edges) by a set intersection, which walks the smaller of the two: a 500-file change
    costs no more than the paths the person has touched.
    """
    now = float(change.time)
    files, dirs = _walk(og, change)
    p = "@" + person
    mine = og.G._pred.get(p, {})  # path (or author) → this person: their reviews and authorship there
    out = _file_reasons(files, mine, now)
    d = _best_dir(dirs, mine)
    if d is not None:
        count, last, path = d
        out.append(f"reviewed {count_of(count, 'change')} under {code_span(path)} ({_last(last, now)})")
    fam = mine.get("@" + change.author)
    if fam:
        out.append(f"reviewed {fam['fc']} of this author's changes")
    pair = _partner(og.coreview.get(p, {}), together, person)
    if pair is not None:
        count, last, other = pair
        out.append(f"reviewed {count} changes together with {code_span('@' + other)} ({_last(last, now)})")
    return out or _activity(og.G._node.get(p), now)


def _activity(node: dict | None, now: float) -> list[str]:
    """What the project knows of someone without evidence on this change's paths or author, so that no name
    the bot suggests goes without a word: their reviews anywhere, else the changes they wrote, else when they
    were last seen (someone whose only review was taken back)."""
    if not node:
        return []
    if node["rc"]:
        return [f"active reviewer: {count_of(node['rc'], 'review')}, {_last(node['lr'], now)}"]
    if node["ac"]:
        return [f"wrote {count_of(node['ac'], 'change')} in this project ({_last(node['last'], now)}), "
                "reviewed none yet"]
    return [f"last seen in this project's history {_ago(node['last'], now)}; no review or change of theirs counts now"]


def _partner(mine: dict[str, list], together: Iterable[str], person: str) -> tuple[int, float, str] | None:
    """(count, last time, name) of the person in `together` this one co-reviewed with most, at least twice
    (of equals, the first named)."""
    best = None
    for other in together:
        pair = mine.get("@" + other)
        if pair is not None and pair[0] >= 2 and other != person and (best is None or pair[0] > best[0]):
            best = (pair[0], pair[2], other)
    return best


def _walk(og: OwnershipGraph, change: Change) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """The change's file nodes (→ file), the old paths of the files it renames among them, and directory
    nodes (→ (depth, position)); kept for the last change asked about."""
    key = (change.id, change.files, change.renames)
    cached = og._derived.reasons
    if cached is not None and cached[0] == key:
        return cached[1]
    named = (*change.files, *(old for old, _ in change.renames))
    files = {og.path_nodes(f)[0]: f for f in named}  # the very strings keying the graph
    dirs = {d: (d.count("/"), i) for i, d in enumerate(p for p in og.paths_of(change.files) if p.endswith("/"))}
    og._derived.reasons = (key, (files, dirs))
    return files, dirs


def _file_reasons(files: dict[str, str], mine: dict[str, dict], now: float) -> list[str]:
    reviewed: list[tuple[int, str, float]] = []
    wrote: list[tuple[int, str]] = []
    for node in files.keys() & mine.keys():
        e, f = mine[node], files[node]
        if e["rc"]:
            reviewed.append((e["rc"], f, e["rt"]))
        if e["ac"]:
            wrote.append((e["ac"], f))
    out = []
    if reviewed:
        reviewed.sort(key=lambda r: (-r[0], r[1]))
        n, f, last = reviewed[0]
        more = f" and {len(reviewed) - 1} more of these files" if len(reviewed) > 1 else ""
        out.append(f"reviewed {code_span(f)} {_times(n)} ({_last(last, now)}){more}")
    if wrote:
        wrote.sort(key=lambda r: (-r[0], r[1]))
        more = f" and {len(wrote) - 1} more" if len(wrote) > 1 else ""
        out.append(f"wrote {code_span(wrote[0][1])}{more}")
    return out


def _best_dir(dirs: dict[str, tuple[int, int]], mine: dict[str, dict]) -> tuple[int, float, str] | None:
    """The deepest touched directory the person reviewed at least twice, else the one reviewed most (of
    equals, the first in the change's order)."""
    best = None
    for d in dirs.keys() & mine.keys():
        e = mine[d]
        if not e["rc"]:
            continue
        depth, position = dirs[d]
        key = (e["rc"] >= 2, depth, e["rc"], -position)
        if best is None or key > best[0]:
            best = (key, (e["rc"], e["rt"], d[1:]))
    return None if best is None else best[1]


def contributions(row: np.ndarray, others: np.ndarray) -> list[Contribution]:
    """How far each weighted feature of this row is above the other candidates' average (`others`, the row
    itself left out), largest first.

    A model-agnostic reading for `/reviewers why`: the features on which a person stands out.
    """
    from graph.features import FEATURE_WORDS, FEATURES, GRAPH_WEIGHTS

    mean = others.mean(axis=0) if len(others) else np.zeros_like(row)
    out = [Contribution(FEATURE_WORDS[name], float(GRAPH_WEIGHTS.get(name, 0.0) * (row[i] - mean[i])),
                        *compare(name, float(row[i]), float(mean[i])))
           for i, name in enumerate(FEATURES)]
    return sorted([c for c in out if c.effect != 0.0], key=lambda c: -abs(c.effect))
