"""`reviewbot install`: register (or update) the project webhook that sends the bot its events.

Why a command: a hand-made hook is easy to get subtly wrong (GitLab turns push events on by default, the
secret must match the bot's, a second hook for the same URL doubles every event). This one subscribes to
merge request, comment and emoji events only, verifies SSL, sets a fresh random secret and prints it once,
and updates the existing hook for the same URL instead of adding a duplicate (the same URL in any spelling:
host case, the default port, a trailing slash).

It is a one-off operator command, so it uses python-gitlab (synchronous) rather than the bot's async client,
and it does not retry server errors (a retried POST could add a second hook): run it again instead, which
is safe because a second run updates the hook it finds.
Managing hooks needs the Maintainer role: the token is GITLAB_TOKEN unless `--token-env` names another
variable (a token on the command line would end up in the shell history). An empty option (an unset
`"$VARIABLE"`) is refused rather than replaced by a default, and no message repeats a token, a secret or a
URL that may hold credentials.
"""
from __future__ import annotations

import argparse
import os
import secrets
import ssl
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import gitlab
import requests
from pydantic import ValidationError

from bot.config import EXAMPLE_SECRETS, WEBHOOK_SECRET_MIN, ConfigError, GitLabSettings, load_settings, quoted_url
from bot.gitlab.client import project_ref
from bot.gitlab.errors import PROXY_FIX, UNTRUSTED, not_api, readable, redirected, route_missing, untrusted

__all__ = ["run", "install_hook", "hook_url", "hook_attributes", "InstallError", "InstalledHook",
           "HOOK_NAME"]

HOOK_NAME = "reviewbot"
EVENTS = {"merge_requests_events": True, "note_events": True, "emoji_events": True,
          "push_events": False, "confidential_note_events": False}
DEFAULT_PORTS = {"http": 80, "https": 443}
# What to do when an option is given empty, by its argparse name.
IF_EMPTY = {
    "project": "pass the project's numeric id or group/project path",
    "url": "pass the bot's public address, e.g. https://reviewbot.example.com",
    "secret": "export the bot's webhook secret (GITLAB_WEBHOOK_SECRET) first, or leave --secret out to generate "
              "a new one, which replaces the hook's and must then be given to the bot",
    "gitlab_url": "pass GitLab's address, or leave --gitlab-url out to use GITLAB_URL or [gitlab] url",
    "token_env": "name the variable that holds the token, or leave --token-env out to use GITLAB_TOKEN",
    "config": "pass the config file's path, or leave --config out to use $REVIEWBOT_CONFIG or ./config.toml",
}


class InstallError(Exception):
    """The hook could not be registered; the message names the cause and the fix."""


@dataclass(frozen=True)
class InstalledHook:
    """What `install_hook` did: `action` is "created" or "updated"; `duplicates` are the ids of other hooks
    for the same URL, left alone (each sends every event once more)."""

    action: str
    hook_id: int
    url: str
    project_id: int
    project_path: str
    duplicates: tuple[int, ...] = ()
    other_scheme: tuple[int, ...] = ()  # hooks to the same host and path over the other of http / https
    alert_status: str = "executable"  # GitLab's auto-disabling: "temporarily_disabled" or "disabled" after failures
    disabled_until: str | None = None  # when a temporarily disabled hook is sent events again


def hook_url(public_url: str) -> str:
    """The webhook address for the bot's public URL.

    >>> hook_url("https://bot.example.com/"), hook_url("https://bot.example.com/webhook")
    ('https://bot.example.com/webhook', 'https://bot.example.com/webhook')
    """
    base = public_url.strip().rstrip("/")
    if any(c in base for c in "@?#"):  # not repeated: it may hold a password or a token
        raise InstallError("--url must be the bot's public address alone (no user:password@, no ?query or "
                           "#fragment): GitLab proves itself to the bot with the webhook secret, not the URL")
    parts = urlsplit(base)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InstallError(f"--url {quoted_url(public_url.strip())} must start with https:// (the address GitLab "
                           "will POST to)")
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        raise InstallError(f"--url {quoted_url(public_url.strip())} has an invalid port: give a number, e.g. "
                           ":8443") from None
    return base if base.endswith("/webhook") else base + "/webhook"


def hook_attributes(url: str, secret: str) -> dict[str, Any]:
    """Everything the hook is set to, on creation and on update alike."""
    return {"url": url, "name": HOOK_NAME, "token": secret, "enable_ssl_verification": True, **EVENTS}


def _endpoint(url: str) -> tuple[Any, ...]:
    """What two spellings of one hook URL share: scheme and host in any case, the default port (443 for
    https, 80 for http) said or not, the path with or without a trailing slash.

    >>> _endpoint("HTTPS://Bot.Example.com:443/webhook/") == _endpoint("https://bot.example.com/webhook")
    True
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a malformed URL is only ever the same as itself
        return (url,)
    return scheme, parts.hostname, port, parts.path.rstrip("/"), parts.query


def _address(url: str) -> tuple[Any, ...]:
    """Host and path, whatever the scheme: what a hook kept from before the bot moved from http to https shares
    with the new one (each at its scheme's default port, or the same port said).

    >>> _address("http://Bot.example.com/webhook") == _address("https://bot.example.com:443/webhook/")
    True
    """
    endpoint = _endpoint(url)
    if len(endpoint) == 1:  # malformed: only ever the same as itself
        return endpoint
    scheme, host, port, path, query = endpoint
    return host, None if port == DEFAULT_PORTS.get(scheme) else port, path, query


def install_hook(gl: gitlab.Gitlab, project: str | int, url: str, secret: str,
                 gitlab_said: str | None = None) -> InstalledHook:
    """Create the hook, or update the existing one for the same URL; raises `InstallError` naming the fix, and
    GitLab as `gitlab_said` (saying when it is the default nobody chose) or its URL."""
    try:
        target = gl.projects.get(project)
        hooks = target.hooks.list(get_all=True)
        existing = [h for h in hooks if _endpoint(h.url) == _endpoint(url)]
        attrs = hook_attributes(url, secret)
        if existing:
            hook_id, action = existing[0].id, "updated"
            # internal notes are the operator's opt-in (the bot stores every event): a re-run keeps it
            attrs["confidential_note_events"] = bool(getattr(existing[0], "confidential_note_events", False))
            target.hooks.update(hook_id, attrs)
        else:
            hook_id, action = target.hooks.create(attrs).id, "created"
    except (gitlab.GitlabError, requests.RequestException) as exc:
        raise InstallError(explain(exc, gitlab_said or gl.url, project)) from None
    same = {h.id for h in existing}
    other_scheme = tuple(int(h.id) for h in hooks if _address(h.url) == _address(url) and h.id not in same)
    status = str(getattr(existing[0], "alert_status", None) or "executable") if existing else "executable"
    until = getattr(existing[0], "disabled_until", None) if existing else None
    return InstalledHook(action, int(hook_id), url, int(target.id), str(target.path_with_namespace),
                         tuple(int(h.id) for h in existing[1:]), other_scheme, status, until)


def ca_certificates() -> str | bool:
    """What GitLab's certificate is checked against: the CA certificates the bot's other commands trust.

    Why: they connect with OpenSSL's defaults (the system's certificates, or SSL_CERT_FILE / SSL_CERT_DIR), while
    requests alone trusts its own copy of the public CAs, so a GitLab with a private CA that `serve` reached was
    refused here. REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, when set, still decide (True lets requests read them).
    """
    if os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE"):
        return True
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


def explain(exc: Exception, gitlab_url: str, project: str | int) -> str:
    """A GitLab failure as a sentence saying what to do about it."""
    if isinstance(exc, requests.exceptions.SSLError) and (reason := untrusted(str(exc))):
        return f"GitLab's certificate at {gitlab_url} is not trusted here ({reason}): {UNTRUSTED}"
    if isinstance(exc, requests.exceptions.TooManyRedirects) and exc.response is not None:
        answer = exc.response
        moved = redirected(answer.status_code, urljoin(answer.url, answer.headers.get("Location", "")))
        return f"GitLab at {gitlab_url} is not there: it was {moved}"
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"cannot reach GitLab at {gitlab_url} through the proxy: {PROXY_FIX}"
    if isinstance(exc, requests.RequestException):
        return (f"cannot reach GitLab at {gitlab_url} ({type(exc).__name__}): check GITLAB_URL (or --gitlab-url) "
                "and that this machine can connect to it")
    code = getattr(exc, "response_code", None)
    detail = readable(str(getattr(exc, "error_message", "") or exc))  # a proxy's 502 page: its title
    if code == 401 or isinstance(exc, gitlab.GitlabAuthenticationError):
        return (f"GitLab at {gitlab_url} rejected the token ({_with_status(401, detail)}): use a valid, unexpired "
                "personal, project or group access token with the api scope")
    if code == 403:
        return (f"the token's user may not manage webhooks of project {project} (403): managing hooks needs the "
                "Maintainer role; use a Maintainer's token (--token-env VAR) or ask a Maintainer to run this")
    body = getattr(exc, "response_body", None)  # None: nothing read, which tells nothing about GITLAB_URL
    if code == 404 and body is not None and (route_missing(404, body) or not_api(404, body)):
        return (f"no GitLab API at {gitlab_url} ({_with_status(404, detail)}): check GITLAB_URL (or --gitlab-url), "
                "the instance's base URL (e.g. https://gitlab.example.com, without /api/v4)")
    if code == 404:
        return (f"project {project} not found at {gitlab_url} (404): check --project (numeric id or "
                "group/project path) and that the token's user is a member of it")
    if code in (400, 422):
        return (f"GitLab refused the webhook ({_with_status(code, detail)}): check --url; if the bot runs on a "
                "private network, an administrator must allow webhook requests to the local network "
                "(Admin > Settings > Network > Outbound requests)")
    return f"GitLab answered {code or 'an error'} ({detail}): try again; if it persists, check GitLab's status"


def _with_status(code: int, detail: str) -> str:
    """GitLab's error text led by its status code, once: GitLab's own text often starts with it.

    >>> _with_status(401, "401 Unauthorized"), _with_status(422, "url is blocked")
    ('401 Unauthorized', '422 url is blocked')
    """
    return detail if detail.split(" ", 1)[0] == str(code) else f"{code} {detail}".rstrip()


def _check_given(args: argparse.Namespace) -> None:
    """Refuse an option given as empty: most likely `"$VARIABLE"` with the variable unset, where falling
    back to a default (a generated secret, GITLAB_TOKEN, gitlab.com) would do what nobody asked for."""
    for option, fix in IF_EMPTY.items():
        value = getattr(args, option)
        if value is not None and not value.strip():
            flag = "--" + option.replace("_", "-")
            raise InstallError(f"{flag} is empty (is the variable it was given from unset?): {fix}")
    if args.secret is not None and len(args.secret.strip()) < WEBHOOK_SECRET_MIN:
        raise InstallError(f"--secret is {len(args.secret.strip())} characters: the bot refuses webhook secrets "
                           f"under {WEBHOOK_SECRET_MIN}; leave --secret out to generate a long one")
    if args.secret is not None and args.secret.strip() in EXAMPLE_SECRETS:
        raise InstallError("--secret is a sample secret of config.example.toml, which anyone can read, and the bot "
                           "refuses it: leave --secret out to generate a long one")
    if args.secret is not None and args.secret != args.secret.strip():
        raise InstallError("--secret starts or ends with whitespace, which HTTP drops from the X-Gitlab-Token "
                           "header, so the bot would refuse every delivery: pass it without")


def _gitlab_url(value: str) -> str:
    """`--gitlab-url`, held to the rules of `[gitlab] url` (`GitLabSettings`); the message never repeats the
    value, which may hold a token."""
    try:
        return GitLabSettings(url=value.strip()).url
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
        reason = reason.replace(repr(value.strip()), "a value not repeated here")
        raise InstallError(f"--gitlab-url {reason}") from None


def _token(settings_token: str | None, token_env: str | None) -> str:
    if token_env:
        value, source = os.environ.get(token_env, ""), f"--token-env {token_env}: that environment variable"
        if not value.strip():
            raise ConfigError(f"{source} is empty; export it first")
    else:
        value, source = settings_token or "", "GITLAB_TOKEN"
        if not value.strip():
            raise ConfigError("GITLAB_TOKEN is not set: export a Maintainer's access token with the api scope "
                              "(or pass --token-env VAR naming the variable that holds one)")
    if any(c.isspace() for c in value):
        raise ConfigError(f"{source} holds whitespace or a line break besides the token (a copy-paste or a "
                          "file's last newline?): export the token alone")
    return value


def _instructions(done: InstalledHook, secret: str | None, gitlab_said: str) -> str:
    """What to tell the operator, GitLab's address first; the generated secret appears here and nowhere else."""
    lines = [f"{done.action.capitalize()} webhook {done.hook_id} on {done.project_path} at {gitlab_said} -> "
             f"{done.url}",
             "  events: merge requests, comments, emoji; SSL verification on", ""]
    if secret is None:
        lines.append("The hook uses the secret you passed with --secret; give the bot the same one "
                     "(GITLAB_WEBHOOK_SECRET or a [[webhook_secrets]] entry).")
        return "\n".join(lines)
    lines += [
        "Webhook secret (shown only this once; GitLab will not show it again):", "", f"    {secret}", "",
        "Give the bot the same secret, either as an environment variable:",
        f"    export GITLAB_WEBHOOK_SECRET='{secret}'",
        f"    (Heroku: heroku config:set GITLAB_WEBHOOK_SECRET='{secret}')",
        "or in config.toml:",
        "    [[webhook_secrets]]", f'    secret = "{secret}"',
        f"    project = {done.project_id}  # {done.project_path}: the id stays when the project is renamed or moved",
    ]
    if done.action == "updated":
        lines += ["", "The existing hook's secret was replaced: update the bot before the next event, "
                      "or GitLab's deliveries will be refused (401)."]
    return "\n".join(lines)


def _disabled_warning(done: InstalledHook) -> str | None:
    """GitLab stops sending to a hook after failed deliveries (4 in a row: for a while, growing up to a day; 40:
    for good) and updating the hook does not change that: a delivery it sends as a test that is answered 2xx
    does. A Push Hook is the test to send: the bot answers it 200 and ignores it."""
    if done.alert_status not in ("temporarily_disabled", "disabled"):
        return None
    enable = ("press Test > Push events on it under Settings > Webhooks once the bot is up (the bot ignores it "
              "and answers 200, which enables the hook again)")
    if done.alert_status == "disabled":
        return (f"reviewbot install: warning: GitLab disabled webhook {done.hook_id} on {done.project_path} after "
                f"failed deliveries and sends it nothing: {enable}")
    return (f"reviewbot install: warning: GitLab paused webhook {done.hook_id} on {done.project_path} after failed "
            f"deliveries until {done.disabled_until or 'later'}, and does not send the events of that time later: "
            f"{enable}")


def _hooks(ids: tuple[int, ...]) -> tuple[str, str, str, str, str]:
    """The words a warning about other hooks needs, for one hook or several.

    >>> _hooks((3,)), _hooks((3, 4))
    (('webhook 3', 'points', 'was', 'it sends', 'it'), ('webhooks 3, 4', 'point', 'were', 'each sends', 'them'))
    """
    listed = ", ".join(str(i) for i in ids)
    if len(ids) == 1:
        return f"webhook {listed}", "points", "was", "it sends", "it"
    return f"webhooks {listed}", "point", "were", "each sends", "them"


def _warnings(done: InstalledHook) -> str | None:
    warnings = [w] if (w := _disabled_warning(done)) else []
    if done.duplicates:
        hooks, point, were, sends, them = _hooks(done.duplicates)
        warnings.append(f"reviewbot install: warning: {hooks} on {done.project_path} also {point} at {done.url} "
                        f"and {were} left alone: {sends} every event once more; delete {them} under "
                        "Settings > Webhooks")
    if done.other_scheme:
        hooks, point, were, sends, them = _hooks(done.other_scheme)
        other = "https" if urlsplit(done.url).scheme == "http" else "http"
        warnings.append(f"reviewbot install: warning: {hooks} on {done.project_path} {point} at the same "
                        f"address over {other} and {were} left alone: {sends} every event once more"
                        f"{' with the secret in clear text' if other == 'http' else ''}; if the bot moved, "
                        f"delete {them} under Settings > Webhooks")
    return "\n".join(warnings) or None


def run(args: argparse.Namespace) -> int:
    try:
        _check_given(args)
        settings = load_settings(args.config, require_gitlab=False, listens=False)
        configured = settings.gitlab.token.get_secret_value() if settings.gitlab.token else None
        token = _token(configured, args.token_env)
        url = hook_url(args.url)
        gitlab_url = settings.gitlab.url if args.gitlab_url is None else _gitlab_url(args.gitlab_url)
        gitlab_said = settings.gitlab.address if args.gitlab_url is None else gitlab_url
    except (ConfigError, InstallError) as exc:
        print(f"reviewbot install: {exc}", file=sys.stderr)
        return 2
    secret = args.secret if args.secret is not None else secrets.token_urlsafe(32)
    project = project_ref(args.project)
    if urlsplit(url).scheme == "http":
        print("reviewbot install: warning: the URL is not https, so the secret travels in clear text",
              file=sys.stderr)
    try:
        # keep_base_url: the next page's address is GITLAB_URL's, not the one GitLab writes into its Link header
        # (behind a proxy that does not pass Host and X-Forwarded-Proto on, often http:// or an inside address)
        with gitlab.Gitlab(gitlab_url, private_token=token, timeout=30, keep_base_url=True,
                           ssl_verify=ca_certificates()) as gl:
            gl.session.max_redirects = 0  # a redirect is named (`explain`), not followed with the token
            done = install_hook(gl, project, url, secret, gitlab_said)
    except InstallError as exc:
        print(f"reviewbot install: {exc}", file=sys.stderr)
        return 1
    print(_instructions(done, None if args.secret is not None else secret, gitlab_said))
    if warning := _warnings(done):
        print(warning, file=sys.stderr)
    return 0
