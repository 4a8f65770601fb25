"""A raw HTTP/1.1 client over `asyncio.open_connection`, for what aiohttp's client will not do.

It sends headers without a body, header bytes that are not UTF-8, a header twice, and closes at
an exact byte. It also sees every byte up to an abnormal end: aiohttp's client raises a stored
`ClientPayloadError` before handing out bytes it already buffered, so when an error event and the
connection's close arrive together it loses the event. Chunked bodies are de-chunked here, and
`complete` says whether the terminating chunk arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multidict import CIMultiDict
from yarl import URL

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
    async def connect(cls, url: str) -> RawClient:
        parsed = URL(url)
        assert parsed.host is not None and parsed.port is not None
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        return cls(reader, writer)

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
        if "Content-Length" in self.headers:
            self.body += await self.reader.readexactly(int(self.headers["Content-Length"]))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            await self._read_chunks(lambda: False)
            assert self.complete, f"the chunked body ended without its last chunk: {self.body!r}"
        else:
            self.body += await self.reader.read()
        return RawResponse(self.status, self.headers, bytes(self.body))

    async def read_until(self, needle: bytes, within: float = WAIT_S) -> bytes:
        """The chunked body so far, once it contains `needle` or has ended."""
        async with asyncio.timeout(within):
            await self._read_chunks(lambda: needle in self.body)
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
