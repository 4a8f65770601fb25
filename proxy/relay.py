"""The relay: the only code that moves response body bytes from an upstream to a client.

Rules (ARCHITECTURE.md): byte-faithful; each complete SSE event written the moment its blank
line arrives, a partial event held (capped) until it completes; `: ping` heartbeats whenever
nothing was written for `heartbeat_s`, also before the upstream's first byte, never inside an
event; a slow client slows the upstream read; failures after the commit become one error event in
the client's dialect and the response ends without its terminating chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from proxy.core.dialects import Dialect
from proxy.core.errors import Outcome, StreamFailure, UpstreamTimeout
from proxy.core.sse import SSEFramer
from proxy.core.stats import RequestRecord

HEARTBEAT = b": ping\n\n"
_CHUNK_FRAMING = 32  # chunked encoding's size line and CRLFs around a written chunk
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    heartbeat_s: float
    first_byte_s: float
    idle_s: float
    max_stream_s: float
    client_stall_s: float
    max_event_bytes: int


class ClientGone(Exception):
    """The client closed the connection or stopped reading."""


class ClientChannel:
    """The client's side of one streamed response: commit once, write, heartbeat, fail."""

    def __init__(
        self,
        request: web.Request,
        record: RequestRecord,
        dialect: Dialect,
        settings: RelaySettings,
    ) -> None:
        self.request = request
        self.record = record
        self.dialect = dialect
        self.settings = settings
        self.response: web.StreamResponse | None = None
        self.loop = asyncio.get_running_loop()
        self.last_write = record.started

    @property
    def committed(self) -> bool:
        return self.response is not None

    async def commit(self, upstream_headers: CIMultiDict[str] | None = None) -> None:
        if self.response is not None:
            return
        response = web.StreamResponse(status=200)
        if upstream_headers is not None:
            response.headers.update(upstream_headers)
        response.headers.setdefault("Content-Type", "text/event-stream; charset=utf-8")
        response.headers.update(SSE_HEADERS)
        response.headers["X-Request-Id"] = self.record.request_id
        self.response = response
        self.record.status = 200
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
        self.record.bytes_out += len(data)
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
        self.record.heartbeats += 1

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

    async def fail(self, failure: StreamFailure, *, upstream_said_it: bool = False) -> None:
        """Report `failure` in-band (unless the upstream already did) and end abnormally."""
        self.record.status = 200
        if not upstream_said_it:
            event = self.dialect.error_event(failure.error_type, failure.message)
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


async def await_with_heartbeats(
    waiting: asyncio.Future[T], channel: ClientChannel, heartbeat_s: float
) -> T:
    """Wait for `waiting`, committing and sending heartbeats while it takes long."""
    while True:
        due = channel.last_write + heartbeat_s - channel.loop.time()
        done, _ = await asyncio.wait({waiting}, timeout=max(due, 0))
        if done:
            return waiting.result()
        await channel.heartbeat()


class StreamPump:
    """Moves one upstream SSE body to the client, event by event."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        channel: ClientChannel,
        settings: RelaySettings,
        first_byte_from: float | None = None,  # default: when the request went upstream
    ) -> None:
        self.content = upstream.content
        self.channel = channel
        self.record = channel.record
        self.dialect = channel.dialect
        self.settings = settings
        self.framer = SSEFramer()
        self.loop = channel.loop
        sent = first_byte_from or self.record.upstream_started or self.record.started
        self.data_deadline = sent + settings.first_byte_s
        self.stream_deadline = self.record.started + settings.max_stream_s
        self.failure: StreamFailure | None = None  # raised after the bytes before it are relayed
        self.bytes_read = 0  # compared with content.total_bytes: is more already buffered?

    async def run(self) -> None:
        """Relay until the dialect's terminator, EOF or a failure (raised as StreamFailure)."""
        record, framer, channel = self.record, self.framer, self.channel
        while not record.terminated:
            chunk = await self._next_chunk()
            if not chunk:
                self._at_eof()
                return
            result = framer.feed(chunk)
            if result.forward:
                written_at = await channel.send(result.forward)
                for event in result.events:
                    record.on_signal(self.dialect.interpret(event), written_at)
            if framer.held_bytes > self.settings.max_event_bytes:
                raise StreamFailure(
                    f"upstream event exceeds {self.settings.max_event_bytes} bytes",
                    Outcome.UPSTREAM_ERROR,
                )

    async def _next_chunk(self) -> bytes:
        """The next upstream bytes; heartbeats while waiting; b"" at EOF."""
        settings = self.settings
        if self.failure is not None:
            raise self.failure
        content = self.content
        while True:
            try:
                if content.total_bytes > self.bytes_read or content.is_eof():
                    chunk = await content.readany()  # buffered already: returns without waiting
                else:
                    waited = await self._read_or_deadline()
                    if waited is None:
                        self._check_deadlines()
                        await self.channel.heartbeat()
                        continue
                    chunk = waited
            except (aiohttp.ClientError, OSError) as exc:
                self.failure = StreamFailure(
                    f"upstream connection failed mid-stream ({type(exc).__name__})",
                    Outcome.UPSTREAM_ERROR,
                )
                chunk = bytes_buffered_before_failure(self.content)
                if not chunk:
                    raise self.failure from None
            self.bytes_read += len(chunk)
            now = self.loop.time()
            if now >= self.stream_deadline:  # a stream that never pauses never times out above
                self._check_deadlines()
            if self.record.upstream_first_byte is None:
                self.record.upstream_first_byte = now
            self.data_deadline = now + settings.idle_s
            return chunk

    async def _read_or_deadline(self) -> bytes | None:
        """Wait for upstream bytes until the next heartbeat or deadline; None when it came."""
        heartbeat_at = self.channel.last_write + self.settings.heartbeat_s
        deadline = min(heartbeat_at, self.data_deadline, self.stream_deadline)
        try:
            async with asyncio.timeout_at(deadline) as timer:
                return await self.content.readany()
        except TimeoutError:
            if not timer.expired():
                raise
            return None

    def _check_deadlines(self) -> None:
        now = self.loop.time()
        if now >= self.stream_deadline:
            raise StreamFailure(
                f"stream exceeded the maximum duration of {self.settings.max_stream_s:g} s",
                Outcome.UPSTREAM_TIMEOUT, status=504,
            )  # fmt: skip
        if now >= self.data_deadline:
            waited = "first byte" if self.record.upstream_first_byte is None else "next byte"
            limit = self.settings.first_byte_s if waited == "first byte" else self.settings.idle_s
            raise StreamFailure(
                f"upstream sent no {waited} within {limit:g} s", Outcome.UPSTREAM_TIMEOUT,
                status=504,
            )  # fmt: skip

    def _at_eof(self) -> None:
        if self.record.upstream_reported_error:
            raise UpstreamErrorEvent()
        raise StreamFailure("upstream ended the stream before it was complete", Outcome.TRUNCATED)


def bytes_buffered_before_failure(content: aiohttp.StreamReader) -> bytes:
    """What aiohttp received before the connection broke.

    `StreamReader.readany()` raises a stored exception *before* handing out bytes it already
    buffered (aiohttp 3.x), and no public method returns them; under backpressure that can be
    many complete events. Relaying them keeps the stream byte-faithful up to the failure.
    Pinned by tests/test_relay.py and tests/test_sdk.py.
    """
    read_buffered = getattr(content, "_read_nowait", None)
    if read_buffered is None:
        return b""
    try:
        data = read_buffered(-1)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


class UpstreamErrorEvent(StreamFailure):
    """The upstream sent its own error event, already relayed; end without adding ours."""

    def __init__(self) -> None:
        super().__init__("upstream reported an error in the stream", Outcome.UPSTREAM_ERROR)


async def read_body(
    upstream: aiohttp.ClientResponse, cap: int, timeout_s: float, record: RequestRecord
) -> bytes:
    """A whole (non-streamed) upstream body, bounded in size and time; the arrival of its first
    bytes is the upstream's first byte (not the end of the body)."""
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await upstream.content.readany():
                if record.upstream_first_byte is None:
                    record.upstream_first_byte = asyncio.get_running_loop().time()
                size += len(chunk)
                if size > cap:
                    raise StreamFailure(
                        f"upstream response exceeds {cap} bytes", Outcome.UPSTREAM_ERROR
                    )
                parts.append(chunk)
    except TimeoutError:
        raise UpstreamTimeout(f"upstream response body took over {timeout_s:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise StreamFailure(
            f"upstream connection failed while reading the body ({type(exc).__name__})",
            Outcome.UPSTREAM_ERROR,
        ) from None
    return b"".join(parts)
