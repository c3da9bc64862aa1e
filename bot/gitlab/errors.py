"""`GitLabError`: a failed GitLab API call, saying what went wrong and how to fix it (never the token)."""
from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from graph.words import count_of

__all__ = ["GitLabError", "error_message", "route_missing", "scope_missing", "project_missing", "not_api", "readable",
           "untrusted", "UNTRUSTED", "PROXY_FIX", "redirected", "without_logins"]

_HINTS = {
    400: "GitLab rejected the request's parameters",
    401: "GITLAB_TOKEN is wrong or expired; create a token with api scope and set GITLAB_TOKEN",
    403: "the bot's token may not do this; give the bot user Developer access (Maintainer to manage hooks) "
         "and a token with api scope (an archived project refuses every write, whatever the access)",
    404: "check the project id or path and that the bot user is a member (private projects "
         "look like 404 to outsiders)",
    409: "GitLab reported a conflict; the object changed meanwhile, fetch it again",
    422: "GitLab could not process the values sent",
    429: "GitLab's rate limit was still exceeded after retrying; lower the bot's request rate or raise the limit",
}
# What a hint says first when GitLab's own text does not say it ("404 Project Not Found" does).
_CAUSES = {404: "not found"}
NO_SCOPE = ("GITLAB_TOKEN lacks the api scope this call needs (a read_api token can only read): create a token "
            "with the api scope and export GITLAB_TOKEN=...")
NO_ROUTE = ("this GitLab has no such API endpoint: it is older than the version that added it, or GITLAB_URL points "
            "at something else; upgrade GitLab or check GITLAB_URL")
NO_API = ("the answer is not GitLab's API (GitLab answers a 404 in JSON): check GITLAB_URL, the instance's base URL "
          "(e.g. https://gitlab.example.com, without /api/v4)")


class GitLabError(Exception):
    """A GitLab API call failed: `status` is the HTTP status (None when GitLab could not be reached).

    >>> str(GitLabError(401, "GET", "/user", error_message(401, b'{"message":"401 Unauthorized"}')))[:70]
    'GitLab GET /user failed (401): 401 Unauthorized. GITLAB_TOKEN is wrong'
    """

    def __init__(self, status: int | None, method: str, path: str, message: str, *,
                 retry_after: float | None = None, no_route: bool = False, no_scope: bool = False,
                 no_project: bool = False) -> None:
        self.status, self.method, self.path, self.message = status, method, path, message
        self.retry_after = retry_after  # seconds GitLab's last answer asked to wait (429/503), if it said
        self.no_route = no_route  # a 404 for the endpoint itself (`route_missing`), not for what it names
        self.no_scope = no_scope  # a 403 for the token's scopes (`scope_missing`), not for the bot user's access
        self.no_project = no_project  # a 404 for the project in the path (`project_missing`), not for the MR in it
        super().__init__(f"GitLab {method} {path} failed ({status or 'no response'}): {message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def general(self) -> bool:
        """Whether the failure is GitLab's as a whole, not the one answer's: no answer, a token refused (401) or
        without the api scope, a rate limit (429). Any further call would fail alike, so a lookup that can go
        without its one answer does not: the event fails, to be retried."""
        return self.status is None or self.no_scope or self.status in (401, 429)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return None


def route_missing(status: int | None, body: bytes) -> bool:
    """Whether a 404 says GitLab has no such endpoint (`{"error":"404 Not Found"}`, its catch-all route), rather
    than no such object (`{"message":"404 Merge Request Not Found"}`, `{"message":"404 Not found"}`): an
    endpoint added in a later GitLab version than the one answering.

    >>> route_missing(404, b'{"error":"404 Not Found"}'), route_missing(404, b'{"message":"404 Not found"}')
    (True, False)
    """
    data = _json(body) if status == 404 else None
    return isinstance(data, dict) and "message" not in data and data.get("error") == "404 Not Found"


def project_missing(status: int | None, body: bytes) -> bool:
    """Whether a 404 says the project is not there for the bot (`{"message":"404 Project Not Found"}`: deleted,
    or hidden from a bot user no longer a member), rather than something in it (`404 Merge Request Not Found`):
    every call about the project answers the same then.

    >>> project_missing(404, b'{"message":"404 Project Not Found"}')
    True
    >>> project_missing(404, b'{"message":"404 Merge Request Not Found"}')
    False
    """
    data = _json(body) if status == 404 else None
    return isinstance(data, dict) and data.get("message") == "404 Project Not Found"


def not_api(status: int | None, body: bytes) -> bool:
    """Whether a 404 came from something other than GitLab's API (a web server's or a proxy's page, plain text):
    GitLab answers every API 404 with a JSON object, so such a page says GITLAB_URL points elsewhere, not that
    the project is missing or the bot user is no member of it.

    >>> not_api(404, b"<html><title>Error response</title></html>"), not_api(404, b'{"message":"404 Not found"}')
    (True, False)
    """
    return status == 404 and not isinstance(_json(body), dict)


def scope_missing(status: int | None, body: bytes) -> bool:
    """Whether a 403 refuses the token's scopes (`{"error":"insufficient_scope", ...}`, say a write with a
    read_api token) rather than the user's access (`{"message":"403 Forbidden"}`).

    >>> scope_missing(403, b'{"error":"insufficient_scope","scope":"api"}'), scope_missing(403, b'{}')
    (True, False)
    """
    data = _json(body) if status == 403 else None
    return isinstance(data, dict) and data.get("error") == "insufficient_scope"


UNTRUSTED = ("if GitLab's certificate comes from a private CA, export SSL_CERT_FILE=/path/to/ca-bundle.pem (a PEM "
             "file with that CA; every command reads it)")
_VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(')\]]+)")


def untrusted(text: str) -> str | None:
    """Why a TLS client refused GitLab's certificate, read from its error text (aiohttp's and requests' both
    quote OpenSSL's), or None when the text is no certificate refusal.

    >>> untrusted("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)")
    'self-signed certificate'
    >>> untrusted("Cannot connect to host gitlab:443 ssl:default [Connection refused]") is None
    True
    """
    found = _VERIFY_FAILED.search(text)
    return found.group(1).strip() if found else None


def redirected(status: int | None, location: str) -> str | None:
    """What to do about a redirect, or None for another status. GitLab's API never redirects: a web server in
    front of it does (http:// to https://, an old host name to the new one), and following it would send the
    token nowhere (aiohttp drops it for another address: GitLab then answers 401, taken for a wrong token) and
    turn a POST into a GET. The target is shown without its query, which may hold anything.

    >>> redirected(301, "https://gitlab.example.com/api/v4/user?x=1")[:53]
    'redirected to https://gitlab.example.com/api/v4/user:'
    """
    if status is None or not 300 <= status < 400:
        return None
    parts = urlsplit(location)
    host = parts.netloc.rpartition("@")[2]  # never a user:password
    target = f" to {urlunsplit((parts.scheme, host, parts.path, '', ''))}" if parts.scheme and host else ""
    return (f"redirected{target}: set GITLAB_URL to the address GitLab answers at (its external_url, e.g. "
            "https://gitlab.example.com)")


_LOGIN = re.compile(r"(?<=://)[^\s/?#@'\"<>]+@")  # a URL's user:password@ (or a token in its place)


def without_logins(text: str) -> str:
    """`text` with the logins in its URLs (`user:password@`) replaced by `***@`. aiohttp names the proxy, with the
    login the environment gave it (HTTPS_PROXY=http://user:password@proxy:3128), in the error of a refused
    CONNECT: "407, message='Proxy Authentication Required', url='http://user:password@proxy:3128'".

    >>> without_logins("407, url='http://squid:s3cret@proxy:3128'; see https://gitlab.example.com/help")
    "407, url='http://***@proxy:3128'; see https://gitlab.example.com/help"
    """
    return _LOGIN.sub("***@", text)


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _page_text(page: str) -> str:
    """The words of an HTML page (a proxy's 502, a sign-in page): its `<title>`, else its text without markup,
    cut short; the page itself would fill the log and the dead-letter reason with markup.

    >>> _page_text("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>...</body></html>")
    '502 Bad Gateway'
    >>> _page_text("<html><body><h1>Service &amp; API down</h1><p>Try later.</p></body></html>")
    'Service & API down Try later.'
    """
    found = _TITLE.search(page)
    words = found.group(1) if found and found.group(1).strip() else _TAG.sub(" ", _HIDDEN.sub(" ", page))
    return " ".join(html.unescape(words).split())[:120]


def readable(text: str) -> str:
    """An error answer's text as a person reads it: an HTML page's words (`_page_text`), other text as it is."""
    stripped = text.strip()
    return _page_text(stripped) if stripped.startswith("<") else text


def _body_text(body: bytes) -> str:
    """GitLab's error text: `message` (string or field→errors dict), `error`, an HTML page's title, or the
    plain body."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("<"):
        return readable(text)
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(data, dict):
        detail = data.get("message", data.get("error", data))
        return detail if isinstance(detail, str) else json.dumps(detail)[:200]
    return text[:200]


# What to check when the proxy the environment names (`bot.gitlab.proxy`) is what failed, not GitLab
PROXY_FIX = ("check the proxy the environment names (HTTPS_PROXY or HTTP_PROXY, else ALL_PROXY: its address and "
             "login), or name GitLab's host in NO_PROXY to connect directly")


def error_message(status: int | None, body: bytes, *, attempts: int = 1, detail: str = "",
                  through_proxy: bool = False) -> str:
    """What failed and the fix, e.g. "401 Unauthorized. GITLAB_TOKEN is wrong or expired; …"; with no answer
    (`status` None) `through_proxy` says the proxy was not reached or refused the connection.

    >>> error_message(404, b'{"message":"404 Project Not Found"}')[:48]
    '404 Project Not Found. check the project id or p'
    """
    said = _body_text(body) if body else detail
    if status is None and (reason := untrusted(detail)):
        return f"GitLab's certificate is not trusted here ({reason}): {UNTRUSTED}"
    tries = count_of(attempts, "attempt")
    if status is None and through_proxy:
        return f"{said or 'no answer'}. Could not reach GitLab through the proxy after {tries}; {PROXY_FIX}"
    if status is None:
        return f"{said or 'no answer'}. Could not reach GitLab after {tries}; check GITLAB_URL and the network"
    if status >= 500:
        return f"{said}. GitLab kept failing after {tries}; check GitLab's health and retry later"
    hint = NO_ROUTE if route_missing(status, body) else NO_API if not_api(status, body) else \
        NO_SCOPE if scope_missing(status, body) else \
        _with_cause(status, said, _HINTS.get(status, "GitLab refused the request"))
    return f"{said}. {hint}" if said else hint


def _with_cause(status: int, said: str, hint: str) -> str:
    """The hint, led by its cause unless GitLab's text says it already.

    >>> _with_cause(404, "404 Project Not Found", "check"), _with_cause(404, "", "check")
    ('check', 'not found: check')
    """
    cause = _CAUSES.get(status)
    return f"{cause}: {hint}" if cause and cause not in said.lower() else hint
