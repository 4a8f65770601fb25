"""The relay: the code that reads response bodies from an upstream (the client side of a stream
is `proxy.client_channel`; together they are the only code that moves response body bytes).

Rules (ARCHITECTURE.md): byte-faithful; each complete SSE event written the moment its blank
line arrives, a partial event held (capped) until it completes; `: ping` heartbeats whenever
nothing was written for `heartbeat_s`, also before the upstream's first byte, never inside an
event; a slow client slows the upstream read; failures after the commit become one error event in
the client's dialect and the response ends without its terminating chunk.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from proxy.client_channel import ClientChannel
from proxy.core.errors import (
    UpstreamBodyStalled,
    UpstreamError,
    UpstreamErrorEvent,
    UpstreamTimeout,
    UpstreamTruncated,
)
from proxy.core.runtime import RelaySettings
from proxy.core.sse import SSEFramer
from proxy.core.stats import RequestRecord

# After the stream's last event (the dialect's terminator, or the upstream's own error event),
# the rest of the body is relayed as it is up to the body's end, waiting at most this long for
# it and taking at most this many bytes: the client's body is the upstream's to its end, and a
# body whose end comes in time leaves its connection reusable.
TAIL_WAIT_S = 1.0
TAIL_MAX_BYTES = 64 * 1024
# What one stream holds while its client is slow (issue 8.11, bench/slow_readers.py): the client
# transport's buffer (asyncio pauses the writer past 64 KiB), at most READ_MAX taken from the
# upstream reader at once, and the reader's buffer (aiohttp pauses the socket at twice
# UPSTREAM_READ_BUFFER; its default, 256 KiB, let one stream hold over 2 MiB). The kernel keeps at
# most UNSENT_LIMIT unsent per client (connections.py). 16 KiB costs no measurable CPU against
# the 256 KiB reads before (bench/RESULTS.md).
READ_MAX = 16 * 1024
UPSTREAM_READ_BUFFER = 16 * 1024


@dataclass(frozen=True, slots=True)
class StreamEnd:
    terminated: bool  # the dialect's terminator was relayed: the client's end may be clean
    upstream_reported_error: bool  # the upstream sent its own error event
    body_ended: bool  # the upstream's body ended cleanly, in time: its connection is reusable


class StreamPump:
    """Moves one upstream SSE body to the client, event by event, until the dialect's
    terminator or the upstream's own error event, then the rest of the body as it is. It owns
    what it learns on the way (the terminator, the error event, the first byte) and reports
    each event to the record as it is written."""

    def __init__(
        self,
        upstream: aiohttp.ClientResponse,
        channel: ClientChannel,
        settings: RelaySettings,
        *,
        sent_at: float,  # when the request went upstream: the first byte is due first_byte_s later
    ) -> None:
        self.content = upstream.content
        self.channel = channel
        self.record = channel.record
        self.dialect = channel.dialect
        self.settings = settings
        self.framer = SSEFramer()
        self.loop = channel.loop
        self.data_deadline = sent_at + settings.first_byte_s
        self.stream_deadline = channel.started + settings.max_stream_s
        self.failure: UpstreamError | None = None  # raised after the bytes before it are relayed
        self.bytes_read = 0  # compared with content.total_bytes: is more already buffered?
        self.first_byte_seen = False
        self.terminated = False
        self.upstream_reported_error = False

    async def run(self) -> StreamEnd:
        """Relay until the dialect's terminator or the upstream's own error event, then the
        body's tail. EOF or a failure before either raises an `UpstreamError`."""
        framer, channel, record, dialect = self.framer, self.channel, self.record, self.dialect
        while not (self.terminated or self.upstream_reported_error):
            chunk = await self._next_chunk()
            if not chunk:
                self._at_eof()
            result = framer.feed(chunk)
            if result.forward:
                written_at = await channel.send(result.forward)
                for event in result.events:
                    signal = dialect.interpret(event)
                    self.terminated = self.terminated or signal.terminal
                    self.upstream_reported_error = self.upstream_reported_error or signal.error
                    record.on_event(signal, written_at)
            if framer.held_bytes > self.settings.max_event_bytes:
                raise UpstreamError(f"upstream event exceeds {self.settings.max_event_bytes} bytes")
        body_ended = await self._relay_tail()
        return StreamEnd(self.terminated, self.upstream_reported_error, body_ended)

    async def _relay_tail(self) -> bool:
        """The body after the stream's last event, relayed as it is, without heartbeats; its
        events are read only for a terminator (vLLM sends one after its error event). True when
        the body ended cleanly within TAIL_WAIT_S and TAIL_MAX_BYTES."""
        if self.failure is not None:  # the connection broke right after the last event
            return False
        relayed = 0
        try:
            async with asyncio.timeout(TAIL_WAIT_S) as timer:
                while relayed <= TAIL_MAX_BYTES and (chunk := await self.content.readany()):
                    relayed += len(chunk)
                    result = self.framer.feed(chunk)
                    await self._send_tail(result.forward)
                    self.terminated = self.terminated or any(
                        self.dialect.interpret(event).terminal for event in result.events
                    )
        except TimeoutError:
            if not timer.expired():
                raise
            return False
        except (aiohttp.ClientError, OSError):  # what arrived before the break still goes out
            await self._send_tail(bytes_buffered_before_failure(self.content))
            return False
        if not self.content.at_eof():
            return False
        await self._send_tail(self.framer.release_held())
        return True

    async def _send_tail(self, data: bytes) -> None:
        if data:
            await self.channel.send(data)

    async def _next_chunk(self) -> bytes:
        """The next upstream bytes; heartbeats while waiting; b"" at EOF."""
        if self.failure is not None:
            raise self.failure
        content = self.content
        while True:
            try:
                if content.total_bytes > self.bytes_read or content.is_eof():
                    chunk = await content.read(READ_MAX)  # buffered: returns without waiting
                else:
                    waited = await self._read_or_deadline()
                    if waited is None:
                        self._check_deadlines()
                        await self.channel.heartbeat()
                        continue
                    chunk = waited
            except (aiohttp.ClientError, OSError) as exc:
                self.failure = UpstreamError(
                    f"upstream connection failed mid-stream: {connection_failure(exc)}",
                    cause=type(exc).__name__,
                )
                chunk = bytes_buffered_before_failure(self.content)
                if not chunk:
                    raise self.failure from None
            self._arrived(len(chunk))
            return chunk

    def _arrived(self, size: int) -> None:
        self.bytes_read += size
        now = self.loop.time()
        if now >= self.stream_deadline:  # a stream that never pauses never times out above
            self._check_deadlines()
        if not self.first_byte_seen:
            self.first_byte_seen = True
            self.record.on_upstream_first_byte(now)
        self.data_deadline = now + self.settings.idle_s

    async def _read_or_deadline(self) -> bytes | None:
        """Wait for upstream bytes until the next heartbeat or deadline; None when it came."""
        heartbeat_at = self.channel.last_write + self.settings.heartbeat_s
        deadline = min(heartbeat_at, self.data_deadline, self.stream_deadline)
        try:
            async with asyncio.timeout_at(deadline) as timer:
                return await self.content.read(READ_MAX)
        except TimeoutError:
            if not timer.expired():
                raise
            return None

    def _check_deadlines(self) -> None:
        now = self.loop.time()
        if now >= self.stream_deadline:
            raise UpstreamTimeout(
                f"stream exceeded the maximum duration of {self.settings.max_stream_s:g} s"
            )
        if now >= self.data_deadline:
            waited = "next byte" if self.first_byte_seen else "first byte"
            limit = self.settings.idle_s if self.first_byte_seen else self.settings.first_byte_s
            raise UpstreamTimeout(f"upstream sent no {waited} within {limit:g} s")

    def _at_eof(self) -> None:
        if self.upstream_reported_error:
            raise UpstreamErrorEvent()
        raise UpstreamTruncated("upstream ended the stream before it was complete")


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


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much of a whole upstream body is read, and how long it may take."""

    cap: int  # bytes
    total_s: float
    idle_s: float | None = None  # the longest pause between bytes; None: only the total counts


async def read_body(
    upstream: aiohttp.ClientResponse, limits: BodyLimits, record: RequestRecord
) -> bytes:
    """A whole (non-streamed) upstream body, bounded in size and time; the arrival of its first
    bytes is the upstream's first byte (not the end of the body). A body that stalls raises
    `UpstreamBodyStalled` with what had arrived."""
    parts: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.total_s
    try:
        while True:
            wait_until = deadline if limits.idle_s is None else loop.time() + limits.idle_s
            async with asyncio.timeout_at(min(deadline, wait_until)):
                chunk = await upstream.content.readany()
            if not chunk:
                return b"".join(parts)
            if not parts:
                record.on_upstream_first_byte(loop.time())
            size += len(chunk)
            if size > limits.cap:
                raise UpstreamError(f"upstream response exceeds {limits.cap} bytes")
            parts.append(chunk)
    except TimeoutError:
        raise UpstreamBodyStalled(
            _stalled(limits, loop.time() >= deadline), b"".join(parts)
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamError(
            f"upstream connection failed while reading the body: {connection_failure(exc)}",
            cause=type(exc).__name__,
        ) from None


def connection_failure(exc: BaseException) -> str:
    """What happened to an upstream connection, in words (the class name goes to the log)."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the upstream closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the upstream's response body broke off before its end"
    if isinstance(exc, ConnectionResetError | aiohttp.ClientOSError):
        return "the connection was reset"
    return "the connection failed"


def _stalled(limits: BodyLimits, whole: bool) -> str:
    if whole:
        return f"upstream response body took over {limits.total_s:g} s"
    return f"upstream response body: no next byte within {limits.idle_s:g} s"
