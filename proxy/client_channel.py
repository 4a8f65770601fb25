"""Writing to the client: one streamed response (`ClientChannel`: commit once, write,
heartbeat, end or fail), or one whole response (`send_whole`).

Every write to a committed stream goes through `ClientChannel.send`, under the `client_stall_s`
guard where it could wait for the client. A failure after the commit is one error event in the
client's dialect (or none, when the upstream already sent its own), then the connection is
closed without the chunked terminator, so byte-level clients see the truncation too. A whole
response is written before the handler returns, so the request's duration and outcome include
the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web
from multidict import CIMultiDict

from proxy.core.dialects import Dialect
from proxy.core.endings import COMMIT_STATUS
from proxy.core.errors import ClientGone, ProxyError
from proxy.core.runtime import RelaySettings
from proxy.core.stats import RequestRecord

HEARTBEAT = b": ping\n\n"
_CHUNK_FRAMING = 32  # chunked encoding's size line and CRLFs around a written chunk
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
T = TypeVar("T")


class ClientChannel:
    """Commits the event stream once, then writes to it; reports bytes and heartbeats to the
    record."""

    def __init__(
        self,
        request: web.Request,
        dialect: Dialect,
        settings: RelaySettings,
        record: RequestRecord,
    ) -> None:
        self.request = request
        self.dialect = dialect
        self.settings = settings
        self.record = record
        self.response: web.StreamResponse | None = None
        self.loop = asyncio.get_running_loop()
        self.started = record.started
        self.last_write = record.started

    @property
    def committed(self) -> bool:
        return self.response is not None

    async def commit(self, upstream_headers: CIMultiDict[str] | None = None) -> None:
        if self.response is not None:
            return
        response = web.StreamResponse(status=COMMIT_STATUS)
        if upstream_headers is not None:
            response.headers.update(upstream_headers)
        response.headers.setdefault("Content-Type", "text/event-stream; charset=utf-8")
        response.headers.update(SSE_HEADERS)
        response.headers["X-Request-Id"] = self.record.request_id
        self.response = response
        await self._guard(response.prepare(self.request))

    async def send(self, data: bytes) -> float:
        """Write `data`; returns when it was handed to the transport (loop time)."""
        assert self.response is not None
        if self._write_cannot_wait(len(data)):
            try:
                await self.response.write(data)
            except ConnectionError:
                raise ClientGone("client closed the connection") from None
        else:
            await self._guard(self.response.write(data))
        self.last_write = self.loop.time()
        self.record.on_written(len(data))
        return self.last_write

    def _write_cannot_wait(self, size: int) -> bool:
        """True when a write of `size` bytes stays under the transport's high-water mark, so
        aiohttp's drain cannot wait for the client and the stall timer can be skipped (a timer
        per write is a measurable share of the relay's CPU)."""
        transport, protocol = self.request.transport, self.request.protocol
        if transport is None or protocol.writing_paused:
            return False
        high_water = transport.get_write_buffer_limits()[1]
        return transport.get_write_buffer_size() + size + _CHUNK_FRAMING <= high_water

    async def end(self) -> web.StreamResponse:
        """The clean end: the chunked terminator, under the same stall guard as every write."""
        assert self.response is not None
        await self._guard(self.response.write_eof())
        return self.response

    async def heartbeat(self) -> None:
        await self.commit()
        await self.send(HEARTBEAT)
        self.record.on_heartbeat()

    async def _guard(self, write: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.settings.client_stall_s):
                return await write
        except TimeoutError:
            raise ClientGone(
                f"client read nothing for {self.settings.client_stall_s:g} s"
            ) from None
        except ConnectionError:
            raise ClientGone("client closed the connection") from None

    async def fail(self, error: ProxyError) -> None:
        """Report `error` in-band as an event in the client's dialect, then end abnormally."""
        event = self.dialect.error_event(error.error_type, error.message)
        try:
            await self.send(event)
        except ClientGone:
            # Closed now: left open, aiohttp would end the response with the chunked
            # terminator once the handler returns, a clean end for a client that reads on.
            self.abort(flush=False)
            return
        self.abort()

    def abort(self, *, flush: bool = True) -> None:
        """Close the connection without the chunked terminator: byte-level clients see it.

        With `flush`, what was written still goes out first, but a client that reads nothing
        more gets `client_stall_s` for it, not forever; without, the connection is dropped now.
        """
        transport = self.request.transport
        if transport is None:
            return
        if not flush:
            transport.abort()
            return
        transport.close()
        if transport.get_write_buffer_size():
            self.loop.call_later(self.settings.client_stall_s, _abort_if_still_flushing, transport)


def _abort_if_still_flushing(transport: asyncio.WriteTransport) -> None:
    """A closing transport whose client read everything is gone already: leave it be."""
    if transport.get_write_buffer_size():
        transport.abort()


async def send_whole(
    request: web.Request, response: web.Response, stall_s: float, record: RequestRecord
) -> web.Response:
    """Write a whole response now; a client that closes, or takes nothing of it for `stall_s`,
    is `ClientGone` (and its connection must then be dropped: `drop_connection`)."""
    try:
        async with asyncio.timeout(stall_s):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        raise ClientGone(f"client took nothing of the response for {stall_s:g} s") from None
    except ConnectionError:
        raise ClientGone("client closed the connection") from None
    record.on_written(response.content_length or 0)
    return response


def drop_connection(request: web.Request) -> None:
    """Close the client's connection now, whatever was written: the client is gone or stuck."""
    if request.transport is not None:
        request.transport.abort()


async def await_with_heartbeats(waiting: asyncio.Future[T], channel: ClientChannel) -> T:
    """Wait for `waiting`, committing and sending heartbeats while it takes long."""
    heartbeat_s = channel.settings.heartbeat_s
    while True:
        due = channel.last_write + heartbeat_s - channel.loop.time()
        done, _ = await asyncio.wait({waiting}, timeout=max(due, 0))
        if done:
            return waiting.result()
        await channel.heartbeat()
