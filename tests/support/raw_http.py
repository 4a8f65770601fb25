"""A raw HTTP/1.1 client over `asyncio.open_connection`, for what aiohttp's client will not do.

It sends headers without a body, header bytes that are not UTF-8, a header twice, and closes at
an exact byte (or with a reset). It also sees every byte up to an abnormal end: aiohttp's client
raises a stored `ClientPayloadError` before handing out bytes it already buffered, so when an
error event and the connection's close arrive together it loses the event. Chunked bodies are
de-chunked here, and `complete` says whether the terminating chunk arrived. It can also be a
client that reads slowly or not at all: a small receive buffer, and nothing taken off the socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import RunningProxy
from tests.support.waits import WAIT_S


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes


def request_bytes(
    path: str, body: bytes, headers: Iterable[tuple[str, str]], method: str = "POST"
) -> bytes:
    """A complete HTTP/1.1 request; `Host`, `Content-Length`, `Connection: close` unless given."""
    given = list(headers)
    names = {name.lower() for name, _ in given}
    defaults = [("Host", "proxy.test"), ("Content-Length", str(len(body))), ("Connection", "close")]
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in defaults if name.lower() not in names]
    lines += [f"{name}: {value}" for name, value in given]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawClient:
    """One HTTP/1.1 connection driven byte by byte; the response head and body as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.body = bytearray()
        self.complete = False  # the chunked terminator (a 0-size chunk) arrived
        self.ended = False  # the body ended, with its terminator or without

    @classmethod
    async def connect(cls, url: str, *, receive_buffer: int | None = None) -> RawClient:
        """A new connection; `receive_buffer` (SO_RCVBUF, set before the handshake so that the
        window stays that small) makes a client that reads slowly, or not at all, hold little:
        the proxy's writes to it back up soon."""
        parsed = URL(url)
        assert parsed.host is not None and parsed.port is not None
        if receive_buffer is None:
            reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
            return cls(reader, writer)
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (parsed.host, parsed.port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    @property
    def ports(self) -> tuple[int, int]:
        """(this end's port, the server's port): the connection as the kernel lists it."""
        mine: int = self.writer.get_extra_info("sockname")[1]
        theirs: int = self.writer.get_extra_info("peername")[1]
        return mine, theirs

    def stop_reading(self) -> None:
        """Take nothing more off the socket (asyncio would otherwise buffer up to 128 KiB in
        this process): what the server sends stays in the kernel, then in the server."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self) -> None:
        """The status line and headers, after any 1xx interim response (e.g. 100 Continue)."""
        while self.status < 200:
            lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            self.status = int(lines[0].split(" ")[1])
            self.headers = CIMultiDict()
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    self.headers.add(name.strip(), value.strip())

    async def response(self) -> RawResponse:
        """The next whole response on the connection (keep-alive: one after another): its body
        by Content-Length, chunked to its last chunk and trailer, or to EOF."""
        self.status, self.body, self.complete, self.ended = 0, bytearray(), False, False
        await self.read_head()
        await self.read_body()
        return RawResponse(self.status, self.headers, bytes(self.body))

    async def read_body(self) -> bytes:
        """The body of the response whose head was read: by Content-Length, chunked to its last
        chunk and trailer, or to EOF."""
        if "Content-Length" in self.headers:
            self.body += await self.reader.readexactly(int(self.headers["Content-Length"]))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            await self._read_chunks(lambda: False)
            assert self.complete, f"the chunked body ended without its last chunk: {self.body!r}"
        else:
            self.body += await self.reader.read()
        return bytes(self.body)

    async def read_until(self, needle: bytes, within: float = WAIT_S) -> bytes:
        """The chunked body so far, once it contains `needle` or has ended."""
        async with asyncio.timeout(within):
            await self._read_chunks(lambda: needle in self.body)
        return bytes(self.body)

    async def read_past(self, size: int, within: float = WAIT_S) -> bytes:
        """The chunked body so far, once it is longer than `size` bytes or has ended: whether
        anything comes after what is known."""
        async with asyncio.timeout(within):
            await self._read_chunks(lambda: len(self.body) > size)
        return bytes(self.body)

    async def read_to_end(self, within: float = WAIT_S) -> bytes:
        """The whole chunked body, however it ended; then the connection is closed."""
        async with asyncio.timeout(within):
            await self._read_chunks(lambda: False)
        self.close()
        return bytes(self.body)

    async def _read_chunks(self, done: Callable[[], bool]) -> None:
        while not done() and not self.ended:
            size_line = await self.reader.readline()
            if not size_line.endswith(b"\r\n"):
                self.ended = True
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b""):
                    pass  # trailer fields, up to the blank line that ends the message
                self.complete = self.ended = True
                return
            try:
                data = await self.reader.readexactly(size + 2)
            except asyncio.IncompleteReadError as partial:
                self.body += partial.partial[:size]
                self.ended = True
                return
            self.body += data[:size]

    def close(self, *, abort: bool = False) -> None:
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()

    def reset(self) -> None:
        """Leave with a TCP reset (SO_LINGER 0): the server's next write fails at once."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


async def raw_request(
    url: str, path: str, body: bytes, headers: Iterable[tuple[str, str]], method: str = "POST"
) -> RawResponse:
    """Send one request (see `request_bytes`) on a new connection and read its whole response."""
    client = await RawClient.connect(url)
    try:
        await client.send(request_bytes(path, body, headers, method))
        return await client.response()
    finally:
        client.close()


async def open_raw_stream(proxy: RunningProxy, dialect: str = "openai") -> RawClient:
    """A streaming request in the dialect on a new connection, its response's head read: the
    body is read as it comes (`read_until`, `read_past`, `read_to_end`, `complete`)."""
    client = await RawClient.connect(proxy.url)
    headers = [("Content-Type", "application/json"), *proxy.headers().items()]
    body = json.dumps(payload(dialect)).encode()
    await client.send(request_bytes(PATHS[dialect], body, headers))
    await client.read_head()
    return client
