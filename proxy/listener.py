"""The listening sockets, with an accept loop that stops at the connection limit.

asyncio's own server accepts whenever the socket is readable: up to `backlog` connections per
wake-up before any protocol runs, so a limit checked in the protocol overshoots by that much; at
the file limit every failed accept is logged again (on Python 3.11 up to `backlog` tracebacks
per wake-up, and the reader is re-armed each time). And it cannot be paused without its private
`_start_serving`. So `Listener` accepts by itself, with public event-loop calls only
(`add_reader`, `remove_reader`, `connect_accepted_socket`; uvloop has them too): it accepts
only while `ConnectionLimit` has room, stops reading the listening sockets at the limit (or when
an accept fails for want of resources: then it retries after `RETRY_AFTER_S`, or sooner when a
connection closes), and starts again when a connection closes.

`ProxySite` is the aiohttp site that serves a `ProxyRunner` through a `Listener`.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
from collections.abc import Callable

from aiohttp import web
from yarl import URL

from proxy.connection_limit import ConnectionLimit
from proxy.connections import GuardedServer

ACCEPT_BATCH = 128  # accepts per wake-up at most, so that a flood cannot starve the loop
RETRY_AFTER_S = 1.0


def _someone_waiting(sock: socket.socket) -> bool:
    """Whether a connection waits in `sock`'s backlog (poll: no FD_SETSIZE limit)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


async def _bound_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets for every address `host` resolves to (all interfaces if empty)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    addresses = list(dict.fromkeys((info[0], info[4]) for info in infos))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.create_server(address, family=family, backlog=backlog)
            sock.setblocking(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener(asyncio.AbstractServer):
    """Accepts on `sockets` while `limit` has room; each connection gets `factory()`."""

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        limit: ConnectionLimit,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets, self._factory, self._limit = sockets, factory, limit
        self._reading = False
        self._closed = self._loop.create_future()
        self._retry: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[None]] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def resume(self) -> None:
        """Read the listening sockets again (at start, and when the limit has room)."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if not self._reading and not self._closed.done():
            for sock in self._sockets:
                self._loop.add_reader(sock.fileno(), self._readable, sock)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            for sock in self._sockets:
                self._loop.remove_reader(sock.fileno())
            self._reading = False

    def _pause(self, reason: str | None, retry: bool = False) -> None:
        self._stop_reading()
        self._limit.wait_for_room(self, reason)
        if retry and self._retry is None:
            self._retry = self._loop.call_later(RETRY_AFTER_S, self.resume)

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._limit.full():
                if not _someone_waiting(sock):
                    self._limit.caught_up()
                    return  # still reading: the next client to arrive is seen
                self._pause(None if self._limit.make_room() else "max_connections")
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                self._limit.caught_up()
                return
            except ConnectionAbortedError:
                continue
            except OSError as error:  # EMFILE, ENFILE, ENOBUFS, ENOMEM, ...
                self._pause(errno.errorcode.get(error.errno or 0, "OSError"), retry=True)
                return
            self._connect(conn)

    def _connect(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self._limit.accepted()
        task = self._loop.create_task(self._connection(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connection(self, conn: socket.socket) -> None:
        made: list[asyncio.Protocol] = []

        def factory() -> asyncio.Protocol:
            made.append(self._factory())
            self._limit.handing_over(made[0])
            return made[0]

        try:
            await self._loop.connect_accepted_socket(factory, conn)
        except (Exception, asyncio.CancelledError) as error:  # the peer left early, or close()
            conn.close()
            self._limit.not_opened(made[0] if made else None)
            if isinstance(error, asyncio.CancelledError):
                raise

    def close(self) -> None:
        if self._closed.done():
            return
        self._stop_reading()
        self._limit.forget(self)
        if self._retry is not None:
            self._retry.cancel()
        for sock in self._sockets:
            sock.close()
        for task in self._connecting:
            task.cancel()
        self._closed.set_result(None)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed.done()

    async def start_serving(self) -> None:
        self.resume()

    async def serve_forever(self) -> None:
        self.resume()
        await asyncio.shield(self._closed)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)
        await asyncio.gather(*self._connecting, return_exceptions=True)


class ProxySite(web.BaseSite):
    """A TCP site for a `ProxyRunner`, accepting through a `Listener` under its limit."""

    __slots__ = ("_guarded", "_host", "_listen_backlog", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, backlog: int) -> None:
        super().__init__(runner, backlog=backlog)
        if not isinstance(runner.server, GuardedServer):
            raise TypeError("ProxySite serves the GuardedServer of a ProxyRunner")
        self._guarded = runner.server
        self._host, self._port, self._listen_backlog = host, port, backlog

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host or "0.0.0.0", port=self._port))

    @property
    def max_connections(self) -> int:
        return self._guarded.limit.maximum

    @property
    def port(self) -> int:
        """The bound port (the real one for port 0) once started, else the one asked for."""
        if isinstance(self._server, Listener) and self._server.sockets:
            port: int = self._server.sockets[0].getsockname()[1]
            return port
        return self._port

    async def start(self) -> None:
        await super().start()
        sockets = await _bound_sockets(self._host, self._port, self._listen_backlog)
        listener = Listener(sockets, self._guarded, self._guarded.limit)
        # BaseSite's `_server` (aiohttp 3.14): `stop()` closes it and `BaseRunner.addresses`
        # lists its sockets; tests/test_connection_limits.py fails if either stops working.
        self._server = listener
        listener.resume()
