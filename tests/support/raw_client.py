"""A raw HTTP/1.1 client for tests that must see every byte up to an abnormal end.

aiohttp's client raises a stored `ClientPayloadError` before handing out bytes it already
buffered, so when an error event and the connection close arrive together, it loses the event.
This client de-chunks by hand and reports whether the terminating chunk arrived.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class RawStream:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.complete = False  # the chunked terminator (0-size chunk) arrived
        self.ended = False

    async def _head(self) -> None:
        status_line = await self.reader.readline()
        self.status = int(status_line.split()[1])
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()

    async def _next_chunk(self) -> None:
        size_line = await self.reader.readline()
        if not size_line.endswith(b"\r\n"):
            self.ended = True
            return
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            self.complete = self.ended = True
            return
        try:
            data = await self.reader.readexactly(size + 2)
        except asyncio.IncompleteReadError as partial:
            self.body += partial.partial[:size]
            self.ended = True
            return
        self.body += data[:size]

    async def read_until(self, needle: bytes, within: float = 10) -> bytes:
        async with asyncio.timeout(within):
            while needle not in self.body and not self.ended:
                await self._next_chunk()
        return bytes(self.body)

    async def read_to_end(self, within: float = 10) -> bytes:
        async with asyncio.timeout(within):
            while not self.ended:
                await self._next_chunk()
        self.close()
        return bytes(self.body)

    def close(self) -> None:
        self.writer.close()


async def open_raw_stream(
    base_url: str, path: str, payload: Any, headers: dict[str, str]
) -> RawStream:
    """POST `payload` as JSON and read the status line and headers."""
    parts = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    body = json.dumps(payload).encode()
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]  # fmt: skip
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    stream = RawStream(reader, writer)
    await stream._head()
    return stream
