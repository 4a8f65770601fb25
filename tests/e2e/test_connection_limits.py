"""The proxy holds at most `server.max_connections` client connections (`proxy.listener`).

Past the limit it stops accepting: new clients wait in the listen backlog and are served as soon
as a connection closes; an idle kept-alive connection makes room for a waiting client. One
`connections.paused` and one `connections.resumed` line per episode, however many clients came.
The proxy is served through `ProxySite` (what `python -m proxy` listens with), on the runner of
the usual test proxy, with a small limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from proxy.config.models import ServerConfig
from proxy.connection_limit import ConnectionLimit, derived_max_connections, max_connections
from proxy.connections import GuardedServer
from proxy.listener import ProxySite
from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import RawClient, request_bytes
from tests.support.request_bodies import CHAT
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.waits import eventually

AUTH = ("Authorization", f"Bearer {CANARY_CLIENT_KEY}")


def chat(connection: str = "close") -> bytes:
    return request_bytes(
        "/v1/chat/completions", json.dumps(CHAT).encode(), [AUTH, ("Connection", connection)]
    )


@dataclasses.dataclass
class Capped:
    proxy: RunningProxy  # its `url` is the capped site's
    site: ProxySite
    limit: ConnectionLimit

    def events(self) -> list[str]:
        events = (line["event"] for line in self.proxy.log_lines())
        return [event for event in events if event.startswith("connections.")]


async def capped(start_proxy: ProxyFactory, maximum: int) -> Capped:
    def edit(document: dict[str, Any]) -> None:
        document["server"].update(max_connections=maximum, header_timeout_s=30)
        document["defaults"]["max_concurrent_streams_per_user"] = 100

    proxy = await start_proxy(edit=edit)
    site = ProxySite(proxy.runner, "127.0.0.1", 0, backlog=64)
    await site.start()
    server = proxy.runner.server
    assert isinstance(server, GuardedServer)
    url = f"http://127.0.0.1:{site.port}"
    return Capped(dataclasses.replace(proxy, url=url), site, server.limit)


async def test_past_the_limit_a_client_waits_until_a_connection_closes(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    capped_proxy = await capped(start_proxy, 3)
    proxy, limit = capped_proxy.proxy, capped_proxy.limit
    assert ("127.0.0.1", capped_proxy.site.port) in [a[:2] for a in proxy.runner.addresses]
    held = [await RawClient.connect(proxy.url) for _ in range(3)]
    await eventually(lambda: limit.open == 3, "3 connections open")
    waiting = await RawClient.connect(proxy.url)  # the kernel completes the handshake
    await waiting.send(chat())
    await eventually(lambda: capped_proxy.events() == ["connections.paused"], "the paused line")
    assert (limit.count, upstream.requests) == (3, [])
    held[0].close()
    assert (await waiting.response()).status == 200
    assert capped_proxy.events() == ["connections.paused", "connections.resumed"]
    paused = next(line for line in proxy.log_lines() if line["event"] == "connections.paused")
    assert (paused["reason"], paused["open"], paused["max_connections"]) == (
        "max_connections", 3, 3,
    )  # fmt: skip
    for client in held[1:]:
        client.close()


async def test_a_flood_is_served_within_the_limit_with_one_pair_of_log_lines(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    capped_proxy = await capped(start_proxy, 3)
    proxy, limit = capped_proxy.proxy, capped_proxy.limit
    most_open = 0

    def watch() -> None:  # on every loop iteration: the most connections ever held at once
        nonlocal most_open
        most_open = max(most_open, limit.count)
        watcher[0] = asyncio.get_running_loop().call_soon(watch)

    watcher = [asyncio.get_running_loop().call_soon(watch)]
    clients = await asyncio.gather(*(RawClient.connect(proxy.url) for _ in range(20)))
    for client in clients:
        await client.send(chat())
    responses = await asyncio.gather(*(client.response() for client in clients))
    watcher[0].cancel()
    assert [response.status for response in responses] == [200] * 20
    assert len(await proxy.finished_lines(20)) == 20
    assert most_open == 3
    assert capped_proxy.events() == ["connections.paused", "connections.resumed"]
    for client in clients:
        client.close()


async def test_an_idle_kept_alive_connection_makes_room_for_a_waiting_client(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    capped_proxy = await capped(start_proxy, 2)
    proxy = capped_proxy.proxy
    oldest, newer = await RawClient.connect(proxy.url), await RawClient.connect(proxy.url)
    for client in (oldest, newer):
        await client.send(chat("keep-alive"))
        assert (await client.response()).status == 200
    arriving = await RawClient.connect(proxy.url)
    await arriving.send(chat())
    assert (await arriving.response()).status == 200
    async with asyncio.timeout(10):
        assert await oldest.reader.read() == b""  # closed by the proxy to make room
    await newer.send(chat("keep-alive"))
    assert (await newer.response()).status == 200
    assert capped_proxy.events() == []  # making room is not an episode: nobody had to wait
    for client in (oldest, newer, arriving):
        client.close()


async def test_a_stopped_site_no_longer_accepts(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    capped_proxy = await capped(start_proxy, 3)
    await capped_proxy.site.stop()
    with pytest.raises(ConnectionRefusedError):
        await RawClient.connect(capped_proxy.proxy.url)


# --- the default limit ---


@pytest.mark.parametrize(
    ("files", "pool", "expected"),
    [
        (1024, 4096, 480),  # a common soft limit: clients and upstreams share what is left
        (65536, 4096, 61376),  # a container's limit: the pool takes its size, clients the rest
        (20000, 100, 19836),
        (64, 4096, 1),  # almost nothing left: still one
    ],
)
def test_the_default_limit_is_what_the_file_limit_leaves_after_the_upstream_side(
    files: int, pool: int, expected: int
) -> None:
    assert derived_max_connections(files, pool) == expected
    server = ServerConfig(max_upstream_connections=pool)
    assert max_connections(server, files) == expected


def test_a_configured_limit_wins_even_above_the_file_limit() -> None:
    assert max_connections(ServerConfig(max_connections=5), files=1024) == 5
    assert max_connections(ServerConfig(max_connections=5000), files=1024) == 5000
