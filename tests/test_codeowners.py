"""CODEOWNERS parsing and matching, table-tested against GitLab's documented behaviour and its parser's specs."""
from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings, strategies as st

from graph.codeowners import (
    DEFAULT_SECTION,
    MAX_PATTERN_LENGTH,
    Owner,
    fnmatch_pathname,
    parse_codeowners,
    parse_owner,
)
from graph.codeowners import _owners
from tests.codeowners_oracle import regex_fnmatch_pathname
from tests.shared_samples import GITLAB_API

SAMPLE = GITLAB_API / "CODEOWNERS.sample.gitlab-docs"

# The documented reference example, section by section (GitLab's "Syntax of CODEOWNERS file" page).
DOCUMENTED = r"""
# A comment: @nobody is not an owner here
* @default-codeowner
* @multiple @code @owners
*.rb @ruby-owner
\#file_with_pound.rb @owner-file-with-pound
LICENSE @legal janedoe@gitlab.com
README @group @group/with-nested/subgroup
/docs/ @all-docs
/docs/* @root-docs
/docs/**/*.md @root-docs
lib/ @lib-owner
/config/ @config-owner
path\ with\ spaces/ @space-owner

[Documentation][2] @docs-team
docs/
README.md

^[Database] @database-team
model/db/
config/db/database-setup.md @docs-team
"""


def owners(co, path: str) -> dict[str, list[str]]:
    return {rule.section: [o.ref for o in rule.owners] for rule in co.owners_for(path)}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("app/assets/something.vue", {DEFAULT_SECTION: ["@multiple", "@code", "@owners"]}),
        ("hello.rb", {DEFAULT_SECTION: ["@ruby-owner"]}),
        ("app/models/repository.rb", {DEFAULT_SECTION: ["@ruby-owner"]}),
        ("examples/#file_with_pound.rb", {DEFAULT_SECTION: ["@owner-file-with-pound"]}),
        ("LICENSE", {DEFAULT_SECTION: ["@legal", "janedoe@gitlab.com"]}),
        ("docs/projects/index.txt", {DEFAULT_SECTION: ["@all-docs"], "Documentation": ["@docs-team"]}),
        ("docs/index.txt", {DEFAULT_SECTION: ["@root-docs"], "Documentation": ["@docs-team"]}),
        ("docs/a/b/c.md", {DEFAULT_SECTION: ["@root-docs"], "Documentation": ["@docs-team"]}),
        ("lib/gitlab/git/repository.py", {DEFAULT_SECTION: ["@lib-owner"]}),
        ("ee/lib/gitlab/git/repository.py", {DEFAULT_SECTION: ["@lib-owner"]}),
        ("config/database.yml", {DEFAULT_SECTION: ["@config-owner"]}),
        ("other/config/database.yml", {DEFAULT_SECTION: ["@multiple", "@code", "@owners"]}),
        ("path with spaces/docs.md", {DEFAULT_SECTION: ["@space-owner"]}),
        ("README.md", {DEFAULT_SECTION: ["@multiple", "@code", "@owners"], "Documentation": ["@docs-team"]}),
        ("model/db/schema.sql", {DEFAULT_SECTION: ["@multiple", "@code", "@owners"], "Database": ["@database-team"]}),
        ("config/db/database-setup.md", {DEFAULT_SECTION: ["@config-owner"], "Database": ["@docs-team"]}),
        (".gitignore", {DEFAULT_SECTION: ["@multiple", "@code", "@owners"]}),
    ],
)
def test_documented_example(path, expected):
    assert owners(parse_codeowners(DOCUMENTED), path) == expected


def test_documented_example_parses_without_errors():
    co = parse_codeowners(DOCUMENTED)
    assert co.errors == ()
    assert co.sections == [DEFAULT_SECTION, "Documentation", "Database"]


def test_owners_for_files_sections():
    co = parse_codeowners(DOCUMENTED)
    got = co.owners_for_files(["docs/a.md", "model/db/x.sql", "README.md", "docs/a.md"])
    assert list(got) == [DEFAULT_SECTION, "Documentation", "Database"]
    docs = got["Documentation"]
    assert (docs.optional, docs.approvals_required, docs.matched_files) == (False, 2, ("docs/a.md", "README.md"))
    assert [o.ref for o in docs.owners] == ["@docs-team"]
    db = got["Database"]
    assert (db.optional, db.approvals_required, db.matched_files) == (True, 0, ("model/db/x.sql",))
    default = got[DEFAULT_SECTION]
    assert default.approvals_required == 1
    assert [o.ref for o in default.owners] == ["@root-docs", "@multiple", "@code", "@owners"]


def test_owners_for_files_empty():
    assert parse_codeowners(DOCUMENTED).owners_for_files([]) == {}
    assert parse_codeowners("").owners_for_files(["a.py"]) == {}


def test_each_matched_entry_is_an_approval_rule_with_its_own_headers_count():
    """GitLab syncs one approval rule per matched entry (pattern within a section), each with the `[N]` of
    the header it sits under: a repeated section does not share its count, an optional one asks nothing."""
    co = parse_codeowners("[A][3]\n*.a @x\n[a]\n*.b @y\n^[Opt]\n*.a @z\n")
    got = [(r.section, r.pattern, [o.ref for o in r.owners], r.approvals_required, r.matched_files)
           for r in co.rules_for_files(["f.b", "g.a", "f.a"])]
    assert got == [("A", "*.a", ["@x"], 3, ("g.a", "f.a")), ("A", "*.b", ["@y"], 1, ("f.b",)),
                   ("Opt", "*.a", ["@z"], 0, ("g.a", "f.a"))]
    section = co.owners_for_files(["f.b", "f.a"])["A"]
    assert [r.pattern for r in section.rules] == ["*.a", "*.b"] and section.matched_files == ("f.b", "f.a")
    assert [o.ref for o in section.owners] == ["@y", "@x"]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/**/*", "/a", True),
        ("/**/*", "/a/b/.c", True),
        ("/*", "/README.md", True),
        ("/*", "/nested/README.md", False),
        ("/**/foo/*", "/baz/foo/bar", True),
        ("/**/foo/*", "/foo/bar", True),
        ("/**/foo/*", "/fufoo/bar", False),
        ("/**/foo/*", "/foo/bar/baz", False),
        ("/**/docs", "/docs", True),
        ("/**/docs", "/docs/index.md", False),
        ("/docs/**/*", "/docs/a/b.md", True),
        ("/docs/**/*", "/other/docs/a.md", False),
        ("/**/*.rb", "/a.rb", True),
        ("/**/*.rb", "/a.rbx", False),
        ("/**/?.py", "/x/a.py", True),
        ("/**/?.py", "/x/ab.py", False),
        ("/**/[ab].py", "/b.py", True),
        ("/**/[!ab].py", "/b.py", False),
        ("/**/[!ab].py", "/c.py", True),
        ("/**/[a-c]x", "/bx", True),
        ("/**/a[/]b", "/a/b", False),
        ("/**/\\*.py", "/*.py", True),
        ("/**/\\*.py", "/a.py", False),
        # Ruby's `bracket()`: an unclosed `[` fails the match, an escaped `-` is no range, a backwards range
        # matches its two ends; a trailing `\\` escapes the end of the pattern and is dropped
        ("/**/[abc", "/[abc", False),
        ("/**/x[", "/x[", False),
        ("/**/[a\\-c]x", "/-x", True),
        ("/**/[a\\-c]x", "/bx", False),
        ("/**/[\\a-c]x", "/bx", True),
        ("/**/[a-\\]]x", "/]x", True),
        ("/[b-a]", "/a", True),
        ("/[b-a]", "/b", True),
        ("/[z-a]", "/m", False),
        ("/[!b-a]", "/a", False),
        ("/[!b-a]", "/m", True),
        ("/**/docs\\", "/docs", True),
        ("/**/docs\\", "/docs\\", False),
        ("/**/a*\\", "/abc", True),
        ("/**/*.RB", "/a.rb", False),
        ("/a**b", "/a/x/b", False),
    ],
)
def test_fnmatch_pathname(pattern, path, matches):
    assert fnmatch_pathname(pattern, path) is matches


DEEP = "/" + "/".join(["d"] * 30) + "/y"


@pytest.mark.parametrize(
    ("pattern", "path", "matching"),
    [
        # a plain regex translation took 0.6 s on the first (97 s with 12 stars and 40 `a`), 2.8 s on the second
        # (over 30 s with ten `**/`), 0.6 s on the third
        ("/" + "*a" * 10 + "b", "/" + "a" * 30, "/" + "a" * 29 + "b"),
        ("/" + "**/" * 8 + "x", DEEP, DEEP[:-1] + "x"),
        ("/" + "**/d/" * 8 + "x", DEEP, DEEP[:-1] + "x"),
        ("/**/**a*a*a*a*a*a*a*a*a*b", "/" + "a" * 30, "/c/" + "a" * 29 + "b"),  # the line `**a*a…*b @x`: 0.8 s
    ],
)
def test_pathological_patterns_are_matched_quickly(pattern, path, matching):
    start = time.perf_counter()
    assert fnmatch_pathname(pattern, path) is False
    assert fnmatch_pathname(pattern, matching) is True
    assert time.perf_counter() - start < 0.25


def test_a_pathological_line_does_not_stall_matching():
    co = parse_codeowners("*" + "*a" * 9 + "b @dee\n")  # 225 s on a name of 60 `a` before; 2 s on 34
    start = time.perf_counter()
    assert owners(co, "a" * 34) == {}
    assert owners(co, "x/" + "a" * 33 + "b") == {DEFAULT_SECTION: ["@dee"]}
    assert time.perf_counter() - start < 0.25


_GLOB_PIECES = st.sampled_from(
    ["a", "b", ".", "/", "*", "**", "**/", "?", "[ab]", "[!a]", "[^/]", "[b-a]", "[a-", "]", "\\", "\\*", "-", "#"]
)
_PATH_CHARS = st.sampled_from(["a", "b", ".", "/", "*", "[", "-", "#"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["", "/", "/**/"]), st.lists(_GLOB_PIECES, max_size=8).map("".join),
       st.sampled_from(["", "/"]), st.lists(_PATH_CHARS, max_size=12).map("".join))
def test_matcher_agrees_with_the_plain_regex_translation(prefix, glob, root, path):
    """The backtracking-safe matcher means exactly what the direct regex translation meant (small inputs, where
    the old one is quick)."""
    pattern, path = prefix + glob, root + path
    assert fnmatch_pathname(pattern, path) is regex_fnmatch_pathname(pattern, path)


def test_a_pattern_ending_in_a_backslash_names_the_file_without_it():
    # `docs\\` is what is left of `docs\\ ` once GitLab strips the line: Ruby's matcher drops the lone `\\`;
    # an unclosed `[` matches nothing
    co = parse_codeowners("* @all\n[Docs] @docs\ndocs\\\nlib[ @lib\n")
    assert owners(co, "docs") == {DEFAULT_SECTION: ["@all"], "Docs": ["@docs"]}
    assert owners(co, "lib[") == {DEFAULT_SECTION: ["@all"]}


def test_overlong_pattern_is_reported_and_ignored():
    long = "a" * (MAX_PATTERN_LENGTH - 2) + "*"
    co = parse_codeowners(f"* @all\n{long}b @long\n{long}bc @longer\n")
    assert owners(co, "a" * (MAX_PATTERN_LENGTH - 2) + "xb") == {DEFAULT_SECTION: ["@long"]}
    assert owners(co, "a" * (MAX_PATTERN_LENGTH - 2) + "xbc") == {DEFAULT_SECTION: ["@all"]}
    [error] = co.errors
    assert (error.line, error.kind) == (3, "pattern_too_long")
    assert len(error.text) <= 200


def test_last_matching_pattern_wins_within_section():
    co = parse_codeowners("* @all\n*.py @py\nsrc/ @src\n")
    assert owners(co, "src/a.py") == {DEFAULT_SECTION: ["@src"]}
    assert owners(co, "tools/a.py") == {DEFAULT_SECTION: ["@py"]}


def test_a_pattern_written_again_takes_the_place_of_its_last_line():
    # "Rules defined later in the file take precedence" (GitLab's syntax page): GitLab kept a repeated pattern at
    # its first place, so `src/` still beat the later `*.py` (gitlab-org/gitlab#585698), and now moves it to its
    # last line (`parsed[section].delete(pattern)` before storing it again). The bot kept the first place.
    co = parse_codeowners("*.py @first\nsrc/ @src\n*.py @second\n")
    assert owners(co, "src/a.py") == {DEFAULT_SECTION: ["@second"]}
    assert owners(co, "src/a.md") == {DEFAULT_SECTION: ["@src"]}
    assert owners(co, "a.py") == {DEFAULT_SECTION: ["@second"]}
    assert [(r.pattern, r.line) for r in co.rules] == [("src/", 2), ("*.py", 3)]
    co = parse_codeowners("[Docs]\n/src/ @team-a\n/src/components/ @frontend\n[docs]\n/src/ @team-b\n")
    assert owners(co, "src/components/Button.vue") == {"Docs": ["@team-b"]}


def test_unanchored_pattern_with_slash_matches_anywhere():
    co = parse_codeowners("ee/docs @docs\n")
    assert owners(co, "ee/docs") == {DEFAULT_SECTION: ["@docs"]}
    assert owners(co, "x/ee/docs") == {DEFAULT_SECTION: ["@docs"]}
    assert owners(co, "ee/docs/a.md") == {}


def test_sections_are_case_insensitive_and_merge():
    co = parse_codeowners("[Docs]\n*.md @a\n[DOCS][2]\ndoc/* @b\n")
    assert co.sections == [DEFAULT_SECTION, "Docs"]
    assert owners(co, "doc/x.md") == {"Docs": ["@b"]}
    assert co.owners_for_files(["doc/x.md", "x.md"])["Docs"].approvals_required == 2


def test_the_first_header_is_never_merged_with_the_default_section():
    # GitLab's SectionParser#find_section_name returns the name as written while `codeowners` is the newest
    # section, so a first `[CODEOWNERS]` is a section of its own; a later one merges (case-insensitive)
    co = parse_codeowners("* @a\n[CODEOWNERS]\n*.rb @b\n")
    assert co.sections == [DEFAULT_SECTION, "CODEOWNERS"]
    assert owners(co, "x.rb") == {DEFAULT_SECTION: ["@a"], "CODEOWNERS": ["@b"]}
    assert owners(co, "x.txt") == {DEFAULT_SECTION: ["@a"]}
    co = parse_codeowners("* @a\n[Docs]\n*.md @d\n[CODEOWNERS]\n*.rb @b\n")
    assert co.sections == [DEFAULT_SECTION, "Docs"]
    assert owners(co, "x.rb") == {DEFAULT_SECTION: ["@b"]}


def test_optional_only_when_every_entry_is_optional():
    co = parse_codeowners("[Required]\n*.rb @t\n^[Optional]\n*.rb @t\n[Partly]\n*.md @d\n^[Partly]\ndoc/* @d\n")
    assert [co.is_optional(s) for s in ("Required", "Optional", "Partly", "Missing")] == [False, True, False, False]


@pytest.mark.parametrize(
    ("line", "name", "optional", "approvals", "default_owners"),
    [
        ("[Doc]", "Doc", False, 0, []),
        ("^[Doc]", "Doc", True, 0, []),
        ("[Doc][1]", "Doc", False, 1, []),
        ("[Doc][1] @doc", "Doc", False, 1, ["@doc"]),
        ("[Doc] @doc @rrr.dev @dev", "Doc", False, 0, ["@doc", "@rrr.dev", "@dev"]),
        ("[Doc][2] @grp/doc-1 @@maintainer", "Doc", False, 2, ["@grp/doc-1", "@@maintainer"]),
        ("[Two Words]", "Two Words", False, 0, []),
        ("[Double::Colon]", "Double::Colon", False, 0, []),
        ("[Required with non-numbers][q]", "Required with non-numbers", False, 0, []),
        # GitLab's header pattern now reads spaces in `[N]` (Ruby's `to_i`: up to the first non-digit) and default
        # owners right after `]` (`\s*`), without `+` (rows of GitLab's SectionParser spec)
        ("[Doc][ 1]", "Doc", False, 1, []),
        ("[Doc][  1  ]", "Doc", False, 1, []),
        ("[Doc][1 0]", "Doc", False, 1, []),
        ("[Doc][]", "Doc", False, 0, []),
        ("[Doc][1_0]", "Doc", False, 0, []),
        ("[Doc][2]@owner", "Doc", False, 2, ["@owner"]),
        ("^[Doc][2]@owner", "Doc", True, 2, ["@owner"]),
        ("[Doc]@owner", "Doc", False, 0, ["@owner"]),
        ("[Doc] @owner+malformed", "Doc", False, 0, ["@owner"]),
        ("[Doc] jane+doc@example.com", "Doc", False, 0, []),
        ("[Doc]] @owner", "Doc", False, 0, []),
        ("[ab].py @a", "ab", False, 0, ["@a"]),  # a line starting with a bracket class is a header
    ],
)
def test_section_headers(line, name, optional, approvals, default_owners):
    co = parse_codeowners(f"{line}\nsome/file.py\n")
    (rule,) = co.rules
    assert (rule.section, rule.optional, rule.approvals) == (name, optional, approvals)
    assert [o.ref for o in rule.owners] == default_owners


def test_entry_owners_override_section_defaults():
    co = parse_codeowners("[Database] @database-team\nmodel/db/\nsetup.md @docs-team\n")
    assert owners(co, "model/db/x") == {"Database": ["@database-team"]}
    assert owners(co, "setup.md") == {"Database": ["@docs-team"]}


def test_section_must_start_the_line():
    co = parse_codeowners("Something before [Partially optional]\n    [Required]\n*_spec.rb @t\n")
    assert co.sections == [DEFAULT_SECTION, "Required"]


@pytest.mark.parametrize(
    ("text", "line", "kind"),
    [
        ("[Invalid\n*.md @a", 1, "invalid_section_format"),
        ("^[Invalid\n*.md @a", 1, "invalid_section_format"),
        ("[]\n*.md @a", 1, "missing_section_name"),
        ("# c\n^[Doc][1] @doc\n*.md", 2, "invalid_approval_requirement"),
        ("[Doc] malformed\n*.md @a", 1, "invalid_section_owner_format"),
        ("*.md @a\n*.js not_a_user", 2, "malformed_entry_owner"),
        ("*.md @a\n\n*.js", 3, "missing_entry_owner"),
        ("!", 1, "missing_pattern"),
        ("!*.lock @a", 1, "exclusion_owners_ignored"),
        ("[Doc][]\n*.md @a", 1, "invalid_approval_requirement"),
        ("[Doc][1 0]\n*.md @a", 1, "invalid_approval_requirement"),
        ("[Doc] @owner oops\n*.md @a", 1, "invalid_section_owner_format"),
        ("[Doc]]\n*.md @a", 1, "invalid_section_format"),
        ("[Doc][ 1]\n*.md @a", 1, "invalid_section_format"),
        ("[Doc][2]@owner\n*.md @a", 1, "invalid_section_format"),
        ("[\n*.md @a", 1, "invalid_section_format"),
    ],
)
def test_errors_are_collected_with_line_numbers(text, line, kind):
    co = parse_codeowners(text)
    assert [(e.line, e.kind) for e in co.errors] == [(line, kind)]
    assert f"line {line}" in str(co.errors[0])


def test_bad_section_line_is_skipped():
    co = parse_codeowners("* @all\n[Broken\n*.md @md\n")
    assert co.sections == [DEFAULT_SECTION]
    assert owners(co, "a.md") == {DEFAULT_SECTION: ["@md"]}


def test_inline_comment_owners_are_parsed_and_other_words_reported():
    co = parse_codeowners("LICENSE @legal this does not match janedoe@gitlab.com\n")
    assert owners(co, "LICENSE") == {DEFAULT_SECTION: ["@legal", "janedoe@gitlab.com"]}
    assert [e.kind for e in co.errors] == ["malformed_entry_owner"]
    assert "`this`, `does`, `not`, `match`" in co.errors[0].message


def test_entry_with_only_malformed_owners_leaves_file_without_owners():
    co = parse_codeowners("* @all\n*.js not_a_user\n")
    assert owners(co, "a.js") == {DEFAULT_SECTION: []}
    assert co.owners_for_files(["a.js"]) == {}


def test_entry_without_owners_overrides_earlier_match():
    co = parse_codeowners("/apps/ @octocat\n/apps/github\n")
    assert owners(co, "apps/github") == {DEFAULT_SECTION: []}
    assert owners(co, "apps/x.py") == {DEFAULT_SECTION: ["@octocat"]}


def test_exclusions_per_section():
    co = parse_codeowners("* @group-x\n!*.rb\n\n[Ruby]\n*.rb @ruby-devs\n/config/example.yml @cfg\n!/config/**/*.rb\n")
    assert owners(co, "file.txt") == {DEFAULT_SECTION: ["@group-x"]}
    assert owners(co, "app/models/user.rb") == {"Ruby": ["@ruby-devs"]}
    assert owners(co, "config/routes.rb") == {}
    assert owners(co, "config/example.yml") == {DEFAULT_SECTION: ["@group-x"], "Ruby": ["@cfg"]}


def test_exclusion_wins_whatever_the_order():
    co = parse_codeowners("!pom.xml\n* @default-owner\n")
    assert owners(co, "pom.xml") == {}
    assert owners(co, "src/pom.xml") == {}
    assert owners(co, "a.txt") == {DEFAULT_SECTION: ["@default-owner"]}


def test_weird_escaped_path_with_username_lookalikes():
    text = r"a/weird\ path\ with/\ @username\ /\ and-email@lookalikes.com\ / @user-1 email@gitlab.org @user-2"
    co = parse_codeowners(text)
    got = owners(co, "a/weird path with/ @username / and-email@lookalikes.com /test.rb")
    assert got == {DEFAULT_SECTION: ["@user-1", "email@gitlab.org", "@user-2"]}
    assert co.errors == ()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("@alice", Owner("@alice", "name", "alice")),
        ("@group/with-nested/subgroup", Owner("@group/with-nested/subgroup", "group", "group/with-nested/subgroup")),
        ("@@developer", Owner("@@developer", "role", "developer")),
        ("@@Maintainers", Owner("@@Maintainers", "role", "maintainer")),
        ("@@owner", Owner("@@owner", "role", "owner")),
        ("janedoe@gitlab.com", Owner("janedoe@gitlab.com", "email", "janedoe@gitlab.com")),
        ("@@guest", None),
        ("alice", None),
        ("#", None),
        ("@", None),
    ],
)
def test_parse_owner(token, expected):
    assert parse_owner(token) == expected


@pytest.mark.parametrize(
    ("line", "expected", "errors"),
    [
        ("*.py @alice, @bob", ["@alice", "@bob"], []),
        ("*.py @alice,@bob", ["@alice", "@bob"], []),
        ("*.py (@alice)", ["@alice"], []),
        ("*.py @alice.", ["@alice"], []),  # a username never ends with `.`
        ("*.py @grp/sub, jane@example.com;", ["@grp/sub", "jane@example.com"], []),
        ("*.py <jane@example.com>", [], []),  # GitLab reads the address `<jane@example.com`: nobody's
        ("*.py @@maintainer,", [], ["malformed_entry_owner"]),  # a role ends its word
        ("*.py @alice,@@Maintainers", ["@alice", "@@Maintainers"], []),
        ("*.py @alice # and @bob", ["@alice", "@bob"], ["malformed_entry_owner"]),
    ],
)
def test_owners_are_scanned_as_gitlab_does(line, expected, errors):
    co = parse_codeowners(line)
    assert owners(co, "a.py") == {DEFAULT_SECTION: expected}
    assert [e.kind for e in co.errors] == errors


# GitLab's patterns (`ReferenceExtractor`, `Gitlab::PathRegex`) applied to the whole owners text at once.
_GITLAB_PART = r"(?:[a-zA-Z0-9_.][a-zA-Z0-9_\-.]{0,254}[a-zA-Z0-9_\-]|[a-zA-Z0-9_])(?<!\.git)(?<!\.atom)"
_GITLAB_NAME = re.compile(rf"(?<![\w@])@((?:{_GITLAB_PART}/){{0,20}}{_GITLAB_PART})", re.ASCII)
_GITLAB_EMAIL = re.compile(r"[^@\s]{1,100}@[^@\s]{1,255}(?<!\W)", re.ASCII)
_GITLAB_ROLE = re.compile(r"(?<![\w@])@@(developer|maintainer|owner)s?(?:\s|$)", re.ASCII | re.IGNORECASE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["@", "@@", "a", "b.", "-", "/", " ", ",", "(", "x.git", "maintainer", "Owners",
                                 "a" * 101, "\t"]), max_size=12).map("".join))
def test_owner_scan_finds_what_gitlab_finds(text):
    """Word by word, with each address tried once per `@`, the scan finds GitLab's references (less the
    addresses holding punctuation no address holds, which GitLab finds and no user has)."""
    got, _ = _owners(text)
    names = {m[1] for m in _GITLAB_NAME.finditer(text)}
    emails = {m[0] for m in _GITLAB_EMAIL.finditer(text) if not set(m[0]) & set('()<>[]:;,"\\')}
    roles = {m[1].lower() for m in _GITLAB_ROLE.finditer(text)}
    assert {o.name for o in got if o.kind in ("name", "group")} == names
    assert {o.name for o in got if o.kind == "email"} == emails
    assert {o.name for o in got if o.kind == "role"} == roles


def test_role_access_levels():
    co = parse_codeowners("/config/ @@maintainer @@developers\n")
    (rule,) = co.owners_for("config/a.yml")
    assert [o.access_level for o in rule.owners] == [40, 30]


def test_comments_blank_lines_and_bytes():
    co = parse_codeowners(b"# comment\n\n   \n*.py @py\r\n")
    assert co.errors == ()
    assert owners(co, "a.py") == {DEFAULT_SECTION: ["@py"]}
    assert not parse_codeowners("# only a comment\n")
    assert parse_codeowners("*.py @py")


def test_a_byte_order_mark_stays_part_of_the_first_line_as_in_gitlab():
    # GitLab hands valid UTF-8 on as it is (`EncodingHelper#encode!`; its `strip_bom` is not called here), and
    # neither Ruby's `strip` nor Rails' `blank?` takes U+FEFF for a space: the first line is no comment, no
    # header and no pattern matching a real file. The bot dropped the mark, and so read owners GitLab does not.
    co = parse_codeowners(b"\xef\xbb\xbf* @all\n*.py @py\n")
    assert owners(co, "a.md") == {} and owners(co, "a.py") == {DEFAULT_SECTION: ["@py"]}
    assert (co.errors[0].line, co.errors[0].kind) == (1, "byte_order_mark")
    co = parse_codeowners(b"\xef\xbb\xbf[Docs][2]\ndocs/ @docs\n")
    assert co.sections == [DEFAULT_SECTION] and owners(co, "docs/a.md") == {DEFAULT_SECTION: ["@docs"]}
    co = parse_codeowners(b"\xef\xbb\xbf# a comment naming @nobody\n* @all\n")
    assert owners(co, "a.md") == {DEFAULT_SECTION: ["@all"]}


def test_bytes_are_read_as_gitlab_reads_the_blob():
    # GitLab loads at most the first 10 MiB of the file (`blobs_at`), and reads a binary file (a NUL byte in the
    # first 8,000 bytes: a file saved as UTF-16, say) as empty; the bot read all of both
    padding = b"# " + b"x" * (10 * 2**20) + b"\n"
    assert owners(parse_codeowners(b"* @early\n" + padding + b"*.md @late\n"), "a.md") == {DEFAULT_SECTION: ["@early"]}
    assert not parse_codeowners("* @a\n".encode("utf-16"))
    assert not parse_codeowners(b"* @a\n# \0\n")
    assert owners(parse_codeowners(b"* @a\n#" + b" " * 8000 + b"\0\n"), "x") == {DEFAULT_SECTION: ["@a"]}
    assert owners(parse_codeowners("* @a # J\u00fcrgen\n".encode("latin-1")), "x") == {DEFAULT_SECTION: ["@a"]}


def test_whitespace_and_line_breaks_are_rubys():
    # GitLab splits the file with `lines` (at `\n` only) and each line with `\s` (ASCII whitespace only)
    co = parse_codeowners("*.rb\u00a0@a\n")
    assert owners(co, "x.rb") == {}
    assert owners(co, "x.rb\u00a0@a") == {DEFAULT_SECTION: []}
    assert [e.kind for e in co.errors] == ["missing_entry_owner"]
    co = parse_codeowners("*.rb @a\x0c*.py @b\n")
    assert owners(co, "x.rb") == {DEFAULT_SECTION: ["@a", "@b"]}
    assert owners(co, "x.py") == {}
    assert [(e.line, e.kind) for e in co.errors] == [(1, "malformed_entry_owner")]
    co = parse_codeowners("* @a\r*.rb @b\n\u00a0\n*.md @c\u2003\n")
    assert owners(co, "x.rb") == {DEFAULT_SECTION: ["@a", "@b"]}
    assert owners(co, "x.md") == {DEFAULT_SECTION: ["@c"]}
    assert [(e.line, e.kind) for e in co.errors] == [(1, "malformed_entry_owner")]


def test_rule_records_source_line_and_pattern():
    co = parse_codeowners("\n# x\n/docs/ @all-docs\n")
    (rule,) = co.owners_for("docs/a.md")
    assert (rule.line, rule.pattern, rule.exclusion) == (3, "/docs/", False)


def test_many_files_against_many_rules_stays_cheap():
    text = "\n".join(f"/dir{i}/ @owner{i}" for i in range(300))
    co = parse_codeowners(text)
    got = co.owners_for_files(f"dir{i}/f.py" for i in range(300))
    assert len(got[DEFAULT_SECTION].owners) == 300


@pytest.mark.skipif(not SAMPLE.exists(), reason="shared GitLab sample not present")
def test_shared_sample_file():
    co = parse_codeowners(SAMPLE.read_text())
    assert co.errors == ()
    assert co.sections == [DEFAULT_SECTION, "Documentation", "Database"]
    assert owners(co, "config/x.yml") == {DEFAULT_SECTION: ["@config-owner"], "Database": ["@@maintainer"]}


def test_the_same_pattern_written_again_replaces_its_exclusion():
    # GitLab's parser stores `parsed[section][normalized_pattern] = Entry.new(...)`: a later entry with the same
    # pattern replaces the exclusion like any repeated pattern (the documentation's example, where an excluded
    # file stays excluded, re-includes it with another pattern). The bot used to keep the exclusion.
    co = parse_codeowners("* @all\n!*.rb\n*.rb @ruby\n")
    assert owners(co, "a.rb") == {DEFAULT_SECTION: ["@ruby"]}
    assert co.errors == ()
    co = parse_codeowners("[Ruby]\n!*.rb\n*.rb @ruby\n[Other]\n*.rb @other\n")
    assert set(co.owners_for_files(["a.rb"])) == {"Ruby", "Other"}


def test_a_bare_exclamation_mark_excludes_its_whole_section():
    # GitLab normalises the empty pattern left after `!` to `/**/**/*`
    co = parse_codeowners("* @all\n[Docs]\n*.md @docs\n!\n[Ruby]\n*.rb @ruby\n")
    assert owners(co, "a.md") == {DEFAULT_SECTION: ["@all"]}
    assert owners(co, "lib/a.rb") == {DEFAULT_SECTION: ["@all"], "Ruby": ["@ruby"]}
    assert [(e.line, e.kind) for e in co.errors] == [(4, "missing_pattern")]
    assert owners(parse_codeowners("* @all\n! @x\n"), "a") == {}


def test_an_exclusion_wins_over_other_patterns_written_after_it():
    co = parse_codeowners("* @all\n!*.rb\n/a.rb @ruby\n[Ruby]\n*.rb @ruby\n!/config/**/*.rb\n/config/x.rb @cfg\n")
    assert owners(co, "a.rb") == {"Ruby": ["@ruby"]}
    assert owners(co, "config/x.rb") == {}


def test_the_rules_of_a_change_are_matched_once_and_kept_for_the_next_questions(monkeypatch):
    co = parse_codeowners("[Docs]\ndocs/ @alice\n*.md @bob\n")
    first = co.rules_for_files(["docs/a.txt", "README.md", "docs/a.txt"])
    monkeypatch.setattr(co, "_match", lambda paths: pytest.fail("matched again"))
    assert co.rules_for_files(["docs/a.txt", "README.md"]) == first
    assert [s.owners for s in co.owners_for_files(["docs/a.txt", "README.md"]).values()] == \
        [tuple(o for rule in first for o in rule.owners)]
