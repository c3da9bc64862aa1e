"""HTTP plumbing of the GitLab simulator: error bodies, request params, offset pagination like GitLab's.

Pagination follows GitLab's REST docs: `page` (default 1) and `per_page` (default 20, clamped to 100), headers
X-Page, X-Per-Page, X-Next-Page / X-Prev-Page (empty at the ends), X-Total, X-Total-Pages and an RFC 5988 `Link`
with prev/next/first/last absolute URLs repeating every query parameter. Totals are omitted above 10,000 rows.
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Sequence

from aiohttp import web
from multidict import MultiDict

__all__ = ["ApiError", "json_response", "paginate", "read_params", "int_param", "time_param", "bool_param",
           "id_list", "PUBLIC", "ANY_SCOPE", "request_token", "scope_allows", "insufficient_scope"]

PUBLIC = "gitlab_sim_public"
ANY_SCOPE = "gitlab_sim_any_scope"  # an endpoint every token may call whatever its scopes (it describes the token)


class ApiError(Exception):
    """An error answer in GitLab's JSON shape, e.g. ApiError(404, message="404 Project Not Found")."""

    def __init__(self, status: int, *, message: Any = None, error: str | None = None) -> None:
        super().__init__(f"{status}: {message or error}")
        self.status = status
        self.body = {"error": error} if error is not None else {"message": message}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def request_token(request: web.Request) -> str | None:
    """The token GitLab would read: PRIVATE-TOKEN, or an OAuth/PAT `Authorization: Bearer`."""
    if "PRIVATE-TOKEN" in request.headers:
        return request.headers["PRIVATE-TOKEN"]
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" and value else None


def scope_allows(scopes: Sequence[str], method: str, path: str) -> bool:
    """GitLab's API scopes: `api` may do anything, `read_api` only read, `read_user` only read users."""
    reading = method in ("GET", "HEAD")
    return "api" in scopes or reading and ("read_api" in scopes or "read_user" in scopes and
                                           path.startswith("/api/v4/user"))


def insufficient_scope(method: str) -> web.Response:
    """GitLab's 403 for a token without the scope an endpoint needs (the OAuth 2.0 bearer error, not the usual
    `{"message": ...}`), with its WWW-Authenticate challenge."""
    needed = "api read_api" if method in ("GET", "HEAD") else "api"
    description = "The request requires higher privileges than provided by the access token."
    response = json_response({"error": "insufficient_scope", "error_description": description, "scope": needed},
                             status=403)
    response.headers["WWW-Authenticate"] = (f'Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", '
                                            f'error_description="{description}", scope="{needed}"')
    return response


async def read_params(request: web.Request) -> tuple[dict[str, Any], Any]:
    """Query parameters merged with the body (JSON or form, `key[]` lists); also returns the raw JSON body."""
    params: dict[str, Any] = _flatten(request.query)
    if not request.can_read_body:
        return params, None
    if request.content_type == "application/json":
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise ApiError(400, error=f"invalid JSON body: {exc}") from exc
        if isinstance(body, dict):
            params.update(body)
        return params, body
    form = await request.post()
    flat = _flatten(form)
    params.update(flat)
    return params, flat


def _flatten(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in pairs.keys():
        values = pairs.getall(key)
        if key.endswith("[]"):
            out[key[:-2]] = list(values)
        else:
            out[key] = values[-1]
    return out


def int_param(params: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, error=f"{name} is invalid") from exc


def bool_param(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    return value is True or str(value).lower() in ("true", "1", "yes")


def time_param(params: dict[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time parameter (`2024-05-01T10:00:00Z`); 400 like GitLab when malformed."""
    value = params.get(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace(" ", "+"))
    except ValueError as exc:
        raise ApiError(400, error=f"{name} is invalid") from exc


def id_list(value: Any) -> list[int]:
    """`reviewer_ids` as GitLab coerces it: a list, a single id, or a comma-separated string."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        return [int(item) for item in items if str(item).strip() != ""]
    except (TypeError, ValueError) as exc:
        raise ApiError(400, error="reviewer_ids is invalid") from exc


def _page_url(request: web.Request, page: int, per_page: int) -> str:
    query = MultiDict(request.rel_url.query)
    query["page"], query["per_page"] = str(page), str(per_page)
    return str(request.url.with_query(query))


def paginate(request: web.Request, items: Sequence[Any]) -> web.Response:
    """One page of `items` with GitLab's pagination headers."""
    page = max(int_param(dict(request.query), "page", 1) or 1, 1)
    per_page = min(max(int_param(dict(request.query), "per_page", 20) or 20, 1), 100)
    total = len(items)
    pages = max(math.ceil(total / per_page), 1)
    chunk = list(items[(page - 1) * per_page: page * per_page])
    response = json_response(chunk)
    has_next, has_prev = page < pages, 1 < page <= pages + 1
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Next-Page": str(page + 1) if has_next else "",
               "X-Prev-Page": str(page - 1) if has_prev else ""}
    links = [(page - 1, "prev")] if has_prev else []
    links += [(page + 1, "next")] if has_next else []
    links.append((1, "first"))
    if total <= 10_000:
        headers.update({"X-Total": str(total), "X-Total-Pages": str(pages)})
        links.append((pages, "last"))
    headers["Link"] = ", ".join(f'<{_page_url(request, n, per_page)}>; rel="{rel}"' for n, rel in links)
    response.headers.update(headers)
    return response
