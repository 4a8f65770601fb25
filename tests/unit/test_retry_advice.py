"""The retry advice of a 429: spread out, and about when one of the user's slots frees."""

from __future__ import annotations

import math
import random

import pytest

from proxy.core.retry_advice import BOUNDS_S, FIRST_GUESS_S, RetryAdvice


def test_clients_refused_together_are_told_different_moments() -> None:
    advice = RetryAdvice(random.Random(1))
    told = {advice.headers("chat", held=2)["retry-after-ms"] for _ in range(50)}
    assert len(told) > 40


def test_the_advice_follows_how_long_the_routes_requests_take() -> None:
    advice = RetryAdvice(random.Random(2))
    for _ in range(30):
        advice.observe("chat", 8.0)
        advice.observe("embed", 0.4)
    chat = [advice.after_s("chat", held=3) for _ in range(200)]
    embed = [advice.after_s("embed", held=3) for _ in range(200)]
    assert all(8.0 / 4 * 0.5 <= s <= 8.0 / 4 * 1.5 for s in chat)
    assert all(0.4 / 4 * 0.5 <= s <= 0.4 / 4 * 1.5 for s in embed)


def test_a_route_without_history_starts_from_a_first_guess() -> None:
    advice = RetryAdvice(random.Random(3))
    assert FIRST_GUESS_S / 2 * 0.5 <= advice.after_s("new", held=1) <= FIRST_GUESS_S / 2 * 1.5


@pytest.mark.parametrize("duration_s", [0.0001, 10_000.0])
def test_the_advice_stays_where_the_sdks_honour_it(duration_s: float) -> None:
    advice = RetryAdvice(random.Random(4))
    advice.observe("chat", duration_s)
    for _ in range(100):
        headers = advice.headers("chat", held=1)
        milliseconds = int(headers["retry-after-ms"])
        assert BOUNDS_S[0] * 1000 <= milliseconds <= BOUNDS_S[1] * 1000
        assert headers["Retry-After"] == str(math.ceil(milliseconds / 1000))
