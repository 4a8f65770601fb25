"""A scripted fake upstream on 127.0.0.1: it can split bytes anywhere, stall, reset, misbehave.

Each request pops the next `Script` from the queue (or the default). A script is a status, headers
and a list of steps: bytes to send (one write each), `Hold(event)` to stall until the test says
go, `Reset()` to abort the TCP connection, `Close()` to drop the connection cleanly without
ending the chunked body. Requests and disconnects are recorded for assertions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Hold:
    """Stall here until the event is set (set by the test)."""

    until: asyncio.Event


@dataclass
class Reset:
    """Abort the connection (TCP RST-like): the proxy sees a broken stream."""


@dataclass
class Close:
    """Close the connection cleanly, without the chunked terminator."""


Step = bytes | Hold | Reset | Close
Gate = Callable[[], asyncio.Event]  # the `gate` fixture: makes the events of `Hold` steps


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)
    hold_headers: asyncio.Event | None = None  # delay the response headers until set
    reset_before_headers: bool = False  # read the request, then drop the connection unanswered
    whole_body: bytes | None = None  # answer with a plain (non-chunked) body


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: Any = None  # the proxy's (host, port): the same port twice means a reused connection


class FakeUpstream:
    def __init__(self) -> None:
        self.scripts: deque[Script] = deque()
        self.default = Script(steps=[b"data: [DONE]\n\n"])
        self.requests: list[SeenRequest] = []
        self.disconnected = asyncio.Event()
        self.finished = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def enqueue(self, *scripts: Script) -> None:
        self.scripts.extend(scripts)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            SeenRequest(
                request.method,
                request.path_qs,
                dict(request.headers),
                body,
                request.transport and request.transport.get_extra_info("peername"),
            )
        )
        script = self.scripts.popleft() if self.scripts else self.default
        try:
            return await self._play(request, script)
        except (asyncio.CancelledError, ConnectionError):
            self.disconnected.set()
            raise
        finally:
            self.finished.set()

    async def _play(self, request: web.Request, script: Script) -> web.StreamResponse:
        if script.hold_headers is not None:
            await script.hold_headers.wait()
        if script.reset_before_headers:
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never sent: the connection is gone
        if script.whole_body is not None:
            return web.Response(
                status=script.status, body=script.whole_body,
                content_type=script.content_type, headers=script.headers,
            )  # fmt: skip
        response = web.StreamResponse(status=script.status, headers=script.headers)
        response.content_type = script.content_type
        await response.prepare(request)
        for step in script.steps:
            if await self._step(request, response, step):
                return response
        await response.write_eof()
        return response

    async def _step(self, request: web.Request, response: web.StreamResponse, step: Any) -> bool:
        """Play one step; True when the connection was ended by it."""
        if isinstance(step, bytes):
            await response.write(step)
        elif isinstance(step, Hold):
            await step.until.wait()
        elif isinstance(step, Reset | Close):
            transport = request.transport
            assert transport is not None
            if isinstance(step, Reset):
                transport.abort()
            else:
                transport.close()
            return True
        return False
