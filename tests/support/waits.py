"""Bounded waits for what no event signals: the proxy's slot release, its log line, a closed
connection, all of which may come a moment after the client has its answer."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

WAIT_S = 5.0  # a generous bound for anything that should happen "at once"


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within: float = WAIT_S
) -> None:
    """Poll `condition` (plain or async) until it holds; fail after `within` seconds naming
    `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _holds(condition):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


async def _holds(condition: Callable[[], bool | Awaitable[bool]]) -> bool:
    result = condition()
    return await result if inspect.isawaitable(result) else result
