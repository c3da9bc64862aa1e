"""`reviewbot evaluate` end to end on tiny histories: JSON lines, the table, a git checkout, bad input."""
import gzip
import io
import json
import os
import re
import subprocess
import sys

import pytest

from bot.cli import main

RECORDS = [
    {"id": str(i), "time": 1_600_000_000 + i * 3600, "author": a, "reviewers": [r], "files": [f]}
    for i, (a, r, f) in enumerate(
        [("ann", "bob", "src/a.c"), ("cid", "bob", "src/b.c"), ("ann", "dan", "doc/x.md"),
         ("bob", "cid", "src/a.c"), ("ann", "bob", "src/a.c"), ("dan", "bob", "src/b.c")] * 3
    )
]


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    return path


def test_json_lines_per_file_and_method(history, capsys):
    assert main(["evaluate", str(history), "--method", "default,graph,frequency,author,revfinder,random",
                 "--json", "--jobs", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in rows] == ["default", "graph", "frequency", "author", "revfinder", "random"]
    for r in rows:
        assert r["file"] == "tiny.jsonl" and r["records"] == r["evaluated"] == 18
        assert 0 <= r["top1"] <= r["top3"] <= r["top5"] <= r["top10"] <= 1
        assert {"mrr", "seconds", "gini_suggested", "gini_actual"} <= set(r)
    assert rows[1]["top1"] > rows[-1]["top1"]  # the graph beats chance on a history this regular


def test_table_by_default(history, capsys):
    assert main(["evaluate", str(history), "--method", "graph", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "tiny.jsonl" in out and "graph" in out


def test_a_file_name_like_rich_markup_is_printed_as_written(tmp_path, history, capsys):
    named = tmp_path / "run[bold]2.jsonl"
    named.write_text(history.read_text())
    assert main(["evaluate", str(named), "--method", "graph", "--jobs", "1"]) == 0
    assert "run[bold]2.jsonl" in capsys.readouterr().out


def test_unknown_method_and_missing_file(history, capsys):
    for argv, said in (([str(history), "--method", "magic"], "unknown method 'magic'"),
                       ([str(history), "--method", ","], "--method names no method")):
        with pytest.raises(SystemExit) as exited:
            main(["evaluate", *argv])
        assert exited.value.code == 2 and said in capsys.readouterr().err  # a usage error, as argparse's
    with pytest.raises(SystemExit, match="no such file"):
        main(["evaluate", "/nonexistent.jsonl"])


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_no_history_given_is_a_usage_error(command, capsys):
    """It exited 1, the code of a failure, where argparse exits 2 for a command line it refuses."""
    with pytest.raises(SystemExit) as exited:
        main([command])
    assert exited.value.code == 2
    assert f"reviewbot {command}: give at least one history file, --git REPO or --project ID" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_unreadable_history_is_named_not_a_traceback(tmp_path, history, capsys, command):
    """A bad record, a damaged .gz, bytes that are not UTF-8, a folder that is no git checkout: exit 2 with
    the file (and line) to fix."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(history.read_text() + "not json\n")
    packed = gzip.compress(history.read_bytes())
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    (tmp_path / "latin1.jsonl").write_bytes(b'{"id": "\xe9"}\n')
    (tmp_path / "odd.jsonl").write_text('[1, 2]\n')
    (tmp_path / "far.jsonl").write_text('{"id": "x", "time": 1e400, "author": "a", "files": []}\n')
    (tmp_path / "anon.jsonl").write_text('{"id": "x", "time": 5, "author": null, "files": []}\n')
    cases = [([str(bad)], f"{bad}:19: Expecting value"),
             ([str(tmp_path / "odd.jsonl")], "odd.jsonl:1: a record must be a JSON object, got list"),
             ([str(tmp_path / "far.jsonl")], "far.jsonl:1: record x: 'time' must be unix seconds, got inf"),
             ([str(tmp_path / "anon.jsonl")], "anon.jsonl:1: record x: 'author' must be a name, got None"),
             ([str(tmp_path / "cut.jsonl.gz")], "cut.jsonl.gz: cannot read line"),
             ([str(tmp_path / "latin1.jsonl")], "latin1.jsonl: cannot read line 1"),
             (["--git", str(tmp_path)], "is not a git repository")]
    for args, message in cases:
        assert main([command, *args, "--jobs", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"reviewbot {command}: ") and message in err and "Traceback" not in err


def _git(repo, *args, env=None):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def test_git_checkout(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for i, (who, reviewer) in enumerate([("Ann", "Bob"), ("Cid", "Bob"), ("Ann", "Bob")]):
        (repo / "a.c").write_text(str(i))
        _git(repo, "add", "a.c")
        when = {**os.environ, "GIT_AUTHOR_DATE": f"@{1700000000 + 60 * i} +0000",
                "GIT_COMMITTER_DATE": f"@{1700000000 + 60 * i} +0000"}  # a minute apart: each sees the last
        _git(repo, "-c", f"user.name={who}", "-c", f"user.email={who.lower()}@x.org", "commit", "-q", "-m",
             f"change {i}\n\nReviewed-by: {reviewer} <{reviewer.lower()}@x.org>", env=when)
    assert main(["evaluate", "--git", str(repo), "--method", "graph", "--json", "--jobs", "1"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["records"] == 3 and row["top1"] == pytest.approx(2 / 3, abs=1e-3)
    assert row["file"] == "repo"
    assert main(["evaluate", "--git", str(repo / ".git"), "--method", "graph", "--json", "--jobs", "1"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["file"] == "repo"  # named for the checkout, not ".git"


def test_a_checkout_is_read_once_for_all_methods(tmp_path, capsys, monkeypatch):
    """Each replay read the git log again: 8 reads of a 50k-commit repository (about 30 s each) for
    `--method all`. It is read once and the replays take the changes from a file."""
    import bot.cli.evaluate as evaluate
    import bot.git_history as git_history

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.c").write_text("x")
    _git(repo, "add", "a.c")
    _git(repo, "-c", "user.name=Ann", "-c", "user.email=ann@x.org", "commit", "-q", "-m",
         "change\n\nReviewed-by: Bob <bob@x.org>")
    reads, jobs_seen = [], []
    real_read, real_jobs = git_history.read_git_changes, evaluate.run_jobs
    monkeypatch.setattr(git_history, "read_git_changes", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    monkeypatch.setattr(evaluate, "run_jobs", lambda fn, jobs, *a, **k: jobs_seen.extend(jobs) or
                        real_jobs(fn, jobs, *a, **k))
    assert main(["evaluate", "--git", str(repo), "--method", "graph,frequency,author", "--json", "--jobs", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in rows] == ["graph", "frequency", "author"] and {r["file"] for r in rows} == {"repo"}
    assert len(reads) == 1 and len(jobs_seen) == 3 and not any(is_git for _, is_git, *_ in jobs_seen)


def _reviewed_repo(repo, commits=3):
    repo.mkdir()
    _git(repo, "init", "-q")
    for i in range(commits):
        (repo / "a.c").write_text(str(i))
        _git(repo, "add", "a.c")
        _git(repo, "-c", "user.name=Ann", "-c", "user.email=ann@x.org", "commit", "-q", "-m",
             f"change {i}\n\nReviewed-by: Bob <bob@x.org>")


def test_a_shallow_clone_is_said_to_cover_only_its_commits(tmp_path, capsys):
    """A CI checkout (`git clone --depth N`) measured N commits without a word: the figures read as the
    project's whole history."""
    _reviewed_repo(tmp_path / "full")
    _git(tmp_path, "clone", "-q", "--depth", "2", f"file://{tmp_path / 'full'}", "shallow")
    assert main(["evaluate", "--git", str(tmp_path / "shallow"), "--method", "frequency", "--json",
                 "--jobs", "1"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["records"] == 1  # the clone's oldest commit has no known diff: left out
    assert "is a shallow clone: only its last change is replayed (the oldest commit it holds lacks its " \
           "parent, so what it changed is not known); `git fetch --unshallow`" in out.err


def test_a_folder_inside_a_checkout_is_refused_naming_the_checkout(tmp_path, capsys):
    """`--git repo/src` read the whole repository's history (git looks up from the folder) under `src`'s name."""
    _reviewed_repo(tmp_path / "repo")
    (tmp_path / "repo" / "src").mkdir()
    assert main(["evaluate", "--git", str(tmp_path / "repo" / "src"), "--method", "frequency", "--jobs", "1"]) == 2
    assert f"is a folder inside the checkout {(tmp_path / 'repo').resolve()}" in capsys.readouterr().err


def test_a_checkout_missing_objects_says_how_to_get_them(tmp_path, capsys):
    """A partial clone away from its remote (or a damaged copy) failed with git's bare "unable to read"."""
    _reviewed_repo(tmp_path / "repo", commits=2)
    blob = subprocess.run(["git", "-C", str(tmp_path / "repo"), "rev-parse", "HEAD~1:a.c"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "repo" / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    assert main(["evaluate", "--git", str(tmp_path / "repo"), "--method", "frequency", "--jobs", "1"]) == 2
    assert "lacks objects git needs to diff" in capsys.readouterr().err


def test_a_partial_clone_is_told_a_fetch_that_brings_its_objects(tmp_path, capsys):
    """`git fetch --refetch`, the fix once named, applies the clone's own `--filter=blob:none` again and leaves
    every blob out: the fix named must be one that, run as said, lets the checkout be read away from its remote."""
    _reviewed_repo(tmp_path / "origin", commits=2)
    _git(tmp_path / "origin", "config", "uploadpack.allowFilter", "true")
    _git(tmp_path, "clone", "-q", "--no-checkout", "--filter=blob:none", f"file://{tmp_path / 'origin'}", "partial")
    (tmp_path / "origin").rename(tmp_path / "away")  # the remote out of reach: git cannot fetch a blob lazily
    assert main(["evaluate", "--git", str(tmp_path / "partial"), "--method", "frequency", "--jobs", "1"]) == 2
    [fix] = re.findall(r"`(git -C [^`]+)`", capsys.readouterr().err)
    (tmp_path / "away").rename(tmp_path / "origin")
    subprocess.run(fix.split(), check=True, capture_output=True)
    (tmp_path / "origin").rename(tmp_path / "away")
    assert main(["evaluate", "--git", str(tmp_path / "partial"), "--method", "frequency", "--jobs", "1"]) == 0


def test_a_history_out_of_time_order_is_replayed_in_time_order(tmp_path, history, capsys):
    """An export or a concatenation may be unsorted: the figures are those of the history in time order (a
    replay in file order would rank changes knowing later ones)."""
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(json.dumps(r) for r in reversed(RECORDS)) + "\n")
    assert main(["evaluate", str(history), str(shuffled), "--method", "default,frequency", "--json",
                 "--jobs", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    figures = {(r["file"], r["method"]): (r["top1"], r["mrr"]) for r in rows}
    for method in ("default", "frequency"):
        assert figures["tiny.jsonl", method] == figures["shuffled.jsonl", method]


def test_histories_sharing_a_file_name_are_told_apart(tmp_path, history, capsys):
    for team in ("teamA", "teamB"):
        (tmp_path / team).mkdir()
        (tmp_path / team / "h.jsonl").write_text(history.read_text())
    a, b = str(tmp_path / "teamA" / "h.jsonl"), str(tmp_path / "teamB" / "h.jsonl")
    assert main(["simulate", a, b, "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("learning lifts Top-1") == 2 and "teamA" in out and "teamB" in out
    assert main(["evaluate", a, b, "--method", "frequency", "--json", "--jobs", "1"]) == 0
    assert [json.loads(line)["file"] for line in capsys.readouterr().out.splitlines()] == [a, b]


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_a_directory_stands_for_the_histories_in_it(tmp_path, history, capsys, command):
    """As the histories are shipped (`../shared/data/bench/`): each .jsonl and .jsonl.gz file, in name order; not
    its other files or subdirectories."""
    folder = tmp_path / "bench"
    (folder / "deeper").mkdir(parents=True)
    with gzip.open(folder / "b.jsonl.gz", "wt") as f:
        f.write(history.read_text())
    for name in ("a.jsonl", "deeper/c.jsonl", "notes.json"):
        (folder / name).write_text(history.read_text())
    extra = ["--method", "frequency"] if command == "evaluate" else []
    assert main([command, str(folder), "--json", "--jobs", "1", *extra]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in rows] == (["a.jsonl", "b.jsonl.gz"] if command == "evaluate" else
                                         ["a.jsonl", "a.jsonl", "b.jsonl.gz", "b.jsonl.gz"])


def test_the_table_shows_how_many_records_had_a_reviewer_to_find(tmp_path, capsys):
    path = tmp_path / "some-unreviewed.jsonl"
    path.write_text("\n".join(json.dumps(dict(r, reviewers=[] if i % 3 == 0 else r["reviewers"]))
                              for i, r in enumerate(RECORDS)) + "\n")
    assert main(["evaluate", str(path), "--method", "frequency", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    [row] = [line.split("│") for line in out.splitlines() if "some-unreviewed" in line]
    assert "evaluated" in out and [cell.strip() for cell in row[3:5]] == ["18", "12"]


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_a_history_without_any_reviewer_is_said_and_exits_1(tmp_path, history, capsys, command):
    """A git history without review trailers scored 0.0 everywhere and exited 0: a row of zeros read as a
    result."""
    bare = tmp_path / "no-reviews.jsonl"
    bare.write_text("\n".join(json.dumps(dict(r, reviewers=[])) for r in RECORDS) + "\n")
    extra = ["--method", "frequency"] if command == "evaluate" else []
    assert main([command, str(history), str(bare), *extra, "--json", "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "no-reviews.jsonl: no change names a reviewer, nothing to score" in err and str(history.name) not in err


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
def test_a_project_history_stored_by_the_bot_is_replayed(sqlite_url, tmp_path, monkeypatch, capsys, command):
    """A team that installed the bot measures on the history it imported, by id or by path, without exporting
    anything by hand; the same figures as from a file of the same changes."""
    from bot.storage import Storage
    from graph.model import change_from_record
    from tests.storage_fixtures import run_in_thread

    async def store() -> None:
        storage = await Storage.open(sqlite_url)
        try:
            await storage.projects.seen(42, "Acme/Widgets")
            await storage.history.upsert(42, [change_from_record(r) for r in RECORDS])
        finally:
            await storage.close()

    run_in_thread(store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    extra = ["--method", "frequency"] if command == "evaluate" else []
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    assert main([command, str(path), "--project", "acme/widgets", "--project", "42", *extra, "--json",
                 "--jobs", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_file = {}
    for r in rows:
        by_file.setdefault(r.pop("file"), []).append({k: v for k, v in r.items() if k != "seconds"})
    assert sorted(by_file) == ["Acme/Widgets", "tiny.jsonl"]  # one project named twice is replayed once
    assert len({json.dumps(v, sort_keys=True) for v in by_file.values()}) == 1
    with pytest.raises(SystemExit) as exited:
        main([command, "--project", "other/app", *extra, "--jobs", "1"])
    said = capsys.readouterr().err
    assert exited.value.code == 1
    assert "holds no history of project other/app: import it with `reviewbot backfill --project other/app`" in said


def test_project_lookups_that_cannot_be_answered_say_why(sqlite_url, tmp_path, monkeypatch, capsys):
    """A mistyped SQLite path made an empty database (then asked for a migration); a path two stored projects
    had picked one of them silently."""
    from bot.storage import Storage
    from tests.storage_fixtures import run_in_thread

    async def store() -> None:
        storage = await Storage.open(sqlite_url)
        try:
            await storage.projects.seen(7, "Grp/App")
            await storage.projects.seen(9, "grp/app")
        finally:
            await storage.close()

    run_in_thread(store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REVIEWBOT_CONFIG", raising=False)
    for url, ref, said in ((sqlite_url, "grp/app", "projects 7, 9 were each stored under the path grp/app"),
                           (f"sqlite:///{tmp_path}/typo.sqlite3", "7", "no such SQLite database file")):
        monkeypatch.setenv("DATABASE_URL", url)
        with pytest.raises(SystemExit) as exited:
            main(["evaluate", "--project", ref, "--jobs", "1"])
        assert exited.value.code == 1 and said in capsys.readouterr().err
    assert not (tmp_path / "typo.sqlite3").exists()


def test_method_all_runs_every_method_and_help_names_the_default(history, capsys):
    """`--method all` was refused as an unknown method, and the README said all methods run by default."""
    from bot.cli.evaluate import ALL_METHODS

    assert main(["evaluate", str(history), "--method", "all", "--json", "--jobs", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["method"] for r in rows] == ALL_METHODS.split(",") and len(rows) == 8
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert exited.value.code == 0 and "default: default,revfinder,frequency,author" in helped
    assert "or `all` for every one" in helped and "Top-k accuracy" in helped and "first 1, 3, 5 and 10" in helped


def test_the_table_has_a_legend_and_a_plain_line_per_history(history, capsys):
    """`top1 top3 top5 top10 mrr gini sugg/act` came with no word on what they mean."""
    assert main(["evaluate", str(history), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "mrr: 1 / the rank of the first real reviewer" in out and "gini sugg/act: how concentrated" in out
    assert "top1 / top3 / top5 / top10: % of the evaluated changes" in out
    [line] = [line for line in out.splitlines() if line.startswith("tiny.jsonl: ")]
    assert re.fullmatch(r"tiny\.jsonl: the bot's first name was a real reviewer on \d+% of changes \(one of its "
                        r"first three on \d+%\); best simple rule \d+% \((revfinder|frequency|author)\)", line), line


def test_progress_is_plain_lines_on_stderr_when_it_is_no_terminal(tmp_path, capsys):
    """A bar is drawn on a terminal only: in a log or a CI job a long replay said nothing until its table.
    Plain lines go to stderr, so `--json` on stdout stays JSON alone."""
    from bot.cli.replay import TenthLines

    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(dict(r, id=f"{k}-{r['id']}", time=r["time"] + k * 86400)) + "\n"
                            for k in range(30) for r in RECORDS))
    assert main(["evaluate", str(path), "--method", "frequency", "--json", "--jobs", "1"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["records"] for line in out.splitlines()] == [540]
    lines = err.splitlines()
    assert lines and lines[-1].startswith("evaluating: 100% (540 of 540 changes replayed, ")
    shares = [int(re.match(r"evaluating: (\d+)% \(\d+ of 540 changes replayed, \d+ s\)$", line).group(1))
              for line in lines]
    assert shares == sorted(set(shares)) and "\r" not in err and "\x1b" not in err
    written = io.StringIO()
    tenths = TenthLines("simulating", 1000, written, start=0.0)
    for done in range(0, 1001, 50):
        tenths.update(done, now=1.0)
    assert [line.split(" (")[0] for line in written.getvalue().splitlines()] == [
        f"simulating: {10 * t}%" for t in range(1, 11)]


@pytest.mark.parametrize("command", ["evaluate", "simulate"])
@pytest.mark.parametrize("json_out", [False, True])
def test_a_history_with_nothing_to_score_prints_the_message_alone(tmp_path, capsys, command, json_out):
    """An empty file, or one whose records have no `reviewers` field, printed a table (or JSON objects) of
    zeros before the message: it is the message alone now."""
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "no-field.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.items() if k != "reviewers"}) + "\n" for r in RECORDS))
    extra = ["--method", "frequency"] if command == "evaluate" else []
    for name, said in (("empty.jsonl", "holds no change"), ("no-field.jsonl", "no change names a reviewer")):
        assert main([command, str(tmp_path / name), *extra, *(["--json"] if json_out else []), "--jobs", "1"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and f"reviewbot {command}: {name}: {said}, nothing to score" in err


def test_a_pretty_printed_file_and_a_directory_are_named_as_such(tmp_path, history, capsys):
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(RECORDS[0], indent=2) + "\n")
    assert main(["evaluate", str(pretty), "--jobs", "1"]) == 2
    assert "pretty.json:1: " in (err := capsys.readouterr().err) and "expected one JSON object per line" in err
    exits, folder = {}, tmp_path / "no-histories"
    folder.mkdir()
    (folder / "notes.json").write_text("{}\n")
    for name, path in (("missing", tmp_path / "nowhere.jsonl"), ("directory", folder)):
        run = subprocess.run([sys.executable, "-m", "bot", "evaluate", str(path)], capture_output=True, text=True)
        exits[name] = run.returncode
        assert run.stdout == "" and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert exits["directory"] == exits["missing"] == 1
    assert f"{folder}: a directory without a .jsonl or .jsonl.gz file" in run.stderr and f"--git {folder}" in run.stderr
