"""CORS, for applications that call the proxy with `fetch` from a page of another origin.

Off unless `server.cors_allow_origins` lists origins (or `"*"`). For an allowed `Origin`, a
preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before
authentication, since browsers send it without credentials, allowing the method it asks for (a
route serves any method; the upstream decides). Any other preflight is refused by the handler
with a 403 that says the origin is not allowed, and logged like every refusal; every other
response, errors
included so that a page can read them, carries the origin and exposes the headers clients use
(`X-Request-Id`, `Retry-After`, rate-limit headers). The allowed origin is echoed, and
`Vary: Origin` keeps shared caches from mixing answers. The proxy's own endpoints (`/metrics`,
`/healthz`, `/readyz`) are never opened to pages: metrics need no key. The upstream's own
`Access-Control-*` headers never reach the client (`proxy.upstream`).
"""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import keys

PREFLIGHT_MAX_AGE_S = 600
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,32}")
OWN_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


def allowed_origin(request: web.Request) -> str | None:
    """The request's `Origin` if the config allows it here, else None."""
    origin = request.headers.get("Origin")
    policy = request[keys.SNAPSHOT].cors
    if origin is None or not policy.origins or request.path in OWN_PATHS:
        return None
    return origin if policy.allows(origin) else None


def is_preflight(request: web.Request) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


@web.middleware
async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer an allowed preflight at once; everything else goes to the routes."""
    if not is_preflight(request) or allowed_origin(request) is None:
        return await handler(request)
    response = web.Response(status=204)
    asked_method = request.headers["Access-Control-Request-Method"]
    response.headers["Access-Control-Allow-Methods"] = (
        asked_method if _HTTP_TOKEN.fullmatch(asked_method) else "POST"
    )
    asked = request.headers.get("Access-Control-Request-Headers")
    if asked:
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the headers a browser needs to hand any response to the page."""
    if "Origin" in request.headers and request[keys.SNAPSHOT].cors.origins:
        response.headers.add("Vary", "Origin")  # the answer depends on it, allowed or not
    origin = allowed_origin(request)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = "*"
