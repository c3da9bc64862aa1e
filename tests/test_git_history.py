"""bot.git_history on tiny real git repositories built in tmp_path."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bot.git_history import GitHistoryError, is_bot_identity, read_git_changes
from graph.model import Change

ANN, BOB, CY, DEE, EVE, FAY = "Ann <ann@example.org>", "Bob <bob@example.org>", "Cy <cy@example.org>", \
    "Dee <dee@example.org>", "Eve <eve@example.org>", "Fay <fay@example.org>"
MAILMAP = "Ann <ann@example.org> <ann@old.org>\nCy <cy@example.org> Cy Old <CY@OLD.ORG>\n"


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch, tmp_path):
    """No user or system git configuration, and no repository found above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


def git(repo: Path, *args: str, who: str = ANN, when: int = 0, committer: str | None = None) -> str:
    name, email = who[:-1].split(" <")
    c_name, c_email = (committer or who)[:-1].split(" <")
    env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": c_name,
           "GIT_COMMITTER_EMAIL": c_email, "GIT_AUTHOR_DATE": f"@{when} +0000",
           "GIT_COMMITTER_DATE": f"@{when} +0000"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str], **who) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
        git(repo, "add", path)
    git(repo, "commit", "-q", "--allow-empty", "-m", message, **who)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> tuple[Path, dict[str, str]]:
    """Trailer commits, a rename, a GitLab MR merge, a plain merge and a bot commit; shas by name."""
    r = tmp_path / "proj"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / ".mailmap").write_text(MAILMAP)
    sha = {"c1": commit(r, "Add x\n\nBody.\n\nReviewed-by: Bob <BOB@example.org>\nAcked-by: Cy <cy@example.org>\n"
                           "reviewed-by: Ann <ann@old.org>\nTested-by: Dee <dee@example.org>\n"
                           "Reviewed-by: Bob <bob@example.org>",
                       {"a/x.c": "x\n", "docs/readme.md": "r\n"}, who="Ann <ann@old.org>", when=1000)}
    git(r, "mv", "a/x.c", "a/y.c")
    sha["c2"] = commit(r, "Rename x\n\nAPPROVED-BY: Eve <eve@example.org>\nacked-by: Cy Old <cy@old.org>\n"
                          "Reviewed-by: Just A Name", {}, who=BOB, when=2000)
    git(r, "checkout", "-q", "-b", "feature")
    commit(r, "f1\n\nReviewed-by: Cy <cy@example.org>", {"b/new.c": "1\n"}, who=DEE, when=3000)
    commit(r, "f2", {"b/new.c": "1\n2\n", "a/y.c": "y\n"}, who=DEE, when=3100)
    commit(r, "f3", {"b/other.c": "o\n"}, who=EVE, when=3200)
    git(r, "checkout", "-q", "main")
    sha["c3"] = commit(r, "Docs", {"docs/readme.md": "r2\n"}, who=CY, when=3300)
    git(r, "merge", "-q", "--no-ff", "feature", "-m",
        "Merge branch 'feature' into 'main'\n\nAdd the new module\n\nSee merge request grp/proj!12\n\n"
        "Approved-by: Bob <bob@example.org>\nReviewed-by: Dee <dee@example.org>\nMerged-by: Fay <fay@example.org>",
        who=FAY, committer="GitLab <noreply@gitlab.example>", when=4000)
    sha["mr"] = git(r, "rev-parse", "HEAD")
    git(r, "checkout", "-q", "-b", "side", sha["c3"])
    sha["s1"] = commit(r, "Side fix\n\nReviewed-by: Bob <bob@example.org>", {"c/s.c": "s\n"}, who=ANN, when=5000)
    git(r, "checkout", "-q", "main")
    git(r, "merge", "-q", "--no-ff", "side", "-m", "Merge branch 'side'", who=FAY, when=6000)
    sha["bot"] = commit(r, "Update deps", {"deps.lock": "1\n"}, who="renovate-bot <bot@renovate.example>",
                        when=7000)
    return r, sha


def test_reads_commits_mrs_renames_mailmap_and_trailers(repo):
    r, sha = repo
    got = list(read_git_changes(r))
    assert got == [
        Change(sha["c1"], 1000, "ann@example.org", ("bob@example.org",), ("a/x.c", "docs/readme.md"), "Add x",
               ("cy@example.org",), "ann@example.org"),
        Change(sha["c2"], 2000, "bob@example.org", ("eve@example.org", "Just A Name"), ("a/y.c",), "Rename x",
               ("cy@example.org",), "bob@example.org", renames=(("a/x.c", "a/y.c"),)),
        Change(sha["c3"], 3300, "cy@example.org", (), ("docs/readme.md",), "Docs", (), "cy@example.org"),
        Change(sha["mr"], 4000, "dee@example.org", ("bob@example.org", "cy@example.org"),
               ("a/y.c", "b/new.c", "b/other.c"), "Add the new module", (), "fay@example.org"),
        Change(sha["s1"], 5000, "ann@example.org", ("bob@example.org",), ("c/s.c",), "Side fix", (),
               "ann@example.org"),
        Change(sha["bot"], 7000, "bot@renovate.example", (), ("deps.lock",), "Update deps", (),
               "bot@renovate.example", bot_author=True),
    ]
    assert dict(got[3].extra) == {"kind": "mr", "n_files": 3, "insertions": 4, "deletions": 1, "mr": "grp/proj!12",
                                  "commits": 3, "mergers": ("fay@example.org",)}
    assert dict(got[1].extra) == {"kind": "commit", "n_files": 1, "insertions": 0, "deletions": 0}


def test_since_and_max_files(repo):
    r, sha = repo
    got = list(read_git_changes(r, since=3300, max_files=1))
    assert [c.id for c in got] == [sha["c3"], sha["mr"], sha["s1"], sha["bot"]]
    assert got[1].files == ("a/y.c",) and got[1].extra["n_files"] == 3


def test_history_without_merge_requests_skips_plain_merges(tmp_path):
    r = tmp_path / "k"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    first = commit(r, "one", {"a": "1"}, when=10)
    git(r, "checkout", "-q", "-b", "topic")
    topic = commit(r, "two\n\nAcked-by: Bob <bob@example.org>", {"b": "1"}, who=EVE, when=20)
    git(r, "checkout", "-q", "main")
    third = commit(r, "three", {"c": "1"}, when=30)
    git(r, "merge", "-q", "--no-ff", "topic", "-m", "Merge branch 'topic'", when=40)
    got = list(read_git_changes(r))
    assert [(c.id, c.ackers) for c in got] == [(first, ()), (topic, ("bob@example.org",)), (third, ())]


def test_stopping_early_ends_git(repo):
    r, _ = repo
    changes = read_git_changes(r)
    assert next(changes).time == 1000
    changes.close()


def test_empty_repository_yields_nothing(tmp_path):
    git(tmp_path, "init", "-q")
    assert list(read_git_changes(tmp_path)) == []


def test_not_a_repository_names_the_fix(tmp_path):
    with pytest.raises(GitHistoryError, match="not a git repository.*git clone"):
        read_git_changes(tmp_path)
    with pytest.raises(GitHistoryError, match="no such directory"):
        read_git_changes(tmp_path / "missing")


def test_missing_git_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GitHistoryError, match="git is not installed"):
        read_git_changes(tmp_path)


def test_naive_since_is_refused(repo):
    from datetime import datetime

    with pytest.raises(GitHistoryError, match="time zone"):
        read_git_changes(repo[0], since=datetime(2020, 1, 1))


@pytest.mark.parametrize("name, email, bot", [
    ("renovate-bot", "bot@renovate.example", True), ("dependabot[bot]", "49699333+dependabot[bot]@x", True),
    ("GitLab Bot", "gitlab-bot@gitlab.com", True), ("Abbott", "abbott@example.org", False),
    ("Bottle Smith", "bottle@example.org", False),
])
def test_is_bot_identity(name, email, bot):
    assert is_bot_identity(name, email) is bot


def test_a_shallow_clone_leaves_out_the_commits_at_its_cut(tmp_path):
    """The oldest commit of a `git clone --depth N` lacks its parent, so git diffs it against nothing: it read
    as adding every file of the tree (up to `max_files`), crediting its reviewers with the whole project."""
    full = tmp_path / "full"
    full.mkdir()
    git(full, "init", "-q", "-b", "main")
    commit(full, "one\n\nReviewed-by: Bob <bob@example.org>", {"a/x.c": "1", "b/y.c": "1", "c/z.c": "1"}, when=10)
    commit(full, "two\n\nReviewed-by: Cy <cy@example.org>", {"a/x.c": "2"}, when=20)
    last = commit(full, "three\n\nReviewed-by: Eve <eve@example.org>", {"b/y.c": "2"}, when=30)
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{full}", "shallow")
    got = list(read_git_changes(tmp_path / "shallow"))
    assert [(c.id, c.files) for c in got] == [(last, ("b/y.c",))]


def test_control_characters_in_messages_and_names_and_odd_paths_are_read_as_written(tmp_path):
    """git keeps every character but NUL in a subject, a name or a path. A \\x1f in a subject or a name (the
    header's separator then) stopped the whole read with a ValueError, and a \\x1e in a merge's message cut it
    short of its `See merge request` line (the MR's reference was lost)."""
    r = tmp_path / "odd"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    paths = ["caf\u00e9.py", "cafe\u0301.py", "\u4e2d\u6587/\u6587\u4ef6.py", "\U0001F600 x.py", "tab\there.py",
             "new\nline.py", 'q"uo\'te\\.py', "-dash.py", "\x1estart.py", "rlo\u202eyp.exe"]
    for path in paths:
        (r / path).parent.mkdir(exist_ok=True)
        (r / path).write_text("x\n")
    git(r, "add", "--", *paths)
    first = commit(r, "Add\x1f odd \x1e files\n\nReviewed-by: B\x1fob <bob@example.org>", {},
                   who="A\x1fnn <ann@example.org>", when=100)
    git(r, "checkout", "-q", "-b", "feature")
    git(r, "mv", "tab\there.py", "tab\there 2.py")
    git(r, "mv", "\x1estart.py", "\x1estart2.py")
    commit(r, "Rename", {}, who=CY, when=200)
    git(r, "checkout", "-q", "main")
    git(r, "merge", "-q", "--no-ff", "feature", "-m", "Merge branch 'feature'\n\nTitle \x1e here\n\n"
        "See merge request grp/odd!3\n\nApproved-by: Bob <bob@example.org>", who=FAY, when=300)
    got = list(read_git_changes(r))
    assert [(c.id, c.author, c.reviewers, c.title, c.files) for c in got[:1]] == [
        (first, "ann@example.org", ("bob@example.org",), "Add\x1f odd \x1e files", tuple(sorted(paths)))]
    assert [(c.title, c.extra["mr"], c.files, c.renames) for c in got[1:]] == [
        ("Title here", "grp/odd!3", ("\x1estart2.py", "tab\there 2.py"),
         (("\x1estart.py", "\x1estart2.py"), ("tab\there.py", "tab\there 2.py")))]


def test_a_configured_log_output_encoding_does_not_garble_names_and_titles(tmp_path):
    """git re-encodes messages and names to `i18n.logOutputEncoding`; set to Latin-1 (as for a Latin-1 terminal),
    "Café" read as "Caf\\ufffd" and the reviewer "Zoë" as "Zo\\ufffd". The reader asks for UTF-8, which it decodes."""
    r = tmp_path / "enc"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "i18n.logOutputEncoding", "ISO-8859-1")
    commit(r, "Café crème\n\nReviewed-by: Zoë Ñ", {"a.txt": "a\n"}, who="Zoë <>", when=10)
    assert [(c.author, c.reviewers, c.title) for c in read_git_changes(r)] == [("Zoë", ("Zoë Ñ",), "Café crème")]


def test_a_checkout_in_a_folder_whose_name_is_not_utf8_is_read(tmp_path):
    """A folder named in Latin-1 bytes (an old archive unpacked): git's answer naming the checkout's top folder
    was decoded as UTF-8, and the read stopped with a UnicodeDecodeError."""
    r = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    sha = commit(r, "One\n\nReviewed-by: Bob <bob@example.org>", {"a.txt": "a\n"}, when=10)
    assert [(c.id, c.reviewers) for c in read_git_changes(r)] == [(sha, ("bob@example.org",))]
