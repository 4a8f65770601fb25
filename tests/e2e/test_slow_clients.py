"""Clients that stop reading where no relay write is waiting: before the stream's final chunk, or
while the proxy reports a failure. Each must still cost the proxy its slot and its connection for
no longer than `client_stall_s`, and never turn into a clean end.

To make the proxy's writes back up at a chosen moment, the client reads nothing through a small
receive buffer, and the test shrinks the proxy's side of that connection (kernel send buffer,
transport high-water mark of one byte) once the request is in, before the upstream answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace
from typing import cast
from urllib.parse import urlsplit

from aiohttp import web

from proxy.client_channel import ClientChannel
from proxy.core.dialects import dialect_for
from proxy.core.errors import UpstreamError
from proxy.core.runtime import RelaySettings
from proxy.core.stats import RequestRecord
from tests.support.config_edits import set_defaults
from tests.support.fake_upstream import FakeUpstream, Gate, Hold, Reset, Script, Step
from tests.support.outcome_checks import assert_finished
from tests.support.request_bodies import payload
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, chat_chunk
from tests.support.waits import eventually

# One write that the kernel cannot take whole through the shrunken buffers, yet small enough that
# aiohttp does not drain after it (it drains once 64 KiB were written since the last drain).
BACKED_UP = chat_chunk("x" * 56_000)


async def open_silent_client(proxy: RunningProxy) -> socket.socket:
    """Send a streaming request through a 4 KiB receive buffer, then read nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    address = urlsplit(proxy.url)
    await asyncio.get_running_loop().sock_connect(sock, (address.hostname, address.port))
    body = json.dumps(payload("openai")).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {CANARY_CLIENT_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(sock, head.encode() + body)
    return sock


def client_connections(proxy: RunningProxy) -> int:
    server = proxy.runner.server
    assert server is not None
    return len(server.connections)


def shrink_client_connections(proxy: RunningProxy) -> None:
    """From now on the proxy's writes to its clients back up after a few kilobytes."""
    for handler in proxy.runner.server.connections:  # type: ignore[union-attr]
        transport = handler.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        transport.set_write_buffer_limits(high=1)


async def backed_up_stream(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate, ending: list[Step]
) -> socket.socket:
    """A silent client's stream whose upstream sends BACKED_UP, then `ending`."""
    answer = gate()
    upstream.enqueue(Script(steps=[Hold(answer), BACKED_UP, *ending]))
    client = await open_silent_client(proxy)
    await eventually(lambda: len(upstream.requests) == 1, "the upstream has the request")
    shrink_client_connections(proxy)
    answer.set()
    return client


async def test_a_client_that_stops_reading_before_the_final_chunk_is_dropped(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    """The whole stream was relayed; only the chunked terminator waits for the client."""
    proxy = await start_proxy(edit=set_defaults(timeouts={"client_stall_s": 0.3}))
    client = await backed_up_stream(proxy, upstream, gate, [OPENAI_DONE])

    line = await assert_finished(proxy, "client_disconnected")
    assert "read nothing" in line["error"]
    assert await proxy.limiter.held("alice") == 0
    await eventually(lambda: client_connections(proxy) == 0, "the proxy closed the connection")
    client.close()


async def test_a_failed_stream_to_a_client_that_reads_nothing_is_closed_after_the_stall_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    """The error event is written and the connection closed once flushed: a client that never
    reads would keep it open forever; it gets `client_stall_s`."""
    proxy = await start_proxy(edit=set_defaults(timeouts={"client_stall_s": 0.3}))
    client = await backed_up_stream(proxy, upstream, gate, [Reset()])

    await assert_finished(proxy, "upstream_error")
    await eventually(lambda: client_connections(proxy) == 0, "the proxy closed the connection")
    client.close()


async def test_a_failed_stream_whose_client_reads_it_all_leaves_nothing_behind(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    """The flush deadline must not fire at a connection that ended well meanwhile."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    stall_s = 1.5  # the client must start reading within it, also on a loaded machine
    proxy = await start_proxy(edit=set_defaults(timeouts={"client_stall_s": stall_s}))
    client = await backed_up_stream(proxy, upstream, gate, [Reset()])
    await assert_finished(proxy, "upstream_error")

    received = bytearray()
    while data := await loop.sock_recv(client, 65_536):  # the client reads again, to the end
        received += data
    client.close()
    assert b'"error"' in received and not received.endswith(b"0\r\n\r\n")
    await asyncio.sleep(stall_s + 0.2)  # the flush deadline has come and gone
    loop.set_exception_handler(None)
    assert loop_errors == []


class StalledTransport:
    def __init__(self) -> None:
        self.closed = self.aborted = False

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return 0, 1

    def get_write_buffer_size(self) -> int:
        return 1_000_000

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class NeverWritten:
    """A response whose writes wait forever: the client reads nothing."""

    async def write(self, data: bytes) -> None:
        await asyncio.Event().wait()


async def test_an_error_event_the_client_cannot_take_drops_the_connection_at_once() -> None:
    """Left open, aiohttp would end the response with the chunked terminator after the handler
    returned: for a client that resumes reading, a failed stream would look complete."""
    record = RequestRecord(request_id="r1", started=asyncio.get_running_loop().time(), stream=True)
    limits = RelaySettings(heartbeat_s=30, first_byte_s=30, idle_s=30, max_stream_s=30,
                           client_stall_s=0.05, max_event_bytes=2**20)  # fmt: skip
    transport = StalledTransport()
    request = SimpleNamespace(transport=transport, protocol=SimpleNamespace(writing_paused=True))
    channel = ClientChannel(cast(web.Request, request), dialect_for("openai"), limits, record)
    channel.response = cast(web.StreamResponse, NeverWritten())

    await channel.fail(UpstreamError("upstream reset"))
    assert transport.aborted and not transport.closed
