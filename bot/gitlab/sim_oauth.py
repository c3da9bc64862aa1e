"""GitLab's OAuth 2.0 provider in the simulator: applications, the signed-in browser user, codes and tokens.

Plain Python, no I/O: the routes in sim_routes.py (GET /oauth/authorize, POST /oauth/token, POST /oauth/revoke)
call these methods of `SimState`. Shapes follow GitLab's "OAuth 2.0 identity provider API" (doc/api/oauth2.md)
and Doorkeeper, which implements it: the authorization code flow with or without PKCE (S256 or plain), a code
valid 10 minutes and used once, access tokens valid 2 hours, errors as `{"error", "error_description"}` (400,
401 for a client that fails authentication), and a refused consent sent back as `error=access_denied`.

    app = state.add_oauth_app("https://bot.example/auth/gitlab/callback")
    state.browser_user = state.add_user("ann")   # who is signed in to GitLab in the browser
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlencode

from bot.gitlab.sim_model import SimUser

if TYPE_CHECKING:
    from bot.gitlab.sim_state import SimState

__all__ = ["SimOAuthApp", "SimGrant", "OAuthActions", "OAuthData", "OAuthAnswer", "CODE_LIFETIME", "TOKEN_LIFETIME"]

CODE_LIFETIME = timedelta(minutes=10)  # Doorkeeper's authorization_code_expires_in, as GitLab keeps it
TOKEN_LIFETIME = 7200  # seconds: "Access tokens expire after two hours" (doc/integration/oauth_provider.md)
INVALID_GRANT = ("The provided authorization grant is invalid, expired, revoked, does not match the redirection "
                 "URI used in the authorization request, or was issued to another client.")
INVALID_CLIENT = ("Client authentication failed due to unknown client, no client authentication included, or "
                  "unsupported authentication method.")
DENIED = "The resource owner or authorization server denied the request."


@dataclass
class SimOAuthApp:
    """An application registered under Applications: its Application ID (`uid`), Secret, Redirect URI(s) and
    scopes; `confidential` ones must authenticate with the secret at /oauth/token."""

    uid: str
    secret: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...] = ("read_api",)
    confidential: bool = True


@dataclass
class SimGrant:
    """An authorization code not yet exchanged."""

    app_uid: str
    user_id: int
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: datetime
    challenge: str | None = None
    challenge_method: str | None = None


@dataclass(frozen=True)
class OAuthAnswer:
    """What an /oauth endpoint answers: a redirect (`location`), JSON (`body`) or an HTML error page (`page`)."""

    status: int
    location: str | None = None
    body: dict[str, Any] | None = None
    page: str | None = None


def _error(status: int, error: str, description: str) -> OAuthAnswer:
    return OAuthAnswer(status, body={"error": error, "error_description": description})


def _back(redirect_uri: str, **params: str | None) -> OAuthAnswer:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return OAuthAnswer(302, location=f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}")


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class OAuthData:
    """The registered applications and the codes not yet exchanged."""

    apps: dict[str, SimOAuthApp] = field(default_factory=dict)
    grants: dict[str, SimGrant] = field(default_factory=dict)


class OAuthActions:
    """The OAuth provider's part of `SimState` (a mixin): `browser_user` is who is signed in to GitLab in the
    browser that follows /oauth/authorize (None: GitLab sends it to its sign-in page); `oauth_deny` plays a
    person pressing Deny on the consent page."""

    browser_user: SimUser | None
    oauth_deny: bool
    oauth: OAuthData

    def _init_oauth(self) -> None:
        self.browser_user, self.oauth_deny, self.oauth = None, False, OAuthData()

    def add_oauth_app(self: SimState, *redirect_uris: str, scopes: Iterable[str] = ("read_api",),
                      confidential: bool = True) -> SimOAuthApp:
        """Register an application (its id and secret drawn from the seeded generator, 64 hex digits as GitLab's)."""
        uid, secret = self.new_uuid().replace("-", "") * 2, "gloas-" + self.new_uuid().replace("-", "") * 2
        app = SimOAuthApp(uid, secret, tuple(redirect_uris), tuple(scopes), confidential)
        self.oauth.apps[uid] = app
        return app

    def oauth_authorize(self: SimState, params: dict[str, Any]) -> OAuthAnswer:
        """GET /oauth/authorize: the consent, approved at once for `browser_user` (as for an application they
        authorized before, or a trusted one), then back to the redirect URI with `code` and `state`."""
        app = self.oauth.apps.get(str(params.get("client_id", "")))
        redirect_uri = str(params.get("redirect_uri", ""))
        if app is None:
            return OAuthAnswer(401, page=f"An error has occurred: {INVALID_CLIENT}")
        if redirect_uri not in app.redirect_uris:  # never redirected to: the page says so
            return OAuthAnswer(400, page="An error has occurred: The redirect URI included is not valid.")
        state = params.get("state")
        if params.get("response_type") != "code":
            return _back(redirect_uri, error="unsupported_response_type", state=state,
                         error_description="The authorization server does not support this response type.")
        scopes = tuple(str(params.get("scope") or " ".join(app.scopes)).split())
        if not scopes or not set(scopes) <= set(app.scopes):
            return _back(redirect_uri, error="invalid_scope", state=state,
                         error_description="The requested scope is invalid, unknown, or malformed.")
        method = params.get("code_challenge_method") or ("plain" if params.get("code_challenge") else None)
        if method not in (None, "plain", "S256"):
            return _back(redirect_uri, error="invalid_request", state=state,
                         error_description="The code_challenge_method must be one of plain, S256.")
        if self.browser_user is None:
            return OAuthAnswer(302, location=f"{self.web}/users/sign_in")
        if self.oauth_deny:
            return _back(redirect_uri, error="access_denied", error_description=DENIED, state=state)
        code = self.new_uuid().replace("-", "") * 2
        self.oauth.grants[code] = SimGrant(app.uid, self.browser_user.id, redirect_uri, scopes,
                                           self.now() + CODE_LIFETIME, params.get("code_challenge"), method)
        return _back(redirect_uri, code=code, state=state)

    def oauth_token(self: SimState, params: dict[str, Any], basic: tuple[str, str] | None) -> OAuthAnswer:
        """POST /oauth/token with grant_type=authorization_code: the code (once, within 10 minutes, for the same
        client and redirect URI, with the PKCE verifier when a challenge was sent) for an access token."""
        client_id, secret = basic or (str(params.get("client_id", "")), params.get("client_secret"))
        app = self.oauth.apps.get(client_id)
        if app is None or (app.confidential or secret is not None) and \
                not hmac.compare_digest(str(secret or ""), app.secret):
            return _error(401, "invalid_client", INVALID_CLIENT)
        if params.get("grant_type") != "authorization_code":
            return _error(400, "unsupported_grant_type",
                          "The authorization grant type is not supported by the authorization server.")
        grant = self.oauth.grants.pop(str(params.get("code", "")), None)
        if grant is None or grant.app_uid != app.uid or grant.expires_at < self.now() or \
                grant.redirect_uri != params.get("redirect_uri") or not _verified(grant, params.get("code_verifier")):
            return _error(400, "invalid_grant", INVALID_GRANT)
        token = self.new_uuid().replace("-", "") * 2
        self.add_token(grant.user_id, token, scopes=grant.scopes)
        created = int(self.now().timestamp())
        return OAuthAnswer(200, body={"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME,
                                      "refresh_token": self.new_uuid().replace("-", "") * 2,
                                      "scope": " ".join(grant.scopes), "created_at": created})

    def oauth_revoke(self: SimState, params: dict[str, Any], basic: tuple[str, str] | None) -> OAuthAnswer:
        """POST /oauth/revoke: the token stops working; 200 and `{}` whether or not it was known (RFC 7009)."""
        client_id, secret = basic or (str(params.get("client_id", "")), params.get("client_secret"))
        app = self.oauth.apps.get(client_id)
        if app is None or app.confidential and not hmac.compare_digest(str(secret or ""), app.secret):
            return _error(401, "invalid_client", INVALID_CLIENT)
        self.tokens.pop(str(params.get("token", "")), None)
        return OAuthAnswer(200, body={})


def _verified(grant: SimGrant, verifier: Any) -> bool:
    """PKCE (RFC 7636): the verifier's S256 hash (or itself, for `plain`) must equal the challenge."""
    if grant.challenge is None:
        return True
    if not isinstance(verifier, str) or not verifier:
        return False
    expected = _s256(verifier) if grant.challenge_method == "S256" else verifier
    return hmac.compare_digest(expected, grant.challenge)
