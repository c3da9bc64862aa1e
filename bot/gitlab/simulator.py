"""A GitLab simulator behind real HTTP, shared by every test and the demo.

`make_simulator_app(state)` is an aiohttp app speaking REST v4 under /api/v4 with GitLab's JSON shapes;
`run_simulator(state)` serves it on 127.0.0.1 and delivers webhooks from `state.outbox`. Like GitLab it wants a
token (`PRIVATE-TOKEN` or `Authorization: Bearer`) with the scope the call needs (403 insufficient_scope else),
paginates, rate-limits (429 + Retry-After + RateLimit-*), fails on demand (`state.fail_next`,
`state.failure_rate`), answers late on demand (`state.hold_path`), records every request in `state.requests`
and answers unknown endpoints with GitLab's 404 while recording them in `state.unknown`
(`state.assert_no_unknown()`).
`state.version` plays an older GitLab: endpoints added later (`sim_routes.since`) answer its missing-route 404,
as the Enterprise Edition's endpoints (`sim_routes.ee_only`) do when `state.community_edition` is set.

    async with run_simulator() as (state, base_url):
        project = state.add_project("acme/app")
        ...
"""
from __future__ import annotations

import contextlib
import json
import ssl
import time
from email.utils import formatdate
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from bot.gitlab.sim_http import (
    ANY_SCOPE, PUBLIC, ApiError, insufficient_scope, json_response, read_params, request_token, scope_allows,
)
from bot.gitlab.sim_model import SimDiff, SimRequest
from bot.gitlab.sim_routes import CALLER, PARAMS, STATE, Handler, add_routes, added_in, enterprise
from bot.gitlab.sim_seed import SeededProject, seed_project
from bot.gitlab.sim_state import RateInfo, SimState
from bot.gitlab.sim_webhooks import WebhookSender

__all__ = ["make_simulator_app", "run_simulator", "SimState", "SimDiff", "seed_project", "SeededProject",
           "WebhookSender", "dump_request_log"]

_SENDER = web.AppKey("gitlab_sim_sender", WebhookSender)


def _rate_headers(rate: RateInfo) -> dict[str, str]:
    return {"RateLimit-Name": "throttle_authenticated_api", "RateLimit-Limit": str(rate.limit),
            "RateLimit-Observed": str(rate.observed), "RateLimit-Remaining": str(max(rate.limit - rate.observed, 0)),
            "RateLimit-Reset": str(int(rate.reset)), "RateLimit-ResetTime": formatdate(rate.reset, usegmt=True)}


def _throttled(retry_after: float, rate: RateInfo) -> web.Response:
    """Rack::Attack's answer: plain text "Retry later" with Retry-After and the RateLimit headers."""
    response = web.Response(status=429, text="Retry later\n", content_type="text/plain")
    response.headers.update(_rate_headers(rate))
    response.headers["Retry-After"] = str(max(int(retry_after), 0) if retry_after >= 1 else retry_after)
    return response


def _injected(state: SimState, failure: tuple[int, float | None], rate: RateInfo) -> web.Response:
    status, retry_after = failure
    if status == 429:
        return _throttled(state.retry_after if retry_after is None else retry_after, rate)
    if status == 404:  # the path itself is not there: GitLab's catch-all route (an endpoint older versions lack)
        return json_response({"error": "404 Not Found"}, status=404)
    if status in (502, 504):  # GitLab behind it is down or slow: the proxy in front answers with its own page
        return web.Response(status=status, text=_proxy_page(status), content_type="text/html")
    phrase = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error", 502: "Bad Gateway",
              503: "Service Unavailable"}.get(status, "Error")
    return json_response({"message": f"{status} {phrase}"}, status=status)


def _proxy_page(status: int) -> str:
    """nginx's error page, as a proxy in front of GitLab sends it when GitLab does not answer."""
    title = f"{status} {'Bad Gateway' if status == 502 else 'Gateway Time-out'}"
    return (f"<!DOCTYPE html>\r\n<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


async def _answer(request: web.Request, handler: Handler, state: SimState, rate: RateInfo) -> web.StreamResponse:
    """Holds, failures, throttling, authentication, then the endpoint itself."""
    gate = state.hold_for(request.path, dict(request.query))
    if gate is not None:
        state.held.append(request.path)
        try:
            await gate.wait()
        finally:
            state.held.remove(request.path)
    failure = state.take_failure(request.path)
    if failure is not None:
        return _injected(state, failure, rate)
    if rate.exceeded:
        return _throttled(rate.reset - time.time(), rate)
    caller = state.token_user(request_token(request))
    if caller is None and not getattr(handler, PUBLIC, False):
        return json_response({"message": "401 Unauthorized"}, status=401)
    token = state.tokens.get(request_token(request) or "")
    if token is not None and not getattr(handler, ANY_SCOPE, False) and \
            not scope_allows(token.scopes, request.method, request.path.removeprefix(state.root_path)):
        return insufficient_scope(request.method)
    request[CALLER] = caller
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response(exc.body, status=exc.status)


@web.middleware
async def gitlab_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request; answer unknown endpoints like GitLab and remember them as `unknown`."""
    state = request.app[STATE]
    try:
        params, body = await read_params(request)
    except ApiError as exc:
        params, body, response = {}, None, json_response(exc.body, status=exc.status)
    else:
        response = None
    request[PARAMS] = params
    route_error = request.match_info.http_exception
    if route_error is not None:
        status = 405 if route_error.status == 405 else 404
        state.record(_recorded(request, body, status), unknown=True)
        text = "405 Method Not Allowed" if status == 405 else "404 Not Found"
        return json_response({"error": text}, status=status)
    if added_in(handler) > state.version or enterprise(handler) and state.community_edition:  # not in this GitLab
        state.record(_recorded(request, body, 404))
        return json_response({"error": "404 Not Found"}, status=404)
    rate = state.rate_check(request_token(request) or f"ip:{request.remote}")
    if response is None:
        response = await _answer(request, handler, state, rate)
    response.headers.update({k: v for k, v in _rate_headers(rate).items() if k not in response.headers})
    if state.seen_url and "Link" in response.headers:
        response.headers["Link"] = response.headers["Link"].replace(str(request.url.origin()), state.seen_url)
    state.record(_recorded(request, body, response.status))
    return response


def _recorded(request: web.Request, body: Any, status: int) -> SimRequest:
    return SimRequest(request.method, request.raw_path.split("?", 1)[0], dict(request.query), body, status)


async def _start_sender(app: web.Application) -> AsyncIterator[None]:
    """One ClientSession for webhook deliveries for the app's life; the pump runs while the app runs."""
    state = app[STATE]
    async with aiohttp.ClientSession() as session:
        sender = WebhookSender(state, session)
        app[_SENDER] = sender
        state.sender = sender
        sender.start()
        yield
        await sender.stop()
        state.sender = None


def make_simulator_app(state: SimState) -> web.Application:
    """The simulator as an aiohttp app (usable with pytest-aiohttp's `aiohttp_server`)."""
    app = web.Application(middlewares=[gitlab_middleware])
    app[STATE] = state
    add_routes(app, state.root_path)
    app.cleanup_ctx.append(_start_sender)
    return app


@contextlib.asynccontextmanager
async def run_simulator(state: SimState | None = None, port: int = 0, *,
                        ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[tuple[SimState, str]]:
    """Serve a simulator on 127.0.0.1 (`port` 0 picks a free one), over https with `ssl_context`; yields
    `(state, base_url)`.

    `base_url` has no /api/v4 suffix (what GITLAB_URL holds); `state.web` is set to it so `web_url` fields and
    X-Gitlab-Instance point at the simulator. With `state.root_path` set (GitLab's relative_url_root, e.g.
    "/gitlab"), every route is served under it and `base_url` ends with it, as GITLAB_URL does for such an
    instance; requests outside it are unknown.
    """
    state = state or SimState()
    runner = web.AppRunner(make_simulator_app(state), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        host, real_port = runner.addresses[0][:2]
        state.web = f"{'https' if ssl_context else 'http'}://{host}:{real_port}{state.root_path}"
        yield state, state.web
    finally:
        await runner.cleanup()


def dump_request_log(state: SimState) -> str:
    """The recorded requests as text lines, handy in a failing test's message."""
    return "\n".join(f"{r.status} {r.method} {r.path} {json.dumps(r.query)}" for r in state.requests)
