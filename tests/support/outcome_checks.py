"""How a request ended, as the proxy reports it: its `stream.finished` line, its counters, the
user's slot and the upstream connection it leaves behind."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.fake_upstream import FakeUpstream
from tests.support.running_proxy import RunningProxy
from tests.support.waits import WAIT_S, eventually


async def assert_finished(
    proxy: RunningProxy, outcome: str, route: str = "openai"
) -> dict[str, Any]:
    """The log line and the request counter agree on how the (only) stream ended."""
    line = await proxy.finished_line()
    assert (line["outcome"], line["route"], line["stream"]) == (outcome, route, True)
    labels = {"route": route, "stream": "true", "outcome": outcome}
    assert proxy.metric("llm_proxy_requests_total", **labels) == 1
    return line


async def assert_heartbeats_counted(proxy: RunningProxy, beats: int, route: str = "openai") -> None:
    line = await proxy.finished_line()
    assert line["heartbeats"] == beats
    assert proxy.metric("llm_proxy_heartbeats_total", route=route) == beats


async def slots_released(proxy: RunningProxy, user: str = "alice", held: int = 0) -> None:
    async def holds() -> bool:
        return await proxy.limiter.held(user) == held

    await eventually(holds, f"{user} holds {held} slots")


async def assert_upstream_closed_and_slot_freed(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)
    await slots_released(proxy)
    await assert_finished(proxy, "client_disconnected")
