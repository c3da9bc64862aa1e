"""The bot's Markdown comments: the suggestion table, `/reviewers why` answers, "cannot suggest" notes.

Pure text in, text out, so every comment is table-tested. Three rules keep the comments safe on GitLab:

* No output line starts with `/`: GitLab would run it as a quick action. Commands are shown in code spans,
  and `_no_quick_actions` escapes any line that would still start with `/`.
* Nobody is pinged unless the caller asks (`mention=True`, which pings the suggested and assigned people
  only): people appear as `` `@user` ``, and bare `@mentions` in reasons and notes always become code spans,
  as do URLs (a display name must not put a link in the bot's comment).
* The suggestion comment starts with a hidden marker line (`MARKER`) so the bot finds and edits its own
  comment instead of adding new ones (`has_marker`).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from typing import Iterable, Mapping, Sequence

from graph.model import Contribution, Suggestion
from graph.reasons import bidi_closed, bidi_isolated, code_span, count_of

__all__ = [
    "MARKER",
    "COMMANDS_FOOTER",
    "NO_FILES",
    "NO_HISTORY",
    "NO_ELIGIBLE",
    "NO_ELIGIBLE_SAID",
    "ONLY_AUTHOR",
    "code_span",
    "code_spans",
    "inline_spans",
    "has_marker",
    "render_comment",
    "MAX_COMMENT",
    "render_why",
    "WHY_ROWS",
    "render_cannot_suggest",
    "NEXT_STEP",
    "count_of",
]

MARKER = "<!-- reviewbot:suggestions v1 -->"
COMMANDS_FOOTER = (
    "<sub>Commands: `/reviewers` (suggest again) · `/reviewers assign [N]` · `/reviewers why @user` · "
    "`/reviewers reroll` · `/reviewers exclude @user` · `/reviewers optout [2w]` · `/reviewers optin` · "
    "`/reviewers help`</sub>"
)
MAX_COMMENT = 200_000  # characters of a suggestion comment, far inside GitLab's 1,000,000 for a note
NO_FILES = "this merge request changes no files"
NO_HISTORY = "this merge request touches no file with review history yet"
NO_ELIGIBLE_SAID = "nobody with review history on these files can review right now"  # ... and the notes say why
NO_ELIGIBLE = f"{NO_ELIGIBLE_SAID} (`/reviewers why @user` tells why)"
ONLY_AUTHOR = "only the author of this merge request has worked on these files so far"

# GitLab's reference rule: "@" not after an ASCII word character (Ruby's \w), then a username or group path.
# A run of such characters, "@"s included, is taken whole: wrapping only "@a" of "@a@all" would put a
# backtick, not a word character, before the second "@" and make it a mention.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9_.\-/@]*[A-Za-z0-9_]|(?<![A-Za-z0-9_])@")
# ... and a URL GitLab would link: any scheme (its own filter's rule) or `www.` (GFM's); trailing punctuation, which
# GFM leaves out of the link, stays out of the span. Mentions in a URL go into the URL's span.
_LINK_END = r"[^\s.,:;!?'\")\]}]"
_LINK = re.compile(rf"[A-Za-z][A-Za-z0-9+.\-]*://(?:\S*{_LINK_END})?|(?<![A-Za-z0-9])[Ww]{{3}}\.\S*{_LINK_END}")
_LIVE = re.compile(f"{_LINK.pattern}|{_MENTION.pattern}")
# ... and a GitLab reference's prefix before what it names (#1, !2, $3, %"v1", %sprint; a bare "50%" is left be)
_ESCAPE = re.compile(r"[\\`*_~\[\]<&]|[#!$%](?=[\w\"])")
_RUN = re.compile(r"`+")
_OPENER = re.compile(r"\\.|`+", re.DOTALL)  # an escaped character, or a run that may open a code span
_INLINE = re.compile(r"\\.|`+|<!--", re.DOTALL)  # ... or the start of an HTML comment


def has_marker(body: str | None, marker: str = MARKER) -> bool:
    """Whether a note is the bot's suggestion comment: its first non-blank line is the marker.

    Checking only the first line keeps a user's quote of the bot's comment from counting.
    """
    lines = [line for line in (body or "").splitlines() if line.strip()]
    return bool(lines) and lines[0].strip() == marker


def _quiet(text: str) -> str:
    """Text from users or the history (display names, paths, notes) made safe to render: pings nobody, links
    nowhere.

    The text's code spans are found as CommonMark finds them (`code_spans`) and kept. Elsewhere every
    possible mention and URL goes into a code span of its own, and the characters that start inline Markdown
    (emphasis, links, HTML, entities, code) are escaped: each would split the text into nodes, and GitLab
    reads a node that starts with "@all" as a mention whatever came before it.
    """
    out: list[str] = []
    last = 0
    for start, end in code_spans(text):
        out += [_plain(text[last:start]), text[start:end]]
        last = end
    out.append(_plain(text[last:]))
    return _apart(out)


def _apart(pieces: list[str]) -> str:
    r"""The pieces joined, a space between a code span kept and one `_plain` made right beside it: touching,
    their backtick runs would merge into one, which closes neither (`` ``x`` `` and `` `@all` `` read as
    ``` ``x```@all` ```: no code span at all, and a live `@all`).

    >>> _apart(["``x``", "`@all`", ""])
    '``x`` `@all`'
    """
    out: list[str] = []
    for piece in pieces:
        if out and out[-1].endswith("`") and piece.startswith("`"):
            out.append(" ")
        if piece:
            out.append(piece)
    return "".join(out)


def _plain(text: str) -> str:
    out: list[str] = []
    last = 0
    for m in _LIVE.finditer(text):
        out += [_ESCAPE.sub(r"\\\g<0>", text[last:m.start()]), code_span(m.group(0))]
        last = m.end()
    out.append(_ESCAPE.sub(r"\\\g<0>", text[last:]))
    return "".join(out)


def code_spans(text: str) -> list[tuple[int, int]]:
    r"""(start, end) of each code span, as CommonMark reads them: outside a span a backslash escapes the next
    character; a run of n backticks opens a span closed by the next run of exactly n, else it is plain text.

    >>> code_spans("a `b` ``c`d`` \\`e` `f\\`g")  # outside a span a backslash escapes; inside it does not
    [(2, 5), (6, 13), (17, 20)]
    """
    return inline_spans(text, comments=False)[1]


def inline_spans(text: str, *, comments: bool = True) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(start, end) of the HTML comments (with `comments`) and of the code spans of a paragraph, in order.

    Read left to right as CommonMark does: whichever starts first, a code span or `<!--`, wins (a `<!--` in
    a code span is text; a backtick in a comment is hidden); a `<!--` with no `-->` after it is text; a
    backslash escapes the next character. One pass, each closer found by bisecting the backtick runs of its
    length: a megabyte of `<!---->`, `<!--` or unmatched backticks from anyone costs milliseconds (each line
    was rescanned per comment, recursively, and per opener: 9 s a line, or a RecursionError).

    >>> inline_spans("a <!-- `b --> `c` <!-- d")
    ([(2, 13)], [(14, 17)])
    """
    runs: dict[int, list[int]] = {}
    for m in _RUN.finditer(text):
        runs.setdefault(m.end() - m.start(), []).append(m.start())
    hidden: list[tuple[int, int]] = []
    code: list[tuple[int, int]] = []
    close = -2  # where the next `-->` is, once looked for (-1: none left)
    i = 0
    while (m := (_INLINE if comments else _OPENER).search(text, i)) is not None:
        token, i = m.group(0), m.end()
        if token == "<!--":
            if close != -1 and close < i:
                close = text.find("-->", i)
            if close >= 0:
                hidden.append((m.start(), close + 3))
                i = close + 3
        elif token.startswith("`"):
            starts = runs.get(len(token), [])
            k = bisect_left(starts, i)  # the first run of the same length after this one closes the span
            if k < len(starts):
                code.append((m.start(), starts[k] + len(token)))
                i = starts[k] + len(token)
    return hidden, code


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return _one_line(text).replace("|", "\\|")


def _no_quick_actions(text: str) -> str:
    r"""Escape any line starting with `/` (after indentation) as `\/` so GitLab never runs it."""
    return "\n".join(re.sub(r"^(\s*)/", r"\1\\/", line) for line in text.split("\n"))


def _person(user: str, names: Mapping[str, str] | None, mention: bool) -> str:
    shown = f"@{user}" if mention else code_span(f"@{user}")
    name = (names or {}).get(user)
    return f"{shown} ({bidi_isolated(name, _cell(_quiet(bidi_closed(name))))})" if name else shown


def _table(
    suggestions: Sequence[Suggestion], loads: Mapping[str, int], names: Mapping[str, str] | None, mention: bool,
    *, reasons: bool = True,
) -> list[str]:
    rows = ["| # | Reviewer | Why | Open reviews |", "|--:|---|---|--:|"]
    for rank, s in enumerate(suggestions, start=1):
        why = (_cell(_quiet("; ".join(s.reasons))) if reasons else "") or "—"
        load = loads.get(s.person)
        rows.append(f"| {rank} | {_person(s.person, names, mention)} | {why} | {'?' if load is None else load} |")
    return rows


def _people(users: Iterable[str], mention: bool) -> str:
    return ", ".join(f"@{u}" if mention else code_span(f"@{u}") for u in users)


def _status(assigned: Sequence[str], not_stuck: Sequence[str], mention: bool) -> list[str]:
    lines = []
    if assigned:
        lines.append(f"Review requested from {_people(assigned, mention)}.")
    if not_stuck:
        lines.append(f"GitLab did not keep {_people(not_stuck, mention)} as reviewer.")
    return lines


def _blocks(*blocks: list[str]) -> str:
    return _no_quick_actions("\n\n".join("\n".join(block) for block in blocks if block))


def render_comment(
    suggestions: Sequence[Suggestion],
    *,
    loads: Mapping[str, int],
    names: Mapping[str, str] | None = None,
    mention: bool = False,
    notes: Sequence[str] = (),
    marker: str = MARKER,
    assigned: Sequence[str] = (),
    not_stuck: Sequence[str] = (),
    commands_footer: bool = True,
    why_empty: str | None = None,
) -> str:
    """The suggestion comment: marker, a ranked table (person, why, open reviews), status, notes, footer.
    Without suggestions the title says so, with `why_empty` when given.

    `loads` maps a username to their open review count (`?` when unknown); `names` adds display names;
    `assigned` are the people whose review the bot requested, `not_stuck` those GitLab did not keep as
    reviewers; `notes` are bullet lines (CODEOWNERS needs, tier limits). `mention=True` pings the people
    in the table and status lines; mentions inside reasons and notes are always defused. A comment that would
    pass `MAX_COMMENT` characters leaves out detail (`_within`) and says so.
    """
    title = ["**Suggested reviewers**"] if suggestions else \
        [f"No reviewer to suggest: {why_empty}." if why_empty else "No reviewer to suggest right now."]
    head, status = [marker] if marker else [], _status(assigned, not_stuck, mention)
    footer = [COMMANDS_FOOTER] if commands_footer else []
    rows = _table(suggestions, loads, names, mention) if suggestions else []
    bullets = [f"- {_one_line(_quiet(note))}" for note in notes]
    text = _blocks(head, title, rows, status, bullets, footer)
    if len(text) <= MAX_COMMENT:
        return text
    room = MAX_COMMENT - len(_blocks(head, title, status, footer)) - _SAID_ROOM
    bare = _table(suggestions, loads, names, mention, reasons=False) if suggestions else []
    rows, bullets = _within(room, rows, bare, bullets)
    return _blocks(head, title, rows, status, bullets, footer)


_SAID_ROOM = 300  # characters kept for the bullet saying what `_within` left out, and the blocks' line breaks


def _within(room: int, rows: list[str], bare: list[str], bullets: list[str]) -> tuple[list[str], list[str]]:
    """Table rows and note bullets within `room` characters, and a bullet saying what was left out.

    Left out until they fit: the rows' reasons and the notes, the longest first (an outsized one goes, the
    others stay; of equal ones the lowest); then the lowest rows (the first stays: without its reasons it is
    a name and a number). Whole lines go, never part of one (a code span cut in two could free a mention).
    A note GitLab refuses is not posted, and the same comment would be refused on every later event."""
    rows, bullets = list(rows), list(bullets)
    excess = sum(len(line) + 1 for line in (*rows, *bullets)) - room
    pieces = [(len(rows[i]) - len(bare[i]), i, "row") for i in range(2, len(rows))]  # 2 header lines
    pieces += [(len(bullets[j]) + 1, len(rows) + j, "note") for j in range(len(bullets))]
    left: dict[str, int] = {"row": 0, "note": 0}
    for saved, at, kind in sorted(pieces, reverse=True):
        if excess <= 0 or saved <= 0:
            break
        if kind == "row":
            rows[at] = bare[at]
        else:
            bullets[at - len(rows)] = ""
        excess -= saved
        left[kind] += 1
    bullets = [b for b in bullets if b]
    gone = 0
    while len(rows) > 3 and excess > 0:
        excess -= len(rows.pop()) + 1
        gone += 1
    said = [f"the reasons of {count_of(left['row'], 'row')}" if left["row"] else "",
            count_of(left["note"], "note") if left["note"] else "",
            f"the last {count_of(gone, 'row')}" if gone else ""]
    return rows, [*bullets, f"- Left out to keep this comment within GitLab's note size: "
                            f"{', '.join(part for part in said if part)}."]


WHY_ROWS = 8  # signals listed by `/reviewers why`, the strongest first; the rest are summed up in one line
NEGLIGIBLE = 0.05  # an effect this small (in score units: under 5% of the odds) ranks nobody up or back
_ASIDE = re.compile(r" \([^()]*\)$")  # a signal's closing remark ("(hand-set rule, ...)"): the table has it


def _contribution_rows(person: str, items: Sequence[Contribution]) -> list[str]:
    """The strongest signals as a table: the person's value, the other candidates' typical value, the effect."""
    ordered = sorted(items, key=lambda c: -abs(c.effect))
    shown, rest = ordered[:WHY_ROWS], ordered[WHY_ROWS:]
    with_values = any(c.value for c in shown)
    if with_values:
        rows = [f"| Signal | {code_span('@' + person)} | Other candidates, typically | Effect |", "|---|---|---|--:|"]
        rows += [f"| {_cell(c.signal)} | {_cell(c.value) or '—'} | {_cell(c.others) or '—'} | {c.effect:+.2f} |"
                 for c in shown]
    else:
        rows = ["| Signal | Effect |", "|---|--:|"] + [f"| {_cell(c.signal)} | {c.effect:+.2f} |" for c in shown]
    if rest:
        rows.append(f"\n{count_of(len(rest), 'weaker signal')}: {sum(c.effect for c in rest):+.2f} together.")
    return rows


def _summary(items: Sequence[Contribution]) -> str:
    """What helped this person most and what held them back, each as the person's value against the others'
    and the effect, so that a value below the others' that lowers the score reads as the comparison it is
    ("times turned down on this author's merge requests — 0, the others 4.5 (-0.40)"). The values can be long
    phrases ("put first on about 25 merge requests lately, did 18 reviews"), so each follows its signal after a
    dash, not inside brackets, and what held them back is a sentence of its own. Effects under `NEGLIGIBLE` are
    not dressed up as reasons."""
    up = [c for c in sorted(items, key=lambda c: -c.effect) if c.effect >= NEGLIGIBLE][:2]
    down = [c for c in sorted(items, key=lambda c: c.effect) if c.effect <= -NEGLIGIBLE][:1]

    def said(c: Contribution) -> str:
        name = _ASIDE.sub("", c.signal)
        if c.value and c.others:
            return f"{name} — {c.value}, the others {c.others} ({c.effect:+.2f})"
        return f"{name} ({c.effect:+.2f})"

    sentences = []
    if up:
        sentences.append("Ranked up most by " + "; and by ".join(said(c) for c in up) + ".")
    if down:
        sentences.append("Held back most by " + said(down[0]) + ".")
    if not sentences:
        return (f"No single signal moved their score by {NEGLIGIBLE:.2f} or more either way."
                if items else "")
    return _one_line(_quiet(" ".join(sentences)))


def _score_said(suggestion: Suggestion | None) -> str:
    """The model's score, said as what it is: a number that orders this merge request's candidates, which may
    be negative and means nothing against another merge request's (a bare "score -0.259" reads as a verdict)."""
    if suggestion is None:
        return ""
    return (f"Their score, {suggestion.score:.3f}, only orders this merge request's candidates: the highest "
            "comes first. ")


def render_why(
    person: str,
    suggestion: Suggestion | None,
    contributions: Sequence[Contribution | tuple[str, float]] | Mapping[str, float] = (),
    *,
    rank: int | None = None,
    dropped: str | None = None,
    owned: Sequence[str] = (),
    former: str | None = None,
) -> str:
    """The answer to `/reviewers why @person`: rank, reasons, then how each signal counted for them.

    `contributions` default to the suggestion's own; each effect is how far the score moves when that one
    signal is set to the other candidates' average (+ raises, - lowers). `dropped` is the plain-words
    reason the person was filtered out (from `bot.eligibility.eligible`); `owned` the sentences saying which
    changed files they own by CODEOWNERS and why they were not added for them (`bot.approvals.owned_by`);
    `former` the username asked about when it is one the person had before renaming themselves.
    """
    raw = list(contributions.items()) if isinstance(contributions, Mapping) else list(contributions)
    raw = raw or list(suggestion.contributions if suggestion else ())
    items = [c if isinstance(c, Contribution) else Contribution(*c) for c in raw]
    head = [f"**Why {code_span('@' + person)}?**"]
    if former:
        head.append(f"{code_span('@' + former)} is {code_span('@' + person)} now: they changed their username.")
    if suggestion is not None and rank is not None:  # the rank alone: the score means something only in the table
        place = f"would rank {rank} (before the filters)" if dropped else f"ranked {rank}"
        head.append(f"{code_span('@' + person)} {place}.")
    if dropped:
        head.append(f"Not suggested: {_one_line(_quiet(dropped))}.")
    head += [_one_line(_quiet(line)) for line in owned]
    if suggestion is not None and suggestion.basis:
        head.append(f"{_one_line(_quiet(suggestion.basis))}.")
    if suggestion is None and not items and not dropped:
        head.append("They have no review history on the files this merge request touches.")
    reasons = [f"- {_one_line(_quiet(r))}" for r in (suggestion.reasons if suggestion else ())]
    table = []
    if items:
        table = [_summary(items), "", _score_said(suggestion) + "How each signal counted (the score with that "
                 "signal set to the other candidates' average; + raised it, - lowered it):", "",
                 *_contribution_rows(person, items)]
    return _blocks(head, reasons, table)


# What the reader can do when the bot has nobody to name for a reason no command changes (a new project's first
# merge requests, files nobody reviewed yet): `/reviewers` would only say the same again.
_CHOOSE = "Choose reviewers yourself for now: the bot learns who knows these files from each merged merge request."
NEXT_STEP = {NO_HISTORY: _CHOOSE, ONLY_AUTHOR: _CHOOSE}


def render_cannot_suggest(reason: str, *, marker: str = MARKER, commands_footer: bool = True) -> str:
    """A domain error as the suggestion comment, e.g. `render_cannot_suggest(NO_HISTORY)`, with what to do
    instead (`NEXT_STEP`) when no command helps.

    >>> render_cannot_suggest(NO_HISTORY, marker="", commands_footer=False)  # doctest: +NORMALIZE_WHITESPACE
    'Cannot suggest reviewers: this merge request touches no file with review history yet. Choose reviewers
    yourself for now: the bot learns who knows these files from each merged merge request.'
    """
    text = _one_line(_quiet(reason))
    if not text.endswith((".", "!", "?")):
        text += "."
    if reason in NEXT_STEP:
        text += " " + NEXT_STEP[reason]
    return _blocks([marker] if marker else [], [f"Cannot suggest reviewers: {text}"],
                   [COMMANDS_FOOTER] if commands_footer else [])
