"""What every limiter backend is: the `ConcurrencyLimiter` protocol and the refusal it raises."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from proxy.core.errors import ConcurrencyLimitExceeded


class ConcurrencyLimiter(Protocol):
    def acquire(self, user: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of `user`'s `limit` slots for the duration of the block."""
        ...

    async def held(self, user: str) -> int:
        """How many slots `user` holds now (for tests and diagnostics, not for admission)."""
        ...

    async def close(self) -> None: ...


def limit_exceeded(limit: int) -> ConcurrencyLimitExceeded:
    plural = "stream" if limit == 1 else "streams"
    return ConcurrencyLimitExceeded(
        f"concurrent stream limit reached: at most {limit} {plural} may be open at once "
        "for this user; retry when one finishes",
        headers={"Retry-After": "1"},
    )
