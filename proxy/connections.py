"""Client connections before the proxy's handler sees a request: aiohttp's protocol, guarded.

aiohttp's `web.Server` is the protocol factory the listener calls once per accepted connection;
each connection gets a `RequestHandler` that parses requests and runs the app on them.
`ProxyRunner` (the runner `app.make_runner` returns) builds a `GuardedServer` instead, whose
connections are `GuardedHandler`s. What they add:

- a header deadline: a request's head must be complete `header_timeout_s` after the connection
  opened, or after the first byte of the next request on a kept-alive connection (an idle
  kept-alive connection keeps aiohttp's own keep-alive timeout). Past it: a 408 if the client
  sent anything, silence if not, and the connection closes. aiohttp has no such deadline.
- requests aiohttp's parser refuses are answered, logged and counted by `proxy.refusals`
  instead of aiohttp's `handle_error` (which logged the raw header line and echoed it).
- the count of open connections, and which are idle between requests, for the connection
  limit (`proxy.connection_limit`, enforced by the listener in `proxy.listener`).
- a bound on what the kernel holds for a client that stops reading (`limit_unsent`).

A connection knows when a request's head is complete (the server's request factory is called
for it) and when its response is written (the task running the handler ends), through the
`request_factory` and handler that `web.Server` takes: no private attribute of aiohttp's.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from proxy import keys, refusals
from proxy.connection_limit import ConnectionLimit, max_connections
from proxy.metrics import ProxyMetrics

# Written-but-unsent bytes the kernel keeps per client connection (TCP_NOTSENT_LOWAT). Without
# it Linux autotunes the send buffer up to net.ipv4.tcp_wmem's maximum (4 MiB by default): a
# client that stops reading goes unnoticed until megabytes are queued for it, and only then do
# the proxy's writes wait (and its client_stall_s clock start). Bytes in flight, up to the
# client's receive window, are not limited: fast clients keep their throughput.
UNSENT_LIMIT = 32 * 1024


def limit_unsent(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)  # Linux and macOS
    if sock is None or option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_LIMIT)


class GuardedHandler(web.RequestHandler):
    """One client connection: aiohttp's protocol, with a header deadline and the proxy's answer
    to parser errors."""

    __slots__ = ("_deadline", "_event_loop", "_guard", "_heard", "_request", "_waiting_since")

    def __init__(
        self, manager: GuardedServer, *, loop: asyncio.AbstractEventLoop, **kwargs: Any
    ) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._guard = manager
        self._event_loop = loop
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self._heard = False  # a byte of the awaited request arrived
        self._request: web.BaseRequest | None = None  # head complete, response not yet written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limit_unsent(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if data and self._request is None:
            self._heard = True
            self._guard.limit.busy(self)
            if self._deadline is None:  # the first byte after a kept-alive idle time
                self._arm()
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def request_started(self, request: web.BaseRequest) -> None:
        """The request's head is complete (or refused by the parser)."""
        self._request = request
        self._disarm()

    def request_finished(self, request: web.BaseRequest) -> None:
        """The response to `request` was written (or failed); the connection may go idle."""
        if self._request is request:  # not a pipelined successor that already started
            self._request = None
            self._heard = False
            if self.transport is not None and not self.transport.is_closing():
                self._guard.limit.idle(self)

    def _arm(self) -> None:
        self._waiting_since = self._event_loop.time()
        timeout_s = self._guard.header_timeout_s
        self._deadline = self._event_loop.call_later(timeout_s, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        # A head completed by the last read wakes aiohttp's request loop with `call_soon`, which
        # calls the request factory: deciding one step later lets that request start instead.
        self._event_loop.call_soon(self._expire)

    def _expire(self) -> None:
        self._deadline = None
        transport = self.transport
        if self._request is not None or transport is None or transport.is_closing():
            return
        if self._heard:
            refusal = refusals.header_timeout_refusal(self._guard.header_timeout_s)
            waited_s = self._event_loop.time() - self._waiting_since
            request_id = refusals.record(refusal, self._guard.metrics, waited_s)
            transport.write(refusals.raw_response(refusal, request_id))
        self.force_close()  # flushes what was written, then closes

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp calls this with status 400 and the parser's exception for a request head it
        cannot parse (aiohttp 3.14: `RequestHandler.data_received` queues an `_ErrInfo`, whose
        handler lands here; tests/test_parser_errors.py fails if that changes). Other errors
        (500: the app raised, 504) keep aiohttp's answer, which echoes nothing."""
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        refusal = refusals.parse_refusal(exc)
        waited_s = self._event_loop.time() - self._waiting_since
        return refusals.response(refusal, refusals.record(refusal, self._guard.metrics, waited_s))


class GuardedServer(web.Server):
    """aiohttp's per-app server (the protocol factory), making `GuardedHandler`s."""

    def __init__(
        self,
        base: web.Server,
        metrics: ProxyMetrics,
        header_timeout_s: float,
        limit: ConnectionLimit,
        **handler_kwargs: Any,
    ) -> None:
        self._event_loop = asyncio.get_running_loop()
        super().__init__(
            self._handle,
            request_factory=self._make_request,
            handler_cancellation=base.handler_cancellation,
            loop=self._event_loop,
        )
        self._app_handler = base.request_handler
        self._app_request_factory = base.request_factory
        self.metrics = metrics
        self.header_timeout_s = header_timeout_s
        self.limit = limit
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(self, loop=self._event_loop, **self._handler_kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self.limit.opened(handler)

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self.limit.closed(handler)

    def _make_request(
        self,
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: web.RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
    ) -> web.BaseRequest:
        request = self._app_request_factory(message, payload, protocol, writer, task)
        if isinstance(protocol, GuardedHandler):
            protocol.request_started(request)
        return request

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The app's handler, in the task that also writes the response: its end is the
        response's end."""
        connection, task = request.protocol, asyncio.current_task()
        if isinstance(connection, GuardedHandler) and task is not None:
            task.add_done_callback(lambda _: connection.request_finished(request))
        return await self._app_handler(request)


class ProxyRunner(web.AppRunner):
    """An `AppRunner` whose server is a `GuardedServer`; `handler_kwargs` go to each connection's
    `RequestHandler` (`access_log`, `keepalive_timeout`, ...).

    `_make_server` is `BaseRunner`'s hook for building the server (abstract since aiohttp 3.0,
    called by `setup()`; pinned at 3.14): aiohttp's own builds the app's server, after the app's
    startup signals, and this wraps its handler and request factory. tests/test_parser_errors.py
    and tests/test_header_timeout.py fail if the hook is no longer called.
    """

    def __init__(
        self,
        app: web.Application,
        *,
        handler_cancellation: bool,
        shutdown_timeout: float,
        **handler_kwargs: Any,
    ) -> None:
        super().__init__(
            app, handler_cancellation=handler_cancellation, shutdown_timeout=shutdown_timeout
        )
        self._handler_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        server = self.app[keys.RUNTIME].snapshot.config.server
        limit = ConnectionLimit(max_connections(server))
        return GuardedServer(
            base, self.app[keys.METRICS], server.header_timeout_s, limit, **self._handler_kwargs
        )
