"""Helpers shared by the request, limits and observability tests.

Stream builders in both dialects, a raw HTTP/1.1 client over `asyncio.open_connection` (for the
things aiohttp's client will not do: headers without a body, odd header bytes, closing at an exact
byte), a reader that hands out complete SSE events, and bounded polls for what the proxy does
after the client already has its answer (the slot release and the log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict
from yarl import URL

from proxy.core.dialects import Signal
from proxy.core.dialects.openai import OPENAI
from proxy.core.sse import SSEEvent
from tests.support.running_proxy import RunningProxy
from tests.support.waits import eventually

Edit = Callable[[dict[str, Any]], None]

# --- faults and spies ---


def explode_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the OpenAI dialect: interpreting an event that says "boom" raises."""
    interpret = OPENAI.interpret

    def broken(event: SSEEvent) -> Signal:
        if "boom" in event.data:
            raise RuntimeError("dialect bug")
        return interpret(event)

    monkeypatch.setattr(OPENAI, "interpret", broken)


# --- config edits ---


def compose(*edits: Edit) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        for each in edits:
            each(document)

    return edit


def set_defaults(**values: Any) -> Edit:
    """Set `defaults.*`; `timeouts` is merged into the existing timeouts."""

    def edit(document: dict[str, Any]) -> None:
        defaults = document["defaults"]
        for key, value in values.items():
            if key == "timeouts":
                defaults["timeouts"].update(value)
            else:
                defaults[key] = value

    return edit


def add_user(name: str, env: str, limit: int | None = None) -> Edit:
    """A user whose key is read from the environment variable `env`."""

    def edit(document: dict[str, Any]) -> None:
        user: dict[str, Any] = {"name": name, "key_env": env}
        if limit is not None:
            user["max_concurrent_streams"] = limit
        document["auth"]["users"].append(user)

    return edit


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (its socket was just closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- waiting for what happens after the client has its answer ---


async def slots_released(proxy: RunningProxy, user: str = "alice", held: int = 0) -> None:
    await eventually(lambda: proxy.limiter.active(user) == held, f"{user} holds {held} slots")


# --- reading responses ---


class EventReader:
    """Complete SSE events (terminated by a blank line) from an aiohttp response, as bytes."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.buffer = b""
        self.received = b""

    async def next_event(self) -> bytes:
        while b"\n\n" not in self.buffer:
            chunk = await self.response.content.readany()
            if not chunk:
                raise AssertionError(f"stream ended inside or before an event: {self.buffer!r}")
            self.buffer += chunk
            self.received += chunk
        event, self.buffer = self.buffer.split(b"\n\n", 1)
        return event + b"\n\n"

    async def until(self, marker: bytes) -> bytes:
        """Events up to and including the first one containing `marker`."""
        while True:
            event = await self.next_event()
            if marker in event:
                return event

    async def rest(self) -> bytes:
        """Everything until the end of the response (raises if it ended abnormally)."""
        rest = await self.response.content.read()
        self.received += rest
        return rest


@dataclass
class RawResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes


def _parse_head(head: bytes) -> tuple[int, CIMultiDict[str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
    return status, headers


class RawClient:
    """One HTTP/1.1 connection driven byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        parsed = URL(url)
        assert parsed.host is not None and parsed.port is not None
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self) -> tuple[int, CIMultiDict[str]]:
        return _parse_head(await self.reader.readuntil(b"\r\n\r\n"))

    async def response(self) -> RawResponse:
        """One whole response (after any 1xx interim one): by Content-Length, chunked to its last
        chunk, or to EOF."""
        status, headers = await self.head()
        while 100 <= status < 200:  # e.g. 100 Continue, when the request said Expect
            status, headers = await self.head()
        if "Content-Length" in headers:
            body = await self.reader.readexactly(int(headers["Content-Length"]))
        elif headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = dechunk(await self.reader.readuntil(b"\r\n0\r\n\r\n"))
        else:
            body = await self.reader.read()
        return RawResponse(status, headers, body)

    def close(self, *, abort: bool = False) -> None:
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


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


async def raw_request(
    proxy: RunningProxy,
    path: str,
    body: bytes,
    headers: Iterable[tuple[str, str]],
    method: str = "POST",
) -> RawResponse:
    client = await RawClient.connect(proxy.url)
    try:
        await client.send(request_bytes(path, body, headers, method))
        return await client.response()
    finally:
        client.close()


async def ignore(awaitable: Awaitable[Any]) -> None:
    """Await, swallowing the errors of a stream the proxy ended abnormally on purpose."""
    with contextlib.suppress(aiohttp.ClientError, asyncio.IncompleteReadError, ConnectionError):
        await awaitable


# --- the limiter ---


def spy_on_acquire(monkeypatch: pytest.MonkeyPatch, proxy: RunningProxy) -> list[str]:
    """The users the proxy asks the limiter for a slot for."""
    calls: list[str] = []
    original = proxy.limiter.acquire

    def acquire(user: str, limit: int) -> Any:
        calls.append(user)
        return original(user, limit)

    monkeypatch.setattr(proxy.limiter, "acquire", acquire)
    return calls
