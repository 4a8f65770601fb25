"""Client connections before the proxy's handler sees a request: aiohttp's protocol, guarded.

aiohttp's `web.Server` is the protocol factory the listener calls once per accepted connection;
each connection gets a `RequestHandler` that parses requests and runs the app on them.
`ProxyRunner` (the runner `app.make_runner` returns) builds a `GuardedServer` instead, whose
connections are `GuardedHandler`s. What they add:

- requests aiohttp's parser refuses are answered, logged and counted by `proxy.refusals`
  instead of aiohttp's `handle_error` (which logged the raw header line and echoed it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from proxy import keys, refusals
from proxy.metrics import ProxyMetrics


class GuardedHandler(web.RequestHandler):
    """One client connection: aiohttp's protocol, with the proxy's answer to parser errors."""

    __slots__ = ("_metrics",)

    def __init__(self, manager: GuardedServer, *, metrics: ProxyMetrics, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._metrics = metrics

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
        return refusals.response(refusal, refusals.record(refusal, self._metrics, 0.0))


class GuardedServer(web.Server):
    """aiohttp's per-app server (the protocol factory), making `GuardedHandler`s."""

    def __init__(self, base: web.Server, metrics: ProxyMetrics, **handler_kwargs: Any) -> None:
        self._event_loop = asyncio.get_running_loop()
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=self._event_loop,
        )
        self._metrics = metrics
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> GuardedHandler:
        return GuardedHandler(
            self, loop=self._event_loop, metrics=self._metrics, **self._handler_kwargs
        )


class ProxyRunner(web.AppRunner):
    """An `AppRunner` whose server is a `GuardedServer`; `handler_kwargs` go to each connection's
    `RequestHandler` (`access_log`, `keepalive_timeout`, ...).

    `_make_server` is `BaseRunner`'s hook for building the server (abstract since aiohttp 3.0,
    called by `setup()`; pinned at 3.14): aiohttp's own builds the app's server, after the app's
    startup signals, and this wraps its handler and request factory. tests/test_parser_errors.py
    fails if the hook is no longer called.
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
        return GuardedServer(base, self.app[keys.METRICS], **self._handler_kwargs)
