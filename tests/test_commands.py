"""`/reviewers` command parsing, table-tested; the note texts of GitLab's documented payloads when present."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from bot.commands import (HELP_TEXT, MAX_ASSIGN, MAX_EXCLUDE, Command, addresses_bot, help_text, parse_commands,
                          parse_duration)
from tests.shared_samples import GITLAB_WEBHOOKS

WEBHOOKS = GITLAB_WEBHOOKS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/reviewers", Command("suggest", "/reviewers")),
        ("/reviewers suggest", Command("suggest", "/reviewers suggest")),
        ("/REVIEWERS", Command("suggest", "/REVIEWERS")),
        ("   /reviewers   ", Command("suggest", "/reviewers")),
        ("/reviewers assign", Command("assign", "/reviewers assign")),
        ("/reviewers assign 3", Command("assign", "/reviewers assign 3", count=3)),
        ("/Reviewers ASSIGN 10", Command("assign", "/Reviewers ASSIGN 10", count=10)),
        ("/reviewers why @alice", Command("why", "/reviewers why @alice", users=("alice",))),
        ("/reviewers why Bob.Smith", Command("why", "/reviewers why Bob.Smith", users=("Bob.Smith",))),
        ("/reviewers reroll", Command("reroll", "/reviewers reroll")),
        ("/reviewers exclude @a", Command("exclude", "/reviewers exclude @a", users=("a",))),
        ("/reviewers exclude @a, @b @a", Command("exclude", "/reviewers exclude @a, @b @a", users=("a", "b"))),
        # as people write them: a list without spaces, a question
        ("/reviewers exclude @a,@b,c", Command("exclude", "/reviewers exclude @a,@b,c", users=("a", "b", "c"))),
        ("/reviewers why @bob?", Command("why", "/reviewers why @bob?", users=("bob",))),
        ("/reviewers why @bob.smith!", Command("why", "/reviewers why @bob.smith!", users=("bob.smith",))),
        # invisible characters (pasted from chat or a web page) are not read: the command looks whole, so it is
        ("\u200b/reviewers why @bob", Command("why", "/reviewers why @bob", users=("bob",))),
        ("/reviewers\u200b why @bob\u2060", Command("why", "/reviewers why @bob", users=("bob",))),
        ("\ufeff/reviewers assign\u200c 2\u200d", Command("assign", "/reviewers assign 2", count=2)),
        ("/reviewers optout", Command("optout", "/reviewers optout")),
        ("/reviewers optout forever", Command("optout", "/reviewers optout forever")),
        ("/reviewers optout 2w", Command("optout", "/reviewers optout 2w", duration=timedelta(days=14))),
        ("/reviewers optout 3d", Command("optout", "/reviewers optout 3d", duration=timedelta(days=3))),
        ("/reviewers optout 1m", Command("optout", "/reviewers optout 1m", duration=timedelta(days=30))),
        ("/reviewers optout 12h", Command("optout", "/reviewers optout 12h", duration=timedelta(hours=12))),
        ("/reviewers optout 2 weeks", Command("optout", "/reviewers optout 2 weeks", duration=timedelta(days=14))),
        ("/reviewers optin", Command("optin", "/reviewers optin")),
        ("/reviewers help", Command("help", "/reviewers help")),
        ("/reviewers frobnicate", Command("unknown", "/reviewers frobnicate")),
        ("/reviewersplease", Command("unknown", "/reviewersplease")),
        ("/reviewers-suggest", Command("unknown", "/reviewers-suggest")),
        (">>> quoted\n/reviewers", Command("suggest", "/reviewers")),
        ("```inline``` code\n/reviewers", Command("suggest", "/reviewers")),
        # an HTML comment hides what it spans, not what follows a `<!--` inside code
        ("Use `<!--` to hide text.\n/reviewers", Command("suggest", "/reviewers")),
        ("```html\n<!-- x\n```\n/reviewers", Command("suggest", "/reviewers")),
        ("<!-- a --> /reviewers", Command("suggest", "/reviewers")),
        ("see <!-- a\nb --> below\n/reviewers", Command("suggest", "/reviewers")),
    ],
)
def test_single_command(text, expected):
    assert parse_commands(text) == [expected]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("/reviewers assign 0", f"`/reviewers assign 0`: N must be between 1 and {MAX_ASSIGN}"),
        ("/reviewers assign 11", f"`/reviewers assign 11`: N must be between 1 and {MAX_ASSIGN}"),
        ("/reviewers assign two", "`/reviewers assign two`: write `/reviewers assign N` with N a number from 1 to 10"),
        ("/reviewers assign 2 3", "`/reviewers assign 2 3`: write `/reviewers assign N` with N a number from 1 to 10"),
        ("/reviewers why", "`/reviewers why`: `why` needs one username, e.g. `/reviewers why @alice`"),
        ("/reviewers why @a @b", "`/reviewers why @a @b`: `why` needs one username, e.g. `/reviewers why @alice`"),
        ("/reviewers why @!", "`/reviewers why @!`: `@!` is not a username; write `@username`"),
        ("/reviewers exclude", "`/reviewers exclude`: `exclude` needs at least one username, "
                               "e.g. `/reviewers exclude @alice`"),
        ("/reviewers optout 0d", "`/reviewers optout 0d`: the duration must be at least 1 hour"),
        ("/reviewers optout 400d", "`/reviewers optout 400d`: the duration must be at most 366 days; "
                                   "write nothing to opt out until `optin`"),
        ("/reviewers optout soon", "`/reviewers optout soon`: cannot read `soon` as a duration; write a number and "
                                   "a unit: `12h`, `3d`, `2w` or `1m` (a month), or nothing to opt out until `optin`"),
        ("/reviewers reroll please", "`/reviewers reroll please`: `reroll` takes no arguments"),
        ("/reviewers help me", "`/reviewers help me`: `help` takes no arguments"),
        # these raised in the worker (an int overflow, int("²")) and the event was retried to the dead letters
        ("/reviewers optout 999999999999999999999w",
         "`/reviewers optout 999999999999999999999w`: the duration must be at most 366 days; write nothing to opt "
         "out until `optin`"),
        ("/reviewers assign ²", "`/reviewers assign ²`: write `/reviewers assign N` with N a number from 1 to 10"),
        ("/reviewers assign ٣", "`/reviewers assign ٣`: write `/reviewers assign N` with N a number from 1 to 10"),
        ("/reviewers optout ٣d", "`/reviewers optout ٣d`: cannot read `٣d` as a duration; write a number and "
                                 "a unit: `12h`, `3d`, `2w` or `1m` (a month), or nothing to opt out until `optin`"),
    ],
)
def test_invalid_arguments_say_what_and_how_to_fix(text, error):
    (command,) = parse_commands(text)
    assert (command.kind, command.error) == ("invalid", error)


def test_error_quotes_backticks_safely():
    (command,) = parse_commands("/reviewers assign `x`")
    assert command.error.startswith("`` /reviewers assign `x` ``: ")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "LGTM, thanks!",
        "/assign @alice",
        "/reviewer @alice",
        "/assign_reviewer @alice",
        "please run /reviewers",
        "`/reviewers assign 2`",
        "> /reviewers assign 2",
        "  >/reviewers",
        "```\n/reviewers\n```",
        "~~~python\n/reviewers\n~~~",
        "````\n```\n/reviewers\n```\n/reviewers\n````",
        ">>>\n/reviewers\n>>>",
        "```\n/reviewers\n",
        "thanks @reviewer-bot",
        "<!-- /reviewers assign 2 -->",
        "<!--\n/reviewers assign 2\n-->",
        "<!-- unclosed\n/reviewers",
    ],
)
def test_not_a_command(text):
    assert parse_commands(text, bot_username="reviewer-bot") == []


@pytest.mark.parametrize("text, kinds", [
    ("> @bob wrote:\n/reviewers exclude @bob", []),  # all one quote: CommonMark's lazy continuation
    ("> @bob wrote:\n> text\n/reviewers assign 2\n  /reviewers help", []),
    ("> @bob wrote:\n\n/reviewers exclude @bob", ["exclude"]),  # a blank line ends the quote
    (">\n/reviewers help", ["help"]),  # an empty quote line has no paragraph to continue
    ("> ```\n/reviewers help", ["help"]),  # nor has a code block
    ("> # Title\n/reviewers help", ["help"]),  # nor a heading
    ("> quote\n```\n/reviewers help\n```\n/reviewers why @a", ["why"]),  # a fence ends it
    ("- > @bob wrote:\n/reviewers exclude @bob", []),  # a quote in a list item continues the same way
    ("1. > @bob wrote:\n/reviewers exclude @bob", []),
])
def test_a_quotes_lazy_continuation_is_quoted(text, kinds):
    """GitLab renders the lines after a `>` paragraph line, up to a blank line, inside the quote (and its
    quick actions are read from the rendered paragraphs): a command there is quoted text, not a command."""
    assert [c.kind for c in parse_commands(text)] == kinds


def test_several_commands_in_order_around_code_and_quotes():
    text = "\n".join([
        "Thanks! Let's try:",
        "/reviewers exclude @carol",
        "```",
        "/reviewers optout",
        "```",
        "> /reviewers optin",
        "",
        "/label ~backend",
        "  /reviewers assign 2",
        "~~~",
        "/reviewers help",
        "~~~",
        "/reviewers why @dave",
    ])
    assert [(c.kind, c.users, c.count) for c in parse_commands(text)] == [
        ("exclude", ("carol",), None),
        ("assign", (), 2),
        ("why", ("dave",), None),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@reviewer-bot reviewers", ("suggest", (), None)),
        ("@Reviewer-Bot Reviewers assign 2", ("assign", (), 2)),
        ("  @reviewer-bot reviewers why @ann", ("why", ("ann",), None)),
        ("@reviewer-bot suggest reviewers please", ("invalid", (), None)),
        ("@reviewer-bot reviewers frobnicate", ("unknown", (), None)),
        ("@reviewer-bot reviewers-suggest", ("unknown", (), None)),
        ("@reviewer-bot help", ("help", (), None)),
        ("@reviewer-bot Assign 2", ("assign", (), 2)),
        ("@reviewer-bot, why @ann?", ("why", ("ann",), None)),
        ("@reviewer-bot reroll!", ("reroll", (), None)),
        ("@reviewer-bot optout 2w", ("optout", (), None)),
        ("@reviewer-bot why did you pick ann", ("invalid", (), None)),
        ("@reviewer-bot reviewers assign 0", ("invalid", (), None)),
        ("@reviewer-bot /reviewers assign 2", ("assign", (), 2)),
        ("@reviewer-bot: reviewers why @ann", ("why", ("ann",), None)),
        ("@reviewer-bot, /reviewers", ("suggest", (), None)),
    ],
)
def test_mention_form(text, expected):
    (command,) = parse_commands(text, bot_username="reviewer-bot")
    assert (command.kind, command.users, command.count) == expected
    assert command.text == text.strip()


@pytest.mark.parametrize("text", [
    "@reviewer-bot thanks!",
    "@reviewer-bot can you look again?",
    "@Reviewer-Bot: you picked well this time",
    "thanks @reviewer-bot",
    "@reviewer-bot",
    "@reviewer-bot 👍",
    "@reviewer-bot reviewersplease",
    "@reviewer-bot helpful as ever",
    "@reviewer-bot why's ann first?",
    "@reviewer-bot /assign @ann",
    "@ann @reviewer-bot help",
])
def test_conversation_addressed_to_the_bot_is_no_command(text):
    """A mention starts a command only when the next word is one of the bot's (`reviewers`, or a command's own
    word); "@bot thanks!" is conversation, left alone (it used to get a 😕 and the whole help)."""
    assert parse_commands(text, bot_username="reviewer-bot") == []


@pytest.mark.parametrize("text, talking", [
    ("@reviewer-bot I'm away this week", True),
    ("Away this week, thanks @Reviewer-Bot!", True),
    ("> @reviewer-bot I'm away\n\nLGTM", False),  # quoting someone who talked to it
    ("LGTM\n```\n@reviewer-bot help\n```", False),
    ("LGTM <!-- @reviewer-bot -->", False),
    ("LGTM, @reviewer-bot2", False),
    ("LGTM. `@reviewer-bot why @ann` says why ann was picked", False),  # a code span: shown as code, no mention
    ("LGTM ``@reviewer-bot`` and thanks @reviewer-bot", True),
    ("LGTM, logs went to ops@reviewer-bot", False),  # an address, not a mention (GitLab wants no word before @)
])
def test_a_comment_that_mentions_the_bot_where_gitlab_shows_it_talks_to_it(text, talking):
    assert addresses_bot(text, "reviewer-bot") is talking
    assert addresses_bot(text, None) is False


def test_mention_form_needs_bot_username_and_exact_name():
    assert parse_commands("@reviewer-bot reviewers") == []
    assert parse_commands("@reviewer-bot2 reviewers", bot_username="reviewer-bot") == []
    assert parse_commands("@reviewer-bot reviewers", bot_username="@reviewer-bot")[0].kind == "suggest"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12h", timedelta(hours=12)),
        ("1 hour", timedelta(hours=1)),
        ("3d", timedelta(days=3)),
        ("3 days", timedelta(days=3)),
        ("2w", timedelta(days=14)),
        ("2W", timedelta(days=14)),
        ("1m", timedelta(days=30)),
        ("2 months", timedelta(days=60)),
        ("0h", timedelta(0)),
        ("5y", None),
        ("m", None),
        ("1.5d", None),
        ("-1d", None),
    ],
)
def test_parse_duration(value, expected):
    assert parse_duration(value) == expected


def test_a_group_path_is_read_as_a_name():
    """`@acme/web` (a subgroup) is one name, which the runner answers as a group, not "not a username"."""
    assert parse_commands("/reviewers why @acme/web")[0].users == ("acme/web",)
    assert parse_commands("/reviewers exclude @acme/web, @bob")[0].users == ("acme/web", "bob")
    assert parse_commands("/reviewers why @acme/")[0].kind == "invalid"


def test_user_property():
    assert parse_commands("/reviewers why @ann")[0].user == "ann"
    assert parse_commands("/reviewers")[0].user is None


@pytest.mark.parametrize("text", [HELP_TEXT, help_text("reviewer-bot")])
def test_help_never_starts_a_line_with_a_slash(text):
    assert all(not line.lstrip().startswith("/") for line in text.splitlines())
    assert parse_commands(text, bot_username="reviewer-bot") == []


def test_help_names_every_command():
    for verb in ("assign", "why", "reroll", "exclude", "optout", "optin", "help"):
        assert f"`/reviewers {verb}" in HELP_TEXT
    assert "`@reviewer-bot reviewers assign 2`" in help_text("reviewer-bot")
    assert help_text() == HELP_TEXT


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("note_merge_request.gitlab-docs.json", []),
        ("derived/note_merge_request_mention_bot.json", ["invalid"]),
        ("derived/note_merge_request_unknown_slash_command.json", []),
    ],
)
def test_documented_note_payloads(name, kinds):
    path = WEBHOOKS / name
    if not path.exists():
        pytest.skip("shared GitLab payloads not present")
    note = json.loads(path.read_text())["object_attributes"]["note"]
    assert [c.kind for c in parse_commands(note, bot_username="reviewer-bot")] == kinds


def test_a_megabyte_of_html_comments_parses():
    """One pass per line: a line of 140,000 `<!---->` used to recurse once per comment (a RecursionError: the
    event failed on every retry) and rescan the line each time."""
    text = "<!---->" * 140_000 + "`a` " * 20_000 + "\n/reviewers assign 2"
    assert [(c.kind, c.count) for c in parse_commands(text)] == [("assign", 2)]


@pytest.mark.parametrize("text, kinds", [
    ("<!-- ` -->/reviewers reroll <!-- ` -->", ["reroll"]),  # backticks in comments open no code span
    ("`<!--`/reviewers", []),  # a `<!--` in a code span is text: the line starts with the span
    ("<!-- hidden --><!-- too -->/reviewers reroll", ["reroll"]),
    ("x \\<!--\n/reviewers assign 3\n-->", ["assign"]),  # an escaped `<` starts no comment
    ("<!-- open\n/reviewers\n-->", []),  # inside a comment over several lines
    ("Use `\n/reviewers assign 3\n` to ask.", []),  # a code span runs across the lines of a paragraph
    ("a `\nb` <!-- `\n/reviewers assign 3\n` -->", []),  # ... and so does an inline comment
    ("Careful, x <!-- y\n/reviewers assign 3", ["assign"]),  # an inline `<!--` never closed is text
    ("see ```<!--`\n/reviewers assign 3", ["assign"]),
    ("`a\n\n/reviewers", ["suggest"]),  # a blank line ends the paragraph: no code span across it
])
def test_html_comments_and_code_spans_are_read_left_to_right(text, kinds):
    assert [c.kind for c in parse_commands(text)] == kinds


def test_exclude_names_at_most_ten_people():
    names = " ".join(f"@u{i}" for i in range(MAX_EXCLUDE + 1))
    [command] = parse_commands(f"/reviewers exclude {names}")
    assert command.kind == "invalid" and f"at most {MAX_EXCLUDE} usernames" in command.error
    assert parse_commands(f"/reviewers exclude {names.rpartition(' ')[0]}")[0].kind == "exclude"


def test_a_name_longer_than_gitlab_allows_is_no_username():
    """Names are echoed in replies: 20 names of 50,000 characters made a reply GitLab refuses (over 1,000,000
    characters), and the event failed on every retry."""
    [command] = parse_commands("/reviewers why @" + "u" * 50_000)
    assert command.kind == "invalid" and len(command.error) < 300
    assert parse_commands("/reviewers why @" + "u" * 255)[0].users == ("u" * 255,)


@pytest.mark.parametrize("text, kinds", [
    # a fence opened on a list item's line: its code is indented to the item's text
    ("1. Comment:\n2. ```\n   /reviewers assign 2\n   ```", []),
    ("- ```\n  /reviewers assign 2\n  ```\n/reviewers help", ["help"]),
    ("* ~~~\n  /reviewers exclude @bob\n  ~~~", []),
    ("- 1. ```\n     /reviewers reroll\n     ```", []),
    # a line less indented than the item's text ends the item, and its code block with it
    ("- ```\n/reviewers help", ["help"]),
    # a fence indented 4 columns past its block's margin is code, not the closing fence
    ("```\n    ```\n/reviewers assign 2\n```", []),
    ("- ```\n      ```\n  /reviewers assign 2\n  ```", []),
])
def test_a_fence_opened_in_a_list_item_is_code_to_its_end(text, kinds):
    """CommonMark opens a fenced code block on a list item's line (`- ```` `): what follows, indented to the
    item's text, is code up to the closing fence, which GitLab shows as code, not as a command."""
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text, kinds", [
    ("<details>\n<summary>How to</summary>\n\n/reviewers assign 2\n\n</details>", []),
    ("<details><summary>Log</summary>\n/reviewers reroll\n</details>\n/reviewers help", ["help"]),
    ("<DETAILS>\n\n<details>\n\n/reviewers assign 2\n\n</details>\n/reviewers reroll\n</DETAILS>\n/reviewers",
     ["suggest"]),
    ("<details open>\n<summary>Shown</summary>\n\n/reviewers help\n\n</details>", ["help"]),
    ("<details open>\n\n<details>\n\n/reviewers reroll\n\n</details>\n\n/reviewers help\n</details>", ["help"]),
    ("`<details>`\n/reviewers help", ["help"]),  # code, opening nothing
    ("```\n<details>\n```\n/reviewers help", ["help"]),
])
def test_a_collapsed_details_section_hides_its_commands(text, kinds):
    """GitLab shows a `<details>` section collapsed (unless `open`): a command in it would run unseen, as in an
    HTML comment. Its own quick actions skip such a block too."""
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text, expected", [
    # bidirectional marks and isolates: RTL keyboards and chat clients paste them along, unseen
    ("\u200f/reviewers why @bob", ("why", ("bob",))),
    ("/reviewers why @bob\u200e", ("why", ("bob",))),
    ("/reviewers why \u2068@bob\u2069", ("why", ("bob",))),
    ("\u061c/reviewers exclude @bob", ("exclude", ("bob",))),
    ("/reviewers assign\u00ad 2", ("assign", ())),  # a soft hyphen shows nothing mid-line
])
def test_invisible_formatting_characters_are_not_read(text, expected):
    [command] = parse_commands(text)
    assert (command.kind, command.users) == expected


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"])
def test_only_markdowns_line_endings_start_a_line(separator):
    """Markdown ends lines at `\\n`, `\\r\\n` and `\\r` only: after any other separator (Python's `splitlines`
    splits at eight more) a command is in the middle of GitLab's line, not at its start."""
    assert parse_commands(f"Never write{separator}/reviewers assign 2") == []
    assert [c.kind for c in parse_commands("x\r/reviewers help\r\n/reviewers\n")] == ["help", "suggest"]


@pytest.mark.parametrize("text, users", [
    # in a code span, as the bot's comment shows names, and as people write them not to notify them
    ("/reviewers why `@bob`", ("bob",)),
    ("/reviewers exclude `@bob`, `@cy`", ("bob", "cy")),
    ("/reviewers exclude `@bob`,`cy`.", ("bob", "cy")),
    # usernames ignore case: the same person twice is one
    ("/reviewers why @bob @Bob", ("bob",)),
    ("/reviewers exclude @Bob.Smith @bob.smith @cy", ("Bob.Smith", "cy")),
])
def test_usernames_as_people_write_them(text, users):
    [command] = parse_commands(text)
    assert command.users == users, command.error


@pytest.mark.parametrize("arg", ["`@bob", "``@bob`", "`@bob` `", "`@b`ob`"])
def test_a_username_in_an_unmatched_code_span_is_none(arg):
    [command] = parse_commands(f"/reviewers why {arg}")
    assert command.kind == "invalid"


@pytest.mark.parametrize("text, kinds", [
    ("<pre>\n/reviewers assign 2\n</pre>\n/reviewers help", ["help"]),
    ("<pre><code>\n/reviewers assign 2\n</code></pre>", []),
    ("<code>\n/reviewers reroll\n</code>", []),
    ("<textarea>\n/reviewers reroll\n</textarea>", []),
    ("<script>\n/reviewers reroll\n</script>\n<style>\n/reviewers reroll\n</style>", []),  # sanitised away
    ("<pre>\n<details open>\n/reviewers reroll\n</details>\n</pre>", []),
    ("<PRE lang='md'>\n/reviewers reroll\n</PRE>\n\n/reviewers why @a", ["why"]),
    ("Run <code>make</code>, then:\n/reviewers help", ["help"]),  # a tag inside a line opens nothing
])
def test_html_code_blocks_hide_their_commands(text, kinds):
    """`<pre>` and `<code>` show their lines as code, `<textarea>` as a form's text, and GitLab removes
    `<script>` and `<style>`: a command in them is no command (and GitLab's own quick actions skip them)."""
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text, kinds", [
    ("<div><details>\n/reviewers reroll\n</details></div>\n/reviewers help", ["help"]),
    ("<div><pre>\n/reviewers reroll\n</pre></div>", []),
    ("<p><code>\n/reviewers reroll\n</code></p>", []),
    ("Log: <details>\n/reviewers reroll\n</details>\n\n/reviewers help", ["help"]),
    ("Run <code>make\n/reviewers reroll</code>", []),
    ("/reviewers help <details>\n/reviewers reroll\n</details>", ["invalid"]),  # its start shows: a command
    # tags that are text open nothing: in a code span, in an HTML comment, escaped
    ("Use `<details>` for logs\n/reviewers help", ["help"]),
    ("Wrap it <!-- <pre> --> so\n/reviewers help", ["help"]),
    ("\\<details> is the tag\n/reviewers help", ["help"]),
    ("<details open>\nWrite `</details>` last\n/reviewers help\n</details>", ["help"]),
    # after an HTML comment's end, a tag is HTML again, on the comment's first line or its last
    ("<!-- logs below --> <details>\n/reviewers reroll\n</details>\n\n/reviewers help", ["help"]),
    ("<!-- logs\nbelow --> <details>\n/reviewers reroll\n</details>\n\n/reviewers help", ["help"]),
    ("<!-- <details> -->\n/reviewers help", ["help"]),
])
def test_a_section_opened_inside_a_line_hides_the_lines_after_it(text, kinds):
    """`<div><details>`, `<p><code>`: a section opened after other text or tags hides (or shows as code) the
    lines after it as one opened at the line's start does; they ran, unseen or shown as code."""
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text, kinds", [
    ("<div>\n/reviewers help\n</div>", ["help"]),
    ('<div align="center">\n\n/reviewers help\n\n</div>', ["help"]),
    ("<div>\n<details>\n/reviewers reroll\n</details>\n</div>", []),
])
def test_a_command_in_a_div_block_is_shown_and_runs(text, kinds):
    """GitLab shows a `<div>` block's lines as text, so a command there runs, as in an `open` `<details>`.
    GitLab's own quick actions skip every line between one holding only an opening tag and one holding only a
    closing tag (`Gitlab::Regex::MARKDOWN_HTML_BLOCK_REGEX`), whether GitLab shows them or not; the bot goes by
    what GitLab shows (README, "How comments are read")."""
    assert [c.kind for c in parse_commands(text)] == kinds


@pytest.mark.parametrize("text, kinds", [
    ("<details>\n" + "<details " * 110_000, []),  # unclosed tags on one line: each was read to the line's end
    ("<pre>\n" * 160_000, []),  # sections open on every line
    ("- ```\n  x\n" * 80_000, ["assign"]),  # the last item ends at the command, less indented than its text
])
def test_a_megabyte_of_html_sections_or_list_fences_parses_in_one_pass(text, kinds):
    assert [c.kind for c in parse_commands(text + "\n/reviewers assign 2")] == kinds
    started = time.process_time()
    parse_commands(text)
    assert time.process_time() - started < 5


@pytest.mark.parametrize("text, kinds", [
    ("Command | Effect\n--- | ---\n/reviewers assign 2 | asks two", []),  # a row: a table's cells
    ("| Command |\n| --- |\n/reviewers reroll", []),  # a row needs no pipe
    ("/reviewers help | x\n:--- | ---:", []),  # the header row too
    ("Try these:\nCommand | Effect\n--- | ---\n/reviewers reroll | x", []),  # a paragraph's last line heads it
    ("a | b\n-|-\nx | y\n\n/reviewers help", ["help"]),  # a blank line ends the table
    ("a | b\n-|-\n> q\n\n/reviewers help", ["help"]),
    ("a | b\n-|-|-\n/reviewers help", ["help"]),  # not a table: 2 headers, 3 delimiters
    ("/reviewers help\n---", ["help"]),  # a heading (GitLab's quick actions run there too), no table
    ("a | b\n-|-\n```\n/reviewers reroll\n```\n/reviewers help", ["help"]),  # a fence ends the table
])
def test_a_command_in_a_table_is_a_cell(text, kinds):
    """GitLab shows a table's rows (those with no pipe too, up to a blank line) as cells, not lines."""
    assert [c.kind for c in parse_commands(text)] == kinds
