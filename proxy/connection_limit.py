"""How many client connections the proxy holds at once, and what happens at the limit.

Every client connection costs a file descriptor before the client can even be authenticated, so
the proxy holds at most `server.max_connections` of them. At the limit the listener
(`proxy.listener`) stops accepting: clients wait in the kernel's listen backlog instead of being
refused, and the proxy never runs into the file limit (where asyncio logged every failed accept,
thousands of tracebacks a second, and nobody was served). When a client is waiting, the oldest
idle kept-alive connection is closed first to make room, as nginx does (that is not logged: a
full proxy whose clients keep idle connections would otherwise log every new connection).

One episode, one pair of log lines: `connections.paused` when a client first has to wait with
no idle connection to close (or an accept fails for want of resources), `connections.resumed`
once nobody is waiting any more; however many connections come and go in between.

The default limit is what the file limit leaves after the upstream side (`max_connections`).
"""

from __future__ import annotations

import resource
import time
from typing import Protocol

from proxy.config.models import ServerConfig
from proxy.log import get_logger

log = get_logger("proxy.connections")

# Descriptors the process needs besides connections: stdio, the event loop's selector and
# self-pipe, listening sockets, the resolver, log files and a margin.
RESERVED_FDS = 64
UNLIMITED_FILES = 1 << 20  # what an RLIM_INFINITY soft limit is counted as


def file_limit() -> int:
    """The process's soft limit on open files."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return UNLIMITED_FILES if soft == resource.RLIM_INFINITY else soft


def derived_max_connections(files: int, max_upstream_connections: int) -> int:
    """What `files` descriptors leave for client connections after the upstream side.

    Each admitted request holds one upstream connection, so the upstream side needs at most
    as many descriptors as there are clients, and never more than its pool
    (`max_upstream_connections`): it gets min(pool, half of what is available), the clients
    the rest. 1,024 files: 480 clients; 65,536 files and the default pool of 4,096: 61,376.
    """
    available = max(files - RESERVED_FDS, 2)
    return max(1, available - min(max_upstream_connections, available // 2))


def max_connections(server: ServerConfig, files: int | None = None) -> int:
    """The configured limit, or the derived one; a configured limit above the derived one is
    allowed (the operator may know better) but said once at startup."""
    derived = derived_max_connections(
        file_limit() if files is None else files, server.max_upstream_connections
    )
    if server.max_connections is None:
        return derived
    if server.max_connections > derived:
        log.warning(
            "connections.limit_above_file_limit",
            max_connections=server.max_connections, file_limit_allows=derived,
        )  # fmt: skip
    return server.max_connections


class Listening(Protocol):
    def resume(self) -> None: ...


class Closable(Protocol):
    def force_close(self) -> None: ...


class ConnectionLimit:
    """Open and accepted-but-not-yet-connected client connections, against the maximum.

    An accepted socket counts as `pending` from the accept until its protocol's
    `connection_made` (`opened`), then as `open` until `connection_lost` (`closed`): the
    hand-over happens in one step, so the count is never short or double.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0
        self.pending = 0
        self._handed_over: set[object] = set()  # protocols of pending sockets
        self._idle: dict[Closable, None] = {}  # kept alive between requests, oldest first
        self._paused: set[Listening] = set()
        self._episode_since: float | None = None

    @property
    def count(self) -> int:
        return self.open + self.pending

    def full(self) -> bool:
        return self.count >= self.maximum

    def accepted(self) -> None:
        self.pending += 1

    def handing_over(self, protocol: object) -> None:
        """`protocol` was made for a pending socket: its `opened` ends the pending count."""
        self._handed_over.add(protocol)

    def not_opened(self, protocol: object | None) -> None:
        """A pending socket failed before its protocol was told of the connection."""
        if protocol is None or protocol in self._handed_over:
            self._handed_over.discard(protocol)
            self.pending -= 1
            self._wake()

    def opened(self, protocol: object) -> None:
        if protocol in self._handed_over:
            self._handed_over.discard(protocol)
            self.pending -= 1
        self.open += 1

    def closed(self, connection: Closable) -> None:
        self.open -= 1
        self._idle.pop(connection, None)
        self._wake()

    def idle(self, connection: Closable) -> None:
        self._idle[connection] = None

    def busy(self, connection: Closable) -> None:
        self._idle.pop(connection, None)

    def make_room(self) -> bool:
        """A client waits at the limit: close the oldest idle kept-alive connection, if any."""
        if not self._idle:
            return False
        oldest = next(iter(self._idle))
        del self._idle[oldest]
        oldest.force_close()
        return True

    def wait_for_room(self, listener: Listening, reason: str | None) -> None:
        """`listener` stopped accepting; it is resumed when a connection closes. A `reason`
        starts an episode (None: room is on its way, from an idle connection just closed)."""
        self._paused.add(listener)
        if reason is not None and self._episode_since is None:
            self._episode_since = time.monotonic()
            log.warning(
                "connections.paused", reason=reason, open=self.count, max_connections=self.maximum
            )

    def forget(self, listener: Listening) -> None:
        self._paused.discard(listener)

    def caught_up(self) -> None:
        """Nobody is waiting to be accepted: an episode, if one was under way, is over."""
        if self._episode_since is not None:
            paused_s = round(time.monotonic() - self._episode_since, 3)
            self._episode_since = None
            log.info(
                "connections.resumed",
                paused_s=paused_s, open=self.count, max_connections=self.maximum,
            )  # fmt: skip

    def _wake(self) -> None:
        if self._paused and not self.full():
            paused, self._paused = self._paused, set()
            for listener in paused:
                listener.resume()
