"""Issue 8.11: clients that stop reading. Each must cost the proxy little (the upstream read stops
once the client's write buffer is full) and be dropped within `client_stall_s` + 1 s, however
many there are.

What "held in the process" means here, measured from outside the proxy. The upstream is a
firehose in this process that counts the bytes it hands to its transport; the client is a raw
socket with a small receive buffer that reads nothing. Once everything has stopped moving, the
bytes of one stream are in exactly one of these places: the firehose's own transport buffer, the
kernel queues of the four sockets on the way (`/proc/net/tcp`: the firehose's send queue, the
proxy's upstream receive queue, the proxy's client send queue, the client's receive queue), or
the proxy process. So

    held by the proxy = written by the firehose - its transport buffer - the four kernel queues

give or take the HTTP heads and chunk framing (a few hundred bytes). The kernel queues are the
kernel's (autotuned, up to megabytes on loopback); they are not the proxy's memory and are
subtracted, not bounded. Before 8.11 that was about 600-700 KiB per stream; now it is 196 KiB
(20 streams, every one), asserted as at most 256 KiB: the client's write buffer and the upstream
reader's buffer, each bounded (`proxy.relay`), plus the framing.

When a stream is dropped: when its `stream.finished` line is written and its upstream connection
closed, whichever is later. The clients never read, so the clock starts with the request; what
the proxy relays before its writes block (today its kernel send buffer grows to about 3 MB) is
part of the time, at the upstream's pace: 1 MiB/s per stream here. Before 8.11 (the kernel send
buffer autotuned to megabytes) the streams ended about 3.5 s after their request with
client_stall_s 0.5 s; with TCP_NOTSENT_LOWAT at 32 KiB they end 0.65 s after it. The same for
500 clients against the proxy process, with RSS per client: `python -m bench.slow_readers`.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support.config_edits import Edit, compose, set_defaults
from tests.support.raw_http import RawClient, request_bytes
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.socket_queues import in_kernel, tcp_queues
from tests.support.sse_builders import chat_chunk
from tests.support.waits import eventually

EVENT = chat_chunk("x" * 16_000)  # about 16 KiB per upstream write
STREAMS = 20


def chunk_on_the_wire(size: int) -> int:
    """Bytes of one chunked-encoding chunk carrying `size` bytes."""
    return len(f"{size:x}\r\n") + size + 2


@dataclass
class Hose:
    """One stream of the firehose."""

    proxy_port: int  # the proxy's end of its upstream connection
    transport: asyncio.Transport
    written: int = 0  # wire bytes handed to the transport
    closed_at: float | None = None


@dataclass
class Firehose:
    """An upstream that writes events for ever, as fast as the proxy takes them or at a pace."""

    port: int = 0
    hoses: dict[str, Hose] = field(default_factory=dict)  # by the request's X-Request-Id
    pause_s: float = 0.0  # between writes: 0 = as fast as the proxy takes them

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        hose = Hose(transport.get_extra_info("peername")[1], transport)
        self.hoses[request.headers["X-Request-Id"]] = hose
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                hose.written += chunk_on_the_wire(len(EVENT))
                await response.write(EVENT)
                if self.pause_s:
                    await asyncio.sleep(self.pause_s)  # the upstream's pace
        except (asyncio.CancelledError, ConnectionError):
            hose.closed_at = asyncio.get_running_loop().time()
            raise


@pytest.fixture
async def firehose() -> AsyncIterator[Firehose]:
    hose = Firehose()
    app = web.Application()
    app.router.add_post("/{tail:.*}", hose.handle)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hose.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield hose
    await runner.cleanup()


def to_firehose(hose: Firehose, *, client_stall_s: float) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        for route in document["routes"]:
            route["upstreams"][0]["url"] = f"http://127.0.0.1:{hose.port}"

    limits = set_defaults(
        timeouts={"client_stall_s": client_stall_s}, max_concurrent_streams_per_user=1000
    )
    return compose(limits, edit)


@dataclass
class SilentClient:
    client: RawClient
    request_id: str
    sent_at: float

    @property
    def port(self) -> int:
        return self.client.ports[0]


async def silent_client(proxy: RunningProxy, request_id: str) -> SilentClient:
    """A streaming request through a 4 KiB receive buffer; then nothing is ever read."""
    client = await RawClient.connect(proxy.url, receive_buffer=4096)
    client.stop_reading()
    body = json.dumps(payload("openai")).encode()
    headers = [("Content-Type", "application/json"), *proxy.headers().items(),
               ("X-Request-Id", request_id)]  # fmt: skip
    await client.send(request_bytes(PATHS["openai"], body, headers))
    return SilentClient(client, request_id, asyncio.get_running_loop().time())


async def silent_clients(proxy: RunningProxy, count: int) -> list[SilentClient]:
    return [await silent_client(proxy, f"slow-{n:03d}") for n in range(count)]


def close_all(clients: list[SilentClient]) -> None:
    for silent in clients:
        silent.client.close()


HELD_BOUND = 256 * 1024  # the "about 256 KiB"; 196 KiB measured


async def test_a_stream_whose_client_reads_nothing_holds_little_in_the_proxy(
    start_proxy: ProxyFactory, firehose: Firehose
) -> None:
    """Measured once nothing moves any more (the firehose blocked on every stream), well before
    client_stall_s (10 s) ends the streams. What the proxy holds is what the firehose wrote less
    what is still on the way: its own transport buffer and the kernel's queues of the four
    sockets, read from `/proc/net/tcp` (Linux; see the module docstring and
    `tests.support.socket_queues`)."""
    proxy = await start_proxy(edit=to_firehose(firehose, client_stall_s=10))
    clients = await silent_clients(proxy, STREAMS)
    try:
        await all_blocked(firehose, STREAMS, within=8)
        held = {client.request_id: held_by_proxy(proxy, firehose, client) for client in clients}
        assert all(firehose.hoses[rid].closed_at is None for rid in held), "measured too late"
    finally:
        close_all(clients)
    over = {rid: f"{size / 1024:.0f} KiB" for rid, size in held.items() if size > HELD_BOUND}
    assert not over, f"streams holding over {HELD_BOUND // 1024} KiB in the proxy: {over}"


async def all_blocked(firehose: Firehose, streams: int, within: float, quiet: int = 5) -> None:
    """Wait until every stream's firehose has written nothing for `quiet` polls in a row."""
    seen: dict[str, int] = {}
    unchanged = 0
    async with asyncio.timeout(within):
        while unchanged < quiet:
            await asyncio.sleep(0.05)  # a poll: nothing signals "nothing moves any more"
            now = {rid: hose.written for rid, hose in firehose.hoses.items()}
            unchanged = unchanged + 1 if len(now) == streams and now == seen else 0
            seen = now


def held_by_proxy(proxy: RunningProxy, firehose: Firehose, client: SilentClient) -> int:
    """Bytes of one stream in the proxy's process (see the module docstring): the kernel's queues
    on the way come from `/proc/net/tcp`."""
    hose = firehose.hoses[client.request_id]
    proxy_port = client.client.ports[1]
    queues = tcp_queues()
    on_the_way = (
        in_kernel(firehose.port, hose.proxy_port, queues)  # firehose -> proxy
        + in_kernel(proxy_port, client.port, queues)  # proxy -> client
    )
    return hose.written - hose.transport.get_write_buffer_size() - on_the_way


DROP_STREAMS = 20
STALL_S = 0.5
PAUSE_S = len(EVENT) / 2**20  # each stream at 1 MiB/s


async def test_many_clients_that_read_nothing_are_each_dropped_within_the_stall_timeout(
    start_proxy: ProxyFactory, firehose: Firehose
) -> None:
    """20 such clients at once, each stream's upstream at 1 MiB/s, client_stall_s 0.5 s: each
    stream ends (its log line written, its upstream closed) within 1.5 s of its request."""
    proxy = await start_proxy(edit=to_firehose(firehose, client_stall_s=STALL_S))
    firehose.pause_s = PAUSE_S
    loop = asyncio.get_running_loop()
    clients = await silent_clients(proxy, DROP_STREAMS)
    logged: dict[str, float] = {}
    try:
        async with asyncio.timeout(STALL_S + 1 + 10):
            while len(logged) < DROP_STREAMS:
                await asyncio.sleep(0.005)  # a poll: the log line has no event to await
                for line in proxy.log_lines("stream.finished"):
                    logged.setdefault(line["request_id"], loop.time())
            await eventually(
                lambda: all(h.closed_at for h in firehose.hoses.values()),
                "the firehose's connections closed",
            )
    finally:
        close_all(clients)
    outcomes = {line["outcome"] for line in proxy.log_lines("stream.finished")}
    assert outcomes == {"client_disconnected"}, outcomes
    late = {}
    for client in clients:
        closed_at = firehose.hoses[client.request_id].closed_at
        assert closed_at is not None
        ended = max(logged[client.request_id], closed_at) - client.sent_at
        if ended > STALL_S + 1:
            late[client.request_id] = round(ended, 2)
    assert not late, (
        f"{len(late)} of {DROP_STREAMS} streams ended more than client_stall_s + 1 s "
        f"({STALL_S + 1:g} s) after their request: {sorted(late.values())}"
    )
