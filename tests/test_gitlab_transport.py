"""How the bot reaches a self-hosted GitLab: through the environment's HTTP proxy, under a relative URL root
(https://host/gitlab), over TLS with a private CA. The GitLab side is the simulator over real HTTP."""
from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.cli import backfill as cli
from bot.cli import main
from bot.config import Settings
from bot.gitlab.client import GitLabClient
from bot.gitlab.errors import GitLabError
from bot.gitlab.oauth import OAuthApp, OAuthError, authorize_url, exchange_code
from bot.gitlab.sim_model import SimProject
from bot.gitlab.simulator import SimState, run_simulator
from bot.handlers import check_gitlab
from tests.bot_harness import bot_settings, seed_recent
from tests.gitlab_fixtures import FAST_RETRY, serve_app

ROOT = Path(__file__).resolve().parent.parent
PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy",
              "NO_PROXY")


@dataclass
class Proxy:
    """A forward HTTP proxy recording the absolute URLs it was asked for and the Proxy-Authorization sent."""

    url: str = ""
    seen: list[str] = field(default_factory=list)
    logins: list[str | None] = field(default_factory=list)

    async def forward(self, request: web.Request) -> web.Response:
        self.seen.append(str(request.url))
        self.logins.append(request.headers.get("Proxy-Authorization"))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "proxy-authorization")}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, request.url, headers=headers,
                                       data=await request.read()) as answer:
                kept = {k: v for k, v in answer.headers.items()
                        if k.lower() not in ("content-length", "content-encoding", "transfer-encoding")}
                return web.Response(status=answer.status, body=await answer.read(), headers=kept)


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
async def proxy(no_proxy_env) -> AsyncIterator[Proxy]:
    found = Proxy()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.forward)
    async with serve_app(app) as found.url:
        yield found


async def test_gitlab_calls_go_through_the_environments_proxy(simulator, http_session, proxy, no_proxy_env):
    state, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://squid:s3cret@"))
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    assert (await client.current_user()).username == "reviewbot"
    assert proxy.seen == [f"{url}/api/v4/user"]
    assert proxy.logins == ["Basic " + base64.b64encode(b"squid:s3cret").decode()]


@pytest.fixture
async def refusing_proxy() -> AsyncIterator[str]:
    """A proxy that answers every request, a CONNECT for an https GitLab too, with 407: the login it was given
    is wrong. Its URL (http://127.0.0.1:PORT)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n"
                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_the_proxys_password_is_not_in_the_error(refusing_proxy, http_session, no_proxy_env, caplog):
    """aiohttp names the proxy, login included, in a failed CONNECT's error (`ClientHttpProxyError`): its text went
    into the GitLabError, hence the log, the events' `last_error` and `reviewbot events`."""
    no_proxy_env.setenv("HTTPS_PROXY", refusing_proxy.replace("http://", "http://squid:Pr0xyPa55@"))
    client = GitLabClient(http_session, url="https://gitlab.example.com", token="glpat-token-value", retry=FAST_RETRY)
    with pytest.raises(GitLabError) as caught:
        await client.current_user()
    message = str(caught.value)
    assert "407" in message and "Proxy Authentication Required" in message and refusing_proxy[7:] in message
    assert "Pr0xyPa55" not in message and "Pr0xyPa55" not in caplog.text


async def test_no_proxy_naming_gitlabs_host_connects_directly(simulator, http_session, proxy, no_proxy_env):
    state, url = simulator
    no_proxy_env.setenv("http_proxy", proxy.url)
    no_proxy_env.setenv("no_proxy", "localhost,127.0.0.1")
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    assert (await client.current_user()).username == "reviewbot"
    assert proxy.seen == [] and state.calls("GET", "/api/v4/user")


async def test_a_proxy_that_cannot_be_reached_is_named_as_the_cause(simulator, http_session, no_proxy_env,
                                                                     refused_port):
    """The error sent people to GITLAB_URL ("check GITLAB_URL and the network") when the proxy the environment
    named was what did not answer; its login stays out."""
    state, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", f"http://squid:Pr0xyPa55@127.0.0.1:{refused_port}")
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    with pytest.raises(GitLabError) as caught:
        await client.current_user()
    message = str(caught.value)
    assert "through the proxy" in message and "HTTP_PROXY" in message and "NO_PROXY" in message, message
    assert "check GITLAB_URL" not in message and "Pr0xyPa55" not in message and not state.requests


async def test_install_names_a_proxy_that_cannot_be_reached(simulator, no_proxy_env, refused_port, tmp_path, capsys):
    state, url = simulator
    no_proxy_env.chdir(tmp_path)
    no_proxy_env.setenv("HTTP_PROXY", f"http://squid:Pr0xyPa55@127.0.0.1:{refused_port}")
    no_proxy_env.setenv("GITLAB_TOKEN", state.token)
    no_proxy_env.delenv("REVIEWBOT_CONFIG", raising=False)
    code = await asyncio.to_thread(main, ["install", "--project", "1", "--url", "https://bot.example.com",
                                          "--gitlab-url", url, "--secret", "new-secret-0123456789"])
    err = capsys.readouterr().err
    assert code == 1 and "through the proxy" in err and "HTTP_PROXY" in err and "NO_PROXY" in err, err
    assert "Pr0xyPa55" not in err and not state.requests


async def test_the_dashboards_sign_in_goes_through_the_proxy_too(simulator, http_session, proxy, no_proxy_env):
    _, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", proxy.url)
    app = OAuthApp(url, "app-id", "app-secret", "https://bot.example.com/auth/gitlab/callback")
    with pytest.raises(OAuthError, match="invalid_client"):
        await exchange_code(http_session, app, "some-code", "v" * 43)
    assert proxy.seen == [f"{url}/oauth/token"]


@pytest.mark.parametrize("url, warned", [("http://gitlab.invalid", True), ("https://gitlab.invalid", False),
                                          ("http://127.0.0.1:9", False), ("http://localhost:9", False)])
async def test_a_gitlab_url_in_clear_text_is_warned_about_at_start(http_session, url, warned, caplog):
    """The token has the api scope, and over http:// it crosses the network readable by anyone on the way; start-up
    said nothing (`install` warns of a webhook URL that is not https). The loopback is no network."""
    settings = Settings(gitlab={"url": url, "token": "glpat-token-value"}, webhook_secrets=[{"secret": "s" * 20}])
    await check_gitlab(http_session, settings)
    said = "GITLAB_URL is http://: GITLAB_TOKEN crosses the network in clear text"
    assert (said in caplog.text) is warned
    assert "cannot reach GitLab" in caplog.text and "glpat-token-value" not in caplog.text


# --- GitLab under a relative URL root (https://host/gitlab) ---------------------------------------------------
@pytest.fixture
async def rooted() -> AsyncIterator[tuple[SimState, str]]:
    """A simulator serving GitLab under /gitlab, as `gitlab_rails['gitlab_relative_url_root']` does; a request
    outside it is an unknown endpoint and fails the test."""
    state = SimState(token="sim-token", seed=1)
    state.root_path = "/gitlab"
    async with run_simulator(state) as served:
        yield served
    state.assert_no_unknown()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_call_keeps_the_relative_url_root(rooted, http_session, database_url):
    state, url = rooted
    seeded = seed_recent(state, n_merged=12)
    project = seeded.project
    settings = bot_settings(state, url + "/", database_url)  # a trailing slash, as often pasted
    client = GitLabClient(http_session, url=settings.gitlab.url, token=state.token, retry=FAST_RETRY, per_page=5)
    assert url.endswith("/gitlab") and settings.gitlab.url == url
    assert len(await client.list_members(project.id)) == len(project.members)
    mr = next(iter(project.mrs.values()))
    await client.mr_changed_files(project.id, mr.iid)
    note = await client.create_note(project.id, mr.iid, "hello")
    assert note is not None and await client.notes_after(project.id, mr.iid, 0)
    report = await cli.backfill(settings, project.path_with_namespace, out=io.StringIO())
    assert report.done and report.imported == 12
    assert state.requests and all(r.path.startswith("/gitlab/api/v4/") for r in state.requests)
    assert len(state.calls("GET", "/members/all")) > 1  # paged


async def test_the_sign_in_sends_people_to_gitlab_under_its_root(rooted):
    _, url = rooted
    app = OAuthApp(url, "app-id", "app-secret", "https://bot.example.com/auth/gitlab/callback")
    assert authorize_url(app, state="s", verifier="v" * 43).startswith(f"{url}/oauth/authorize?")


async def install_beside_25_hooks(state: SimState, url: str, env) -> tuple[int, SimProject]:
    """`reviewbot install` on a project with 25 other hooks: python-gitlab lists 20 a page, the next page's
    address comes from GitLab's `Link` header."""
    project = state.add_project("acme/widgets")
    for i in range(25):  # past python-gitlab's first page of 20: the next page comes from the Link header
        state.add_hook(project, f"https://other{i}.example.com/hook")
    state.add_hook(project, "https://bot.example.com/webhook", token="old-secret-0123456789")
    state.add_token(state.root, "root-token-for-install")
    env.setenv("GITLAB_URL", url + "/")
    env.setenv("GITLAB_TOKEN", "root-token-for-install")
    env.delenv("REVIEWBOT_CONFIG", raising=False)
    code = await asyncio.to_thread(main, ["install", "--project", "acme/widgets", "--url", "https://bot.example.com",
                                          "--secret", "new-secret-0123456789"])
    return code, project


async def test_install_under_the_root_pages_through_many_hooks(rooted, no_proxy_env, tmp_path):
    state, url = rooted
    no_proxy_env.chdir(tmp_path)
    code, project = await install_beside_25_hooks(state, url, no_proxy_env)
    assert code == 0 and len(project.hooks) == 26 and project.hooks[-1].token == "new-secret-0123456789"
    assert all(r.path.startswith("/gitlab/api/v4/") for r in state.requests)


async def test_install_stays_on_gitlab_url_when_gitlabs_links_name_another_address(rooted, no_proxy_env, tmp_path,
                                                                                  refused_port):
    """A proxy in front of GitLab that does not pass Host and X-Forwarded-Proto on makes GitLab write its own
    idea of its address into the `Link` header (often http://): following it would send the token there."""
    state, url = rooted
    state.seen_url = f"http://127.0.0.1:{refused_port}"
    no_proxy_env.chdir(tmp_path)
    code, project = await install_beside_25_hooks(state, url, no_proxy_env)
    assert code == 0 and project.hooks[-1].token == "new-secret-0123456789"


# --- GitLab over TLS with a private CA -------------------------------------------------------------------------
@dataclass(frozen=True)
class PrivateCA:
    """A CA of the test's own and a certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory) -> PrivateCA:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a CA")
    where = tmp_path_factory.mktemp("ca")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Acme Test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=where)
    _openssl("req", *ec, "-keyout", "gitlab.key", "-out", "gitlab.csr", "-subj", "/CN=127.0.0.1", cwd=where)
    (where / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                   "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", "gitlab.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "gitlab.pem", "-days", "2", "-extfile", "ext.cnf", cwd=where)
    return PrivateCA(where / "ca.pem", where / "gitlab.pem", where / "gitlab.key")


@pytest.fixture
async def tls_gitlab(private_ca) -> AsyncIterator[tuple[SimState, str]]:
    """The simulator over https, its certificate signed by `private_ca`."""
    state = SimState(token="sim-token", seed=1)
    async with run_simulator(state, ssl_context=private_ca.server_context()) as served:
        yield served
    state.assert_no_unknown()


CA_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


async def test_install_trusts_the_ca_in_ssl_cert_file(tls_gitlab, private_ca, no_proxy_env, tmp_path):
    """SSL_CERT_FILE is what serve, worker and backfill trust (OpenSSL reads it); install reads it too."""
    state, url = tls_gitlab
    for name in CA_VARS:
        no_proxy_env.delenv(name, raising=False)
    no_proxy_env.setenv("SSL_CERT_FILE", str(private_ca.ca))
    no_proxy_env.chdir(tmp_path)
    code, project = await install_beside_25_hooks(state, url, no_proxy_env)
    assert code == 0 and project.hooks[-1].token == "new-secret-0123456789"


async def test_install_names_the_ca_setting_when_gitlabs_certificate_is_not_trusted(tls_gitlab, no_proxy_env,
                                                                                    tmp_path, capsys):
    state, url = tls_gitlab
    for name in CA_VARS:
        no_proxy_env.delenv(name, raising=False)
    no_proxy_env.chdir(tmp_path)
    code, _ = await install_beside_25_hooks(state, url, no_proxy_env)
    err = capsys.readouterr().err
    assert code == 1 and "not trusted here (unable to get local issuer certificate)" in err
    assert "export SSL_CERT_FILE=" in err


async def test_the_client_names_the_ca_setting_when_gitlabs_certificate_is_not_trusted(tls_gitlab, http_session):
    state, url = tls_gitlab  # this process trusts the system's CAs only: its SSL_CERT_FILE was read at start
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    with pytest.raises(GitLabError) as failed:
        await client.current_user()
    assert failed.value.status is None and "export SSL_CERT_FILE=" in failed.value.message
    assert "not trusted here (unable to get local issuer certificate)" in failed.value.message


async def reviewbot(*argv: str, env: dict[str, str]) -> tuple[int, str]:
    """`reviewbot ARGV` as its own process (OpenSSL reads SSL_CERT_FILE when a process starts)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *argv, env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_backfill_reaches_a_gitlab_of_a_private_ca_named_in_ssl_cert_file(tls_gitlab, private_ca, tmp_path):
    state, url = tls_gitlab
    seeded = seed_recent(state, n_merged=6)
    env = {k: v for k, v in os.environ.items() if k not in (*CA_VARS, *PROXY_VARS) and not k.startswith("REVIEWBOT")}
    env.update(GITLAB_URL=url, GITLAB_TOKEN=state.token, DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3",
               SSL_CERT_FILE=str(private_ca.ca))
    assert (await reviewbot("migrate", env=env))[0] == 0
    code, out = await reviewbot("backfill", "--project", seeded.project.path_with_namespace, env=env)
    assert code == 0 and "done, 6 merged MRs imported" in out, out


# --- GITLAB_URL that a web server redirects (http:// to https://, an old host name) ---------------------------
@pytest.fixture
async def redirecting(simulator) -> AsyncIterator[str]:
    """A web server in front of the simulator answering every request with a 301 to the simulator's address,
    as nginx does for http:// when GitLab is served over https://; yields its own address."""
    _, url = simulator

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(url + request.path_qs)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_a_redirect_is_not_followed_and_names_where_gitlab_is(simulator, redirecting, http_session):
    """Followed, the token stayed behind (GitLab answered 401: "GITLAB_TOKEN is wrong") and a POST became a GET."""
    state, url = simulator
    project = state.add_project("acme/app")
    mr = state.open_mr(project, state.root, ["a.py"])
    client = GitLabClient(http_session, url=redirecting, token=state.token, retry=FAST_RETRY)
    with pytest.raises(GitLabError) as failed:
        await client.create_note(project.id, mr.iid, "hello")
    assert failed.value.status == 301 and "GITLAB_TOKEN" not in failed.value.message
    assert f"redirected to {url}/api/v4/projects/{project.id}/merge_requests/{mr.iid}/notes: set GITLAB_URL" \
        in failed.value.message
    assert state.requests == []


async def test_the_bot_refuses_to_start_on_a_redirected_gitlab_url(simulator, redirecting, tmp_path):
    state, url = simulator
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("REVIEWBOT")}
    env.update(GITLAB_URL=redirecting, GITLAB_TOKEN=state.token, GITLAB_WEBHOOK_SECRET="s" * 20,
               DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/bot.sqlite3")
    assert (await reviewbot("migrate", env=env))[0] == 0
    code, out = await reviewbot("worker", "--once", env=env)
    assert code == 2 and f"redirected to {url}/api/v4/user: set GITLAB_URL" in out, out


async def test_install_names_where_a_redirected_gitlab_url_leads(simulator, redirecting, no_proxy_env, tmp_path,
                                                                 capsys):
    """requests followed it, sending the token along, and the hook's POST ended in python-gitlab's RedirectError
    with "try again" for advice."""
    state, url = simulator
    no_proxy_env.chdir(tmp_path)
    code, project = await install_beside_25_hooks(state, redirecting, no_proxy_env)
    err = capsys.readouterr().err
    assert code == 1 and f"redirected to {url}/api/v4/projects/acme%2Fwidgets: set GITLAB_URL" in err, err
    assert state.requests == [] and len(project.hooks) == 26


@pytest.mark.parametrize("proxy_url", ["squid:Pr0xyPa55@127.0.0.1:9", "http://squid:Pr0/xyPa55@127.0.0.1:9",
                                       "http://squid:Pr0#xyPa55@127.0.0.1:9"])
async def test_a_proxy_url_aiohttp_cannot_read_is_not_in_the_error(simulator, http_session, no_proxy_env, caplog,
                                                                  proxy_url):
    """A proxy variable without its scheme (curl takes one) or with a `/`, `#` or `?` left unencoded in its
    password is refused by aiohttp as `InvalidURL`, whose text is the variable's whole value: the login went
    into the GitLabError (the log, `last_error`, `reviewbot events`), which then said to check GITLAB_URL."""
    state, url = simulator
    no_proxy_env.setenv("HTTP_PROXY", proxy_url)
    client = GitLabClient(http_session, url=url, token=state.token, retry=FAST_RETRY)
    with pytest.raises(GitLabError) as caught:
        await client.current_user()
    message = str(caught.value)
    assert "Pr0" not in message and "xyPa55" not in message and "Pr0" not in caplog.text
    assert "proxy" in message and "GITLAB_URL" not in message
