"""GitLab CODEOWNERS files, parsed and matched the way GitLab itself does it (pure, no I/O).

The bot reads CODEOWNERS on any tier (GitLab enforces it only on Premium) to explain which approvals a merge
request will need and to favour owners. Fidelity to GitLab matters more than to gitignore or GitHub, so the
rules below follow GitLab's documentation and its parser (`ee/lib/gitlab/code_owners/file.rb`):

* A byte order mark stays part of the first line, as in GitLab (so that line is no comment nor header), and
  is reported (`byte_order_mark`). Blank lines and lines starting with `#` are skipped; inline comments are
  not supported (words after the owners are read as owners, and reported when they are not owners).
* `pattern owner…`: the pattern ends at the first whitespace not escaped with `\\`; `\\#` starts a pattern
  with `#`; `\\ ` is a space. Whitespace is Ruby's: ASCII only (`*.rb\\u00a0@a` is one pattern), and only
  `\\n` ends a line.
* Owners: `@name` (a user or a top-level group: only the member list can tell), `@group/subgroup`,
  `@@developer` / `@@maintainer` / `@@owner` (plural `s` allowed), email addresses. GitLab scans the owners
  text for them, so punctuation may touch them: `@alice,@bob` and `(@alice)` name owners, `@alice.` is
  `alice`; a word holding none is reported.
* Matching is Ruby's `File.fnmatch` with `FNM_PATHNAME | FNM_DOTMATCH` on `/<path>` after GitLab's
  normalisation: `*` alone means every file; a pattern without a leading `/` gets `/**/` in front (so
  `ee/docs` matches at any depth); a trailing `/` means everything below that directory. `*` and `?` stop at
  `/`, `**/` spans directories, `*` matches dot files; `[a-c]` and `[!a]` are read as Ruby reads them (an
  unclosed `[` matches nothing, a trailing `\\` is dropped). A pattern without a trailing slash and without a
  glob names a *file*: `docs` does not match `docs/index.md` (write `docs/`). Like Ruby's matcher, the bot's
  never backtracks exponentially (any Developer can push a CODEOWNERS file to a branch an MR targets); a
  pattern longer than `MAX_PATTERN_LENGTH` characters is reported (`pattern_too_long`) and ignored.
* Sections: `[Name]` (case-insensitive, repeated names merge; the first header of the file is never merged,
  so a first `[CODEOWNERS]` is a section beside `codeowners`), `^[Name]` optional, `[Name][N]` N approvals
  (`[ 2 ]` is 2, `[1 0]` is 1, as Ruby's `to_i` reads them), `[Name] @owner…` default owners for entries
  without owners (also right after `]`, and up to the first character no owner holds: `@a+b` is `@a`). Any
  line starting with `[` and holding a `]` is a header, `[ab].py @x` too. Entries before any header form the
  section `codeowners` (`DEFAULT_SECTION`). Sections are independent: a file gets at most one rule per section.
* Within a section the last matching pattern wins; a pattern written again replaces the earlier entry and
  takes the place of its new line (GitLab keeps entries in a hash keyed by pattern, and deletes the old key
  before storing the new entry).
* `!pattern` (exclusion) removes matching files from its section whatever the order, unless the same
  pattern is written again later (it replaces the exclusion, as any repeated pattern does); a bare `!`
  excludes every file of its section (GitLab reads the empty pattern as `/**/**/*`); an entry whose
  owners are all invalid, or which has no owners and no section default, leaves its files without owners.

Errors never raise: each is kept with its line number in `CodeOwners.errors`; a line that cannot be read at
all is skipped. Example:

>>> co = parse_codeowners("* @all\\n[Docs][2] @writers\\ndocs/\\n")
>>> [(r.section, [o.ref for o in r.owners]) for r in co.owners_for("docs/a.md")]
[('codeowners', ['@all']), ('Docs', ['@writers'])]
>>> co.owners_for_files(["docs/a.md"])["Docs"].approvals_required
2
>>> [(r.section, r.pattern, r.approvals_required) for r in co.rules_for_files(["docs/a.md", "x.py"])]
[('codeowners', '*', 1), ('Docs', 'docs/', 2)]
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Literal, Mapping

__all__ = [
    "DEFAULT_SECTION",
    "MAX_PATTERN_LENGTH",
    "ROLE_ACCESS_LEVELS",
    "Owner",
    "OwnerRule",
    "RuleMatch",
    "SectionMatch",
    "CodeOwnersError",
    "CodeOwners",
    "parse_codeowners",
    "parse_owner",
    "read_blob",
    "fnmatch_pathname",
    "MAX_FILE_BYTES",
]

DEFAULT_SECTION = "codeowners"
# Longer patterns are reported and ignored: no path a checkout can hold is that long (Linux's PATH_MAX is
# 4096 bytes), and matching costs grow with the pattern's length. GitLab itself sets no such limit.
MAX_PATTERN_LENGTH = 4096
MAX_FILE_BYTES = 10 * 2**20  # GitLab reads this much of the file (`Gitlab::Git::Blob::MAX_DATA_DISPLAY_SIZE`)
BINARY_CHECK_BYTES = 8000  # a NUL byte among the first this many makes the file binary to GitLab: no owners
MATCHES_KEPT = 8  # sets of changed paths whose rules a parsed file keeps (`CodeOwners.rules_for_files`)
ROLE_ACCESS_LEVELS = {"developer": 30, "maintainer": 40, "owner": 50}

OwnerKind = Literal["name", "group", "role", "email"]

# GitLab's `SectionParser`: a line starting with `[` (or `^[`) and holding a `]` is a header, whatever follows;
# `[N]` may hold spaces (read as Ruby's `to_i` reads them), default owners may follow `]` without a space and end
# at the first character no owner holds (`,`, `+`, `#`). `_STRICT_HEADER` is the form it does not flag.
_HEADER = re.compile(
    r"^(?P<optional>\^)?\[(?P<name>.*?)\](?:\[(?P<approvals>[\s\d]*)\])?(?P<owners>\s*[@\w.\-/\s]*)?", re.ASCII
)
_STRICT_HEADER = re.compile(r"^\^?\[[^\]]+\](?:\[\d+\])?(?:\s+[@\w.\-/\s]+)?$", re.ASCII)
_INTEGER = re.compile(r"^\s*\d+\s*$", re.ASCII)
_LEADING_NUMBER = re.compile(r"\s*(\d+)", re.ASCII)
_BAD_HEADER = re.compile(r"^\^?\[")  # no `]`: GitLab skips the line, flagged
_UNESCAPED_SPACE = re.compile(r"(?<!\\)\s+", re.ASCII)
# Ruby's `String#strip` (GitLab strips each line): ASCII whitespace and NUL only, so a no-break space stays
_RUBY_STRIP = " \t\n\v\f\r\0"
# Owners are found the way GitLab's `ReferenceExtractor` finds them: by scanning the owners text, not by
# reading each word as one owner, so punctuation may touch them (`@alice,@bob`, `(@alice)`, `@alice.`).
# Ruby's `\s` and `\w` are ASCII, so a reference never spans whitespace: the bot scans word by word (the
# same matches, and words without `@` are skipped). A role ends its word; a name is a GitLab namespace path
# (up to 20 parent groups, each part of letters, digits, `_`, `-`, `.`, not ending with `.`, `.git` or
# `.atom`); both follow no word character and no `@`.
_ROLE = re.compile(r"(?<![\w@])@@(developer|maintainer|owner)s?\Z", re.ASCII | re.IGNORECASE)
_PATH_PART = r"(?:[a-zA-Z0-9_.][a-zA-Z0-9_\-.]{0,254}[a-zA-Z0-9_\-]|[a-zA-Z0-9_])(?<!\.git)(?<!\.atom)"
_NAME = re.compile(rf"(?<![\w@])@((?:{_PATH_PART}/){{0,20}}{_PATH_PART})", re.ASCII)
_EMAIL = re.compile(r"[^@\s]{1,100}@[^@\s]{1,255}(?<!\W)", re.ASCII)
_AT = re.compile("@")
# GitLab's address pattern also takes the punctuation around a name: `(@alice` in `(@alice)`, `alice,@bob`
# in `@alice,@bob`. No verified address holds these characters outside quotes, so such a match names nobody
# in GitLab; the bot drops it rather than search users for it.
_NOT_IN_ADDRESS = frozenset('()<>[]:;,"\\')
_WORD = re.compile(r"[^ \t\n\v\f\r]+")


@dataclass(frozen=True, slots=True)
class Owner:
    """One owner reference as written in the file.

    `kind` is `name` for `@x` (a user or a top-level group), `group` for `@a/b`, `role` for `@@maintainer`,
    `email` for an address; `name` is the bare value (`x`, `a/b`, `maintainer`, `jane@example.com`).
    """

    ref: str
    kind: OwnerKind
    name: str

    @property
    def access_level(self) -> int | None:
        """The access level a role owner stands for (`@@maintainer` → 40: exactly that role, not higher
        ones); None for other kinds."""
        return ROLE_ACCESS_LEVELS.get(self.name) if self.kind == "role" else None


@dataclass(frozen=True, slots=True)
class OwnerRule:
    """One CODEOWNERS entry: its section, the pattern as written (without `!`), owners and source line.

    `optional` and `approvals` come from the header of the section the entry sits under (`approvals` is the
    `[N]` as written, 0 when absent). An exclusion (`!pattern`) has no owners.
    """

    section: str
    pattern: str
    owners: tuple[Owner, ...]
    line: int
    optional: bool = False
    approvals: int = 0
    exclusion: bool = False


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """One CODEOWNERS entry a change matches, which GitLab makes one approval rule of the merge request.

    GitLab syncs one code owner rule per matched entry (pattern within its section,
    `MergeRequests::SyncCodeOwnerApprovalRules`), each needing its own approvals: `[Docs]` with `docs/ @a`
    and `*.md @b` needs an approval from @a *and* one from @b when both match. One person's approval counts
    for every rule naming them. `approvals_required` is what the rule asks when the target branch requires
    code owner approval: 0 in an optional section, else the `[N]` of the header the entry sits under, at
    least 1 (a repeated section keeps each header's own `[N]` for the entries under it).
    """

    section: str
    pattern: str
    owners: tuple[Owner, ...]
    optional: bool
    approvals_required: int
    matched_files: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class SectionMatch:
    """What one section's matched entries name: their owners (ordered union), files and rules.

    GitLab asks approvals per rule (`rules`, see `RuleMatch`), not per section; `approvals_required` is only
    the most any one of them asks (0 for an optional section).
    """

    section: str
    owners: tuple[Owner, ...]
    optional: bool
    approvals_required: int
    matched_files: tuple[str, ...]
    rules: tuple[RuleMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class CodeOwnersError:
    """A line GitLab would flag; `kind` uses GitLab's error names (e.g. `malformed_entry_owner`)."""

    line: int
    kind: str
    message: str
    text: str

    def __str__(self) -> str:
        return f"CODEOWNERS line {self.line}: {self.message} (line: {self.text!r})"


class CodeOwners:
    """A parsed CODEOWNERS file. Build it with `parse_codeowners`."""

    def __init__(
        self,
        sections: Mapping[str, Mapping[str, tuple[OwnerRule, re.Pattern[str]]]],
        errors: Iterable[CodeOwnersError] = (),
    ) -> None:
        self._sections = {name: dict(entries) for name, entries in sections.items()}
        self.errors: tuple[CodeOwnersError, ...] = tuple(errors)
        self._matched: dict[tuple[str, ...], tuple[RuleMatch, ...]] = {}  # the last few changes' rules

    @property
    def sections(self) -> list[str]:
        """Section names in order of first appearance, `DEFAULT_SECTION` first."""
        return list(self._sections)

    @property
    def rules(self) -> list[OwnerRule]:
        """Every entry kept, section by section, in GitLab's evaluation order (reversed when matching)."""
        return [rule for entries in self._sections.values() for rule, _ in entries.values()]

    def __bool__(self) -> bool:
        return any(self._sections.values())

    def is_optional(self, section: str) -> bool:
        """A section is optional only if every entry in it came from an optional header (GitLab's rule)."""
        entries = self._sections.get(section)
        return bool(entries) and all(rule.optional for rule, _ in entries.values())

    def owners_for(self, path: str) -> list[OwnerRule]:
        """The winning rule of each section for one repository path (`src/a.py`); exclusions drop the file.

        A rule can have no owners (all malformed, or none and no section default): GitLab then wants nobody.
        """
        target = "/" + path.lstrip("/")
        found = (_winner(entries, target) for entries in self._sections.values())
        return [rule for rule in found if rule is not None]

    def rules_for_files(self, paths: Iterable[str]) -> list[RuleMatch]:
        """The approval rules a change touching `paths` gets: one per matched entry that has owners, in
        CODEOWNERS order (section by section). An entry without owners makes no rule: GitLab wants nobody.

        The answers for the last few sets of paths are kept: one suggestion asks several times (owners to
        look up, approvals, the ranking's boost), and a large file against a large change costs a second."""
        key = tuple(dict.fromkeys(paths))
        found = self._matched.get(key)
        if found is None:
            found = tuple(self._match(key))
            if len(self._matched) >= MATCHES_KEPT:
                self._matched.clear()
            self._matched[key] = found
        return list(found)

    def _match(self, paths: tuple[str, ...]) -> list[RuleMatch]:
        found: dict[OwnerRule, list[str]] = {}
        for path in paths:
            for rule in self.owners_for(path):
                if rule.owners:
                    found.setdefault(rule, []).append(path)
        return [self._rule_match(rule, tuple(found[rule])) for rule in self.rules if rule in found]

    def owners_for_files(self, paths: Iterable[str]) -> dict[str, SectionMatch]:
        """Per section, the owners and files of a change touching `paths` (in the order the files come) and
        its approval rules; sections with owners only."""
        paths = list(dict.fromkeys(paths))
        by_section: dict[str, list[RuleMatch]] = {}
        for rule in self.rules_for_files(paths):
            by_section.setdefault(rule.section, []).append(rule)
        place = {path: i for i, path in enumerate(paths)}
        return {name: _section_match(name, rules, place) for name, rules in by_section.items()}

    def _rule_match(self, rule: OwnerRule, files: tuple[str, ...]) -> RuleMatch:
        optional = self.is_optional(rule.section)
        required = 0 if optional else max(1, rule.approvals)
        return RuleMatch(rule.section, rule.pattern, rule.owners, optional, required, files, rule.line)


def _section_match(section: str, rules: list[RuleMatch], place: Mapping[str, int]) -> SectionMatch:
    """The section's view of its rules: owners and files follow the order of the changed files."""
    won = sorted(((place[path], path, rule) for rule in rules for path in rule.matched_files), key=lambda w: w[0])
    owners = tuple(dict.fromkeys(owner for _, _, rule in won for owner in rule.owners))
    files = tuple(path for _, path, _ in won)
    return SectionMatch(section, owners, rules[0].optional, max(rule.approvals_required for rule in rules), files,
                        tuple(rules))


def _winner(entries: Mapping[str, tuple[OwnerRule, re.Pattern[str]]], target: str) -> OwnerRule | None:
    matching = [rule for rule, regex in reversed(entries.values()) if regex.fullmatch(target)]
    if not matching or any(rule.exclusion for rule in matching):
        return None
    return matching[0]


def parse_owner(token: str) -> Owner | None:
    """Read one owner token: `@alice`, `@grp/sub`, `@@maintainers`, `jane@example.com`; None if the token is
    not exactly one owner.

    >>> parse_owner("@@Maintainers")
    Owner(ref='@@Maintainers', kind='role', name='maintainer')
    >>> parse_owner("alice") is None
    True
    """
    owners, _ = _owners(token)
    return owners[0] if len(owners) == 1 and owners[0].ref == token else None


def _owners(text: str) -> tuple[tuple[Owner, ...], list[str]]:
    """Owners found in `text` (deduplicated, in order) and the words GitLab would flag: a word is malformed
    when it holds no reference at all (`not_a_user`, `@@guest`, `#`)."""
    found: dict[tuple[OwnerKind, str], Owner] = {}
    bad: list[str] = []
    for word in _WORD.findall(text):
        references = _references(word)
        if not references:
            bad.append(word)
        for _, kind, ref, name in references:
            if (kind, ref) not in found and (kind != "email" or _NOT_IN_ADDRESS.isdisjoint(ref)):
                found[kind, ref] = Owner(ref, kind, name)
    return tuple(found.values()), bad


def _references(word: str) -> list[tuple[int, OwnerKind, str, str]]:
    """GitLab's references in one word as (offset, kind, ref, name), in the order written; a word may hold
    several (`@alice,@bob`), and an address GitLab reads around a name is among them."""
    if "@" not in word:
        return []
    found: list[tuple[int, OwnerKind, str, str]] = [
        (m.start(), "group" if "/" in m[1] else "name", m[0], m[1]) for m in _NAME.finditer(word)
    ]
    found += ((m.start(), "email", m[0], m[0]) for m in _addresses(word))
    if m := _ROLE.search(word):
        found.append((m.start(), "role", m[0], m[1].lower()))
    return sorted(found, key=lambda item: item[0])


def _addresses(word: str) -> Iterator[re.Match[str]]:
    """`_EMAIL.finditer(word)`, trying each `@` once: the leftmost start left for an `@` is fixed (after the
    last match and the previous `@`, at most 100 characters before it), and if the address fails there it
    fails from any later start. The plain scan re-reads up to 100 characters at every position."""
    end, previous = 0, -1
    for at in _AT.finditer(word):
        start = max(end, previous + 1, at.start() - 100)
        previous = at.start()
        if start < previous and (m := _EMAIL.match(word, start)):
            end = m.end()
            yield m


@dataclass(frozen=True, slots=True)
class _Header:
    name: str
    optional: bool = False
    approvals: int = 0
    owners: tuple[Owner, ...] = ()


class _Parser:
    """Line-by-line state: the sections so far, the current header, the errors."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, tuple[OwnerRule, re.Pattern[str]]]] = {DEFAULT_SECTION: {}}
        self.header = _Header(DEFAULT_SECTION)
        self.errors: list[CodeOwnersError] = []

    def error(self, line: int, kind: str, message: str, text: str) -> None:
        self.errors.append(CodeOwnersError(line, kind, message, text))

    def feed(self, number: int, line: str) -> None:
        if not line.strip() or line.startswith("#"):  # Rails' `blank?` knows every Unicode space
            return
        if m := _HEADER.match(line):
            self.start_section(number, line, m)
        elif _BAD_HEADER.match(line):
            self.error(number, "invalid_section_format", "section header has no closing `]`; write `[Name]`", line)
        else:
            self.add_entry(number, line)

    def start_section(self, number: int, line: str, m: re.Match[str]) -> None:
        name, optional, raw = m["name"], bool(m["optional"]), m["approvals"]
        approvals = int(found[1]) if raw and (found := _LEADING_NUMBER.match(raw)) else 0
        owners, _ = _owners(m["owners"] or "")
        kept = len(self.errors)
        self.check_header(number, line, m, approvals)
        if len(self.errors) == kept and not _STRICT_HEADER.match(line):
            msg = "section header GitLab reads but flags; write `[Name]`, `[Name][2]`, then owners after a space"
            self.error(number, "invalid_section_format", msg, line)
        if next(reversed(self.sections)) != DEFAULT_SECTION:
            # GitLab merges a header into a known section whatever the case, but not the file's first header
            # (while the default section is the newest): `[CODEOWNERS]` first stands beside `codeowners`
            name = next((known for known in self.sections if known.casefold() == name.casefold()), name)
        self.sections.setdefault(name, {})
        self.header = _Header(name, optional, approvals, owners)

    def check_header(self, number: int, line: str, m: re.Match[str], approvals: int) -> None:
        """GitLab's checks of a header it reads: a name, a whole number of approvals (none when optional),
        default owners that are each one owner."""
        if not m["name"].strip():
            self.error(number, "missing_section_name", "section header has no name; write `[Name]`", line)
        raw = m["approvals"]
        if raw is not None and not _INTEGER.match(raw) or m["optional"] and approvals > 0:
            msg = "approvals must be a whole number in `[Name][2]`, and an optional section (`^[...]`) needs none"
            self.error(number, "invalid_approval_requirement", msg, line)
        if any(parse_owner(word) is None for word in _WORD.findall(m["owners"] or "")):
            msg = "section default owners must be `@user`, `@group/subgroup`, `@@role` or email addresses"
            self.error(number, "invalid_section_owner_format", msg, line)

    def add_entry(self, number: int, line: str) -> None:
        pattern, owner_text = (_UNESCAPED_SPACE.split(line, maxsplit=1) + [""])[:2]
        exclusion = pattern.startswith("!")
        pattern = pattern[1:] if exclusion else pattern
        if not pattern:
            # GitLab normalises the empty pattern to `/**/**/*`: every file of the section is excluded
            msg = "`!` alone excludes every file of this section; name what to exclude, e.g. `!*.lock`"
            self.error(number, "missing_pattern", msg, line)
        if len(pattern) > MAX_PATTERN_LENGTH:
            msg = (f"the pattern is {len(pattern)} characters long, more than the {MAX_PATTERN_LENGTH} the bot "
                   "reads; the entry is ignored (shorten it with `*` or `**/`)")
            self.error(number, "pattern_too_long", msg, line[:200])
            return
        owners = () if exclusion else self.entry_owners(number, line, owner_text)
        if exclusion and owner_text:
            self.error(number, "exclusion_owners_ignored", "owners after a `!pattern` are ignored", line)
        normalized = _normalize(pattern)
        # GitLab keeps a section's entries in a hash keyed by the normalised pattern, so writing a pattern
        # again replaces its entry, an exclusion too: `!*.rb` then `*.rb @ruby` gives `a.rb` to @ruby. The key
        # is deleted first, so the entry takes the new line's place: rules written later take precedence. An
        # exclusion still wins over every other pattern matching the file, whatever the order.
        rule = OwnerRule(self.header.name, pattern, owners, number, self.header.optional, self.header.approvals,
                         exclusion)
        entries = self.sections[self.header.name]
        entries.pop(normalized, None)
        entries[normalized] = (rule, _compile(normalized))

    def entry_owners(self, number: int, line: str, owner_text: str) -> tuple[Owner, ...]:
        owners, bad = _owners(owner_text)
        if bad:
            listed = ", ".join(f"`{token}`" for token in bad)
            msg = f"{listed} not owners (use `@user`, `@group/subgroup`, `@@role` or an email; no inline comments)"
            self.error(number, "malformed_entry_owner", msg, line)
        if not owner_text.strip():
            owners = self.header.owners
            if not owners:
                msg = "entry has no owners and its section no default owners; add owners, or exclude with `!`"
                self.error(number, "missing_entry_owner", msg, line)
        return owners


def parse_codeowners(text: str | bytes) -> CodeOwners:
    """Parse a CODEOWNERS file; problems end up in `.errors` with their line numbers, never raised.

    Bytes are read as GitLab reads the file's blob (`read_blob`).

    >>> parse_codeowners("[Docs\\n*.md @docs").errors[0].line
    1
    """
    if isinstance(text, bytes):
        text = read_blob(text)
    parser = _Parser()
    if text.startswith("\ufeff"):
        # GitLab keeps the mark: its first line is then no comment, no header, and no pattern of a real file
        msg = "the file starts with a byte order mark, which GitLab reads as part of line 1; save it without one"
        parser.error(1, "byte_order_mark", msg, text.split("\n", 1)[0][:200])
    # Ruby's `lines` breaks at `\n` only: a lone `\r`, a form feed or U+2028 does not start a line there
    for number, raw in enumerate(text.split("\n"), start=1):
        parser.feed(number, raw.strip(_RUBY_STRIP))
    return CodeOwners(parser.sections, parser.errors)


def read_blob(data: bytes) -> str:
    """A file's bytes as GitLab's CODEOWNERS loader reads them: only the first `MAX_FILE_BYTES` (`blobs_at`
    loads no more), nothing at all from a binary file (a NUL byte in the first 8,000, libgit2's test: a file
    saved as UTF-16, say), UTF-8 with bytes that are not replaced.

    >>> read_blob(b"* @a\\n"), read_blob("* @a\\n".encode("utf-16"))
    ('* @a\\n', '')
    """
    data = data[:MAX_FILE_BYTES]
    if b"\0" in data[:BINARY_CHECK_BYTES]:
        return ""
    return data.decode("utf-8", errors="replace")


def _normalize(pattern: str) -> str:
    """GitLab's `normalize_pattern`: root-anchor every pattern and expand directories."""
    if pattern == "*":
        return "/**/*"
    if pattern.startswith("\\#"):
        pattern = pattern[1:]
    pattern = re.sub(r"\\\s+", " ", pattern, flags=re.ASCII)
    if not pattern.startswith("/"):
        pattern = "/**/" + pattern
    if pattern.endswith("/"):
        pattern += "**/*"
    return pattern


def fnmatch_pathname(pattern: str, path: str) -> bool:
    """Ruby's `File.fnmatch(pattern, path, FNM_PATHNAME | FNM_DOTMATCH)`, the matcher GitLab uses.

    >>> fnmatch_pathname("/**/*.rb", "/app/models/user.rb"), fnmatch_pathname("/docs/*", "/docs/a/b.md")
    (True, False)
    """
    return _compile(pattern).fullmatch(path) is not None


# A glob becomes a regex whose backtracking is bounded (the pattern comes from any branch a Developer can
# push, and the bot matches it on the event loop). A direct translation (`*` → `[^/]*`, `**/` →
# `(?:[^/]*/)*`) tries every way of splitting the path: `/*a*a*a*a*a*a*a*a*a*a*a*ab` (twelve stars) against
# forty `a` took 97 s. Two facts make a first-found choice safe to keep, so the regex commits to it with atomic
# groups:
#
# * Within a segment, the pieces between stars each match a fixed number of characters. Putting a middle
#   piece at its leftmost place leaves the most room to the pieces after it, so if any placement succeeds the
#   leftmost one does: `(?>[^/]*?piece)`. Only the last piece must end the segment: `[^/]*piece`.
# * Across segments, `**/` is followed by segments up to the next `**/`, which can absorb any whole segments
#   after them: placing that block at the first segment where it fits is never worse. Consecutive `**/`
#   mean one. Only the last `**/` keeps a plain search, for the block that must end the path.
#
# Each piece or block is then tried once per position of the path at most, so a match takes at most about
# len(path) × len(pattern) steps instead of exponentially many.
_STAR, _GLOBSTAR, _SLASH = "*", "**/", "/"
_ANY_SEGMENTS = "(?:[^/]*+/)*"


def _compile(pattern: str) -> re.Pattern[str]:
    """The glob's regex; the bot parses a project's file again every minute or so, so patterns up to 512
    characters stay compiled (4,096 of them, shared by all projects: little for ordinary short patterns, about
    26 MB if all were 500 characters long; longer ones are rare and bulkier)."""
    return _compile_cached(pattern) if len(pattern) <= 512 else _glob_regex(pattern)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    items = _segments(_tokens(pattern))
    globstars = [k for k, item in enumerate(items) if item == _GLOBSTAR]
    out = _render(items[: globstars[0]] if globstars else items)
    for n, k in enumerate(globstars):
        stop = globstars[n + 1] if n + 1 < len(globstars) else len(items)
        block = _render(items[k + 1: stop])
        last = n + 1 == len(globstars)
        out += _ANY_SEGMENTS + block if last else f"(?>{_ANY_SEGMENTS}?{block})"
    return re.compile(out, re.DOTALL)


_compile_cached = functools.lru_cache(maxsize=4096)(_glob_regex)


def _tokens(pattern: str) -> list[str]:
    """The glob as regex pieces: `_STAR`, `_GLOBSTAR`, `_SLASH`, or one piece matching one character that is
    never `/` (a literal, `?`, a bracket class). Runs of `*` are one star, runs of `**/` one globstar."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if (i == 0 or pattern[i - 1] == "/") and pattern.startswith("**/", i):
            if not out or out[-1] != _GLOBSTAR:
                out.append(_GLOBSTAR)
            i += 3
            continue
        char = pattern[i]
        if char == "*":
            out.append(_STAR)
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            cls, i = _bracket(pattern, i)
            out.append(cls)
            continue
        elif char != "\\" or i + 1 < len(pattern):  # a trailing `\\` escapes the end: Ruby drops it
            i += int(char == "\\")
            out.append(_SLASH if pattern[i] == "/" else re.escape(pattern[i]))
        i += 1
    return out


def _segments(tokens: list[str]) -> list[list[str] | str]:
    """Split the tokens into segments (lists of pieces without `/`), `_SLASH` and `_GLOBSTAR` items."""
    items: list[list[str] | str] = [[]]
    for token in tokens:
        if token in (_SLASH, _GLOBSTAR):
            items += [token, []]
        else:
            items[-1].append(token)
    return items


def _render(items: list[list[str] | str]) -> str:
    return "".join(item if isinstance(item, str) else _segment(item) for item in items)


def _segment(pieces: list[str]) -> str:
    """One segment's regex: the part before the first star as is, each middle part at its leftmost place
    (atomic), the last part where it ends the segment."""
    parts: list[list[str]] = [[]]
    for piece in pieces:
        if piece == _STAR:
            parts.append([])
        else:
            parts[-1].append(piece)
    if len(parts) == 1:
        return "".join(parts[0])
    middle = "".join(f"(?>[^/]*?{''.join(part)})" for part in parts[1:-1] if part)
    return "".join(parts[0]) + middle + "[^/]*" + "".join(parts[-1])


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """Translate `[...]` at `start` as Ruby's `bracket()` reads it; returns (regex, next index).

    `!`/`^` negates; `\\` escapes the next character, and an escaped `-` is no range; a range written backwards
    (`[b-a]`) matches its two ends only; `[]` matches nothing and `[!]` any character. An unclosed `[` makes the
    pattern match nothing (Ruby fails there). A class never matches `/` (FNM_PATHNAME).
    """
    end = len(pattern)
    i = start + 1
    negate = i < end and pattern[i] in "!^"
    i += int(negate)
    parts: list[str] = []
    while i < end and pattern[i] != "]":
        low = i + 1 if pattern[i] == "\\" else i
        i = low + 1
        if i >= end:
            return _NOTHING, end
        if pattern[i] == "-" and pattern[i + 1: i + 2] != "]":
            high = i + 2 if pattern[i + 1: i + 2] == "\\" else i + 1
            if high >= end:
                return _NOTHING, end
            parts.append(_char_range(pattern[low], pattern[high]))
            i = high + 1
        else:
            parts.append(re.escape(pattern[low]))
    if i >= end:
        return _NOTHING, end
    body = "".join(parts)
    regex = f"[^/{body}]" if negate else (f"(?!/)[{body}]" if body else _NOTHING)
    return regex, i + 1


_NOTHING = "(?!)"


def _char_range(low: str, high: str) -> str:
    """`a-c` as a class range; Ruby matches a backwards range's two ends (it compares them first) and nothing
    between."""
    if low <= high:
        return f"{re.escape(low)}-{re.escape(high)}"
    return re.escape(low) + re.escape(high)
