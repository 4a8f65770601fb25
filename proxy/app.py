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
from proxy.core.retry_advice import RetryAdvice
from proxy.core.runtime import CurrentRuntime, build_runtime
from proxy.cors import add_cors_headers, cors_preflight
from proxy.handlers import proxy_handler
from proxy.lifecycle import Lifecycle
from proxy.limits import ConcurrencyLimiter, build_limiter
from proxy.metrics import ProxyMetrics
from proxy.relay import UPSTREAM_READ_BUFFER
from proxy.request_body import PendingBodies
from proxy.services import Services
from proxy.upstream import connect_timeout

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@web.middleware
async def request_start(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the runtime snapshot once for the whole request; take the client's sane
    X-Request-Id or make one, and bind it to every log line."""
    request[keys.SNAPSHOT] = request.app[keys.RUNTIME].snapshot
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    request[keys.REQUEST_ID] = request_id
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        response = await handler(request)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


async def start_services(app: web.Application) -> AsyncIterator[None]:
    """The upstream connection pool, sized from the config, and the services around it."""
    pool = app[keys.RUNTIME].snapshot.pool
    connector = aiohttp.TCPConnector(limit=pool.max_connections)
    # Each request passes its route's connect timeout (upstream.connect_timeout); this default
    # only keeps aiohttp's 5-minute total away from any request that would not.
    async with aiohttp.ClientSession(
        connector=connector, timeout=connect_timeout(pool.connect_s),
        cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True,
        skip_auto_headers=("User-Agent",), read_bufsize=UPSTREAM_READ_BUFFER,
    ) as session:  # fmt: skip
        metrics = app[keys.METRICS]
        pending = PendingBodies(metrics.pending_body_bytes)
        services = Services(
            metrics, app[keys.LIMITER], app[keys.LIFECYCLE], session, pending, RetryAdvice()
        )
        app[keys.SERVICES] = services
        services.lifecycle.ready = True
        yield
        services.lifecycle.ready = False
    await services.limiter.close()


async def drain_streams(app: web.Application) -> None:
    """on_shutdown: the listener is closed; let open streams finish within the grace period."""
    await app[keys.LIFECYCLE].drain(app[keys.RUNTIME].snapshot.config.server.shutdown_grace_s)


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
        middlewares=[request_start, cors_preflight],
    )
    app.on_response_prepare.append(add_cors_headers)
    app[keys.RUNTIME] = CurrentRuntime(build_runtime(config))
    app[keys.METRICS] = ProxyMetrics(registry if registry is not None else CollectorRegistry())
    app[keys.LIMITER] = limiter if limiter is not None else build_limiter(config.limits)
    app[keys.LIFECYCLE] = Lifecycle()
    app.cleanup_ctx.append(start_services)
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
