"""`/reviewers` slash commands in merge request comments, parsed without I/O.

One command per line; up to 3 spaces before it are allowed (4 make an indented code block); the keyword is
case-insensitive; lines inside fenced code blocks (```` ``` ```` or `~~~`, in a list item too), GitLab
multi-line quotes (`>>>`), quoted lines (`>`), HTML code blocks (`<pre>`) and collapsed `<details>` sections
(their tag anywhere on a line) are ignored, so quoting or documenting a command never runs it. What GitLab shows
as text runs, in a `<div>` too (where GitLab's own quick actions do not: they skip any tag's block). Other slash
commands (GitLab quick actions such as `/assign`, and `/reviewer`, GitLab's alias of `/assign_reviewer`) are not
ours and are ignored.

Mention form: when `bot_username` is given, a line starting with `@bot reviewers …` is the same command as
`/reviewers …`, and `@bot help`, `@bot assign 2` (a command's own word first) the same as `/reviewers help`,
`/reviewers assign 2`. A line starting with `@bot` and any other word ("@bot thanks!"), and a mention later in
a line, are conversation, not commands (`addresses_bot` tells them).

Results are `Command`s; `kind == "unknown"` is anything else starting with `/reviewers`, `kind == "invalid"`
a known command with bad arguments (`error` says what and how to fix it). The runner answers both with help.

>>> [c.kind for c in parse_commands("LGTM\\n/reviewers assign 2\\n> /reviewers reroll")]
['assign']
"""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterator, Literal

from bot.comment import code_span, inline_spans

__all__ = ["MAX_ASSIGN", "MAX_EXCLUDE", "MAX_OPTOUT", "HELP_TEXT", "Command", "CommandKind", "addresses_bot",
           "help_text", "parse_commands", "parse_duration", "shown"]

MAX_ASSIGN = 10
MAX_EXCLUDE = 10  # people one `exclude` names: each is a stored label and a line of the reply
SHOWN_CHARS = 80  # of a command's text echoed in a reply (`shown`)
MAX_OPTOUT = timedelta(days=366)

CommandKind = Literal["suggest", "assign", "why", "reroll", "exclude", "optout", "optin", "help", "unknown",
                      "invalid"]

HELP_TEXT = """\
**Reviewer suggestions: commands**

Write a command on its own line in a comment on this merge request:

| Command | What it does |
|---|---|
| `/reviewers` | suggest reviewers again |
| `/reviewers assign [N]` | request review from the top N suggestions (N from 1 to 10) |
| `/reviewers why @user` | explain why someone was or was not suggested |
| `/reviewers reroll` | suggest other people than last time |
| `/reviewers exclude @user` | never suggest this person on this merge request |
| `/reviewers optout [DURATION]` | stop suggesting you for `12h`, `3d`, `2w` or `1m` (a month), or until `optin` |
| `/reviewers optin` | be suggested again |
| `/reviewers help` | show this help |

Commands inside code blocks or quotes are ignored."""

_FENCE_OPEN = re.compile(r"(`{3,})[^`]*|(~{3,}).*|(>>>)\s*")
_SLASH = re.compile(r"/reviewers(?P<glued>\S*)(?:\s+(?P<args>.*))?", re.IGNORECASE | re.DOTALL)
_KEYWORD = re.compile(r"reviewers(?!\w)", re.IGNORECASE)  # after a mention: `Reviewers?`, not `reviewersplease`
# GitLab: 255 characters at most; a group's path (`@acme/web`) is written so too, and answered as a group
_USER = re.compile(r"@?([A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}(?:/[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}){0,20})")
_CODE_SPAN = re.compile(r"`([^`]+)`")  # one argument in a code span of its own
_DURATION = re.compile(
    r"(?P<n>[0-9]+)\s*(?P<unit>h|hrs?|hours?|d|days?|w|wks?|weeks?|m|mos?|months?)", re.IGNORECASE
)
_UNIT_HOURS = {"h": 1, "d": 24, "w": 24 * 7, "m": 24 * 30}
_MOST_HOURS = 24 * 10**6  # longer durations read as this (far past any bound), not as a date overflow
_FOREVER = {"forever", "indefinitely"}
# Zero-width characters and the byte order mark, which chat tools and web pages paste along: a command with one
# looks whole where GitLab shows it, so it is read without them (else `/reviewers\u200b why` is "unknown")
# Bidirectional marks and isolates (RTL keyboards, chat clients around a mention), the soft hyphen and the word
# joiner's kin show nothing either. Not the bidirectional overrides (U+202A-U+202E): they show the text around
# them otherwise than it reads, so a name with one is refused, not read as other than it looks
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u061c\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064"
                                    "\u2066\u2067\u2068\u2069\ufeff"))
# Markdown's line endings: not `str.splitlines`', which also ends lines at U+2028, U+0085, form feeds and more,
# where GitLab shows one line (a command there is in the middle of it)
_LINE_END = re.compile(r"\r\n?|\n")
# A tag opening or closing a section whose lines GitLab shows as code (`<pre>`, `<code>`), as a form's text
# (`<textarea>`), not at all (`<script>` and `<style>`, which it removes) or folded (`<details>`, unless `open`)
# (attributes up to the next `<` or `>`: a line of a million unclosed `<details ` is read in one pass, not rescanned
# to its end from each)
_SECTION_TAG = re.compile(r"(?<!\\)<(/?)(details|pre|code|textarea|script|style)(?=[\s>/])([^<>]*)>", re.IGNORECASE)
_TABLE_DELIMITER = re.compile(r"\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_OPEN_ATTRIBUTE = re.compile(r"(?:^|\s)open(?:[\s=/]|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Command:
    """One parsed command. `text` is the line as written (stripped).

    Arguments by kind: `assign` → `count` (None = the configured default); `why` → `users` (exactly one);
    `exclude` → `users` (1 to `MAX_EXCLUDE`); `optout` → `duration` (None = until `optin`); `invalid` → `error`.
    """

    kind: CommandKind
    text: str
    count: int | None = None
    users: tuple[str, ...] = ()
    duration: timedelta | None = None
    error: str = ""

    @property
    def user(self) -> str | None:
        """The first (for `why`, the only) username argument, without `@`."""
        return self.users[0] if self.users else None


def help_text(bot_username: str | None = None) -> str:
    """`HELP_TEXT`, plus the mention form when the bot's username is known."""
    if not bot_username:
        return HELP_TEXT
    example = code_span(f"@{bot_username} reviewers assign 2")
    return f"{HELP_TEXT}\nYou can also mention the bot: {example}."


def _visible_lines(text: str) -> list[str]:
    """The lines a command may start, stripped and without their HTML comments: outside fenced code blocks,
    `>>>` quote blocks, `>` quotes, HTML comments, HTML code blocks and collapsed `<details>` sections
    (`_Sections`; hidden when the comment is shown, a command there would run unseen), not inside a code span,
    and not indented 4 columns or more (an indented code block, or a paragraph's continuation; GitLab's own
    quick actions start at the line's first column).

    Block by block, as CommonMark reads them (`_Reader`): a line that starts with `<!--` opens an HTML comment
    that hides every line up to its `-->`; within a paragraph, code spans and comments may run across lines
    (`_paragraph`)."""
    reader = _Reader()
    for line in _LINE_END.split(text):
        reader.read(line)
    return reader.lines + _paragraph(reader.para)


@dataclass
class _Reader:
    """What `_visible_lines` knows between lines: the lines found so far, the paragraph being read, and the
    block around the line. Each `_in_…` method takes the line when it belongs to its kind of block (True: read,
    nothing more to do), in the order CommonMark tries them."""

    lines: list[str] = field(default_factory=list)
    para: list[str] = field(default_factory=list)  # the lines of the paragraph being read
    fence: tuple[str, int] | None = None  # the fence that closes the code block, and the block's margin
    in_comment: bool = False  # inside an HTML comment block, up to its `-->`
    sections: _Sections = field(default_factory=lambda: _Sections())  # the HTML sections around the line
    lazy: bool = False  # after a `>` line of paragraph text: the next lines continue the quote, up to a blank line
    table: bool = False  # in a table's rows: cells, up to a blank line or another block

    def read(self, line: str) -> None:
        stripped, indent = line.strip(), _indent(line)
        if self._in_code(stripped, indent) or self._in_comment(line) or self._in_section(line, stripped, indent):
            return
        starts_block = indent < 4 and stripped.startswith(("<!--", ">"))
        if self._in_table(stripped, indent, starts_block) or self._in_quote(stripped, indent, starts_block):
            return
        if self._starts_block(line, stripped, indent, starts_block):
            return
        if self.para or indent < 4:  # 4 columns after a blank line: an indented code block
            self.para.append(line)

    def end_paragraph(self, keep: int = 0) -> None:
        """Read the paragraph's lines but its last `keep` (a table's header row), and start another."""
        self.lines += _paragraph(self.para[:len(self.para) - keep])
        self.para = []

    def _in_code(self, stripped: str, indent: int) -> bool:
        if self.fence is None:
            return False
        if not stripped or indent >= self.fence[1]:  # else a list item ended, and its code block with it
            self.fence = None if _closes(stripped, indent, self.fence) else self.fence
            return True
        self.fence = None
        return False

    def _in_comment(self, line: str) -> bool:
        if not self.in_comment:
            return False
        self.in_comment, rest = "-->" not in line, line.partition("-->")[2]
        if not self.in_comment:
            self.lines += _paragraph([rest])  # the end line's rest: a block of its own
            self.sections.read(rest)  # HTML again: `--> <details>` hides the lines after it
        return True

    def _in_section(self, line: str, stripped: str, indent: int) -> bool:
        """A line in a hidden section, or that starts with a section's tag, is no command's; a line whose start
        shows, with a tag after text (`Log: <details>`), is read as text, hiding the lines after it."""
        hidden = self.sections.hiding > 0
        if not hidden and indent < 4 and stripped.startswith("<!--"):
            return False  # an HTML comment's block (`_starts_block`): its tags are hidden with it
        if not self.sections and not (indent < 4 and _opens_section(stripped)):
            return False
        if not (self.sections.read(line) and stripped.startswith("<")) and not hidden:
            return False
        self.end_paragraph()
        self.lazy = False
        return True

    def _in_table(self, stripped: str, indent: int, starts_block: bool) -> bool:
        if self.table and stripped and not starts_block and not _fence_opened(stripped, indent):
            return True
        if indent < 4 and self.para and _heads_table(self.para[-1], stripped):
            self.end_paragraph(keep=1)  # its last line is the table's header row
            self.table = True
            return True
        self.table = False
        return False

    def _in_quote(self, stripped: str, indent: int, starts_block: bool) -> bool:
        if self.lazy and stripped and not starts_block and not _FENCE_OPEN.fullmatch(stripped):
            return True  # a quote's lazy continuation: rendered inside the quote
        self.lazy = indent < 4 and _quote_text(stripped)
        return False

    def _starts_block(self, line: str, stripped: str, indent: int, starts_block: bool) -> bool:
        """A blank line, a quote, an HTML comment or a fence ends the paragraph; the comment or fence opens."""
        opens = _fence_opened(stripped, indent)
        if stripped and not starts_block and not opens:
            return False
        self.end_paragraph()
        if opens:
            self.fence = opens
        elif stripped.startswith("<!--") and indent < 4:
            self.in_comment = "-->" not in stripped[4:]
            self.para = [] if self.in_comment else [line]
            if not self.in_comment:
                self.sections.read(line)  # the tags after the comment (`_tags` skips those in it)
        return True


def _heads_table(header: str, stripped: str) -> bool:
    """Whether a line (`stripped`) is a table's delimiter row (`--- | :---:`) under the row `header` (the same
    number of cells): GitLab then shows both, and each line after them up to a blank line, as a table's cells.

    >>> _heads_table("a | b", "--|:-:"), _heads_table("| a |", "| --- |"), _heads_table("a", "---")
    (True, True, False)
    """
    if "|" not in stripped or not _TABLE_DELIMITER.fullmatch(stripped):
        return False
    return _cells(header) == _cells(stripped)


def _cells(row: str) -> int:
    """How many cells a table row has: its unescaped `|` separate them, but those at its ends."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return len(_CELL_SEPARATOR.split(row))


def _fence_opened(stripped: str, indent: int = 0) -> tuple[str, int] | None:
    """The fence a line (`stripped`, indented `indent` columns) opens a code block with (```` ``` ````, `~~~`,
    GitLab's `>>>`), and the block's margin: 0, or on a list item's line (`- ```` `), the column of the item's
    text, which its code is indented to.

    >>> _fence_opened("```python"), _fence_opened("1. ~~~~", 2), _fence_opened("- item"), _fence_opened("``` `x`")
    (('```', 0), ('~~~~', 5), None, None)
    """
    if "``" not in stripped and "~~" not in stripped and ">>>" not in stripped:
        return None  # most lines: no need to read them further
    item = _LIST_MARKER.match(stripped)
    m = _FENCE_OPEN.fullmatch(stripped[item.end():] if item else stripped)
    if m is None:
        return None
    return m.group(1) or m.group(2) or m.group(3), indent + item.end() if item else 0


def _closes(stripped: str, indent: int, fence: tuple[str, int]) -> bool:
    """Whether a line (`stripped`, indented `indent` columns) closes the code block `fence` opened: the same
    fence, at least as long, with nothing after it, indented less than 4 columns past the block's margin (else
    it is a line of code)."""
    chars, margin = fence
    return stripped.startswith(chars) and not stripped.strip(chars[0]) and indent - margin < 4


@dataclass
class _Sections:
    """The HTML sections (`_SECTION_TAG`) open around a line: by tag, whether each hides its lines (all but an
    `open` `<details>`), inmost last; `hiding` counts those that do. Kept by tag, not as one stack, so that a
    tag costs the same however many sections are open (a comment of 100,000 `<pre>` lines is read in one pass).

    >>> s = _Sections(); s.read("<details><summary>Log</summary>"), s.hiding, s.read("</details>"), s.hiding
    (True, 1, True, 0)
    """

    levels: dict[str, list[bool]] = field(default_factory=dict)
    hiding: int = 0

    def __bool__(self) -> bool:
        return any(self.levels.values())

    def read(self, line: str) -> bool:
        """Open a section for each opening tag of `line` and close the inmost of its name for each end tag, left
        to right; whether the line had any."""
        found = False
        for m in _tags(line):
            found, name = True, m.group(2).lower()
            levels = self.levels.setdefault(name, [])
            if not m.group(1):
                levels.append(not (name == "details" and _OPEN_ATTRIBUTE.search(m.group(3))))
                self.hiding += levels[-1]
            elif levels:
                self.hiding -= levels.pop()
        return found


def _tags(line: str) -> Iterator[re.Match[str]]:
    """The section tags (`_SECTION_TAG`) of a line, left to right, but those in its code spans and HTML
    comments: text, which opens nothing (`` `<details>` ``). The spans are read only for a line with a tag."""
    starts: list[int] | None = None
    for m in _SECTION_TAG.finditer(line):
        if starts is None:
            hidden, code = inline_spans(line) if "`" in line or "<!--" in line else ([], [])
            spans = sorted(hidden + code)
            starts = [a for a, _ in spans]
        i = bisect_right(starts, m.start()) - 1
        if i < 0 or spans[i][1] <= m.start():
            yield m


def _opens_section(stripped: str) -> bool:
    """Whether a line (not in a section) has a section's tag: at its start (`<details>`), after other tags
    (`<div><pre>`) or after text (`Log: <details>`); not in a quote, which ends the section with it."""
    return "<" in stripped and not stripped.startswith(">") and next(_tags(stripped), None) is not None


_LIST_MARKER = re.compile(r"^(?:(?:[-+*]|[0-9]{1,9}[.)])[ \t]+)+")


def _quote_text(stripped: str) -> bool:
    """Whether a line is a `>` quote's paragraph text, which CommonMark continues on the next lines that start
    no block of their own ("lazy continuation": `> @bob wrote:` then `/reviewers exclude @bob` is all quote).

    >>> [_quote_text(s) for s in ("> @bob wrote:", ">", "> > x", ">>> x", "> ```", "x", "- > x", "1. > x")]
    [True, False, True, False, False, False, True, True]
    """
    stripped = _LIST_MARKER.sub("", stripped)  # a quote inside a list item continues the same way
    if not stripped.startswith(">") or stripped.startswith(">>>"):
        return False
    inner = stripped.lstrip("> \t")
    return bool(inner) and not _FENCE_OPEN.fullmatch(inner) and not inner.startswith("#")


def _paragraph(para: list[str]) -> list[str]:
    """Each line of a paragraph without the paragraph's HTML comments, stripped, unless it starts inside a
    code span or a quote, or is indented 4 columns (a continuation)."""
    text = "\n".join(para)
    hidden, code = inline_spans(text)
    code_starts = [a for a, _ in code]
    out: list[str] = []
    start = h = 0
    for line in para:
        end = start + len(line)
        while h < len(hidden) and hidden[h][1] <= start:
            h += 1
        pieces, pos, k = [], start, h
        while k < len(hidden) and hidden[k][0] < end:
            pieces.append((pos, text[pos:max(pos, hidden[k][0])]))
            pos, k = max(pos, hidden[k][1]), k + 1
        pieces.append((pos, text[pos:end]))
        first = next((at + len(piece) - len(piece.lstrip()) for at, piece in pieces if piece.strip()), None)
        i = bisect_right(code_starts, first) - 1 if first is not None else -1
        visible = "".join(piece for _, piece in pieces).strip()
        if first is not None and not (i >= 0 and code[i][1] > first) and _indent(line) < 4 \
                and not visible.startswith(">"):
            out.append(visible)
        start = end + 1
    return out


def _indent(line: str) -> int:
    r"""Columns of leading whitespace (a tab to the next multiple of 4, as Markdown counts).

    >>> [_indent(s) for s in ("/r", "   /r", "    /r", "\t/r", "  \t/r")]
    [0, 3, 4, 4, 4]
    """
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip(" "))


def shown(text: str, most: int = SHOWN_CHARS) -> str:
    """Text from a comment as the reply echoes it: at most `most` characters (a reply must not grow with
    what anyone may write; GitLab refuses notes over 1,000,000 characters).

    >>> shown("/reviewers why " + "x" * 100, most=20)
    '/reviewers why xxxx…'
    """
    return text if len(text) <= most else text[: most - 1] + "…"


def _invalid(text: str, problem: str) -> Command:
    return Command("invalid", text, error=f"{code_span(shown(text))}: {problem}")


def _no_args(kind: CommandKind) -> Callable[[str, list[str]], Command]:
    def parse(text: str, args: list[str]) -> Command:
        if args:
            return _invalid(text, f"{code_span(kind)} takes no arguments")
        return Command(kind, text)

    return parse


def _assign(text: str, args: list[str]) -> Command:
    if not args:
        return Command("assign", text)
    if len(args) > 1 or not re.fullmatch(r"[0-9]+", args[0]):  # not isdigit: "²" and "٣" are digits too
        return _invalid(text, f"write {code_span('/reviewers assign N')} with N a number from 1 to {MAX_ASSIGN}")
    count = int(args[0])
    if not 1 <= count <= MAX_ASSIGN:
        return _invalid(text, f"N must be between 1 and {MAX_ASSIGN}")
    return Command("assign", text, count=count)


def _usernames(args: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The usernames of the arguments, each once (usernames ignore case), and the arguments that are none. Read
    as people write them: `@a,@b` is two names, punctuation after a name (`@bob?`, `@bob.`) is not part of it
    (GitLab usernames hold no punctuation but `.`, `-` and `_`, and never end with `.`), and a name in a code
    span (`` `@bob` ``) is the name: the bot's comment shows names so, and people write them so not to notify
    the person."""
    users: dict[str, str] = {}
    bad: list[str] = []
    for arg in args:
        for part in filter(None, arg.split(",")):
            name = part.rstrip(";.?!:")
            if code := _CODE_SPAN.fullmatch(name):
                name = code.group(1).rstrip(";.?!:")
            if m := _USER.fullmatch(name):
                users.setdefault(m.group(1).casefold(), m.group(1))
            else:
                bad.append(part)
    return tuple(users.values()), bad


def _with_users(kind: CommandKind, *, single: bool) -> Callable[[str, list[str]], Command]:
    def parse(text: str, args: list[str]) -> Command:
        users, bad = _usernames(args)
        if bad:
            return _invalid(text, f"{code_span(shown(bad[0]))} is not a username; write {code_span('@username')}")
        if not users or (single and len(users) > 1):
            wanted = "one username" if single else "at least one username"
            return _invalid(text, f"{code_span(kind)} needs {wanted}, e.g. {code_span(f'/reviewers {kind} @alice')}")
        if len(users) > MAX_EXCLUDE:
            return _invalid(text, f"{code_span(kind)} takes at most {MAX_EXCLUDE} usernames; write another "
                                  "command for more")
        return Command(kind, text, users=users)

    return parse


def parse_duration(value: str) -> timedelta | None:
    """`12h`, `3d`, `2w`, `1m` (a month = 30 days; minutes are not supported), long units too (`2 weeks`).

    Returns None for text that is not a duration; bounds are the caller's business.

    >>> parse_duration("2w"), parse_duration("1 month"), parse_duration("5y")
    (datetime.timedelta(days=14), datetime.timedelta(days=30), None)
    """
    m = _DURATION.fullmatch(value.strip())
    if m is None:
        return None
    return timedelta(hours=min(int(m["n"]) * _UNIT_HOURS[m["unit"][0].lower()], _MOST_HOURS))


def _optout(text: str, args: list[str]) -> Command:
    value = " ".join(args)
    if not value or value.lower() in _FOREVER:
        return Command("optout", text)
    duration = parse_duration(value)
    if duration is None:
        return _invalid(text, f"cannot read {code_span(shown(value))} as a duration; write a number and a unit: "
                              "`12h`, `3d`, `2w` or `1m` (a month), or nothing to opt out until `optin`")
    if duration <= timedelta(0):
        return _invalid(text, "the duration must be at least 1 hour")
    if duration > MAX_OPTOUT:
        return _invalid(text, f"the duration must be at most {MAX_OPTOUT.days} days; write nothing to opt out "
                              "until `optin`")
    return Command("optout", text, duration=duration)


_VERBS: dict[str, Callable[[str, list[str]], Command]] = {
    "suggest": _no_args("suggest"),
    "assign": _assign,
    "why": _with_users("why", single=True),
    "reroll": _no_args("reroll"),
    "exclude": _with_users("exclude", single=False),
    "optout": _optout,
    "optin": _no_args("optin"),
    "help": _no_args("help"),
}


def _parse_slash(text: str, line: str) -> Command | None:
    m = _SLASH.fullmatch(line)
    if m is None:
        return None
    if m["glued"]:
        return Command("unknown", text)
    words = (m["args"] or "").split()
    if not words:
        return Command("suggest", text)
    verb = _VERBS.get(words[0].lower())
    return verb(text, words[1:]) if verb else Command("unknown", text)


def _parse_mention(line: str, rest: str) -> Command | None:
    """The command of a line starting with the bot's mention (`rest` is what follows it), or None when the
    mention starts conversation ("@bot thanks!"): only a first word the bot knows makes a command of it, as
    the bot cannot tell a request it does not know from a remark addressed to it. `reviewers` (or
    `/reviewers`) reads the rest as the slash command (a wrong word there is answered with the help), a
    command's own word (`help`, `assign 2`, `why @ann`, a `!` or `?` after it too) as that command."""
    if rest.startswith("/"):
        return _parse_slash(line, rest)  # "@bot /reviewers …"; "@bot /assign …" is not ours
    if _KEYWORD.match(rest):
        return _parse_slash(line, "/" + rest)
    first, *args = rest.split(None, 1) or [""]
    verb = first.rstrip(".!?").lower()
    return _parse_slash(line, " ".join(["/reviewers", verb, *args])) if verb in _VERBS else None


def _parse_line(line: str, mention: re.Pattern[str] | None) -> Command | None:
    if line.startswith("/"):
        return _parse_slash(line, line)
    if mention is None or (m := mention.match(line)) is None:
        return None
    return _parse_mention(line, line[m.end():].lstrip(" \t:,"))  # "@bot: reviewers" too


def _mention_pattern(bot_username: str | None) -> re.Pattern[str] | None:
    if not bot_username:
        return None
    # GitLab's references: no word character right before the `@` (`ops@bot` is an address, no mention)
    return re.compile(rf"(?<!\w)@{re.escape(bot_username.lstrip('@'))}(?![\w.\-])", re.IGNORECASE)


def parse_commands(text: str, bot_username: str | None = None) -> list[Command]:
    """Every command in a comment, in order (empty when there is none).

    >>> parse_commands("/reviewers optout 2w")[0].duration
    datetime.timedelta(days=14)
    >>> parse_commands("@bot Reviewers why @ann", bot_username="bot")[0].users
    ('ann',)
    """
    mention = _mention_pattern(bot_username)
    found = (_parse_line(line.translate(_INVISIBLE).strip(), mention) for line in _visible_lines(text or ""))
    return [command for command in found if command is not None]


def addresses_bot(text: str, bot_username: str | None) -> bool:
    """Whether a comment mentions the bot where GitLab shows it (not in code, a code span too, a quote or an HTML
    comment): it talks to the bot ("@bot I'm away this week", "thanks @bot"), whatever else it says.

    >>> addresses_bot("@bot thanks!", "bot"), addresses_bot("> @bot thanks!", "bot"), addresses_bot("@bott", "bot")
    (True, False, False)
    """
    mention = _mention_pattern(bot_username)
    if mention is None or not mention.search(text or ""):
        return False  # most comments: no need to read them block by block
    return any(mention.search(_outside_code(line).translate(_INVISIBLE)) for line in _visible_lines(text))


def _outside_code(line: str) -> str:
    """A line's text but its code spans, which GitLab shows as code, with no mention in them (`` `@bot why` ``
    written to show the command): a reviewer's "LGTM" holding one was taken for words to the bot, not a review.

    >>> _outside_code("see `@bot why` and ``a`b`` here")
    'see   and   here'
    """
    if "`" not in line:
        return line
    pieces, at = [], 0
    for start, end in inline_spans(line, comments=False)[1]:
        pieces.append(line[at:start])
        at = end
    return " ".join([*pieces, line[at:]])
