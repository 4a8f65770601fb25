"""One proxied request, phase by phase (`proxy_handler` reads as the list of them):

identify -> authenticate -> read the body -> choose the route -> admit (limits) -> open the
upstream (with failover) -> answer (pass through, or commit and relay) -> log.

Each phase gets what it needs as typed values and returns what the next one needs. Any exception
that ends a request goes to `end_with`: `proxy.core.endings` turns it into a status, an outcome and
a delivery (a whole error response, an in-band error event, an abnormal end, a dropped
connection). The `finally` writes the metrics and the one `stream.finished` line, whatever
happened; nothing in it awaits, so a cancellation cannot skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from proxy import keys
from proxy.answer import answer, upstream_for
from proxy.client_channel import drop_connection, send_whole
from proxy.core.auth import Caller
from proxy.core.dialects import Dialect, dialect_for
from proxy.core.endings import UNSETTLED, Delivery, Ending, ending_for
from proxy.core.errors import (
    ClientGone,
    ConcurrencyLimitExceeded,
    InternalError,
    OriginNotAllowed,
    Outcome,
    ProxyError,
    ShuttingDown,
)
from proxy.core.routing import select_route
from proxy.core.runtime import Route
from proxy.core.stats import RequestRecord
from proxy.cors import is_preflight
from proxy.exchange import ClientBody, Exchange
from proxy.log import get_logger
from proxy.request_body import model_and_stream, read_request_body
from proxy.responses import error_response

log = get_logger("proxy.request")
SHUTDOWN_EVENT_WAIT_S = 1.0  # for the in-band error event of a stream the drain cuts


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    exchange = identify(request)
    try:
        refuse_preflight(exchange)
        caller = authenticate(exchange)
        body = await read_body(exchange)
        route = choose_route(exchange, body)
        async with admit(exchange, caller, route), upstream_for(exchange, route, body) as opened:
            return await answer(exchange, route, opened)
    except asyncio.CancelledError:
        return await end_cancelled(exchange)
    except Exception as exc:
        return await end_with(exchange, exc)
    finally:
        log_request(exchange)


def identify(request: web.Request) -> Exchange:
    """The request's id and start, the snapshot it uses, and its dialect as far as known."""
    loop = asyncio.get_running_loop()
    record = RequestRecord(request[keys.REQUEST_ID], loop.time(), request.method, request.path)
    runtime, services = request[keys.SNAPSHOT], request.app[keys.SERVICES]
    dialect, stall_s = guess_dialect(request), runtime.body.stall_s
    return Exchange(request, runtime, services, record, dialect, stall_s)


def guess_dialect(request: web.Request) -> Dialect:
    """The client's dialect before a route is known (for 401/404/413 bodies)."""
    anthropic = "/messages" in request.path or "anthropic-version" in request.headers
    return dialect_for("anthropic" if anthropic else "openai")


def refuse_preflight(exchange: Exchange) -> None:
    """Allowed CORS preflights are answered before the handler (`proxy.cors`): one that gets
    here comes from an origin the proxy does not allow."""
    if is_preflight(exchange.request):
        raise OriginNotAllowed(
            "CORS preflight refused: this origin is not in server.cors_allow_origins"
        )


def authenticate(exchange: Exchange) -> Caller:
    caller = exchange.runtime.auth.caller(exchange.request.headers)
    exchange.record.user = caller.name
    return caller


async def read_body(exchange: Exchange) -> ClientBody:
    services = exchange.services
    data = await read_request_body(exchange.request, exchange.runtime.body, services.pending_bodies)
    model, stream = model_and_stream(data)
    exchange.record.model, exchange.record.stream = model, stream
    return ClientBody(data, model, stream)


def choose_route(exchange: Exchange, body: ClientBody) -> Route:
    route = select_route(exchange.runtime.routes, exchange.request.path, body.model)
    exchange.record.route, exchange.dialect = route.name, route.dialect
    exchange.client_stall_s = route.relay.client_stall_s
    return route


@asynccontextmanager
async def admit(exchange: Exchange, caller: Caller, route: Route) -> AsyncIterator[None]:
    """One of the caller's stream slots for the block, counted as active and as running."""
    services = exchange.services
    limit = caller.max_concurrent_streams
    if limit is None:
        limit = exchange.runtime.limits.streams_per_user
    async with contextlib.AsyncExitStack() as slot:
        try:
            await slot.enter_async_context(services.limiter.acquire(caller.name, limit))
        except ConcurrencyLimitExceeded as refused:
            services.metrics.limit_rejections.labels(route.name, "concurrency").inc()
            refused.headers = {
                **refused.headers,
                **services.retry_advice.headers(route.name, limit),
            }
            raise
        with (
            services.metrics.active_streams.labels(route.name).track_inprogress(),
            services.lifecycle.track(),
        ):
            yield


async def end_with(exchange: Exchange, exc: Exception) -> web.StreamResponse:
    """The one way out for an exception: its ending, then what the client gets."""
    if isinstance(exc, ProxyError):
        error = exc
    else:
        log.exception("request.internal_error", error_type=type(exc).__name__)
        error = InternalError.wrapping(exc)
    ending = ending_for(error, committed=exchange.committed)
    exchange.end(ending)
    return await deliver(exchange, error, ending)


async def deliver(exchange: Exchange, error: ProxyError, ending: Ending) -> web.StreamResponse:
    """What the client gets: a whole error response, written now; our error event and the
    abnormal end, or that end alone (streams only); or, for a client that is gone, nothing."""
    channel, request = exchange.channel, exchange.request
    if ending.delivery is Delivery.ERROR_RESPONSE:
        response = error_response(exchange.dialect, error, exchange.record.request_id)
        try:
            return await send_whole(request, response, exchange.client_stall_s, exchange.record)
        except ClientGone:
            drop_connection(request)  # the ending stays the error's: that is what ended it
            return response
    if ending.delivery is Delivery.ERROR_EVENT and channel is not None:
        await channel.fail(error)
    elif ending.delivery is Delivery.ABNORMAL_END and channel is not None:
        channel.abort()
    else:
        drop_connection(request)
    if channel is not None and channel.response is not None:
        return channel.response
    return web.Response(status=ending.status)  # never written: the connection is closed


async def end_cancelled(exchange: Exchange) -> web.StreamResponse:
    """The handler was cancelled. By the drain, when the shutdown grace period ran out: the
    request still gets its error (a 503 that closes the connection, or its event in-band,
    briefly). Otherwise the client went away: nothing can reach it, the cancellation goes on."""
    task = asyncio.current_task()
    if task is None or not exchange.services.lifecycle.was_cut(task):
        exchange.end(ending_for(ClientGone("client went away"), committed=exchange.committed))
        raise asyncio.CancelledError
    task.uncancel()
    error = ShuttingDown()
    ending = ending_for(error, committed=exchange.committed)
    exchange.end(ending)
    try:
        async with asyncio.timeout(SHUTDOWN_EVENT_WAIT_S):
            return await deliver(exchange, error, ending)
    except (ClientGone, TimeoutError):
        drop_connection(exchange.request)
        raise asyncio.CancelledError from None


def log_request(exchange: Exchange) -> None:
    """The logging phase: one metrics update and one log line per request."""
    report = exchange.record.report(asyncio.get_running_loop().time(), exchange.ending or UNSETTLED)
    services = exchange.services
    if report.route is None:
        services.metrics.record_client_error(report.status)
    else:
        services.metrics.record(report)
        if report.outcome is not Outcome.REJECTED:
            services.retry_advice.observe(report.route, report.duration_s)
    log.info("stream.finished", **report.log_fields())
