"""A request head must be complete within `server.header_timeout_s`; idle keep-alive is apart.

A slow client holds a connection (and a file descriptor) before it can be authenticated, so the
head has a deadline: from the connection's start, or on a kept-alive connection from the first
byte of the next request. Past it: a JSON 408, one `stream.finished` line, a count, and the
connection closed. A connection that sent nothing at all is closed without an answer. Bytes that
keep trickling do not move the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import RawClient, request_bytes
from tests.support.request_bodies import CHAT
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy

HEADER_TIMEOUT_S = 0.3
AUTH = ("Authorization", f"Bearer {CANARY_CLIENT_KEY}")
PARTIAL_HEAD = f"POST /v1/chat/completions HTTP/1.1\r\nHost: p\r\n{AUTH[0]}: {AUTH[1]}\r\n".encode()


def short_header_timeout(document: dict[str, Any]) -> None:
    document["server"]["header_timeout_s"] = HEADER_TIMEOUT_S


async def proxy_with_short_timeout(start_proxy: ProxyFactory) -> RunningProxy:
    return await start_proxy(edit=short_header_timeout)


def keep_alive_request() -> bytes:
    return request_bytes(
        "/v1/chat/completions", json.dumps(CHAT).encode(), [AUTH, ("Connection", "keep-alive")]
    )


async def until_closed(client: RawClient) -> bytes:
    """Everything the proxy sends until it closes the connection."""
    async with asyncio.timeout(10):
        return await client.reader.read()


async def assert_refused_with_408(proxy: RunningProxy, answer: bytes, lines: int = 1) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer[:200]
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("timeout_error", "timeout_error")
    assert "header" in error["message"]
    line = (await proxy.finished_lines(lines))[-1]
    assert (line["outcome"], line["status"], line["route"]) == ("rejected", 408, None)
    assert proxy.metric("llm_proxy_client_errors_total", status="408") == 1
    everything = proxy.log_stream.getvalue() + answer.decode("latin-1") + await proxy.scrape()
    assert CANARY_CLIENT_KEY not in everything


async def test_a_head_that_never_completes_gets_a_408_and_the_connection_closes(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_with_short_timeout(start_proxy)
    client = await RawClient.connect(proxy.url)
    await client.send(PARTIAL_HEAD)
    await assert_refused_with_408(proxy, await until_closed(client))
    assert upstream.requests == []


async def trickle(client: RawClient) -> None:
    """A header that never ends, one byte every 20 ms, until the proxy closes."""
    await client.send(PARTIAL_HEAD + b"X-Slow: ")
    with contextlib.suppress(ConnectionError):
        while not client.writer.is_closing():
            await client.send(b"a")
            await asyncio.sleep(0.02)  # the client's pace, not a synchronisation


async def test_bytes_that_keep_trickling_do_not_move_the_deadline(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_with_short_timeout(start_proxy)
    client = await RawClient.connect(proxy.url)
    trickling = asyncio.create_task(trickle(client))
    try:
        await assert_refused_with_408(proxy, await until_closed(client))
    finally:
        client.close()
        await trickling


async def test_a_connection_that_sends_nothing_is_closed_without_answer_or_line(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_with_short_timeout(start_proxy)
    client = await RawClient.connect(proxy.url)
    assert await until_closed(client) == b""
    assert proxy.log_lines() == []
    assert proxy.metric("llm_proxy_client_errors_total", status="408") is None


async def test_an_idle_kept_alive_connection_outlives_the_header_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_with_short_timeout(start_proxy)
    kept = await RawClient.connect(proxy.url)
    await kept.send(keep_alive_request())
    assert (await kept.response()).status == 200
    # A connection opened after that answer, that sends nothing, reaches its header deadline
    # later than the kept-alive one would have if the deadline applied to idle connections.
    later = await RawClient.connect(proxy.url)
    assert await until_closed(later) == b""
    await kept.send(keep_alive_request())
    assert (await kept.response()).status == 200
    assert [line["status"] for line in await proxy.finished_lines(2)] == [200, 200]
    kept.close()


async def test_on_a_kept_alive_connection_the_next_head_gets_the_deadline_from_its_first_byte(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await proxy_with_short_timeout(start_proxy)
    client = await RawClient.connect(proxy.url)
    await client.send(keep_alive_request())
    assert (await client.response()).status == 200
    await client.send(PARTIAL_HEAD)
    await assert_refused_with_408(proxy, await until_closed(client), lines=2)
