"""Whole (non-streamed) responses: the proxy's own errors and upstream pass-through."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from aiohttp import web

from proxy.core.dialects import Dialect, Usage
from proxy.core.errors import ProxyError, UpstreamAnswered, UpstreamError, UpstreamTimeout
from proxy.core.headers import client_response_headers
from proxy.core.redaction import redact_body, redact_cut_body
from proxy.core.runtime import Route

_ERROR_BODY_CAP = 64 * 1024


def error_response(dialect: Dialect, error: ProxyError, request_id: str) -> web.Response:
    body = dialect.error_body(error.error_type, error.message)
    response = web.json_response(body, status=error.status, headers=error.headers)
    response.headers["X-Request-Id"] = request_id
    if error.headers.get("Connection") == "close":
        response.force_close()  # the header alone would not stop aiohttp keeping it alive
    return response


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def passthrough_response(
    upstream: aiohttp.ClientResponse, body: bytes, route: Route, request_id: str
) -> tuple[web.Response, Usage | None]:
    """The upstream's status, headers and body as they are (keys redacted), and the usage a
    successful JSON body reports."""
    body = redact_body(body, route.keys)
    usage = None
    if upstream.status < 300 and upstream.content_type == "application/json":
        usage = route.dialect.usage_from_body(_json_or_none(body))
    headers = client_response_headers(upstream.headers, route.keys)
    headers["X-Request-Id"] = request_id
    return web.Response(status=upstream.status, body=body, headers=headers), usage


def _upstream_message(body: bytes) -> str:
    parsed = _json_or_none(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if isinstance(message, str):
        return message[:500]
    return body[:200].decode("utf-8", errors="replace")


async def _error_body(upstream: aiohttp.ClientResponse, wait_s: float) -> bytes:
    """As much of an error body as arrives within `wait_s`, up to `_ERROR_BODY_CAP` bytes."""
    parts: list[bytes] = []
    size = 0
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError):
        async with asyncio.timeout(wait_s):
            while size < _ERROR_BODY_CAP and (chunk := await upstream.content.readany()):
                parts.append(chunk)
                size += len(chunk)
    return b"".join(parts)[:_ERROR_BODY_CAP]


async def upstream_failure(
    upstream: aiohttp.ClientResponse, route: Route, wait_s: float
) -> UpstreamError:
    """An upstream answer that cannot be relayed after the commit, as an in-band failure.

    The client is already waiting on a 200: the body (only the message is wanted from it) gets
    `wait_s`, what is left of the current heartbeat interval, so the stream never goes quieter
    than heartbeats promise.
    """
    if upstream.status < 300:
        return UpstreamAnswered(f"upstream answered {upstream.content_type}, not an event stream")
    return _answered(upstream, await _error_body(upstream, wait_s), route)


def stalled_answer(
    upstream: aiohttp.ClientResponse, partial: bytes, route: Route, stalled: UpstreamTimeout
) -> UpstreamError:
    """A whole answer to a streamed request whose body stalled: an error status keeps its
    status and the message it had; any other answer is the timeout it ran into."""
    if upstream.status < 300:
        return stalled
    return _answered(upstream, partial[:_ERROR_BODY_CAP], route)


def _answered(upstream: aiohttp.ClientResponse, body: bytes, route: Route) -> UpstreamAnswered:
    body = redact_cut_body(body, route.keys)
    message = f"upstream answered HTTP {upstream.status}: {_upstream_message(body)}"
    return UpstreamAnswered(message, upstream.status)
