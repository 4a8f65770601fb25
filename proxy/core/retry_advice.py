"""When a client refused by its stream limit should come back (pure).

Every 429 saying `Retry-After: 1` sends the SDKs (which retry by themselves) back in lockstep, to
fail again together. The advice is instead the time one of the user's slots is likely to free,
with jitter: if the user's `held` streams end at random moments over a typical stream's
duration `D`, the first of them ends after about `D / (held + 1)`. `D` is a moving average of
how long the route's admitted requests took. The advice is given as `retry-after-ms` (which the
OpenAI and Anthropic SDKs honour) and as whole seconds in `Retry-After`.
"""

from __future__ import annotations

import math
import random

FIRST_GUESS_S = 2.0  # a route's typical duration before any request on it has finished
SMOOTHING = 0.2  # weight of the newest duration in the moving average
JITTER = (0.5, 1.5)  # the advice is spread uniformly over this range of the estimate
BOUNDS_S = (0.05, 60.0)  # the SDKs ignore retry-after beyond 60 s


class RetryAdvice:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._typical_s: dict[str, float] = {}
        self._rng = rng or random.Random()

    def observe(self, route: str, duration_s: float) -> None:
        """An admitted request on `route` took `duration_s`."""
        typical = self._typical_s.get(route)
        self._typical_s[route] = (
            duration_s if typical is None else typical + SMOOTHING * (duration_s - typical)
        )

    def after_s(self, route: str, held: int) -> float:
        """Seconds until a client holding `held` slots on `route` should try again."""
        likely = self._typical_s.get(route, FIRST_GUESS_S) / (held + 1)
        advised = likely * self._rng.uniform(*JITTER)
        return min(max(advised, BOUNDS_S[0]), BOUNDS_S[1])

    def headers(self, route: str, held: int) -> dict[str, str]:
        milliseconds = round(self.after_s(route, held) * 1000)
        return {
            "Retry-After": str(math.ceil(milliseconds / 1000)),
            "retry-after-ms": str(milliseconds),
        }
