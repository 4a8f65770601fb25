"""What the relay tests share: config edits, opening streams, and checks of how a stream ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.fake_upstream import FakeUpstream
from tests.support.relay_support import ClientStream
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import RunningProxy
from tests.support.sse_builders import HEARTBEAT
from tests.support.waits import WAIT_S, eventually

Gate = Callable[[], asyncio.Event]


async def open_stream(proxy: RunningProxy, dialect: str = "openai", **headers: str) -> ClientStream:
    response = await proxy.post(PATHS[dialect], payload(dialect), **headers)
    assert response.status == 200, await response.text()
    return ClientStream(response)


def assert_sse_headers(response: aiohttp.ClientResponse) -> None:
    headers = response.headers
    assert response.content_type == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Request-Id"]
    assert "Content-Length" not in headers and "Content-Encoding" not in headers
    assert headers["Transfer-Encoding"] == "chunked"


async def assert_finished(
    proxy: RunningProxy, outcome: str, route: str = "openai"
) -> dict[str, Any]:
    """The log line and the request counter agree on how the (only) stream ended."""
    line = await proxy.finished_line()
    assert (line["outcome"], line["route"], line["stream"]) == (outcome, route, True)
    labels = {"route": route, "stream": "true", "outcome": outcome}
    assert proxy.metric("llm_proxy_requests_total", **labels) == 1
    return line


async def assert_heartbeats_counted(proxy: RunningProxy, beats: int, route: str = "openai") -> None:
    line = await proxy.finished_line()
    assert line["heartbeats"] == beats
    assert proxy.metric("llm_proxy_heartbeats_total", route=route) == beats


async def read_slowly(
    response: aiohttp.ClientResponse, piece: int = 16_384
) -> tuple[bytes, aiohttp.ClientPayloadError | None]:
    """Read `piece` bytes at a time with a pause after each, to the end (clean or not).

    An aiohttp client that lags behind drops what it had buffered when the connection ends
    abnormally: what is returned is only what this client managed to read."""
    received = bytearray()
    try:
        while data := await response.content.read(piece):
            received += data
            await asyncio.sleep(0.001)
    except aiohttp.ClientPayloadError as exc:
        return bytes(received), exc
    return bytes(received), None


async def committed_early(proxy: RunningProxy, dialect: str) -> ClientStream:
    """A stream the proxy committed with a heartbeat while the upstream had not answered."""
    response = await asyncio.wait_for(proxy.post(PATHS[dialect], payload(dialect)), WAIT_S)
    assert response.status == 200
    assert_sse_headers(response)
    client = ClientStream(response)
    await client.contains(HEARTBEAT)
    return client


async def assert_upstream_closed_and_slot_freed(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)
    await eventually(lambda: proxy.limiter.active("alice") == 0, "alice's slot is free")
    await assert_finished(proxy, "client_disconnected")
