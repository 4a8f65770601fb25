"""CORS, for applications that call the proxy with `fetch` from a page of another origin.

Off unless `server.cors_allow_origins` lists origins (or `"*"`). For an allowed `Origin`, a
preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here, before
authentication, since browsers send it without credentials; every other response, errors
included so that a page can read them, carries the origin and exposes the headers clients use
(`X-Request-Id`, `Retry-After`, rate-limit headers). Origins are echoed, never `*`, so the same
answer also holds for requests made with credentials.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import keys

PREFLIGHT_MAX_AGE_S = 600


def allowed_origin(request: web.Request) -> str | None:
    """The request's `Origin` if the config allows it, else None."""
    origin = request.headers.get("Origin")
    allowed = request.app[keys.CONFIG].server.cors_allow_origins
    if origin is None or not allowed:
        return None
    return origin if "*" in allowed or origin in allowed else None


@web.middleware
async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer an allowed preflight at once; everything else goes to the routes."""
    preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if not preflight or allowed_origin(request) is None:
        return await handler(request)
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "POST, GET"
    asked = request.headers.get("Access-Control-Request-Headers")
    if asked:
        response.headers["Access-Control-Allow-Headers"] = asked
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
    return response


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the headers a browser needs to hand any response to the page."""
    origin = allowed_origin(request)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers.add("Vary", "Origin")
    if request.method != "OPTIONS":
        response.headers["Access-Control-Expose-Headers"] = "*"
