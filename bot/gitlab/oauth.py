"""Signing people in with GitLab's OAuth 2.0 provider: the authorize URL, the code exchange, the revocation.

Why by hand and not through `GitLabClient`: these endpoints live under /oauth, not /api/v4, answer in
OAuth's `{"error", "error_description"}` shape, and a code works once, so the exchange is never retried (a
second try after a lost answer would fail with invalid_grant and hide the first cause). Each call has its
own timeout. The flow is GitLab's "authorization code with PKCE" (doc/api/oauth2.md): the bot is a
confidential client, so it sends its secret as well as the verifier.

Neither the application's secret nor a person's token appears in an error message or a log line.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.gitlab.proxy import env_proxy

__all__ = ["OAuthApp", "OAuthError", "authorize_url", "pkce_challenge", "exchange_code", "revoke", "SCOPE",
           "TIMEOUT"]

log = logging.getLogger(__name__)

SCOPE = "read_api"  # GET /user and a project's merge requests, read only, as the person
TIMEOUT = 10.0  # seconds per call: a person waits on the callback page


class OAuthError(Exception):
    """GitLab refused or did not answer a sign-in step; the message names the cause and the fix."""


@dataclass(frozen=True)
class OAuthApp:
    """The application registered in GitLab (its id and secret) and where GitLab sends people back."""

    gitlab_url: str
    client_id: str
    secret: str = field(repr=False)
    redirect_uri: str

    def __repr__(self) -> str:
        return f"OAuthApp(gitlab_url={self.gitlab_url!r}, client_id={self.client_id!r}, secret=**********)"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 challenge, as GitLab's docs compute it: base64url of SHA-256, no padding.

    >>> pkce_challenge("ks02i3jdikdo2k0dkfodf3m39rjfjsdk0wk349rj3jrhf")  # the example in GitLab's docs
    '2i0WFA-0AerkjQm4X4oDEhqA17QIAKNjXpagHBXmO_U'
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(app: OAuthApp, *, state: str, verifier: str) -> str:
    """Where to send the browser: GitLab's consent page for `SCOPE`, back to the redirect URI with the code."""
    query = urlencode({"client_id": app.client_id, "redirect_uri": app.redirect_uri, "response_type": "code",
                       "state": state, "scope": SCOPE, "code_challenge": pkce_challenge(verifier),
                       "code_challenge_method": "S256"})
    return f"{app.gitlab_url}/oauth/authorize?{query}"


async def _post(session: aiohttp.ClientSession, app: OAuthApp, path: str, data: dict[str, str],
                timeout: float) -> tuple[int, Any]:
    """One form POST to GitLab's /oauth endpoint: (status, decoded JSON or None)."""
    url = f"{app.gitlab_url}{path}"
    async with session.post(url, data=data, headers={"Accept": "application/json"}, proxy=env_proxy(url),
                            timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as response:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = None
        return response.status, body


async def exchange_code(session: aiohttp.ClientSession, app: OAuthApp, code: str, verifier: str,
                        *, timeout: float = TIMEOUT) -> str:
    """The person's access token for the authorization `code` (POST /oauth/token); `OAuthError` else."""
    data = {"client_id": app.client_id, "client_secret": app.secret, "code": code,
            "grant_type": "authorization_code", "redirect_uri": app.redirect_uri, "code_verifier": verifier}
    try:
        status, body = await _post(session, app, "/oauth/token", data, timeout)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise OAuthError(f"GitLab at {app.gitlab_url} did not answer the sign-in ({type(exc).__name__}): "
                         "try again in a moment; the bot must reach GITLAB_URL") from None
    token = body.get("access_token") if isinstance(body, dict) else None
    if status == 200 and isinstance(token, str) and token:
        return token
    raise OAuthError(_refusal(status, body))


def _refusal(status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if error == "invalid_client":
        return ("GitLab does not recognise the dashboard's application or its secret (invalid_client): copy the "
                "Application ID and Secret again into REVIEWBOT_GITLAB_APP_ID and REVIEWBOT_GITLAB_APP_SECRET")
    if error == "invalid_grant":
        return ("GitLab refused the sign-in code (invalid_grant: used, older than 10 minutes, or for another "
                "redirect URI): sign in again; if it persists, the application's Redirect URI must be "
                "public_url + /auth/gitlab/callback")
    return f"GitLab answered the sign-in with {status}{f' ({error})' if isinstance(error, str) else ''}: try again"


async def revoke(session: aiohttp.ClientSession, app: OAuthApp, token: str, *, timeout: float = TIMEOUT) -> None:
    """Revoke the person's token once read (POST /oauth/revoke): the bot keeps none. A failure is only logged:
    the token expires by itself within two hours."""
    data = {"client_id": app.client_id, "client_secret": app.secret, "token": token}
    try:
        status, _ = await _post(session, app, "/oauth/revoke", data, timeout)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("GitLab did not answer the revocation of a sign-in token (%s); it expires within 2 hours",
                    type(exc).__name__)
        return
    if status != 200:
        log.warning("GitLab answered the revocation of a sign-in token with %d; it expires within 2 hours", status)
