"""Graceful shutdown: open streams may finish within the grace period; after it they end with
an in-band error event, never a silent cut. /readyz turns 503 while draining."""

from __future__ import annotations

import asyncio
import json

from proxy import keys
from tests.support.config_edits import Edit, set_server
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.raw_http import RawClient, open_raw_stream
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, chat_chunk

FIRST = chat_chunk("Hi")


def grace(seconds: float) -> Edit:
    return set_server(shutdown_grace_s=seconds)


async def open_stream(proxy: RunningProxy) -> RawClient:
    """A stream read by the raw client, which sees whether its last chunk arrives."""
    stream = await open_raw_stream(proxy)
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
