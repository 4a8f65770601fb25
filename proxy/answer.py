"""The upstream half of a request: open the upstream (with failover; heartbeats while a stream
waits for it), then answer: relay an event stream, or pass a whole body through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from proxy.client_channel import await_with_heartbeats, send_whole
from proxy.core.endings import passed_through, stream_completed
from proxy.core.errors import (
    UpstreamBodyStalled,
    UpstreamErrorEvent,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.core.headers import client_response_headers
from proxy.core.runtime import Route
from proxy.core.stats import RequestRecord
from proxy.exchange import ClientBody, Exchange
from proxy.relay import BodyLimits, StreamPump, read_body
from proxy.release import release_or_close
from proxy.responses import passthrough_response, stalled_answer, upstream_failure
from proxy.upstream import Opened, UpstreamCall, open_upstream

MAX_UPSTREAM_BODY = 64 * 1024 * 1024


@asynccontextmanager
async def upstream_for(exchange: Exchange, route: Route, body: ClientBody) -> AsyncIterator[Opened]:
    """The upstream's answer for the block; then its connection goes back to the pool if its
    body was read to the end, or is closed (so a provider whose client left stops generating)."""
    record = exchange.record
    opening = asyncio.ensure_future(
        open_upstream(
            exchange.services.session, route, _call(exchange, route, body),
            record.on_attempt_started,
        )
    )  # fmt: skip
    try:
        if record.stream:
            opened = await await_with_heartbeats(opening, exchange.open_channel(route))
        else:
            opened = await opening
    except (UpstreamUnavailable, UpstreamTimeout) as error:
        record.on_attempts(error.attempts)
        raise
    except BaseException:
        _discard(opening)
        raise
    record.on_attempts(opened.attempts)
    try:
        yield opened
    finally:
        release_or_close(opened.response)


def _call(exchange: Exchange, route: Route, body: ClientBody) -> UpstreamCall:
    request, record = exchange.request, exchange.record
    identity_header = exchange.runtime.auth.identity_header
    drop = frozenset({identity_header.lower()}) if identity_header else frozenset()
    answer_within_s = (  # a whole answer comes when it is generated: what is left of the budget
        route.relay.first_byte_s
        if record.stream
        else record.started + route.relay.max_stream_s - asyncio.get_running_loop().time()
    )
    return UpstreamCall(request.method, request.rel_url.raw_path_qs, request.headers,
                        body.take(), record.request_id, drop, answer_within_s)  # fmt: skip


def _discard(opening: asyncio.Future[Opened]) -> None:
    """Stop an upstream attempt still under way, or close a response nobody will relay."""
    if not opening.done():
        opening.cancel()
    elif not opening.cancelled() and opening.exception() is None:
        opening.result().response.close()


async def answer(exchange: Exchange, route: Route, opened: Opened) -> web.StreamResponse:
    """Relay a 2xx event stream; pass anything else through, or report it in-band if a
    heartbeat already committed the stream."""
    upstream = opened.response
    if upstream.status < 300 and upstream.content_type == "text/event-stream":
        return await _relay(exchange, route, opened)
    channel = exchange.channel
    if channel is not None and channel.committed:
        quiet_s = channel.last_write + route.relay.heartbeat_s - channel.loop.time()
        raise await upstream_failure(upstream, route, max(quiet_s, 0.0))
    return await _pass_through(exchange, route, upstream)


async def _relay(exchange: Exchange, route: Route, opened: Opened) -> web.StreamResponse:
    channel, sent_at = exchange.channel, opened.sent_at
    if channel is None:  # an event stream although the request did not ask for one
        exchange.record.stream = True
        channel = exchange.open_channel(route)
        sent_at = channel.loop.time()  # its headers had max_stream_s; its first event, first_byte_s
    await channel.commit(client_response_headers(opened.response.headers, route.keys))
    pump = StreamPump(opened.response, channel, route.relay, sent_at=sent_at)
    end = await pump.run()
    if not end.terminated:  # the upstream's error event is relayed; the end must show it failed
        raise UpstreamErrorEvent()
    response = await channel.end()
    exchange.end(stream_completed(upstream_reported_error=end.upstream_reported_error))
    return response


async def _pass_through(
    exchange: Exchange, route: Route, upstream: aiohttp.ClientResponse
) -> web.Response:
    """The upstream's whole answer, written to the client before the request is counted."""
    record = exchange.record
    try:
        body = await read_body(upstream, _body_limits(record, route), record)
    except UpstreamBodyStalled as stalled:
        if not record.stream:
            raise
        raise stalled_answer(upstream, stalled.partial, route, stalled) from None
    response, usage = passthrough_response(upstream, body, route, record.request_id)
    if usage is not None:
        record.on_usage(usage)
    await send_whole(exchange.request, response, route.relay.client_stall_s, record)
    exchange.end(passed_through(upstream.status))
    return response


def _body_limits(record: RequestRecord, route: Route) -> BodyLimits:
    """A whole answer to a non-streamed request comes once it is generated: it may take what is
    left of max_stream_s. A client that asked for a stream gets such an answer (an error, or
    not an event stream) within first_byte_s, with idle_s at most between its bytes."""
    if record.stream:
        return BodyLimits(MAX_UPSTREAM_BODY, route.relay.first_byte_s, route.relay.idle_s)
    left_s = record.started + route.relay.max_stream_s - asyncio.get_running_loop().time()
    return BodyLimits(MAX_UPSTREAM_BODY, max(left_s, 0.0))
