"""Readiness and graceful shutdown.

On SIGTERM or SIGINT `/readyz` turns 503 at once, and the proxy keeps listening and serving
for `shutdown_delay_s` (load balancers need a moment to stop sending). Then the listener closes
(aiohttp stops the sites first) and admitted requests get `shutdown_grace_s` to finish. Any
still running are cut: cancelled, and marked so (`was_cut`), so that the handler tells a cut from
a client that left, and ends the request with its error (outcome `shutdown`) instead of a silent
cut.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Lifecycle:
    ready: bool = False
    drain_started: asyncio.Event = field(default_factory=asyncio.Event)
    _running: set[asyncio.Task[object]] = field(default_factory=set)
    _cut: set[asyncio.Task[object]] = field(default_factory=set)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Mark the current task as serving an admitted request for the block's duration."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._running.discard(task)  # a cut task stays in _cut: its handler asks after this
            if not self._running:
                self._idle.set()

    @property
    def draining(self) -> bool:
        return self.drain_started.is_set()

    @property
    def running(self) -> int:
        return len(self._running)

    def was_cut(self, task: asyncio.Task[object] | None) -> bool:
        """True when `task` was cancelled by the drain (not, say, by its client leaving)."""
        return task in self._cut

    async def announce_stop(self, delay_s: float) -> None:
        """Turn /readyz to 503, then keep serving `delay_s` (load balancers take their time to
        stop sending); the listener closes after this."""
        self.ready = False
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    async def drain(self, grace_s: float) -> None:
        """Let admitted requests finish for `grace_s`, then cancel what is left."""
        self.ready = False
        self.drain_started.set()
        if self._running:
            try:
                async with asyncio.timeout(grace_s):
                    await self._idle.wait()
            except TimeoutError:
                pass
        for task in list(self._running):
            self._cut.add(task)
            task.cancel()
        if self._running:
            try:
                async with asyncio.timeout(5):
                    await self._idle.wait()
            except TimeoutError:
                pass


def stop_signals() -> asyncio.Event:
    """An event set at the first SIGINT or SIGTERM. Call it before listening: a signal that
    arrives once the server is reachable must stop it gracefully, not kill it.

    Installed on the loop explicitly: a process started from a background job inherits SIGINT
    ignored, and `docker stop` sends SIGTERM; both must still stop the server gracefully. The
    handlers stay installed until the loop closes, so a second signal cannot kill the process
    in the middle of the shutdown grace period."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop
