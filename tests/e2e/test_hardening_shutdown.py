"""Issue 8.2: shutdown and disconnects during the drain. The proxy is stopped in-process the way
`aiohttp` stops it on SIGTERM (`runner.cleanup()`: the listener closes, then the lifecycle drain
gives open requests `shutdown_grace_s`, then cancels what is left).

Rules: a cut by the drain is its own outcome, `shutdown` (in the log line and in
`llm_proxy_requests_total`), with the in-band error code `server_shutdown`; a client that left is
`client_disconnected` whatever the lifecycle, and the proxy does not write to it; a request not
yet committed when the grace ends (waiting for upstream headers, before any heartbeat, or not
streamed) gets a 503 in the provider's error shape with `Connection: close`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from proxy import keys
from tests.support.config_edits import set_server
from tests.support.fake_upstream import FakeUpstream, Gate, Hold, Script
from tests.support.raw_http import RawClient, open_raw_stream, request_bytes
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import head_events, terminator
from tests.support.sse_checks import assert_one_error_event, parse_events
from tests.support.waits import WAIT_S, eventually

DIALECTS = ["openai", "anthropic"]
STOP_WITHIN_S = 10.0  # the grace period, the cancellation and aiohttp's own shutdown


def requests_counted(proxy: RunningProxy, route: str, stream: bool, outcome: str) -> float | None:
    labels = {"route": route, "stream": str(stream).lower(), "outcome": outcome}
    return proxy.metric("llm_proxy_requests_total", **labels)


def error_code(dialect: str, error: dict[str, Any]) -> Any:
    """The machine-readable code of an error object: OpenAI's `code`, Anthropic's `type`."""
    return error.get("type") if dialect == "anthropic" else error.get("code")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_stream_outliving_the_grace_period_ends_as_shutdown(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str
) -> None:
    proxy = await start_proxy(edit=set_server(shutdown_grace_s=0.2))
    head = b"".join(head_events(dialect))
    upstream.enqueue(Script(steps=[head, Hold(gate())]))
    route = dialect  # the routes are named after their dialects
    stream = await open_raw_stream(proxy, dialect)
    assert stream.status == 200
    await stream.read_until(head, within=WAIT_S)

    await asyncio.wait_for(proxy.runner.cleanup(), STOP_WITHIN_S)
    body = await stream.read_to_end(within=WAIT_S)
    line = await proxy.finished_line()
    assert (line["outcome"], line["route"]) == ("shutdown", route), line
    assert requests_counted(proxy, route, True, "shutdown") == 1
    assert requests_counted(proxy, route, True, "internal_error") is None  # no alert for a deploy
    error = assert_one_error_event(parse_events(body[len(head) :]), dialect)
    assert error_code(dialect, error) == "server_shutdown", error
    assert not stream.complete
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)


def writes_to_gone_clients(monkeypatch: pytest.MonkeyPatch, app: web.Application) -> list[bytes]:
    """What the proxy tries to write to a client connection that is already closed.

    Observed at aiohttp's `StreamResponse.write`, the only way a handler writes a body."""
    attempts: list[bytes] = []
    write = web.StreamResponse.write

    async def spy(self: web.StreamResponse, data: Any) -> None:
        request = getattr(self, "_req", None)
        if request is not None and request.app is app:
            transport = request.transport
            if transport is None or transport.is_closing():
                attempts.append(bytes(data))
        await write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", spy)
    return attempts


async def test_a_client_leaving_during_the_grace_period_is_client_disconnected(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    gate: Gate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = await start_proxy(edit=set_server(shutdown_grace_s=30))
    head = b"".join(head_events("openai"))
    upstream.enqueue(Script(steps=[head, Hold(gate())]))
    attempts = writes_to_gone_clients(monkeypatch, proxy.app)
    stream = await open_raw_stream(proxy, "openai")
    await stream.read_until(head, within=WAIT_S)
    stopping = asyncio.create_task(proxy.runner.cleanup())
    await asyncio.wait_for(proxy.app[keys.LIFECYCLE].drain_started.wait(), WAIT_S)

    stream.close()  # the client leaves while the stream may still finish (30 s of grace)
    await asyncio.wait_for(stopping, STOP_WITHIN_S)  # nothing is left to drain
    line = await proxy.finished_line()
    assert line["outcome"] == "client_disconnected", line
    assert requests_counted(proxy, "openai", True, "client_disconnected") == 1
    assert attempts == [], "the proxy wrote to a client that had left"
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)


UNCOMMITTED = {
    "streamed-before-the-first-heartbeat": (True, False),
    "not-streamed-waiting-for-headers": (False, False),
    "not-streamed-waiting-for-the-body": (False, True),
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("case", list(UNCOMMITTED))
async def test_a_request_not_yet_answered_when_the_grace_ends_gets_a_503(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str, case: str
) -> None:
    """heartbeat_s is 30 s: a streamed request is not committed before its upstream answers."""
    streamed, headers_sent = UNCOMMITTED[case]
    proxy = await start_proxy(edit=set_server(shutdown_grace_s=0.2))
    if headers_sent:  # a whole body that has started to arrive
        upstream.enqueue(Script(content_type="application/json",
                                steps=[b'{"id": "msg_1", ', Hold(gate())]))  # fmt: skip
    else:
        upstream.enqueue(Script(steps=[terminator(dialect)], hold_headers=gate()))
    body = {**payload(dialect), "stream": streamed}
    route, path = dialect, PATHS[dialect]
    client = await RawClient.connect(proxy.url)
    auth = [(name, value) for name, value in proxy.headers().items()]
    await client.send(request_bytes(path, json.dumps(body).encode(), [
        *auth, ("Content-Type", "application/json"), ("Connection", "keep-alive")]))  # fmt: skip
    await eventually(lambda: len(upstream.requests) == 1, "the upstream has the request")

    await asyncio.wait_for(proxy.runner.cleanup(), STOP_WITHIN_S)
    try:
        response = await asyncio.wait_for(client.response(), WAIT_S)
    except asyncio.IncompleteReadError as cut:
        raise AssertionError(
            f"no answer at all: the connection was closed after {cut.partial!r}"
        ) from None
    finally:
        client.close()
    assert response.status == 503, response
    assert response.headers.get("Connection", "").lower() == "close", response.headers
    assert_error_shape(dialect, response.body)
    line = await proxy.finished_line()
    assert (line["outcome"], line["status"]) == ("shutdown", 503), line
    assert requests_counted(proxy, route, streamed, "shutdown") == 1


def assert_error_shape(dialect: str, body: bytes) -> None:
    parsed = json.loads(body)
    if dialect == "anthropic":
        assert parsed["type"] == "error" and set(parsed) == {"type", "error"}, parsed
        assert set(parsed["error"]) == {"type", "message"}, parsed
    else:
        assert set(parsed) == {"error"} and {"message", "type", "code"} <= set(parsed["error"])
    assert isinstance(parsed["error"]["message"], str) and parsed["error"]["message"]
