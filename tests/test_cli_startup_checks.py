"""`reviewbot serve` / `worker` refuse to start when GitLab refuses the token or is not there, and start (saying
so) when GitLab cannot be reached."""
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest


# Seconds a `serve` or `worker` process may take to listen and start its handlers (importing scikit-learn, the
# GitLab checks): a second or two alone, many times that beside other test processes on a loaded 2-CPU machine.
UP_WITHIN = 90.0


def _env(tmp_path, url, token="sim-token"):
    env = dict(os.environ, GITLAB_URL=url, GITLAB_TOKEN=token, GITLAB_WEBHOOK_SECRET="s" * 20,
               DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    env.pop("REVIEWBOT_CONFIG", None)  # and run where there is no config.toml
    subprocess.run([sys.executable, "-m", "bot", "migrate"], env=env, check=True, capture_output=True,
                   cwd=tmp_path)
    return env


async def _run(env, cwd, *args):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, env=env, cwd=cwd,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, err.decode()


async def test_unreachable_gitlab_is_logged_and_the_worker_still_runs(tmp_path):
    """An outage must not keep the bot down: it says what to check and goes on (events wait and are retried).
    Its first line names the release running, as serve's does (which one runs, during a rolling upgrade)."""
    code, err = await _run(_env(tmp_path, "http://127.0.0.1:9"), tmp_path, "worker", "--once")
    assert code == 0
    assert "cannot reach GitLab at http://127.0.0.1:9" in err and "check GITLAB_URL" in err
    assert f"worker starting version={version('reviewbot')} gitlab=http://127.0.0.1:9 " in err
    assert "the default" not in err


async def test_the_first_line_says_when_gitlab_com_is_the_default_nobody_chose(tmp_path):
    """A newcomer who forgot GITLAB_URL: serve and worker name the GitLab they talk to, and that it is the
    default, in their first line (gitlab.com is reached through a proxy that is not there: no call leaves)."""
    env = {k: v for k, v in _env(tmp_path, "http://127.0.0.1:9").items()
           if k.casefold() not in ("gitlab_url", "no_proxy")}
    env.update(HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    code, err = await _run(env, tmp_path, "worker", "--once")
    assert code == 0, err
    first = err.splitlines()[0]
    assert f"worker starting version={version('reviewbot')} gitlab=\"https://gitlab.com (the default: set " \
           "GITLAB_URL for a self-hosted GitLab)\"" in first, first
    assert "sim-token" not in err
    assert "cannot reach GitLab at https://gitlab.com (the default: set GITLAB_URL" in err


async def test_unreachable_gitlab_leaves_the_webhook_intake_up(tmp_path):
    env = _env(tmp_path, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1",
                                                "--port", "0", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    try:
        said, port = await _port_said(proc, "serve starting", r"port=(\d+)")
        assert f"serve starting version={version('reviewbot')} gitlab=http://127.0.0.1:9 " in said
        status, _ = await _get_when_up(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert "cannot reach GitLab at http://127.0.0.1:9" in said + err.decode()


async def test_token_refused(tmp_path, simulator):
    _state, base_url = simulator
    code, err = await _run(_env(tmp_path, base_url, token="wrong-token"), tmp_path, "worker")
    assert code == 2
    assert "refused GITLAB_TOKEN (HTTP 401)" in err and "api scope" in err



async def test_serve_listens_while_it_checks_the_token_and_stops_when_it_is_refused(tmp_path, simulator):
    """`serve` stores webhooks while its handlers start (GitLab's deliveries were refused for seconds), but says
    "starting", never healthy, and exits 2 naming the fix when GitLab refuses the token."""
    import aiohttp

    _state, base_url = simulator
    env = _env(tmp_path, base_url, token="wrong-token")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0", "--dispatch",
        "tests.test_cli_startup_checks:held_dispatch", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    try:
        said, port = await _port_said(proc, "serve starting", r"port=(\d+)")
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + UP_WITHIN
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"{base}/healthz") as resp:
                        assert (resp.status, (await resp.json())["status"]) == (503, "starting")
                        break
                await asyncio.sleep(0.1)
            async with session.post(f"{base}/webhook", json={"object_kind": "note"}, headers={
                    "X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": "s" * 20}) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "queued"
        (tmp_path / "go").touch()  # the handlers' import may go on
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    assert "reviewbot serve: GitLab at" in err.decode() and "refused GITLAB_TOKEN (HTTP 401)" in err.decode(), said


@contextlib.asynccontextmanager
async def held_dispatch(settings, storage, metrics):
    """The handlers, started once a file `go` exists (in the working directory): their start-up is seen to come
    after the app listens, whatever the machine's speed."""
    from bot.handlers import make_dispatch

    while not Path("go").exists():
        await asyncio.sleep(0.05)
    async with make_dispatch(settings, storage, metrics) as dispatch:
        yield dispatch


async def test_a_token_without_the_api_scope_stops_start_up(tmp_path, simulator):
    """A read_api token passes GET /user, then GitLab refuses every comment and review request (403
    insufficient_scope): each event was retried until dead-lettered."""
    state, base_url = simulator
    state.add_token(state.bot, "read-only-token", scopes=("read_api",))
    code, err = await _run(_env(tmp_path, base_url, token="read-only-token"), tmp_path, "worker")
    assert code == 2
    assert "GITLAB_TOKEN lacks the api scope (it has: read_api)" in err and "create a token with the api scope" in err
    assert "read-only-token" not in err


@pytest.mark.parametrize("version", [(15, 0), (15, 4)])
async def test_a_gitlab_that_cannot_tell_the_scopes_starts(tmp_path, simulator, version):
    """Before 15.5 GitLab has no /personal_access_tokens/self (404), or reads "self" as a token id (401 on
    15.1 to 15.4): the token passed GET /user, so the bot starts, saying what to make sure of."""
    state, base_url = simulator
    state.version = version
    code, err = await _run(_env(tmp_path, base_url), tmp_path, "worker", "--once")
    assert code == 0 and "make sure it has the api scope" in err
    assert state.calls("GET", "/personal_access_tokens/self")


async def _port_said(proc: asyncio.subprocess.Process, line: str, port: str) -> tuple[str, int]:
    """(stderr so far, the port) once the process logged `line` with the port it got (`--port 0`, the system's
    choice): a port picked by the test and closed before the process took it could be taken meanwhile."""
    said = ""
    while not (found := re.search(f"{line} .*{port}", said)):
        text = (await asyncio.wait_for(proc.stderr.readline(), UP_WITHIN)).decode()
        assert text, f"the process ended without saying {line!r}:\n{said}"
        said += text
    assert int(found.group(1)), f"the process named port 0, not the one it got:\n{said}"
    return said, int(found.group(1))


async def _get_when_up(url: str) -> tuple[int, str]:
    """GET `url` once the process starting behind it listens and its handlers have started (within `UP_WITHIN`
    s): (status, text)."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + UP_WITHIN
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    status, text = resp.status, await resp.text()
                    if '"starting"' not in text:
                        return status, text
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


@pytest.mark.parametrize("status, body", [(404, '{"error": "404 Not Found"}'), (200, "<html>Sign in</html>")])
async def test_a_url_with_no_gitlab_api_stops_start_up(tmp_path, aiohttp_server, status, body):
    """A 404 (a GitLab or a web server, on another path) or a page (a sign-in, a proxy) where GET /api/v4/user
    should answer: GITLAB_URL points at the wrong place, and every event would fail."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        kind = "application/json" if body.startswith("{") else "text/html"
        return web.Response(status=status, text=body, content_type=kind)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    url = str((await aiohttp_server(app)).make_url("/wrong/path"))
    code, err = await _run(_env(tmp_path, url), tmp_path, "worker")
    assert code == 2
    assert f"no GitLab API at {url}" in err and "without /api/v4" in err


async def test_a_worker_apart_serves_its_own_metrics(tmp_path):
    env = _env(tmp_path, "http://127.0.0.1:9")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", "--metrics-port", "0",
                                                env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    try:
        _, port = await _port_said(proc, "worker metrics served", r"url=http://0\.0\.0\.0:(\d+)/metrics")
        _, text = await _get_when_up(f"http://127.0.0.1:{port}/metrics")
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.communicate(), timeout=60)
    assert "reviewbot_events_processed" in text and "reviewbot_dispatch_seconds" in text


async def test_version_names_the_installed_release(tmp_path):
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "--version", cwd=tmp_path,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert (proc.returncode, out.decode()) == (0, f"reviewbot {version('reviewbot')}\n")
