"""Upstream connections: reused after a completed stream, closed after anything else.

A provider connection costs a TCP and TLS handshake (tens of milliseconds of TTFT), so a stream
whose body was read to its end gives its connection back to the pool, also when the HTTP body's
end arrives a moment after the dialect's terminator (what comes before it is relayed too). A
stream that did not complete closes its connection so the provider stops generating.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.support.client_stream import ClientStream
from tests.support.config_edits import set_defaults
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.request_bodies import CHAT
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, chat_chunk


async def stream_once(proxy: RunningProxy) -> bytes:
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 200
    return await response.read()


async def failing_stream(proxy: RunningProxy, outcome: str) -> None:
    """A stream that fails after the commit: no chunked terminator, logged with `outcome`."""
    response = await proxy.post("/v1/chat/completions", CHAT)
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    assert (await proxy.finished_line())["outcome"] == outcome


async def test_connection_is_reused_after_a_completed_stream(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Script(steps=[chat_chunk("hi"), OPENAI_DONE]), Script(steps=[OPENAI_DONE]))
    await stream_once(proxy)
    await stream_once(proxy)
    first, second = upstream.requests
    assert first.peer == second.peer


async def test_body_end_after_the_terminator_is_relayed_then_the_connection_reused(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body_end = asyncio.Event()
    tail = b": the upstream's last words\n\n"
    upstream.enqueue(
        Script(steps=[chat_chunk("hi"), OPENAI_DONE, Hold(body_end), tail]),
        Script(steps=[OPENAI_DONE]),
    )
    client = ClientStream(await proxy.post("/v1/chat/completions", CHAT))
    await client.contains(OPENAI_DONE)  # the client has its stream; the upstream's body goes on
    body_end.set()
    assert await client.to_clean_end() == chat_chunk("hi") + OPENAI_DONE + tail
    assert (await proxy.finished_line())["outcome"] == "completed"
    await stream_once(proxy)
    first, second = upstream.requests
    assert first.peer == second.peer


async def test_a_tail_that_does_not_end_in_time_ends_the_stream_and_its_connection(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    never = asyncio.Event()
    upstream.enqueue(Script(steps=[chat_chunk("hi"), OPENAI_DONE, Hold(never)]))
    assert (await stream_once(proxy)).endswith(OPENAI_DONE)  # a clean end after TAIL_WAIT_S
    assert (await proxy.finished_line())["outcome"] == "completed"
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    await stream_once(proxy)
    first, second = upstream.requests
    assert first.peer != second.peer


async def test_connection_of_a_timed_out_stream_is_closed_not_reused(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=set_defaults(timeouts={"idle_s": 0.1}))
    never = asyncio.Event()
    upstream.enqueue(Script(steps=[chat_chunk("hi"), Hold(never)]), Script(steps=[OPENAI_DONE]))
    await failing_stream(proxy, "upstream_timeout")
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    await stream_once(proxy)
    first, second = upstream.requests
    assert first.peer != second.peer


async def test_truncated_stream_whose_http_body_ended_cleanly_keeps_its_connection(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """No [DONE] is the stream's failure, not the connection's: its HTTP framing is intact."""
    upstream.enqueue(Script(steps=[chat_chunk("hi")]), Script(steps=[OPENAI_DONE]))
    await failing_stream(proxy, "truncated")
    await stream_once(proxy)
    first, second = upstream.requests
    assert first.peer == second.peer
