"""The phases of one proxied request, in order, over one per-request `Exchange`.

request_filter (auth, body, route, limit) -> upstream_request -> upstream_response
-> relay -> logging. `logging` is one `finally`: metrics and the `stream.finished` line are
written there and nowhere else, whatever ended the request.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from proxy import keys
from proxy.config.models import RouteConfig
from proxy.core.auth import Caller
from proxy.core.dialects import Dialect, dialect_for
from proxy.core.errors import (
    ClientRequestError,
    MethodNotAllowed,
    Outcome,
    ProxyError,
    StreamFailure,
)
from proxy.core.headers import client_response_headers
from proxy.core.routing import select_route
from proxy.core.stats import RequestRecord
from proxy.log import get_logger
from proxy.relay import (
    ClientChannel,
    ClientGone,
    RelaySettings,
    StreamPump,
    UpstreamErrorEvent,
    await_with_heartbeats,
    read_body,
)
from proxy.request_body import model_and_stream, read_request_body
from proxy.responses import error_response, passthrough_response, upstream_failure
from proxy.upstream import UpstreamCall, open_upstream

log = get_logger("proxy.request")
MAX_UPSTREAM_BODY = 64 * 1024 * 1024


@dataclass(slots=True)
class Exchange:
    """One request's context, carried through the phases."""

    request: web.Request
    record: RequestRecord
    dialect: Dialect
    caller: Caller | None = None
    route: RouteConfig | None = None
    body: bytes = b""  # kept for failover; dropped once an upstream answered
    channel: ClientChannel | None = None
    upstream_released: bool = False  # handed to the releaser (pooled, closed, or its tail read)


def guess_dialect(request: web.Request) -> Dialect:
    """The client's dialect before a route is known (for 401/404/413 bodies)."""
    anthropic = request.path.endswith("/messages") or "anthropic-version" in request.headers
    return dialect_for("anthropic" if anthropic else "openai")


async def proxy_handler(request: web.Request) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    record = RequestRecord(request_id=request[keys.REQUEST_ID], started=loop.time())
    exchange = Exchange(request, record, guess_dialect(request))
    try:
        return await request_filter(exchange)
    except ProxyError as error:
        record.settle(error.outcome, error.status, error.message)
        return error_response(exchange.dialect, error, record.request_id)
    except asyncio.CancelledError:
        if request.app[keys.LIFECYCLE].draining:
            await _cut_by_shutdown(exchange)
        record.settle(Outcome.CLIENT_DISCONNECTED, record.status or 499, "client went away")
        raise
    except Exception as exc:
        log.exception("request.internal_error", error_type=type(exc).__name__)
        record.settle(Outcome.INTERNAL_ERROR, 500, f"internal error ({type(exc).__name__})")
        if exchange.channel is not None and exchange.channel.committed:
            exchange.channel.abort()
            assert exchange.channel.response is not None
            return exchange.channel.response
        internal = ProxyError("internal error in the proxy")
        return error_response(exchange.dialect, internal, record.request_id)
    finally:
        finish(request.app, record, loop.time())


async def _cut_by_shutdown(exchange: Exchange) -> None:
    """The grace period ran out while this stream was open: say so in-band, then end."""
    failure = StreamFailure("the proxy is shutting down", Outcome.INTERNAL_ERROR, status=503)
    exchange.record.settle(failure.outcome, exchange.record.status or 503, failure.message)
    channel = exchange.channel
    if channel is not None and channel.committed:
        with contextlib.suppress(ClientGone, TimeoutError):
            async with asyncio.timeout(1):
                await channel.fail(failure)


def finish(app: web.Application, record: RequestRecord, now: float) -> None:
    """The logging phase: one metrics update and one log line per request."""
    report = record.report(now)
    metrics = app[keys.METRICS]
    if report.route is None:
        metrics.record_client_error(report.status)
    else:
        metrics.record(report)
    log.info(
        "stream.finished",
        request_id=report.request_id, user=report.user, route=report.route,
        upstream=report.upstream, model=report.model, stream=report.stream,
        status=report.status, outcome=str(report.outcome),
        ttft_ms=_ms(report.ttft_s), duration_ms=_ms(report.duration_s),
        upstream_first_byte_ms=_ms(report.upstream_first_byte_s),
        output_tokens=report.output_tokens, tokens_source=report.tokens_source,
        input_tokens=report.input_tokens,
        tokens_per_s=None if report.tokens_per_s is None else round(report.tokens_per_s, 2),
        heartbeats=report.heartbeats, bytes_out=report.bytes_out, error=report.error,
    )  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def request_filter(exchange: Exchange) -> web.StreamResponse:
    """Authenticate, read and check the body, choose the route, take a slot."""
    request, record = exchange.request, exchange.record
    if request.method != "POST":
        raise MethodNotAllowed("only POST is proxied", headers={"Allow": "POST"})
    exchange.caller = request.app[keys.AUTH].caller(request.headers)
    record.user = exchange.caller.name
    exchange.body = await read_request_body(request)
    record.model, record.stream = model_and_stream(exchange.body)
    route = select_route(request.app[keys.CONFIG].routes, request.path, record.model)
    exchange.route, record.route = route, route.name
    exchange.dialect = dialect_for(route.provider)
    limit = exchange.caller.max_concurrent_streams
    if limit is None:
        limit = request.app[keys.CONFIG].defaults.max_concurrent_streams_per_user
    metrics = request.app[keys.METRICS]
    try:
        async with request.app[keys.LIMITER].acquire(exchange.caller.name, limit):
            with (
                metrics.active_streams.labels(route.name).track_inprogress(),
                request.app[keys.LIFECYCLE].track(),
            ):
                return await upstream_request(exchange)
    except ProxyError as error:
        if error.outcome is Outcome.REJECTED:
            metrics.limit_rejections.labels(route.name, "concurrency").inc()
        raise


def relay_settings(exchange: Exchange) -> RelaySettings:
    assert exchange.route is not None
    route = exchange.route
    return RelaySettings(
        heartbeat_s=route.heartbeat_s,
        first_byte_s=route.timeouts.first_byte_s,
        idle_s=route.timeouts.idle_s,
        max_stream_s=route.timeouts.max_stream_s,
        client_stall_s=route.timeouts.client_stall_s,
        max_event_bytes=route.max_event_bytes,
    )


async def upstream_request(exchange: Exchange) -> web.StreamResponse:
    """Open the upstream (with failover); heartbeats while a streamed request waits."""
    request, record, route = exchange.request, exchange.record, exchange.route
    assert route is not None
    auth = request.app[keys.AUTH]
    drop = frozenset({auth.identity_header.lower()}) if auth.identity_header else frozenset()
    timeouts, now = route.timeouts, asyncio.get_running_loop().time()
    answer_within_s = (  # a whole answer comes when it is generated: what is left of the budget
        timeouts.first_byte_s if record.stream else record.started + timeouts.max_stream_s - now
    )
    call = UpstreamCall(request.method, request.rel_url.raw_path_qs, request.headers,
                        exchange.body, record.request_id, drop, answer_within_s)  # fmt: skip
    exchange.body = b""

    def on_attempt(upstream: Any) -> None:
        record.upstream = upstream.name
        record.upstream_started = asyncio.get_running_loop().time()

    opening = asyncio.ensure_future(
        open_upstream(request.app[keys.SESSION], route, call, exchange.dialect, on_attempt)
    )
    del call  # the body lives only as long as the attempts: not for the whole stream
    try:
        if not record.stream:
            return await upstream_response(exchange, await opening)
        exchange.channel = ClientChannel(
            request, record, exchange.dialect, relay_settings(exchange)
        )
        upstream = await await_with_heartbeats(opening, exchange.channel, route.heartbeat_s)
        return await upstream_response(exchange, upstream)
    except ProxyError as error:
        if exchange.channel is None or not exchange.channel.committed:
            raise
        return await _fail_in_band(exchange, _as_failure(error))
    except ClientGone as gone:
        record.settle(Outcome.CLIENT_DISCONNECTED, record.status or 499, str(gone))
        return _ended(exchange)
    finally:
        _discard(opening, exchange)


def _discard(opening: asyncio.Future[aiohttp.ClientResponse], exchange: Exchange) -> None:
    """Stop an upstream attempt still under way, or close a response nobody relayed."""
    if not opening.done():
        opening.cancel()
    elif not (opening.cancelled() or exchange.upstream_released) and opening.exception() is None:
        opening.result().close()


def _as_failure(error: ProxyError) -> StreamFailure:
    if isinstance(error, StreamFailure):
        return error
    failure = StreamFailure(error.message, error.outcome, status=error.status)
    failure.error_type = error.error_type
    return failure


async def upstream_response(
    exchange: Exchange, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    """Pass non-streams and errors through honestly; relay event streams."""
    record, channel = exchange.record, exchange.channel
    first_byte_from = None
    try:
        is_sse = upstream.content_type == "text/event-stream"
        if is_sse and upstream.status < 300 and channel is None:  # a stream, whatever was asked
            record.stream = True  # its headers had max_stream_s; its first event gets first_byte_s
            exchange.channel = channel = ClientChannel(
                exchange.request, record, exchange.dialect, relay_settings(exchange)
            )
            first_byte_from = channel.loop.time()
        if upstream.status >= 300 or not (record.stream and is_sse):
            if channel is not None and channel.committed:
                assert exchange.route is not None
                quiet = channel.last_write + exchange.route.heartbeat_s - channel.loop.time()
                raise await upstream_failure(upstream, exchange.route, max(quiet, 0.0))
            return await _pass_through(exchange, upstream)
        assert channel is not None and exchange.route is not None
        await channel.commit(
            client_response_headers(upstream.headers, exchange.route.revealed_keys())
        )
        await StreamPump(upstream, channel, channel.settings, first_byte_from).run()
        response = await channel.end()
        if record.upstream_reported_error:  # its own error event, then its terminator (vLLM)
            record.settle(Outcome.UPSTREAM_ERROR, 200, "upstream reported an error in the stream")
        else:
            record.settle(Outcome.COMPLETED, 200)
        return response
    finally:
        completed = record.settled and record.outcome is Outcome.COMPLETED
        exchange.request.app[keys.RELEASER].finish(upstream, completed=completed)
        exchange.upstream_released = True


async def _pass_through(exchange: Exchange, upstream: aiohttp.ClientResponse) -> web.Response:
    record, route = exchange.record, exchange.route
    assert route is not None
    left_s = record.started + route.timeouts.max_stream_s - asyncio.get_running_loop().time()
    body = await read_body(upstream, MAX_UPSTREAM_BODY, max(left_s, 0.0), record)
    response = passthrough_response(exchange.dialect, upstream, body, route, record)
    ok = upstream.status < 300
    record.settle(Outcome.COMPLETED if ok else Outcome.UPSTREAM_ERROR, upstream.status,
                  None if ok else f"upstream answered HTTP {upstream.status}")  # fmt: skip
    return response


async def _fail_in_band(exchange: Exchange, failure: StreamFailure) -> web.StreamResponse:
    channel = exchange.channel
    assert channel is not None and channel.response is not None
    exchange.record.settle(failure.outcome, 200, failure.message)
    await channel.fail(failure, upstream_said_it=isinstance(failure, UpstreamErrorEvent))
    return channel.response


def _ended(exchange: Exchange) -> web.StreamResponse:
    channel = exchange.channel
    assert channel is not None
    channel.abort(flush=False)  # the client left, or stopped reading for client_stall_s
    if channel.response is not None:
        return channel.response
    return web.Response(status=499)


__all__ = ["ClientRequestError", "proxy_handler"]
