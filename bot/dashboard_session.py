"""The dashboard's GitLab sign-in cookies: the session (who, which projects) and the short-lived sign-in flow.

Why signed cookies and no session table: the dashboard may run in several processes (and be restarted), and
a cookie signed with a key derived from the OAuth application's secret is checked alike by all of them with
no shared state. The session holds the GitLab user's id and name and the ids of the projects they could see
when they signed in, never their GitLab token (revoked once read), and is refused `SESSION_MAX_AGE` after
it was issued, whatever the browser does; renewing the application's secret signs everyone out. Only the
sign-outs are shared (`bot.storage.signouts`, looked up by `bot.dashboard.ended`): a signed-out cookie, or
one issued before `reviewbot signout-all`, is refused by every process. A person's access changed in GitLab
reaches the dashboard at their next sign-in (at most 8 hours later).

The flow cookie binds the OAuth `state` to the browser that started the sign-in (GitLab's "Prevent CSRF
attacks": a one-time state bound to the user agent) for `FLOW_MAX_AGE`; the PKCE verifier is derived from
that state with the key, so it is never sent to the browser or stored anywhere.

Pure functions, no I/O: times are unix seconds passed in.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from itertools import accumulate
from urllib.parse import urlsplit

__all__ = ["Session", "derive_key", "encode_session", "decode_session", "flow_value", "flow_next", "verifier_for",
           "local_path", "SESSION_COOKIE", "FLOW_COOKIE", "SESSION_MAX_AGE", "FLOW_MAX_AGE", "COOKIE_LIMIT"]

SESSION_COOKIE = "reviewbot_session"
FLOW_COOKIE = "reviewbot_signin"
SESSION_MAX_AGE = 8 * 3600
FLOW_MAX_AGE = 600  # as long as GitLab's authorization code lives
COOKIE_LIMIT = 3900  # browsers keep cookies up to 4096 bytes with their name: about 1,000 to 2,000 project ids


@dataclass(frozen=True)
class Session:
    """A person signed in with GitLab: their user id and username, the projects they could see, when."""

    user_id: int
    username: str
    projects: frozenset[int]
    issued: int


def derive_key(app_secret: str) -> bytes:
    """The cookies' signing key: an HMAC of a fixed label keyed by the OAuth application's secret, so every
    process with the same settings agrees, and the secret itself signs nothing."""
    return hmac.new(app_secret.encode(), b"reviewbot dashboard cookie key v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, label: str, payload: str) -> str:
    return _b64(hmac.new(key, f"{label} {payload}".encode(), hashlib.sha256).digest())


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def encode_session(key: bytes, session: Session) -> str:
    """The cookie value: compressed JSON (the project ids as differences, sorted: they compress well) and its MAC.

    >>> key = derive_key("s")
    >>> s = Session(7, "ann", frozenset({3, 9, 12}), 1000)
    >>> decode_session(key, encode_session(key, s), now=1000 + 3600) == s
    True
    """
    ids = sorted(session.projects)
    steps = [b - a for a, b in zip([0, *ids], ids)]
    raw = json.dumps([session.user_id, session.username, session.issued, steps], separators=(",", ":"))
    payload = _b64(zlib.compress(raw.encode(), 9))
    return f"{payload}.{_mac(key, 'session', payload)}"


def decode_session(key: bytes, value: str, *, now: float) -> Session | None:
    """The session in `value` if its MAC is right and it was issued at most `SESSION_MAX_AGE` ago, else None."""
    payload, dot, mac = value.rpartition(".")
    if not dot or not _same(mac, _mac(key, "session", payload)):
        return None
    try:
        user_id, username, issued, steps = json.loads(zlib.decompress(_unb64(payload)))
    except (ValueError, TypeError, binascii.Error, zlib.error):  # only our own key signs, but be strict anyway
        return None
    if not (isinstance(user_id, int) and isinstance(username, str) and isinstance(issued, int) and
            isinstance(steps, list) and all(isinstance(s, int) for s in steps)):
        return None
    if not 0 <= now - issued <= SESSION_MAX_AGE:
        return None
    return Session(user_id, username, frozenset(accumulate(steps)), issued)


def flow_value(key: bytes, state: str, next_path: str, issued: int) -> str:
    """The sign-in flow's cookie: when it started, the OAuth state, where to go afterwards, and their MAC."""
    payload = f"{issued}.{state}.{_b64(next_path.encode())}"
    return f"{payload}.{_mac(key, 'flow', payload)}"


def flow_next(key: bytes, value: str | None, state: str | None, *, now: float) -> str | None:
    """Where to go after the sign-in, if `value` is this browser's flow cookie for `state`, signed by `key` and
    at most `FLOW_MAX_AGE` old; None otherwise (a callback this browser did not start: refused)."""
    if not value or not state:
        return None
    payload, dot, mac = value.rpartition(".")
    issued, _, rest = payload.partition(".")
    cookie_state, _, next_b64 = rest.partition(".")
    if not dot or not _same(mac, _mac(key, "flow", payload)) or not _same(cookie_state, state):
        return None
    if not (issued.isascii() and issued.isdecimal()) or not 0 <= now - int(issued) <= FLOW_MAX_AGE:
        return None
    return local_path(_unb64(next_b64).decode("utf-8", "replace"))


def verifier_for(key: bytes, state: str) -> str:
    """The PKCE code verifier of the sign-in with this `state`: 43 URL-safe characters (RFC 7636 asks 43 to
    128 of A-Z a-z 0-9 - . _ ~), derived, so the callback recomputes it instead of storing it."""
    return _b64(hmac.new(key, f"pkce {state}".encode(), hashlib.sha256).digest())


def local_path(value: str) -> str:
    r"""`value` if it is a path on this site, else "/" (a sign-in must not redirect elsewhere).

    Browsers drop tabs and newlines from addresses and read a backslash as a slash, so "/\t/evil" would
    become "//evil": any control character or backslash is refused outright.

    >>> local_path("/projects/7?week=1"), local_path("//evil.example/x"), local_path("https://evil.example")
    ('/projects/7?week=1', '/', '/')
    >>> local_path("/\t/evil.example/"), local_path("/\\evil.example")
    ('/', '/')
    """
    if any(c == "\\" or not c.isprintable() for c in value):
        return "/"
    parts = urlsplit(value)
    ok = value.startswith("/") and not value.startswith("//") and not parts.scheme and not parts.netloc
    return value if ok else "/"
