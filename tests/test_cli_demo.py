"""`reviewbot demo` end to end, as a newcomer runs it: a subprocess with no environment, config or database."""
from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bot.cli.demo import choose_change
from bot.comment import MARKER
from bot.gitlab.simulator import SimState, seed_project

ROOT = Path(__file__).resolve().parents[1]
MISSING = [m for m in ("bot.handlers", "bot.backfill") if importlib.util.find_spec(m) is None]
needs_bot = pytest.mark.skipif(bool(MISSING), reason=f"the demo runs the real bot: {', '.join(MISSING)} "
                                                     "not written yet")
TIMEOUT = 120  # generous for a loaded 2-core CI machine; the demo itself takes a few seconds


def clean_env() -> dict[str, str]:
    """Only what Python needs: the demo must not depend on GITLAB_*, DATABASE_URL or a config file."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="120")
    return env


def demo(*args: str, **kw) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bot", "demo", *args], cwd=kw.pop("cwd"), env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@needs_bot
def test_demo_prints_the_comment_the_bot_posted(tmp_path):
    proc = demo(cwd=tmp_path)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert re.search(r"\d+ merged merge requests backfilled", out)
    assert re.search(r"!\d+ \"Add rate limits to \w+\" opened by @\w+", out)
    comment = out.split("later:", 1)[1]
    assert re.search(r"^\|.*\|\s*$", comment, re.MULTILINE), "the suggestion table is printed"
    assert "@" in comment and MARKER not in out and "<!--" not in out
    assert without_ages(comment.strip()) == without_ages(readme_comment()), \
        "the README shows the comment `reviewbot demo` posts, word for word"
    assert not list(tmp_path.iterdir()), "the demo leaves no file behind"


def readme_comment() -> str:
    """The comment the README's *What a suggestion looks like* quotes, without its `> ` quote marks."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index("> **Suggested reviewers**")
    quoted = []
    for line in lines[start:]:
        if not line.startswith(">"):
            break
        quoted.append(line.removeprefix(">").removeprefix(" "))
    return "\n".join(quoted).strip()


def without_ages(text: str) -> str:
    """`text` with its ages ("8 days ago", "today") as one placeholder: the demo's history ends at the moment it
    starts, and an age a few seconds from a day's boundary is worded one day apart on the next run."""
    return re.sub(r"\b(?:\d+ \w+ ago|today)\b", "<age>", text)


def read_until(proc: subprocess.Popen[str], wanted: str, seen: list[str]) -> str:
    """Read lines until one contains `wanted`; the demo's output so far (and its stderr) if it never comes."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if wanted in line:
            return line
    proc.kill()
    pytest.fail(f"the demo never printed {wanted!r}:\n{''.join(seen)}\nstderr:\n{proc.communicate()[1]}")


@needs_bot
def test_demo_serve_keeps_running_until_interrupted(tmp_path):
    proc, seen = demo("--serve", cwd=tmp_path), []
    try:
        read_until(proc, "Still running", seen)
        healthz = read_until(proc, "/healthz", seen).split()[-1]
        with urllib.request.urlopen(healthz, timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_the_demo_change_is_by_a_non_owner_on_an_owned_directory():
    state = SimState(seed=7)
    seeded = seed_project(state, n_merged=120, n_open=0, seed=7)
    author, files, title = choose_change(state, seeded)
    home = files[0].rsplit("/", 1)[0]
    assert all(f.startswith(home + "/") for f in files) and len(files) == 3
    assert author.username not in seeded.owners[home] and author.state == "active" and not author.busy
    assert title.startswith("Add rate limits to ")
    assert choose_change(state, seeded) == (author, files, title)
