"""`reviewbot install` against the GitLab simulator over real HTTP (python-gitlab runs in a worker thread
while the event loop serves the simulator)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from bot.cli import main
from bot.cli.install import InstallError, hook_url
from bot.gitlab.simulator import SimState

ROOT_TOKEN = "root-token-for-install"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No config file, no stray settings from the machine running the tests."""
    monkeypatch.chdir(tmp_path)
    for var in ("REVIEWBOT_CONFIG", "GITLAB_WEBHOOK_SECRET", "DATABASE_URL", "PORT", "GITLAB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture
async def gitlab_sim(simulator, env):
    """The simulator with one project; GITLAB_URL points at it and GITLAB_TOKEN is root's (a Maintainer+)."""
    state, url = simulator
    state.add_project("acme/widgets")
    state.add_token(state.root, ROOT_TOKEN)
    env.setenv("GITLAB_URL", url)
    env.setenv("GITLAB_TOKEN", ROOT_TOKEN)
    return state


async def install(*argv: str) -> int:
    return await asyncio.to_thread(main, ["install", *argv])


async def test_creates_the_hook_and_prints_its_secret(gitlab_sim: SimState, capsys):
    code = await install("--project", "acme/widgets", "--url", "https://bot.example.com/")
    out = capsys.readouterr().out
    [hook] = gitlab_sim.project("acme/widgets").hooks
    assert code == 0
    assert hook.url == "https://bot.example.com/webhook"
    assert (hook.merge_requests_events, hook.note_events, hook.emoji_events) == (True, True, True)
    assert (hook.push_events, hook.confidential_note_events, hook.enable_ssl_verification) == (False, False, True)
    assert hook.token and len(hook.token) >= 40
    assert f"export GITLAB_WEBHOOK_SECRET='{hook.token}'" in out
    assert "Created webhook" in out and 'project = "acme/widgets"' in out


async def test_the_same_url_updates_the_hook_instead_of_adding_one(gitlab_sim: SimState, capsys):
    project = gitlab_sim.project("acme/widgets")
    assert await install("--project", str(project.id), "--url", "https://bot.example.com") == 0
    first = project.hooks[0].token
    project.hooks[0].note_events = False  # someone changed it by hand
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com/webhook",
                         "--secret", "given-secret-0123456789") == 0
    out = capsys.readouterr().out
    [hook] = project.hooks
    assert hook.token == "given-secret-0123456789" != first
    assert hook.note_events is True
    assert "Updated webhook" in out and "given-secret-0123456789" not in out
    assert gitlab_sim.calls("PUT", "/hooks/")


async def test_a_wrong_token_says_so(gitlab_sim: SimState, env, capsys):
    env.setenv("GITLAB_TOKEN", "not-a-token")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 1
    err = capsys.readouterr().err
    assert "rejected the token (401" in err and "api scope" in err
    assert not gitlab_sim.project("acme/widgets").hooks


async def test_an_unknown_project_says_so(gitlab_sim: SimState, capsys):
    assert await install("--project", "acme/nope", "--url", "https://bot.example.com") == 1
    assert "project acme/nope not found" in capsys.readouterr().err


async def test_a_developer_token_is_told_to_get_a_maintainer(gitlab_sim: SimState, env, capsys):
    env.setenv("DEV_TOKEN", gitlab_sim.token)  # the bot user, a Developer of the project
    assert await install("--project", "acme/widgets", "--url", "https://b.example.com", "--token-env", "DEV_TOKEN") == 1
    assert "needs the Maintainer role" in capsys.readouterr().err


async def test_an_unreachable_gitlab_says_so(env, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env.setenv("GITLAB_TOKEN", "t")
    code = await install("--project", "1", "--url", "https://b.example.com", "--gitlab-url", f"http://127.0.0.1:{port}")
    assert code == 1
    assert f"cannot reach GitLab at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_a_missing_token_names_the_variable(env, capsys):
    assert main(["install", "--project", "1", "--url", "https://b.example.com"]) == 2
    assert "GITLAB_TOKEN is not set" in capsys.readouterr().err


def test_the_url_must_be_http():
    with pytest.raises(InstallError, match="must start with https://"):
        hook_url("bot.example.com")
