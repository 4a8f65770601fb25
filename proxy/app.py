"""Wiring only: app-scoped resources, routes, middleware, and the runner that serves them."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy import keys
from proxy.config.models import Config
from proxy.connections import ProxyRunner
from proxy.core.auth import Authenticator
from proxy.cors import add_cors_headers, cors_preflight
from proxy.handlers import proxy_handler
from proxy.lifecycle import Lifecycle
from proxy.limits import ConcurrencyLimiter
from proxy.limits.memory import MemoryLimiter
from proxy.metrics import ProxyMetrics
from proxy.release import UpstreamReleaser
from proxy.upstream import connect_timeout

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the client's sane X-Request-Id or make one; bind it to every log line."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request[keys.REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


async def upstream_session(app: web.Application) -> AsyncIterator[None]:
    """One upstream ClientSession per app, its pool sized from the config."""
    config = app[keys.CONFIG]
    connector = aiohttp.TCPConnector(limit=config.server.max_upstream_connections)
    # Each request passes its route's connect timeout (upstream.connect_timeout); this default
    # only keeps aiohttp's 5-minute total away from any request that would not.
    timeout = connect_timeout(config.defaults.timeouts.connect_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True, skip_auto_headers=("User-Agent",),
    ) as session:  # fmt: skip
        app[keys.SESSION] = session
        app[keys.RELEASER] = UpstreamReleaser()
        app[keys.LIFECYCLE].ready = True
        yield
        app[keys.LIFECYCLE].ready = False
        await app[keys.RELEASER].close()
    await app[keys.LIMITER].close()


async def drain_streams(app: web.Application) -> None:
    """on_shutdown: the listener is closed; let open streams finish within the grace period."""
    await app[keys.LIFECYCLE].drain(app[keys.CONFIG].server.shutdown_grace_s)


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(request.app[keys.METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[keys.LIFECYCLE].ready
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    limiter: ConcurrencyLimiter | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=config.server.max_body_bytes,
        middlewares=[request_id_middleware, cors_preflight],
    )
    app.on_response_prepare.append(add_cors_headers)
    app[keys.CONFIG] = config
    app[keys.AUTH] = Authenticator(config.auth)
    app[keys.METRICS] = ProxyMetrics(registry if registry is not None else CollectorRegistry())
    app[keys.LIMITER] = limiter if limiter is not None else MemoryLimiter()
    app[keys.LIFECYCLE] = Lifecycle()
    app.cleanup_ctx.append(upstream_session)
    app.on_shutdown.append(drain_streams)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", proxy_handler)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """Handlers are cancelled when their client goes away: that is how a disconnect is seen.
    Connections are guarded before any handler runs (`proxy.connections`)."""
    # Open streams are drained by `drain_streams` (on_shutdown) before aiohttp's own wait.
    return ProxyRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
