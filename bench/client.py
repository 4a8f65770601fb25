"""The load client: one streamed request, read and classified event by event, timed client-side."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from bench.upstream import CONNECTION_REQUESTS, CONTENT_MARKER, DONE

HEARTBEAT = b": ping\n\n"
JSON_HEADERS = {"Content-Type": "application/json"}
STREAM_TIMEOUT_S = 60.0  # no stream in the scenarios should take this long


def make_session(limit: int = 0) -> aiohttp.ClientSession:
    """A client session with no pool limit (0) and no timeouts: the scenarios bound time."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


@dataclass
class StreamResult:
    """What one client saw of one stream; mutated while it runs, so progress can be watched."""

    status: int = 0
    started: float = 0.0  # time.monotonic() just before the request was sent
    headers_s: float | None = None  # request sent -> response headers
    ttft_s: float | None = None  # request sent -> first content event complete
    content_events: int = 0
    other_events: int = 0  # role/finish chunks and the like (not heartbeats, not [DONE])
    heartbeats: int = 0
    done: bool = False  # `data: [DONE]` received
    eof: bool = False  # the body ended cleanly (chunked terminator)
    closed_at: float | None = None  # time.monotonic() just before a deliberate close
    bytes: int = 0
    chunks: int = 0
    error: str | None = None
    upstream_connection_requests: int = 0  # from the upstream's header; 1 = new connection

    @property
    def events(self) -> int:
        return self.content_events + self.other_events + int(self.done)


def _classify(block: bytes, result: StreamResult, now: float) -> None:
    if block.startswith(b":"):
        result.heartbeats += 1
    elif CONTENT_MARKER in block:
        result.content_events += 1
        if result.ttft_s is None:
            result.ttft_s = now - result.started
    elif block + b"\n\n" == DONE:
        result.done = True
    else:
        result.other_events += 1


async def _read(response: aiohttp.ClientResponse, result: StreamResult, close_after: int) -> None:
    """Read the body, splitting it into event blocks; stop after `close_after` events (>0)."""
    tail = b""
    while chunk := await response.content.readany():
        now = time.monotonic()
        result.bytes += len(chunk)
        result.chunks += 1
        blocks = (tail + chunk if tail else chunk).split(b"\n\n")
        tail = blocks.pop()
        for block in blocks:
            _classify(block, result, now)
        if close_after and result.events >= close_after:
            return
    result.eof = not tail


async def run_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    result: StreamResult | None = None,
    *,
    request_id: str | None = None,
    close_after: int = 0,
    timeout_s: float = STREAM_TIMEOUT_S,
) -> StreamResult:
    """POST `body` to `url` and read the SSE response into `result`, within `timeout_s`.

    With `close_after` > 0 the connection is closed (not released) once that many events
    (content, other or [DONE]; heartbeats excluded) have arrived; `result.closed_at` is the
    moment just before that close, so the caller can time what the close caused.
    """
    result = result if result is not None else StreamResult()
    headers = dict(JSON_HEADERS)
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    result.started = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout_s),
            session.post(url, data=body, headers=headers) as response,
        ):
            result.headers_s = time.monotonic() - result.started
            result.status = response.status
            result.upstream_connection_requests = int(response.headers.get(CONNECTION_REQUESTS, 0))
            await _read(response, result, close_after)
            if close_after and result.events >= close_after:
                result.closed_at = time.monotonic()
                response.close()
    except TimeoutError:
        result.error = f"no end within {timeout_s:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result
