"""In-process limiter: one count per user, right for a single replica.

The release is synchronous, in the `finally` of the block: no await, so no cancellation can
interrupt it, and the slot returns exactly once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from proxy.limits.protocol import limit_exceeded


class MemoryLimiter:
    def __init__(self) -> None:
        self._active: dict[str, int] = {}

    async def held(self, user: str) -> int:
        return self._active.get(user, 0)

    @asynccontextmanager
    async def acquire(self, user: str, limit: int) -> AsyncIterator[None]:
        held = self._active.get(user, 0)
        if held >= limit:
            raise limit_exceeded(limit)
        self._active[user] = held + 1
        try:
            yield
        finally:
            # Synchronous: nothing can interrupt it, so the slot returns exactly once.
            remaining = self._active[user] - 1
            if remaining:
                self._active[user] = remaining
            else:
                del self._active[user]

    async def close(self) -> None:
        self._active.clear()
