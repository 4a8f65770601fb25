"""Graceful shutdown: open streams may finish within the grace period; after it they end with
an in-band error event, never a silent cut. /readyz turns 503 while draining."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from proxy import keys
from tests.support.config_edits import Edit
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.raw_http import RawClient, request_bytes
from tests.support.request_bodies import CHAT, PATHS
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, chat_chunk

FIRST = chat_chunk("Hi")


def grace(seconds: float) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        document["server"]["shutdown_grace_s"] = seconds

    return edit


async def open_stream(proxy: RunningProxy) -> RawClient:
    """A stream read by the raw client, which sees whether its last chunk arrives."""
    stream = await RawClient.connect(proxy.url)
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
    ]
    await stream.send(request_bytes(PATHS["openai"], json.dumps(CHAT).encode(), headers))
    await stream.read_head()
    assert stream.status == 200
    assert await stream.read_until(b"\n\n") == FIRST
    return stream


async def test_a_stream_finishing_within_the_grace_period_completes(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    release = asyncio.Event()
    upstream.enqueue(Script(steps=[FIRST, Hold(release), OPENAI_DONE]))
    proxy = await start_proxy(edit=grace(30))
    stream = await open_stream(proxy)
    stopping = asyncio.create_task(proxy.runner.cleanup())
    lifecycle = proxy.app[keys.LIFECYCLE]
    await asyncio.wait_for(lifecycle.drain_started.wait(), 10)
    release.set()
    body = await stream.read_to_end()
    await asyncio.wait_for(stopping, 10)
    assert body == FIRST + OPENAI_DONE
    assert stream.complete


async def test_a_stream_outliving_the_grace_period_gets_an_error_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Script(steps=[FIRST, Hold(asyncio.Event())]))
    proxy = await start_proxy(edit=grace(0.2))
    stream = await open_stream(proxy)
    await asyncio.wait_for(proxy.runner.cleanup(), 10)
    rest = (await stream.read_to_end())[len(FIRST) :]
    assert rest.startswith(b"data: ") and rest.endswith(b"\n\n")
    error = json.loads(rest[len(b"data: ") :])["error"]
    assert "shutting down" in error["message"]
    assert b"[DONE]" not in rest
    assert not stream.complete
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
