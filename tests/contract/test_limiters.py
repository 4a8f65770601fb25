"""The contract every limiter backend keeps (`proxy.limits.ConcurrencyLimiter`).

Written against the protocol only, and parametrised over the backends `limits.backend` can name:
a new backend adds itself to `BACKENDS` (and whatever its fixture needs) and must pass all of it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from proxy.config.models import LimitsConfig
from proxy.core.errors import ConcurrencyLimitExceeded
from proxy.limits import ConcurrencyLimiter, build_limiter

BACKENDS = ["memory"]


@pytest.fixture(params=BACKENDS)
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[ConcurrencyLimiter]:
    built = build_limiter(LimitsConfig(backend=request.param))
    yield built
    await built.close()


async def refused(limiter: ConcurrencyLimiter, user: str, limit: int) -> bool:
    try:
        async with limiter.acquire(user, limit):
            return False
    except ConcurrencyLimitExceeded:
        return True


async def test_slots_are_given_up_to_the_limit_and_refused_beyond_it(
    limiter: ConcurrencyLimiter,
) -> None:
    async with AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(limiter.acquire("u", 3))
        assert await limiter.held("u") == 3
        assert await refused(limiter, "u", 3)
        assert await limiter.held("u") == 3
    assert await limiter.held("u") == 0


async def test_a_refusal_takes_nothing(limiter: ConcurrencyLimiter) -> None:
    """Refused requests count nothing: once the one slot is free, exactly one more fits."""
    async with limiter.acquire("u", 1):
        for _ in range(5):
            assert await refused(limiter, "u", 1)
    async with limiter.acquire("u", 1):
        assert await refused(limiter, "u", 1)
    assert await limiter.held("u") == 0


async def test_the_refusal_says_the_limit_and_when_to_retry(limiter: ConcurrencyLimiter) -> None:
    async with limiter.acquire("u", 2), limiter.acquire("u", 2):
        with pytest.raises(ConcurrencyLimitExceeded) as refusal:
            async with limiter.acquire("u", 2):
                pass
    assert refusal.value.status == 429
    assert "at most 2 streams" in refusal.value.message
    assert "Retry-After" in refusal.value.headers


async def test_each_user_has_their_own_slots(limiter: ConcurrencyLimiter) -> None:
    async with limiter.acquire("alice", 1):
        assert await refused(limiter, "alice", 1)
        async with limiter.acquire("bob", 1):
            assert (await limiter.held("alice"), await limiter.held("bob")) == (1, 1)
    assert (await limiter.held("alice"), await limiter.held("bob")) == (0, 0)


async def test_a_lower_limit_applies_to_what_is_held_already(limiter: ConcurrencyLimiter) -> None:
    """The limit comes with each request (a user's limit may change between requests)."""
    async with limiter.acquire("u", 3), limiter.acquire("u", 3):
        assert await refused(limiter, "u", 2)
        async with limiter.acquire("u", 3):
            assert await limiter.held("u") == 3


async def test_the_slot_returns_when_the_block_raises(limiter: ConcurrencyLimiter) -> None:
    with pytest.raises(ValueError, match="the stream failed"):
        async with limiter.acquire("u", 1):
            raise ValueError("the stream failed")
    assert await limiter.held("u") == 0
    async with limiter.acquire("u", 1):
        assert await limiter.held("u") == 1


async def test_many_users_at_once_each_get_exactly_their_limit(
    limiter: ConcurrencyLimiter,
) -> None:
    users = [f"user-{n}" for n in range(40)]
    limits = {user: 1 + n % 3 for n, user in enumerate(users)}
    admitted: dict[str, int] = dict.fromkeys(users, 0)
    release = asyncio.Event()

    async def stream(user: str) -> None:
        try:
            async with limiter.acquire(user, limits[user]):
                admitted[user] += 1
                await release.wait()
        except ConcurrencyLimitExceeded:
            pass

    tasks = [asyncio.create_task(stream(user)) for user in users for _ in range(4)]
    for _ in range(20):  # let every task reach its slot or its refusal
        await asyncio.sleep(0)
    assert admitted == limits
    assert [await limiter.held(user) for user in users] == [limits[user] for user in users]
    release.set()
    await asyncio.gather(*tasks)
    assert [await limiter.held(user) for user in users] == [0] * len(users)


async def hold_slot(
    limiter: ConcurrencyLimiter, limit: int, rng: random.Random, holders: set[int], index: int
) -> None:
    """Take a slot after some yields, keep it for some yields, maybe fail inside."""
    for _ in range(rng.randint(0, 3)):
        await asyncio.sleep(0)  # a yield point where a cancellation may land
    async with limiter.acquire("u", limit):
        holders.add(index)
        try:
            assert len(holders) <= limit
            assert await limiter.held("u") == len(holders)
            for _ in range(rng.randint(0, 6)):
                await asyncio.sleep(0)
            if rng.random() < 0.2:
                raise ValueError("the stream failed")
        finally:
            holders.discard(index)


async def test_each_slot_returns_exactly_once_under_cancellation_at_any_await(
    limiter: ConcurrencyLimiter,
) -> None:
    expected = (asyncio.CancelledError, ConcurrencyLimitExceeded, ValueError)
    for seed in range(300):
        rng = random.Random(seed)
        limit, holders = rng.randint(1, 3), set[int]()
        tasks = [
            asyncio.create_task(hold_slot(limiter, limit, rng, holders, index))
            for index in range(rng.randint(1, 8))
        ]
        for _ in range(rng.randint(0, 12)):
            await asyncio.sleep(0)
            rng.choice(tasks).cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(result is None or isinstance(result, expected) for result in results), results
        assert await limiter.held("u") == 0, f"seed {seed}"
