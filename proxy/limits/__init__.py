"""Per-user concurrent-stream limits.

A limiter hands out leases: `async with limiter.acquire(user, limit):` around a whole stream.
A full user gets `ConcurrencyLimitExceeded` (429) and touches no counter. The lease is released
exactly once in `__aexit__`, shielded from cancellation, whatever ended the stream.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from proxy.core.errors import ConcurrencyLimitExceeded


class ConcurrencyLimiter(Protocol):
    def acquire(self, user: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of `user`'s `limit` slots for the duration of the block."""
        ...

    async def close(self) -> None: ...


def limit_exceeded(limit: int) -> ConcurrencyLimitExceeded:
    plural = "stream" if limit == 1 else "streams"
    return ConcurrencyLimitExceeded(
        f"concurrent stream limit reached: at most {limit} {plural} may be open at once "
        "for this user; retry when one finishes",
        headers={"Retry-After": "1"},
    )
