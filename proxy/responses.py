"""Whole (non-streamed) responses: the proxy's own errors and upstream pass-through."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
from aiohttp import web

from proxy.config.models import RouteConfig
from proxy.core.dialects import Dialect
from proxy.core.errors import Outcome, ProxyError, StreamFailure
from proxy.core.headers import client_response_headers
from proxy.core.redaction import redact_body, redact_cut_body
from proxy.core.stats import RequestRecord

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 529: "overloaded_error"}  # fmt: skip
_ERROR_BODY_CAP = 64 * 1024


def error_response(dialect: Dialect, error: ProxyError, request_id: str) -> web.Response:
    body = dialect.error_body(error.error_type, error.message)
    response = web.json_response(body, status=error.status, headers=error.headers)
    response.headers["X-Request-Id"] = request_id
    return response


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def passthrough_response(
    dialect: Dialect,
    upstream: aiohttp.ClientResponse,
    body: bytes,
    route: RouteConfig,
    record: RequestRecord,
) -> web.Response:
    """The upstream's status, headers and body as they are (keys scrubbed), usage recorded."""
    body = redact_body(body, route.revealed_keys())
    if upstream.status < 300 and upstream.content_type == "application/json":
        usage = dialect.usage_from_body(_json_or_none(body))
        record.usage_output_tokens = usage.output_tokens
        record.input_tokens = usage.input_tokens
    headers = client_response_headers(upstream.headers, route.revealed_keys())
    headers["X-Request-Id"] = record.request_id
    return web.Response(status=upstream.status, body=body, headers=headers)


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
    upstream: aiohttp.ClientResponse, route: RouteConfig, wait_s: float
) -> StreamFailure:
    """An upstream answer that cannot be relayed after the commit, as an in-band failure.

    The client is already waiting on a 200: the body (only the message is wanted from it) gets
    `wait_s`, what is left of the current heartbeat interval, so the stream never goes quieter
    than heartbeats promise.
    """
    if upstream.status < 300:
        message = f"upstream answered {upstream.content_type}, not an event stream"
        return StreamFailure(message, Outcome.UPSTREAM_ERROR)
    body = redact_cut_body(await _error_body(upstream, wait_s), route.revealed_keys())
    message = f"upstream answered HTTP {upstream.status}: {_upstream_message(body)}"
    failure = StreamFailure(message, Outcome.UPSTREAM_ERROR, status=upstream.status)
    failure.error_type = _ERROR_TYPES.get(upstream.status, "api_error")
    return failure
