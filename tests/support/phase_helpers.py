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
from collections.abc import Awaitable
from typing import Any

import aiohttp
import pytest

from proxy.core.dialects import Signal
from proxy.core.dialects.openai import OPENAI
from proxy.core.sse import SSEEvent
from tests.support.running_proxy import RunningProxy
from tests.support.waits import eventually

# --- faults and spies ---


def explode_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the OpenAI dialect: interpreting an event that says "boom" raises."""
    interpret = OPENAI.interpret

    def broken(event: SSEEvent) -> Signal:
        if "boom" in event.data:
            raise RuntimeError("dialect bug")
        return interpret(event)

    monkeypatch.setattr(OPENAI, "interpret", broken)


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
