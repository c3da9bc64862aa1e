"""The bot's Markdown comments, asserted character for character on small inputs."""
from __future__ import annotations

import html
import re

import pytest
from bidi import get_display
from hypothesis import given, settings, strategies as st
from markdown_it import MarkdownIt

from bot.commands import parse_commands
from bot.comment import (
    COMMANDS_FOOTER,
    MARKER,
    MAX_COMMENT,
    WHY_ROWS,
    NO_ELIGIBLE,
    NO_HISTORY,
    code_span,
    has_marker,
    render_cannot_suggest,
    render_comment,
    render_why,
)
from graph.model import Contribution, Suggestion

ALICE = Suggestion("alice", 0.9, ("reviewed 14 changes under `src/`", "CODEOWNER of `src/`"),
                   (("history", 0.5), ("load", -0.7)))
BOB = Suggestion("bob", 0.5, ("approved 3 changes | mostly docs\nlast week", "asked by @carol"))


def test_full_comment():
    body = render_comment(
        [ALICE, BOB],
        loads={"alice": 2},
        names={"alice": "Alice Liddell"},
        mention=False,
        notes=["CODEOWNERS section `Backend` needs 1 approval from @alice, @bob"],
        marker=MARKER,
        assigned=["alice"],
        not_stuck=["bob"],
    )
    assert body == "\n".join([
        "<!-- reviewbot:suggestions v1 -->",
        "",
        "**Suggested reviewers**",
        "",
        "| # | Reviewer | Why | Open reviews |",
        "|--:|---|---|--:|",
        "| 1 | `@alice` (Alice Liddell) | reviewed 14 changes under `src/`; CODEOWNER of `src/` | 2 |",
        "| 2 | `@bob` | approved 3 changes \\| mostly docs last week; asked by `@carol` | ? |",
        "",
        "Review requested from `@alice`.",
        "GitLab did not keep `@bob` as reviewer.",
        "",
        "- CODEOWNERS section `Backend` needs 1 approval from `@alice`, `@bob`",
        "",
        COMMANDS_FOOTER,
    ])


def test_mentions_ping_only_the_people_in_the_table_and_status():
    body = render_comment([BOB], loads={"bob": 0}, mention=True, notes=["owners: @dave"], marker="",
                          assigned=["bob"], commands_footer=False)
    assert body == "\n".join([
        "**Suggested reviewers**",
        "",
        "| # | Reviewer | Why | Open reviews |",
        "|--:|---|---|--:|",
        "| 1 | @bob | approved 3 changes \\| mostly docs last week; asked by `@carol` | 0 |",
        "",
        "Review requested from @bob.",
        "",
        "- owners: `@dave`",
    ])


def test_no_suggestions():
    body = render_comment([], loads={}, notes=[], marker=MARKER, commands_footer=False)
    assert body == f"{MARKER}\n\nNo reviewer to suggest right now."


def test_an_empty_table_says_why_once():
    """The reason completes the title: "right now" stood twice in "No reviewer to suggest right now: nobody ...
    can review right now"."""
    body = render_comment([], loads={}, notes=["Skipped @bob: has set their GitLab status to Busy."], marker="",
                          commands_footer=False, why_empty=NO_ELIGIBLE)
    assert body.splitlines()[0] == f"No reviewer to suggest: {NO_ELIGIBLE}."
    assert body.count("right now") == 1


def test_suggestion_without_reasons():
    body = render_comment([Suggestion("eve", 0.1)], loads={}, marker="", commands_footer=False)
    assert body.splitlines()[-1] == "| 1 | `@eve` | — | ? |"


def test_a_comment_past_the_size_limit_leaves_out_the_longest_reasons_and_notes_and_says_so():
    """GitLab refuses a note over 1,000,000 characters (and the same comment again on every later event):
    the outsized reasons and notes go, the longest first (of equal ones the lowest), the others stay."""
    long = "reviewed " + ", ".join(code_span(f"src/{'deep/' * 30}f{i}.py") for i in range(800))
    people = [Suggestion(p, 1.0, (long if p in ("bob", "cy") else "reviewed `src/`",)) for p in ("ann", "bob", "cy")]
    notes = ["CODEOWNERS section `Docs` needs 1 approval: added code owner @dee.", "x" * 150_000]
    body = render_comment(people, loads={}, notes=notes, marker=MARKER)
    lines = body.splitlines()
    assert len(body) <= MAX_COMMENT and lines[:2] == [MARKER, ""] and lines[-1] == COMMANDS_FOOTER
    assert [line for line in lines if line.startswith("| ")][1:] == [
        "| 1 | `@ann` | reviewed `src/` | ? |", f"| 2 | `@bob` | {long} | ? |", "| 3 | `@cy` | — | ? |"]
    assert lines[-4:-1] == ["- CODEOWNERS section `Docs` needs 1 approval: added code owner `@dee`.",
                            "- Left out to keep this comment within GitLab's note size: the reasons of 1 row, 1 note.",
                            ""]


def test_a_comment_of_too_many_rows_keeps_the_first_ones():
    people = [Suggestion(f"user{i:04d}", 1.0, ("reviewed `src/`",)) for i in range(6000)]
    body = render_comment(people, loads={}, names={s.person: "N" * 200 for s in people}, marker=MARKER)
    rows = [line for line in body.splitlines() if line.startswith("| ")][1:]
    assert len(body) <= MAX_COMMENT and rows[0] == f"| 1 | `@user0000` ({'N' * 200}) | — | ? |"
    assert body.endswith(f"- Left out to keep this comment within GitLab's note size: the reasons of 6000 rows, "
                         f"the last {6000 - len(rows)} rows.\n\n{COMMANDS_FOOTER}")


def test_marker_first_and_found():
    body = render_comment([ALICE], loads={}, notes=[], marker=MARKER)
    assert body.splitlines()[0] == MARKER
    assert has_marker(body)
    assert has_marker(render_cannot_suggest(NO_HISTORY))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (f"{MARKER}\nhello", True),
        (f"\n  {MARKER}  \nhello", True),
        (f"hello\n{MARKER}", False),
        (f"> {MARKER}", False),
        ("", False),
        (None, False),
    ],
)
def test_has_marker(body, expected):
    assert has_marker(body) is expected


def test_no_line_ever_starts_with_a_slash():
    sneaky = Suggestion("x", 1.0, ("\n/close", "/merge"))
    body = render_comment([sneaky], loads={}, notes=["/approve\n/unassign me"], marker="/label ~x",
                          names={"x": "\n/close"})
    assert all(not line.lstrip().startswith("/") for line in body.splitlines())
    assert parse_commands(body) == []
    assert body.splitlines()[0] == "\\/label ~x"


def test_footer_commands_are_code_spans():
    assert "`/reviewers assign [N]`" in COMMANDS_FOOTER
    assert not COMMANDS_FOOTER.startswith("/")


def test_why_for_a_suggestion():
    text = render_why("alice", ALICE, {"history": 0.5, "load": -0.7}, rank=1)
    assert text == "\n".join([
        "**Why `@alice`?**",
        "`@alice` ranked 1.",
        "",
        "- reviewed 14 changes under `src/`",
        "- CODEOWNER of `src/`",
        "",
        "Ranked up most by history (+0.50). Held back most by load (-0.70).",
        "",
        "Their score, 0.900, only orders this merge request's candidates: the highest comes first. "
        "How each signal counted (the score with that signal set to the other candidates' average; "
        "+ raised it, - lowered it):",
        "",
        "| Signal | Effect |",
        "|---|--:|",
        "| load | -0.70 |",
        "| history | +0.50 |",
    ])


def test_why_uses_the_suggestions_own_contributions_by_default():
    text = render_why("alice", ALICE, ())
    assert "has score" not in text and "Their score, 0.900, only orders this merge request's candidates" in text
    assert text.endswith("| load | -0.70 |\n| history | +0.50 |")


def test_why_compares_the_person_with_the_other_candidates_in_plain_units():
    signals = [Contribution("time since they last touched these paths", 1.0, "today", "5 months ago"),
               Contribution("wrote code in these directories", -0.7, "0%", "20%")]
    signals += [Contribution(f"signal {i}", 0.01, "1", "1") for i in range(WHY_ROWS)]
    text = render_why("bob", Suggestion("bob", 2.0, (), tuple(signals)), rank=1)
    assert ("Ranked up most by time since they last touched these paths — today, the others 5 months ago (+1.00). "
            "Held back most by wrote code in these directories — 0%, the others 20% (-0.70).") in text
    assert "| Signal | `@bob` | Other candidates, typically | Effect |" in text
    assert "| time since they last touched these paths | today | 5 months ago | +1.00 |" in text
    assert text.endswith(f"{len(signals) - WHY_ROWS} weaker signals: +0.02 together.")
    assert text.count("| signal ") == WHY_ROWS - 2


def test_why_says_a_value_below_the_others_held_someone_back_as_a_comparison():
    """A count at 0 "holding back" a person reads as nonsense unless the sentence says it is their 0 against
    the others' 4.5 that the score compares."""
    signals = (Contribution("times turned down on this author's merge requests", -0.4, "0", "4.5"),
               Contribution("overall ownership score", 1.2, "0.81", "0.14"))
    text = render_why("bob", Suggestion("bob", 2.0, (), signals), rank=1)
    assert ("Ranked up most by overall ownership score — 0.81, the others 0.14 (+1.20). Held back most by "
            "times turned down on this author's merge requests — 0, the others 4.5 (-0.40).") in text


def test_why_says_long_values_outside_brackets_and_the_setback_apart():
    """The load spreading's values are phrases with commas of their own: inside "(A against the others' B: +x)"
    and chained with "and" to the next reason, the sentence could not be followed."""
    signals = (Contribution("load spreading: first places given against reviews done (hand-set rule)", 3.78,
                            "put first on hardly any merge requests lately, did about 3 reviews",
                            "put first on about 10 merge requests lately, did about 9 reviews"),
               Contribution("lift for other open merge requests they took (hand-set rule)", 1.1,
                            "reviewing 2 open merge requests", "reviewing no open merge requests"),
               Contribution("overall ownership score", -0.79, "0.16", "0.64"))
    text = render_why("dan", Suggestion("dan", 3.0, (), signals), rank=1)
    assert ("\nRanked up most by load spreading: first places given against reviews done — put first on hardly any "
            "merge requests lately, did about 3 reviews, the others put first on about 10 merge requests lately, "
            "did about 9 reviews (+3.78); and by lift for other open merge requests they took — reviewing 2 open "
            "merge requests, the others reviewing no open merge requests (+1.10). Held back most by overall "
            "ownership score — 0.16, the others 0.64 (-0.79).\n") in text


def test_why_does_not_dress_up_negligible_effects_as_reasons():
    """Ranked last, with effects of a few hundredths: no "ranked up most by" a +0.02."""
    tiny = (Contribution("reviews of these very files", -0.03, "0%", "3%"),
            Contribution("time on the project", 0.02, "3 years", "2 years"))
    text = render_why("zed", Suggestion("zed", -9.0, (), tiny), rank=33)
    assert "\nNo single signal moved their score by 0.05 or more either way.\n" in text
    assert "Ranked up" not in text and "held back" not in text.lower()
    mixed = render_why("zed", Suggestion("zed", -9.0, (), (*tiny, Contribution("size of the change", -0.5))), rank=33)
    assert "\nHeld back most by size of the change (-0.50).\n" in mixed


def test_one_weaker_signal_is_singular():
    signals = tuple(Contribution(f"signal {i}", 1.0 - i / 100) for i in range(WHY_ROWS + 1))
    text = render_why("bob", Suggestion("bob", 2.0, (), signals), rank=1)
    assert text.endswith("\n1 weaker signal: +0.92 together.")


def test_why_for_someone_dropped():
    text = render_why("zed", None, (), dropped="has set their GitLab status to Busy")
    assert text == "**Why `@zed`?**\nNot suggested: has set their GitLab status to Busy."


def test_why_for_someone_without_history():
    text = render_why("zed", None, [])
    assert text == "**Why `@zed`?**\nThey have no review history on the files this merge request touches."


def test_cannot_suggest():
    assert render_cannot_suggest(NO_HISTORY) == "\n".join([
        MARKER,
        "",
        "Cannot suggest reviewers: this merge request touches no file with review history yet. Choose reviewers "
        "yourself for now: the bot learns who knows these files from each merged merge request.",
        "",
        COMMANDS_FOOTER,
    ])
    assert render_cannot_suggest("no files?", marker="", commands_footer=False) == "Cannot suggest reviewers: no files?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@alice", "`@alice`"),
        ("a`b", "``a`b``"),
        ("`x`", "`` `x` ``"),
        ("", "``"),
    ],
)
def test_code_span(text, expected):
    assert code_span(text) == expected


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("ask @bob.", "- ask `@bob`."),
        ("mail bob@example.com", "- mail bob@example.com"),
        ("owners @@maintainer and @grp/sub", "- owners `@@maintainer` and `@grp/sub`"),
        ("already `@quiet`", "- already `@quiet`"),
        ("@a and @b", "- `@a` and `@b`"),
    ],
)
def test_notes_never_ping(note, expected):
    body = render_comment([], loads={}, notes=[note], marker="", commands_footer=False)
    assert body.splitlines()[-1] == expected


# GitLab's mention rule, applied as GitLab applies it: to each text node of the rendered Markdown, code excluded.
_LIVE = re.compile(r"(?<![A-Za-z0-9_])@[A-Za-z0-9_]")
_MD = MarkdownIt("commonmark").enable("table")


def _live_mentions(markdown: str) -> list[str]:
    return [tok.content for block in _MD.parse(markdown) for tok in block.children or []
            if tok.type == "text" and _LIVE.search(tok.content)]


@pytest.mark.parametrize("name", ["Eve `x @all", "@all@all", "a`b @all", "_@all_", "[x](@all)", "&#64;all",
                                  "é@all", "x\\`@all", "<b>@all</b>", "a.@all", "``x``@all", "@all``x``",
                                  "``x``@all``y``"])
def test_display_names_never_ping(name):
    body = render_comment([BOB], loads={"bob": 0}, names={"bob": name}, notes=[f"owners: {name}"], marker="",
                          commands_footer=False)
    assert _live_mentions(body) == []


def test_display_names_make_no_gitlab_references():
    """A live `#1`, `!2`, `$3` or `%"v1"` makes GitLab post "mentioned in" notes, as the bot's account, on
    what it points to (its cross-references run on every note the bot posts or edits); escaped, it is text."""
    name = 'Eve #1 !2 acme/secret#3 $4 %"v1.0"'
    body = render_comment([BOB], loads={"bob": 0}, names={"bob": name}, marker="", commands_footer=False)
    assert r'(Eve \#1 \!2 acme/secret\#3 \$4 \%"v1.0")' in body.splitlines()[-1]
    assert 'Eve #1 !2 acme/secret#3 $4 %"v1.0"' in html.unescape(_MD.render(body))  # rendered as written


def test_paths_with_backticks_stay_code_in_reasons():
    from graph.reasons import code_span as path_span

    reason = f"reviewed {path_span('a`b @all')} 3 times"
    body = render_comment([Suggestion("bob", 1.0, (reason,), ())], loads={}, marker="", commands_footer=False)
    assert _live_mentions(body) == [] and "``a`b @all``" in body


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="@`\\ a._-/é*[]~<>&#;!():h|", max_size=16))
def test_no_text_from_users_renders_a_mention(text):
    body = render_comment([BOB], loads={}, names={"bob": text}, notes=[text], marker="", commands_footer=False)
    assert _live_mentions(body) == []


def test_why_for_someone_ranked_then_filtered_says_the_rank_is_before_the_filters():
    from graph.model import Suggestion

    text = render_why("ben", Suggestion("ben", 0.9, (), ()), (), rank=1, dropped="has set their GitLab status to Busy")
    assert text.startswith("**Why `@ben`?**\n`@ben` would rank 1 (before the filters).\n"
                           "Not suggested: has set their GitLab status to Busy.")


_LINKABLE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://|(?<![A-Za-z0-9])www\.", re.IGNORECASE)


@pytest.mark.parametrize("name", ["Eve (https://evil.example/login)", "see www.evil.example/sso", "x smb://host/share",
                                  "WWW.EVIL.EXAMPLE", "a_https://evil.example", "https://evil.example/@all",
                                  "``x``https://evil.example"])
def test_display_names_make_no_links(name):
    """GitLab links every URL in a note's text (GFM's autolinks: `http://`, `https://`, `www.`; its own filter
    took any scheme): a display name set to "Sign in again: https://…" became a link in the bot's comment, with
    the bot's standing. In a code span a URL is text, as in GitLab's own pages."""
    body = render_comment([BOB], loads={"bob": 0}, names={"bob": name}, notes=[f"owners: {name}"], marker="",
                          commands_footer=False)
    texts = [tok.content for block in _MD.parse(body) for tok in block.children or [] if tok.type == "text"]
    assert [t for t in texts if _LINKABLE.search(t)] == [] and _live_mentions(body) == []
    if "`" not in name:  # (a code span of the name's own is shown as one)
        assert name in html.unescape(_MD.render(body).replace("<code>", "").replace("</code>", ""))  # as written


def _shown_as_written(line: str, words: str) -> bool:
    """Whether `words` of `line` show in the order they were written, by Unicode's bidi algorithm (UAX #9, as
    python-bidi implements it: an independent reading) on a left-to-right paragraph, as GitLab shows a note."""
    return words in get_display(line, base_dir="L")


def test_a_right_to_left_override_in_a_path_or_a_name_does_not_turn_the_words_after_it():
    """A path, a display name or a CODEOWNERS section may hold U+202E (right-to-left override) or another
    explicit embedding or isolate never closed: GitLab showed the rest of the table cell or the line after it
    backwards ("reviewed `x` 2 times" as "semit 2 `x` deweiver"). Each is closed where the text ends."""
    from graph.reasons import code_span as span

    for opener in "\u202e\u202b\u2067\u2067\u202e":
        path = f"src/{opener}gnp.exe"
        reason = f"reviewed {span(path)} 2 times; wrote {span(path + opener + path)} and 1 more"
        body = render_comment([Suggestion("eve", 0.9, (reason,))], loads={"eve": 1},
                              names={"eve": f"Eve {opener}evil"}, notes=[f"CODEOWNERS section {span(opener)} needs"])
        for line in body.splitlines():
            for words in (" 2 times", "; wrote", " and 1 more", ") |", " needs", " | 1 |"):
                if words in line:
                    assert _shown_as_written(line, words), (words, line)
        assert f"src/{opener}gnp.exe" in body  # the text itself is left as it is
    assert span("a\u2067b\u202ec") == "\u2068`a\u2067b\u202ec\u202c\u2069`\u2069"
    assert span("a\u202eb\u202cc") == "\u2068`a\u202eb\u202cc`\u2069" and span("src/a.py") == "`src/a.py`"


@pytest.mark.parametrize("text", ["docs/\u05e9\u05dc\u05d5\u05dd", "\u05d3\u05e0\u05d9 \u05db\u05d4\u05df",
                                  "\u0645\u0631\u064a\u0645 \u0661\u0662", "src/\u202egnp.exe", "x\u2067y"])
def test_right_to_left_words_in_a_path_or_a_name_leave_the_numbers_after_them_in_place(text):
    """A Hebrew or Arabic path or display name took the bot's number after it along: "reviewed `docs/שלום`
    2 times" showed as "reviewed `docs/2 `םולש times" (a number after right-to-left letters joins them), and
    so did the words after an override closed at its end. Such text is set apart as an isolate (FSI ... PDI),
    as HTML's <bdi> does; text without right-to-left letters or controls is left as it is."""
    from graph.reasons import code_span as span

    body = render_comment([Suggestion("eve", 0.9, (f"reviewed {span(text)} 2 times; wrote {span(text)} 3 times",))],
                          loads={"eve": 4}, names={"eve": text}, notes=[f"CODEOWNERS section {span(text)} 5 owners"])
    for words in (" 2 times; wrote", " 3 times |", " 5 owners", ") | reviewed"):
        line = next(line for line in body.splitlines() if words in line)
        assert _shown_as_written(line, words), (words, line, get_display(line, base_dir="L"))
    assert text in body
