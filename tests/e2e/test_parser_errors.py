"""Requests that aiohttp's HTTP parser refuses are answered, logged and counted by the proxy.

A header value with one bad byte (a trailing CR from a Windows-edited env file, a NUL, a control
character), an over-long request line or header, a malformed request line: each gets a JSON 400
in the OpenAI error shape that echoes nothing, exactly one log line with nothing of the request's
headers in it (`stream.finished`, outcome `rejected`), and a count in
`llm_proxy_client_errors_total{status="400"}`. The canary key rides in every one of them.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from yarl import URL

from tests.support.fake_upstream import FakeUpstream
from tests.support.running_proxy import CANARY_CLIENT_KEY, RunningProxy

KEY = CANARY_CLIENT_KEY.encode()
BODY = b'{"model": "gpt-test", "stream": true}'


def request(*header_lines: bytes, target: bytes = b"/v1/chat/completions") -> bytes:
    head = [b"POST " + target + b" HTTP/1.1", b"Host: proxy.test", *header_lines,
            b"Content-Length: %d" % len(BODY), b"Connection: close"]  # fmt: skip
    return b"\r\n".join(head) + b"\r\n\r\n" + BODY


REFUSED = {
    "key-with-trailing-cr": request(b"Authorization: Bearer " + KEY + b"\r"),
    "key-with-nul": request(b"Authorization: Bearer " + KEY + b"\x00"),
    "key-with-0x01": request(b"x-api-key: " + KEY + b"\x01"),
    "key-with-0x7f": request(b"Authorization: Bearer " + KEY + b"\x7f"),
    "header-too-long": request(b"Authorization: Bearer " + KEY, b"X-Pad: " + b"p" * 9000),
    "url-too-long": request(b"Authorization: Bearer " + KEY, target=b"/v1/" + b"u" * 9000),
    "bad-request-line": b"POST /v1/chat/completions HTTP/1.1 " + KEY + b"\r\n\r\n",
    "bad-method": b"P\x01ST /v1/chat/completions HTTP/1.1\r\nAuthorization: " + KEY + b"\r\n\r\n",
    "too-many-headers": request(
        b"Authorization: Bearer " + KEY, *(b"X-H%d: %s" % (n, KEY) for n in range(200))
    ),
}


async def send_raw(proxy: RunningProxy, data: bytes) -> tuple[bytes, bytes]:
    """Send `data` on a new connection; the response's head and body (read to EOF)."""
    url = URL(proxy.url)
    assert url.host is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("data", REFUSED.values(), ids=REFUSED.keys())
async def test_a_request_the_parser_refuses_gets_a_json_400_one_line_and_a_count(
    proxy: RunningProxy, upstream: FakeUpstream, data: bytes
) -> None:
    head, body = await send_raw(proxy, data)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    assert status_line.split(" ")[1] == "400"
    headers = {name.lower(): value.strip() for name, _, value in
               (line.partition(":") for line in header_lines)}  # fmt: skip
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "code"}
    assert error["type"] == "invalid_request_error"
    (line,) = await proxy.finished_lines(1)
    assert (line["outcome"], line["status"], line["route"]) == ("rejected", 400, None)
    assert line["request_id"] == headers["x-request-id"]
    assert len(proxy.log_lines()) == 1, proxy.log_lines()
    assert proxy.metric("llm_proxy_client_errors_total", status="400") == 1
    assert upstream.requests == []
    everything = "\n".join([proxy.log_stream.getvalue(), head.decode("latin-1"), body.decode()])
    assert CANARY_CLIENT_KEY not in everything + await proxy.scrape()
    assert "ppppp" not in everything and "uuuuu" not in everything  # nothing else echoed


async def test_the_connection_is_closed_after_a_parser_refusal_and_the_proxy_serves_on(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    pipelined = REFUSED["key-with-nul"] + request(b"Authorization: Bearer " + KEY)
    head, _ = await send_raw(proxy, pipelined)  # read to EOF: the proxy closed the connection
    assert b" 400 " in head.split(b"\r\n")[0]
    assert upstream.requests == []
    head, body = await send_raw(proxy, request(b"Authorization: Bearer " + KEY))
    assert b" 200 " in head.split(b"\r\n")[0] and b"data: [DONE]" in body
    lines = await proxy.finished_lines(2)
    assert [line["status"] for line in lines] == [400, 200]
