"""The client's request body: read under the size cap, the stall and total timeouts and the
process-wide cap on bodies being read at once; then only what routing and the relay need
(`model`, `stream`) is taken from it. The parsed JSON is not kept."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from prometheus_client import Gauge

from proxy.core.errors import BadRequest, PayloadTooLarge, ProxyBusy, RequestTimeout
from proxy.core.runtime import BodyPolicy


class PendingBodies:
    """The bytes of the request bodies being read right now, process-wide: every chunk is
    counted as it arrives and given back once its body is read (or refused)."""

    def __init__(self, gauge: Gauge) -> None:
        self.held = 0
        self._gauge = gauge

    def take(self, size: int, cap: int) -> None:
        if self.held + size > cap:
            raise ProxyBusy(
                "the proxy is reading too many request bodies at once; retry shortly",
                headers={"Retry-After": "1"},
            )
        self.held += size
        self._gauge.inc(size)

    def give_back(self, size: int) -> None:
        self.held -= size
        self._gauge.dec(size)


async def read_request_body(
    request: web.Request, policy: BodyPolicy, pending: PendingBodies
) -> bytes:
    """The body, refused early when over the cap (not `request.read()`: that keeps a copy).

    The whole body must arrive within `client_body_s`, and something must arrive at least every
    `client_stall_s` (408 otherwise; also when chunked framing breaks: aiohttp then delivers
    nothing more). One whose Content-Encoding cannot be decoded is a 400. Past the process-wide
    cap on bodies being read at once, a 503 at once."""
    limit = policy.max_bytes
    too_large = PayloadTooLarge(f"request body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(policy.total_s) as whole:
            while chunk := await _next_chunk(request, policy.stall_s):
                pending.take(len(chunk), policy.max_pending_bytes)
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        if whole.expired():
            raise RequestTimeout(
                f"request body did not arrive within {policy.total_s:g} s"
            ) from None
        raise RequestTimeout(f"request body: nothing arrived for {policy.stall_s:g} s") from None
    except web.RequestPayloadError:
        raise BadRequest("request body cannot be decoded (its encoding or framing)") from None
    finally:
        pending.give_back(len(body))
    return bytes(body)


async def _next_chunk(request: web.Request, stall_s: float) -> bytes:
    async with asyncio.timeout(stall_s):
        return await request.content.readany()


def model_and_stream(body: bytes) -> tuple[str | None, bool]:
    """What routing and the relay need from the body; the parsed JSON is not kept. An empty
    body (a `GET /v1/models`) names no model and asks for no stream."""
    if not body:
        return None, False
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # nesting deeper than the parser's recursion limit
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise BadRequest('"model" must be a string')
    return model, payload.get("stream") is True
