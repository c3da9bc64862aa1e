"""`reviewbot install` against the GitLab simulator over real HTTP (python-gitlab runs in a worker thread
while the event loop serves the simulator)."""
from __future__ import annotations

import asyncio
import os
from datetime import timedelta

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
    project_id = gitlab_sim.project("acme/widgets").id  # by id: a path scope breaks when the project is renamed
    assert "Created webhook" in out and f"project = {project_id}  # acme/widgets" in out
    gitlab_url = os.environ["GITLAB_URL"]  # which GitLab, whose hook: named, the token never
    assert out.startswith(f"Created webhook {hook.id} on acme/widgets at {gitlab_url} -> "
                          "https://bot.example.com/webhook\n"), out
    assert "the default" not in out and ROOT_TOKEN not in out


async def test_gitlab_com_as_the_default_nobody_chose_is_said_so(env, capsys):
    """A newcomer who forgot GITLAB_URL sent a self-hosted GitLab's token to gitlab.com and read only that
    "GitLab at https://gitlab.com" refused it (gitlab.com is reached here through a proxy that is not there)."""
    env.delenv("GITLAB_URL", raising=False)
    for var in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        env.delenv(var, raising=False)
    env.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    env.setenv("https_proxy", "http://127.0.0.1:9")
    env.setenv("GITLAB_TOKEN", "self-hosted-token-0123")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 1
    err = capsys.readouterr().err
    assert "GitLab at https://gitlab.com (the default: set GITLAB_URL for a self-hosted GitLab)" in err, err
    assert "self-hosted-token-0123" not in err


async def test_the_same_url_updates_the_hook_instead_of_adding_one(gitlab_sim: SimState, capsys):
    project = gitlab_sim.project("acme/widgets")
    assert await install("--project", str(project.id), "--url", "https://bot.example.com") == 0
    first = project.hooks[0].token
    project.hooks[0].note_events = False  # someone changed it by hand
    project.hooks[0].confidential_note_events = True  # ... and opted in to internal notes: that stays
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com/webhook",
                         "--secret", "given-secret-0123456789") == 0
    out = capsys.readouterr().out
    [hook] = project.hooks
    assert hook.token == "given-secret-0123456789" != first
    assert hook.note_events is True and hook.confidential_note_events is True
    assert "Updated webhook" in out and "given-secret-0123456789" not in out
    assert gitlab_sim.calls("PUT", "/hooks/")


@pytest.mark.parametrize("status", ["disabled", "temporarily_disabled"])
async def test_a_hook_gitlab_disabled_is_named_with_how_to_enable_it(gitlab_sim: SimState, capsys, status):
    """GitLab disables a hook after failed deliveries (4 in a row for a while, 40 for good) and updating it does
    not enable it again: a re-run said "Updated webhook" while GitLab sent the bot nothing."""
    project = gitlab_sim.project("acme/widgets")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 0
    hook = project.hooks[0]
    hook.alert_status = status
    if status == "temporarily_disabled":
        hook.disabled_until = gitlab_sim.now() + timedelta(hours=3)
    capsys.readouterr()
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 0
    err = capsys.readouterr().err
    assert f"webhook {hook.id}" in err and "Test" in err and "Push events" in err
    assert ("until" in err) == (status == "temporarily_disabled")
    assert hook.alert_status == status  # GitLab's PUT leaves it so


async def test_a_wrong_token_says_so(gitlab_sim: SimState, env, capsys):
    env.setenv("GITLAB_TOKEN", "not-a-token")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 1
    err = capsys.readouterr().err
    assert "rejected the token (401 Unauthorized)" in err and "api scope" in err
    assert not gitlab_sim.project("acme/widgets").hooks


async def test_an_unknown_project_says_so(gitlab_sim: SimState, capsys):
    assert await install("--project", "acme/nope", "--url", "https://bot.example.com") == 1
    assert "project acme/nope not found" in capsys.readouterr().err


async def test_a_developer_token_is_told_to_get_a_maintainer(gitlab_sim: SimState, env, capsys):
    env.setenv("DEV_TOKEN", gitlab_sim.token)  # the bot user, a Developer of the project
    assert await install("--project", "acme/widgets", "--url", "https://b.example.com", "--token-env", "DEV_TOKEN") == 1
    assert "needs the Maintainer role" in capsys.readouterr().err


async def test_a_proxys_error_page_is_told_by_its_title(gitlab_sim: SimState, capsys):
    gitlab_sim.fail_next(1, 502)
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 1
    err = capsys.readouterr().err
    assert "GitLab answered 502 (502 Bad Gateway)" in err and "<" not in err


async def test_an_unreachable_gitlab_says_so(env, capsys, refused_port):
    env.setenv("GITLAB_TOKEN", "t")
    url = f"http://127.0.0.1:{refused_port}"
    code = await install("--project", "1", "--url", "https://b.example.com", "--gitlab-url", url)
    assert code == 1
    assert f"cannot reach GitLab at {url}" in capsys.readouterr().err


@pytest.mark.parametrize("path, body", [("/gitlab", '{"error": "404 Not Found"}'), ("", "<html>Not here</html>")])
async def test_a_gitlab_url_with_no_gitlab_api_names_gitlab_url(env, aiohttp_server, capsys, path, body):
    """--gitlab-url (or GITLAB_URL) at a GitLab under the wrong path, or at another web server: the 404 is the
    address's, not the project's, and "check --project" sent the operator the wrong way."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        kind = "application/json" if body.startswith("{") else "text/html"
        return web.Response(status=404, text=body, content_type=kind)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    url = str((await aiohttp_server(app)).make_url(path)).rstrip("/")
    env.setenv("GITLAB_TOKEN", "t")
    assert await install("--project", "1", "--url", "https://b.example.com", "--gitlab-url", url) == 1
    err = capsys.readouterr().err
    assert f"no GitLab API at {url}" in err and "check GITLAB_URL" in err and "--project" not in err


def test_a_404_without_a_body_read_is_the_projects():
    """python-gitlab may raise a 404 with no body read: that tells nothing about the address, so it must not
    send the operator to GITLAB_URL (an empty body read as "not GitLab's API")."""
    import gitlab

    from bot.cli.install import explain

    said = explain(gitlab.GitlabGetError("404 Project Not Found", 404), "https://gitlab.example.com", 7)
    assert said.startswith("project 7 not found") and "GITLAB_URL" not in said


def test_a_missing_token_names_the_variable(env, capsys):
    assert main(["install", "--project", "1", "--url", "https://b.example.com"]) == 2
    assert "GITLAB_TOKEN is not set" in capsys.readouterr().err


def test_the_url_must_be_http():
    with pytest.raises(InstallError, match="must start with https://"):
        hook_url("bot.example.com")


def test_an_address_without_its_scheme_is_named_with_the_fix():
    with pytest.raises(InstallError) as info:
        hook_url("127.0.0.1:18090")
    assert "--url '127.0.0.1:18090' (no scheme: add https://)" in str(info.value)


@pytest.mark.parametrize("gitlab_url", [f"http://u:{ROOT_TOKEN}@127.0.0.1:1", f"u:{ROOT_TOKEN}@127.0.0.1:1",
                                        f"http://127.0.0.1:1/?private_token={ROOT_TOKEN}"])
def test_a_gitlab_url_with_credentials_is_refused_without_repeating_them(env, capsys, gitlab_url):
    env.setenv("GITLAB_TOKEN", "t")
    code = main(["install", "--project", "1", "--url", "https://b.example.com", "--gitlab-url", gitlab_url])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("reviewbot install: --gitlab-url must")
    assert ROOT_TOKEN not in out + err and "cannot reach" not in err


async def test_an_empty_secret_is_refused_and_the_hook_keeps_its_own(gitlab_sim: SimState, capsys):
    project = gitlab_sim.project("acme/widgets")
    given = "the-running-bots-secret-0123456789"
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com", "--secret", given) == 0
    capsys.readouterr()
    requests_before = len(gitlab_sim.calls())
    for empty in ("", "   "):
        assert await install("--project", "acme/widgets", "--url", "https://bot.example.com", "--secret", empty) == 2
        err = capsys.readouterr().err
        assert "--secret is empty (is the variable it was given from unset?)" in err and "GITLAB_WEBHOOK_SECRET" in err
    [hook] = project.hooks
    assert hook.token == given
    assert len(gitlab_sim.calls()) == requests_before


async def test_a_secret_the_bot_would_refuse_is_refused_here(gitlab_sim: SimState, capsys):
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com", "--secret", "short") == 2
    out, err = capsys.readouterr()
    assert "--secret is 5 characters: the bot refuses webhook secrets under 8" in err and "short" not in out + err
    assert not gitlab_sim.calls()


async def test_a_sample_secret_of_the_example_file_is_refused_here_as_the_bot_refuses_it(gitlab_sim: SimState,
                                                                                           capsys):
    """config.example.toml's secrets are public: the hook was made with one, and the bot given the same then
    refused to start."""
    secret = "change-me-to-a-long-random-string"
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com", "--secret", secret) == 2
    err = capsys.readouterr().err
    assert "config.example.toml" in err and "leave --secret out" in err
    assert not gitlab_sim.calls() and not gitlab_sim.project("acme/widgets").hooks


async def test_a_secret_with_surrounding_whitespace_is_refused_unrepeated(gitlab_sim: SimState, capsys):
    secret = "secret-with-a-newline-0123456789\n"
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com", "--secret", secret) == 2
    out, err = capsys.readouterr()
    assert "whitespace" in err and secret.strip() not in out + err
    assert not gitlab_sim.calls()


@pytest.mark.parametrize("option", ["--project", "--url", "--gitlab-url", "--token-env", "--config"])
async def test_an_empty_option_is_refused_rather_than_defaulted(gitlab_sim: SimState, capsys, option):
    argv = {"--project": "acme/widgets", "--url": "https://bot.example.com"}
    argv[option] = " "
    assert await install(*(word for pair in argv.items() for word in pair)) == 2
    err = capsys.readouterr().err
    assert f"{option} is empty (is the variable it was given from unset?)" in err
    assert not gitlab_sim.calls() and not gitlab_sim.project("acme/widgets").hooks


@pytest.mark.parametrize("url", ["https://u:pw-in-url@bot.example.com", "https://bot.example.com/?key=pw-in-url",
                                 "https://bot.example.com/#pw-in-url"])
async def test_a_public_url_with_credentials_is_refused_without_repeating_them(gitlab_sim: SimState, capsys, url):
    assert await install("--project", "acme/widgets", "--url", url) == 2
    out, err = capsys.readouterr()
    assert "no user:password@, no ?query or #fragment" in err and "pw-in-url" not in out + err
    assert not gitlab_sim.project("acme/widgets").hooks


async def test_a_token_given_as_the_url_is_not_repeated(gitlab_sim: SimState, capsys):
    assert await install("--project", "acme/widgets", "--url", "glpat-pw-in-url") == 2
    out, err = capsys.readouterr()
    assert "must start with https://" in err and "pw-in-url" not in out + err


async def test_a_token_with_a_line_break_is_refused_unrepeated(gitlab_sim: SimState, env, capsys):
    env.setenv("GITLAB_TOKEN", ROOT_TOKEN + "\n")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 2
    err = capsys.readouterr().err
    assert "GITLAB_TOKEN): holds whitespace or a line break" in err and ROOT_TOKEN not in err
    assert not gitlab_sim.calls()


@pytest.mark.parametrize("first, again", [
    ("https://bot.example.com", "https://BOT.example.com"),
    ("https://bot.example.com", "https://bot.example.com:443"),
    ("https://Bot.Example.com:443/", "HTTPS://bot.example.com/webhook/"),
    ("http://bot.example.com:80", "http://bot.example.com"),
])
async def test_another_spelling_of_the_url_updates_the_same_hook(gitlab_sim: SimState, capsys, first, again):
    assert await install("--project", "acme/widgets", "--url", first) == 0
    assert await install("--project", "acme/widgets", "--url", again) == 0
    [hook] = gitlab_sim.project("acme/widgets").hooks
    assert hook.url == again.rstrip("/").removesuffix("/webhook") + "/webhook"
    assert "Updated webhook" in capsys.readouterr().out


@pytest.mark.parametrize("other", ["https://bot.example.com:8443", "http://bot.example.com",
                                   "https://bot.example.com/Reviewbot", "https://bot.example.org"])
async def test_another_endpoint_gets_its_own_hook(gitlab_sim: SimState, other):
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com/reviewbot") == 0
    assert await install("--project", "acme/widgets", "--url", other) == 0
    assert len(gitlab_sim.project("acme/widgets").hooks) == 2


async def test_duplicate_hooks_already_there_are_reported(gitlab_sim: SimState, capsys):
    first = gitlab_sim.add_hook("acme/widgets", "https://bot.example.com/webhook", token="old")
    second = gitlab_sim.add_hook("acme/widgets", "https://BOT.example.com:443/webhook", token="old")
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com") == 0
    err = capsys.readouterr().err
    assert first.token != "old" and second.token == "old"
    assert f"webhook {second.id} on acme/widgets also points at" in err and "Settings > Webhooks" in err


async def test_a_hook_to_the_same_address_over_the_other_scheme_is_reported(gitlab_sim: SimState, capsys):
    """Moving the bot from http to https added a second hook and said nothing: the http one went on sending
    every event, its secret in clear text. It is left alone (it may be another bot), and named."""
    assert await install("--project", "acme/widgets", "--url", "http://bot.example.com",
                         "--secret", "hook-secret-123") == 0
    capsys.readouterr()
    assert await install("--project", "acme/widgets", "--url", "https://bot.example.com/",
                         "--secret", "hook-secret-123") == 0
    old, new = gitlab_sim.project("acme/widgets").hooks
    err = capsys.readouterr().err
    assert old.url == "http://bot.example.com/webhook" and new.url == "https://bot.example.com/webhook"
    assert f"webhook {old.id} on acme/widgets points at the same address over http" in err
    assert "Settings > Webhooks" in err and "hook-secret-123" not in err
