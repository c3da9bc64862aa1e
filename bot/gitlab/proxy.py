"""`env_proxy`: the HTTP proxy the environment names for GitLab (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).

Why: a self-hosted GitLab is often reached through a company's proxy. `reviewbot install` (python-gitlab on
requests) goes through it as curl does; the bot's aiohttp sessions read no environment by default, so `serve`,
`worker` and `backfill` tried to connect directly and never reached GitLab. Why not
`ClientSession(trust_env=True)`: it also reads ~/.netrc, and an entry for GitLab's host (git's own credentials,
say) became basic auth beside the bot's token, which aiohttp refuses with a ValueError on every call.
"""
from __future__ import annotations

from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass_environment

__all__ = ["env_proxy"]


def env_proxy(url: str) -> str | None:
    """The proxy URL for `url` (a `user:password@` in it is the proxy's login), or None to connect directly.

    As curl and requests read them: the variable of the URL's scheme (`https_proxy` or `HTTPS_PROXY`,
    `http_proxy` or `HTTP_PROXY`), else `all_proxy`, unless `no_proxy` / `NO_PROXY` names the host (a name,
    a domain suffix such as `.example.com`, or `*`).
    """
    parts = urlsplit(url)
    proxies = getproxies_environment()
    if not parts.hostname or proxy_bypass_environment(parts.hostname, proxies):
        return None
    return proxies.get(parts.scheme) or proxies.get("all")
