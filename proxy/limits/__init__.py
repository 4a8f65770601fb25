"""Per-user concurrent-stream limits.

A limiter hands out slots: `async with limiter.acquire(user, limit):` around a whole request. A
full user gets `ConcurrencyLimitExceeded` (429) and touches no count. The slot is released
exactly once when the block ends, whatever ended it: an exception, or a cancellation at any
await. A backend whose release is synchronous (`memory`) needs nothing more for that; a backend
whose release awaits (a network round trip) must shield it from cancellation.

`build_limiter` picks the backend named by `limits.backend`; every backend passes the contract
suite in `tests/contract/test_limiters.py`.
"""

from __future__ import annotations

from proxy.config.models import LimitsConfig
from proxy.limits.memory import MemoryLimiter
from proxy.limits.protocol import ConcurrencyLimiter, limit_exceeded

__all__ = ["ConcurrencyLimiter", "MemoryLimiter", "build_limiter", "limit_exceeded"]


def build_limiter(config: LimitsConfig) -> ConcurrencyLimiter:
    """The limiter `limits.backend` names."""
    match config.backend:
        case "memory":
            return MemoryLimiter()
