"""The client side of a proxied response, read with aiohttp: its raw bytes as they arrive, its
events one by one, and how it ended (cleanly, or cut with a `ClientPayloadError`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from proxy.core.sse import SSEEvent
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import RunningProxy
from tests.support.sse_builders import HEARTBEAT
from tests.support.sse_checks import assert_sse_headers, parse_events
from tests.support.waits import WAIT_S


class ClientStream:
    """Raw bytes of one proxied response as the client reads them."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.data = bytearray()
        self.ended_by: aiohttp.ClientPayloadError | None = None
        self.eof = False
        self._chunks: AsyncIterator[bytes] = response.content.iter_any()
        self._taken = 0  # the bytes `next_event` has handed out

    async def _read_once(self) -> None:
        try:
            self.data += await self._chunks.__anext__()
        except StopAsyncIteration:
            self.eof = True
        except aiohttp.ClientPayloadError as exc:
            self.ended_by, self.eof = exc, True

    async def until(self, done: Callable[[bytes], bool], within: float = WAIT_S) -> bytes:
        """Read until `done(data)`; fail if the stream ends first or it takes over `within` s."""
        async with asyncio.timeout(within):
            while not done(bytes(self.data)):
                assert not self.eof, f"stream ended early after {bytes(self.data)!r}"
                await self._read_once()
        return bytes(self.data)

    async def contains(self, needle: bytes, within: float = WAIT_S) -> bytes:
        return await self.until(lambda data: needle in data, within)

    async def next_event(self, within: float = WAIT_S) -> bytes:
        """The next event block after those already taken, up to its blank line (LF LF), as
        bytes; a heartbeat is one too. Fails if the stream ends first."""
        await self.until(lambda data: b"\n\n" in data[self._taken :], within)
        start, self._taken = self._taken, self.data.index(b"\n\n", self._taken) + 2
        return bytes(self.data[start : self._taken])

    async def event_with(self, marker: bytes, within: float = WAIT_S) -> bytes:
        """The first event from here on that contains `marker` (those before it are taken)."""
        while marker not in (event := await self.next_event(within)):
            pass
        return event

    async def to_end(self, within: float = WAIT_S) -> bytes:
        """Read to the end of the response (clean or not)."""
        async with asyncio.timeout(within):
            while not self.eof:
                await self._read_once()
        return bytes(self.data)

    async def to_clean_end(self, within: float = WAIT_S) -> bytes:
        """Read to the end of the response, which must be clean (its terminating chunk came)."""
        data = await self.to_end(within)
        assert self.ended_by is None, f"the response ended abnormally: {self.ended_by!r}"
        return data

    def events(self) -> list[SSEEvent]:
        return parse_events(bytes(self.data))


async def open_stream(proxy: RunningProxy, dialect: str = "openai", **headers: str) -> ClientStream:
    response = await proxy.post(PATHS[dialect], payload(dialect), **headers)
    assert response.status == 200, await response.text()
    return ClientStream(response)


async def committed_early(proxy: RunningProxy, dialect: str) -> ClientStream:
    """A stream the proxy committed with a heartbeat while the upstream had not answered."""
    response = await asyncio.wait_for(proxy.post(PATHS[dialect], payload(dialect)), WAIT_S)
    assert response.status == 200
    assert_sse_headers(response)
    client = ClientStream(response)
    await client.contains(HEARTBEAT)
    return client


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


async def ignore(awaitable: Awaitable[Any]) -> None:
    """Await, swallowing the errors of a stream the proxy ended abnormally on purpose."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError):
        await awaitable
