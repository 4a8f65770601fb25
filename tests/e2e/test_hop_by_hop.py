"""Hop-by-hop headers named in any `Connection` header stay on their hop (RFC 9110 7.6.1).

A message may carry `Connection` more than once; every header any of them names is hop-by-hop.
Driven over real sockets: a raw client sends two `Connection` headers to the proxy, and a raw
upstream answers the proxy with two.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import raw_request
from tests.support.request_bodies import CHAT, PLAIN
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, chat_chunk

TWO_CONNECTION_HEADERS = [
    ("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
    ("Connection", "close, X-First-Hop"),
    ("X-First-Hop", "1"),
    ("Connection", "X-Second-Hop"),
    ("X-Second-Hop", "2"),
    ("X-End-To-End", "kept"),
]


async def test_headers_named_in_a_second_connection_header_are_not_forwarded_upstream(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = json.dumps(CHAT).encode()
    response = await raw_request(proxy.url, "/v1/chat/completions", body, TWO_CONNECTION_HEADERS)
    assert response.status == 200
    seen = {name.lower() for name in upstream.requests[0].headers}
    assert "x-first-hop" not in seen
    assert "x-second-hop" not in seen, "a header named in the second Connection header went up"
    assert "x-end-to-end" in seen


class RawUpstream:
    """An upstream on 127.0.0.1 that writes its response head byte for byte (aiohttp's server
    would not send `Connection` twice)."""

    def __init__(self, head: bytes, body: bytes, chunked: bool) -> None:
        self.head, self.body, self.chunked = head, body, chunked
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        if self.chunked:
            framing = b"Transfer-Encoding: chunked\r\n\r\n"
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(self.body), self.body)
        else:
            framing, body = b"Content-Length: %d\r\n\r\n" % len(self.body), self.body
        writer.write(self.head + framing + body)
        await writer.drain()
        writer.close()


ANSWER_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Connection: close, X-First-Hop\r\n"
    b"X-First-Hop: 1\r\n"
    b"Connection: X-Second-Hop\r\n"
    b"X-Second-Hop: 2\r\n"
    b"X-End-To-End: kept\r\n"
)
SSE_BODY = chat_chunk("hi") + OPENAI_DONE
JSON_BODY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})


@pytest.fixture(params=["stream", "whole-body"])
async def raw_upstream(request: pytest.FixtureRequest) -> AsyncIterator[RawUpstream]:
    if request.param == "stream":
        upstream = RawUpstream(ANSWER_HEAD + b"Content-Type: text/event-stream\r\n", SSE_BODY, True)
    else:
        head = ANSWER_HEAD + b"Content-Type: application/json\r\n"
        upstream = RawUpstream(head, JSON_BODY.encode(), False)
    await upstream.start()
    yield upstream
    await upstream.stop()


async def test_headers_named_in_a_second_connection_header_of_the_upstream_are_not_returned(
    start_proxy: ProxyFactory, raw_upstream: RawUpstream
) -> None:
    def to_raw_upstream(document: dict[str, Any]) -> None:
        document["routes"][0]["upstreams"][0]["url"] = raw_upstream.url

    proxy = await start_proxy(edit=to_raw_upstream)
    payload = CHAT if raw_upstream.chunked else PLAIN
    response = await raw_request(
        proxy.url, "/v1/chat/completions", json.dumps(payload).encode(), TWO_CONNECTION_HEADERS[:1]
    )
    assert response.status == 200
    assert response.body == (SSE_BODY if raw_upstream.chunked else JSON_BODY.encode())
    assert "X-First-Hop" not in response.headers
    assert "X-Second-Hop" not in response.headers, "named in the upstream's second Connection"
    assert response.headers["X-End-To-End"] == "kept"
