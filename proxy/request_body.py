"""The client's request body: read under the size cap and the stall timeout, then only what
routing and the relay need (`model`, `stream`) is taken from it. The parsed JSON is not kept."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from proxy.core.errors import BadRequest, PayloadTooLarge, RequestTimeout
from proxy.core.runtime import BodyPolicy


async def read_request_body(request: web.Request, policy: BodyPolicy) -> bytes:
    """The body, refused early when over the cap (not `request.read()`: that keeps a copy).

    A client that sends nothing for `client_stall_s` gets a 408 (also when its chunked framing
    breaks: aiohttp then delivers nothing more); one whose body cannot be decoded (its
    Content-Encoding) a 400."""
    limit, stall_s = policy.max_bytes, policy.stall_s
    too_large = PayloadTooLarge(f"request body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        while True:
            async with asyncio.timeout(stall_s):
                chunk = await request.content.readany()
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > limit:
                raise too_large
    except TimeoutError:
        raise RequestTimeout(f"request body: nothing arrived for {stall_s:g} s") from None
    except web.RequestPayloadError:
        raise BadRequest("request body cannot be decoded (its encoding or framing)") from None


def model_and_stream(body: bytes) -> tuple[str | None, bool]:
    """What routing and the relay need from the body; the parsed JSON is not kept."""
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
