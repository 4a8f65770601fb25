"""Issue 8, items 3 and 6: request bodies and whole (non-streamed) response bodies, end to end.

- 8.3: the whole request body must arrive within `defaults.timeouts.client_body_s` (default
  30 s; 408 after), even when each byte arrives well within `client_stall_s`; the bytes of the
  bodies being read at once are capped process-wide by `server.max_pending_body_bytes` (default
  256 MiB; past it, a 503 at once in the provider's shape); both refusals are counted in
  `llm_proxy_client_errors_total{status}`.
- 8.6: the duration and outcome of a whole-body response are recorded once it has been written:
  a client that leaves while a large pass-through body is being written is
  `client_disconnected`, not `completed`, and the logged duration includes the write.

Each test failed before its rule's fix (marked `xfail(strict=True)` until then). The defaults
(30 s, 256 MiB) reach the body reader as tests/unit/test_config.py checks; the tests here give
it small values, so they take a second, not 30 s or 260 MiB of bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

import pytest

from tests.support.config_edits import Edit, compose, set_defaults, set_server
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.raw_http import RawClient, RawResponse, request_bytes
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.socket_queues import in_kernel
from tests.support.waits import WAIT_S, eventually

DIALECTS = ["openai", "anthropic"]
MiB = 2**20


def config(
    *, timeouts: dict[str, float] | None = None, server: dict[str, int] | None = None
) -> Edit:
    return compose(set_defaults(timeouts=timeouts or {}), set_server(**(server or {})))


def padded(dialect: str, size: int, *, stream: bool = False) -> bytes:
    """A request body of exactly `size` bytes (a long user message)."""
    body = {**payload(dialect), "stream": stream}
    empty = len(json.dumps({**body, "messages": [{"role": "user", "content": ""}]}).encode())
    body["messages"] = [{"role": "user", "content": "x" * (size - empty)}]
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def head(path: str, length: int) -> bytes:
    """A request's head: it announces `length` body bytes, of which none are sent yet."""
    headers = [("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
               ("Content-Type", "application/json"), ("Content-Length", str(length))]  # fmt: skip
    return request_bytes(path, b"", headers)


def assert_error_shape(dialect: str, body: bytes) -> dict[str, Any]:
    """The proxy's own error body in the dialect's shape; its `error` object."""
    parsed = json.loads(body)
    if dialect == "anthropic":
        assert parsed["type"] == "error" and set(parsed) == {"type", "error"}, parsed
    else:
        assert set(parsed) == {"error"} and "code" in parsed["error"], parsed
    error = parsed["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str), error
    return dict(error)


def client_errors(proxy: RunningProxy, status: int) -> float | None:
    return proxy.metric("llm_proxy_client_errors_total", status=str(status))


# --- 8.3: the whole body within client_body_s ---------------------------------------------------


async def trickle(client: RawClient, data: bytes, every_s: float) -> None:
    """Send `data` a byte at a time (the pace of the scenario, not a synchronisation)."""
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            await client.send(data[i : i + 1])
            await asyncio.sleep(every_s)


async def trickled_request(
    proxy: RunningProxy, dialect: str, every_s: float, within_s: float
) -> tuple[RawResponse, float]:
    """A request whose body arrives a byte every `every_s` (for longer than `within_s`); the
    proxy's answer and when it came (seconds after the head was sent)."""
    loop = asyncio.get_running_loop()
    path = PATHS[dialect]
    body = padded(dialect, int(2 * within_s / every_s) + 200)
    client = await RawClient.connect(proxy.url)
    await client.send(head(path, len(body)))
    started = loop.time()
    sending = asyncio.create_task(trickle(client, body, every_s))
    try:
        response = await asyncio.wait_for(client.response(), within_s)
    except TimeoutError:
        raise AssertionError(
            f"no answer within {within_s:g} s: the proxy is still reading a body that arrives "
            f"a byte every {every_s:g} s"
        ) from None
    finally:
        sending.cancel()
        client.close()
    return response, loop.time() - started


async def assert_refused(
    proxy: RunningProxy, response: RawResponse, dialect: str, status: int
) -> None:
    assert response.status == status, (response.status, response.body)
    assert_error_shape(dialect, response.body)
    line = await proxy.finished_line()
    assert (line["status"], line["outcome"]) == (status, "rejected"), line
    assert client_errors(proxy, status) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_body_trickled_within_the_stall_timeout_gets_a_408_after_client_body_s(
    start_proxy: ProxyFactory, dialect: str
) -> None:
    """Each byte comes 0.05 s after the last (client_stall_s is 5 s); the body as a whole must
    be in within client_body_s (0.5 s)."""
    proxy = await start_proxy(edit=config(timeouts={"client_body_s": 0.5, "client_stall_s": 5}))

    response, after_s = await trickled_request(proxy, dialect, every_s=0.05, within_s=WAIT_S)
    assert after_s >= 0.5
    await assert_refused(proxy, response, dialect, 408)


# --- 8.3: the bytes of bodies being read at once ------------------------------------------------


async def pending_body(proxy: RunningProxy, path: str, body: bytes, sent: int) -> RawClient:
    """A request for `body` of which the first `sent` bytes are in the proxy's process (taken off
    the socket), the rest still to come.

    In the process, not on the way: the kernel's queues between the client and the proxy
    (`/proc/net/tcp`, see `tests.support.socket_queues`) hold none of the bytes sent."""
    client = await RawClient.connect(proxy.url)
    await client.send(head(path, len(body)))
    view = memoryview(body)
    for start in range(0, sent, MiB):
        await client.send(view[start : min(start + MiB, sent)])  # type: ignore[arg-type]
    await eventually(
        lambda: in_kernel(*client.ports) == 0, "the proxy has taken the body off its socket", 30
    )
    return client


async def send_then_read(client: RawClient, data: bytes, within_s: float) -> RawResponse:
    """Send `data` while reading the answer (which may come before all of it was sent)."""

    async def send() -> None:
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(data), MiB):
                await client.send(data[start : start + MiB])

    sending = asyncio.create_task(send())
    try:
        return await asyncio.wait_for(client.response(), within_s)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending


WHOLE_ANSWER = json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "choices": []})


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_body_past_the_pending_body_cap_gets_a_503_at_once(
    start_proxy: ProxyFactory, upstream: FakeUpstream, dialect: str
) -> None:
    """The cap is 100 KB: a first body of 90 KB has 80 KB in, a second of 90 KB comes whole.

    "In" means in the proxy's process: the test waits until the kernel's queues between the
    first client and the proxy are empty, as `/proc/net/tcp` reports them (Linux; see
    `tests.support.socket_queues`)."""
    proxy = await start_proxy(
        edit=config(server={"max_pending_body_bytes": 100_000, "max_body_bytes": 200_000})
    )
    upstream.enqueue(Script(whole_body=WHOLE_ANSWER.encode(), content_type="application/json"))
    path = PATHS[dialect]
    first_body = padded(dialect, 90_000)
    first = await pending_body(proxy, path, first_body, 80_000)

    second = await RawClient.connect(proxy.url)
    await second.send(head(path, 90_000))
    response = await send_then_read(second, padded(dialect, 90_000), within_s=WAIT_S)
    second.close()
    await assert_refused(proxy, response, dialect, 503)

    await first.send(first_body[80_000:])  # the first body is not affected
    answer = await asyncio.wait_for(first.response(), WAIT_S)
    first.close()
    assert answer.status == 200 and json.loads(answer.body) == json.loads(WHOLE_ANSWER)
    assert len(upstream.requests) == 1


# --- 8.6: whole-body responses are recorded once written ----------------------------------------

BIG_MESSAGE = {"role": "assistant", "content": "x" * (16 * MiB)}
BIG_ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": BIG_MESSAGE}],
    }
).encode()


async def slow_reader(proxy: RunningProxy) -> RawClient:
    """A non-streamed request through a 4 KiB receive buffer, its answer's head read (the body,
    but for what asyncio buffers, stays unread)."""
    client = await RawClient.connect(proxy.url, receive_buffer=4096)
    body = json.dumps({**payload("openai"), "stream": False}).encode()
    headers = [("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
               ("Content-Type", "application/json")]  # fmt: skip
    await client.send(request_bytes("/v1/chat/completions", body, headers))
    await asyncio.wait_for(client.read_head(), WAIT_S)
    return client


def requests_counted(proxy: RunningProxy, outcome: str) -> float | None:
    labels = {"route": "openai", "stream": "false", "outcome": outcome}
    return proxy.metric("llm_proxy_requests_total", **labels)


async def test_a_client_leaving_while_a_whole_body_is_written_is_client_disconnected(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """16 MiB cannot fit in the socket buffers between the proxy and a client that reads
    nothing: once the head has arrived, the proxy is still writing the body."""
    upstream.enqueue(Script(whole_body=BIG_ANSWER, content_type="application/json"))
    client = await slow_reader(proxy)
    assert client.status == 200

    client.reset()  # gone, most of the body unread
    line = await proxy.finished_line()
    assert line["outcome"] == "client_disconnected", line
    assert requests_counted(proxy, "client_disconnected") == 1
    assert requests_counted(proxy, "completed") is None


async def test_the_duration_of_a_whole_body_response_includes_its_write(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    pause_s = 1.0
    upstream.enqueue(Script(whole_body=BIG_ANSWER, content_type="application/json"))
    client = await slow_reader(proxy)
    await asyncio.sleep(pause_s)  # the client is slow to read: the pace of the scenario

    sock = client.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)  # now it reads, and fast
    received = await asyncio.wait_for(client.read_body(), 30)
    client.close()
    assert received == BIG_ANSWER
    line = await proxy.finished_line()
    assert line["outcome"] == "completed", line
    assert line["duration_ms"] >= pause_s * 1000, line
