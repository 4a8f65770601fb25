"""End-to-end tests of how a relayed stream fails: upstream errors before and after the commit,
timeouts, the upstream's own error event, and clients that leave or stop reading. Real sockets on
127.0.0.1; each failure must be visible to the client and end with the right outcome."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import aiohttp
import pytest

from proxy.client_channel import ClientChannel
from proxy.core.dialects import dialect_for
from proxy.core.errors import Outcome, UpstreamTimeout
from proxy.core.runtime import RelaySettings
from proxy.core.stats import RequestRecord
from proxy.relay import StreamPump
from tests.support.client_stream import committed_early, open_stream, read_slowly
from tests.support.config_edits import Edit, set_defaults
from tests.support.fake_upstream import Close, FakeUpstream, Gate, Hold, Reset, Script, Step
from tests.support.outcome_checks import assert_finished, assert_upstream_closed_and_slot_freed
from tests.support.patches import explode_on_boom
from tests.support.request_bodies import payload
from tests.support.running_proxy import CANARY_UPSTREAM_KEY, ProxyFactory, RunningProxy
from tests.support.sse_builders import (
    HEARTBEAT,
    OPENAI_DONE,
    anthropic_event,
    big_stream,
    chat_chunk,
    compact,
    cut_at,
    head_events,
    sent_bytes,
    sse_event,
    terminator,
)
from tests.support.sse_checks import assert_one_error_event, parse_events
from tests.support.waits import WAIT_S, eventually

# --- 4. upstream failures after an early commit ------------------------------------------------


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize(("status", "error_type"), [(500, "api_error"), (429, "rate_limit_error")])
async def test_an_error_status_after_an_early_heartbeat_becomes_an_error_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate,
    dialect: str, status: int, error_type: str,
) -> None:  # fmt: skip
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    answer = gate()
    body = compact({"error": {"message": "model overloaded", "type": "server_error"}}).encode()
    upstream.enqueue(Script(status=status, content_type="application/json", whole_body=body,
                            hold_headers=answer))  # fmt: skip
    client = await committed_early(proxy, dialect)

    answer.set()
    await client.to_end()
    error = assert_one_error_event(client.events(), dialect)
    assert str(status) in error["message"] and "model overloaded" in error["message"]
    assert error["type"] == error_type
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, "upstream_error", dialect)


@pytest.mark.parametrize("sent", [b"", b'{"error": {"message": "overl'], ids=["none", "some"])
async def test_an_error_body_that_stalls_after_an_early_heartbeat_is_reported_within_a_beat(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, sent: bytes
) -> None:
    """The client waits on a 200 already: the upstream's error body is not worth more silence
    than a heartbeat interval (idle_s is minutes here)."""
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    answer = gate()
    upstream.enqueue(Script(status=500, content_type="application/json", hold_headers=answer,
                            steps=[sent, Hold(gate())] if sent else [Hold(gate())]))  # fmt: skip
    client = await committed_early(proxy, "openai")

    answer.set()
    await client.to_end()
    error = assert_one_error_event(client.events(), "openai")
    assert "HTTP 500" in error["message"] and sent.decode()[-5:] in error["message"]
    await assert_finished(proxy, "upstream_error")
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)  # the proxy gave up on it


async def test_an_error_body_cut_inside_an_echoed_key_shows_no_part_of_it(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    answer = gate()
    cut = b'{"error": {"message": "Incorrect API key provided: ' + CANARY_UPSTREAM_KEY[:14].encode()
    upstream.enqueue(Script(status=401, content_type="application/json", hold_headers=answer,
                            steps=[cut, Hold(gate())]))  # fmt: skip
    client = await committed_early(proxy, "openai")

    answer.set()
    await client.to_end()
    message = assert_one_error_event(client.events(), "openai")["message"]
    assert message.endswith("Incorrect API key provided: [redacted]")
    assert CANARY_UPSTREAM_KEY[:4] not in message


@pytest.mark.parametrize("headers_sent", [False, True], ids=["no-headers", "headers-no-body"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_first_byte_timeout_after_an_early_heartbeat_becomes_an_error_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str, headers_sent: bool
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05, timeouts={"first_byte_s": 0.3}))
    silence = gate()
    if headers_sent:
        upstream.enqueue(Script(steps=[Hold(silence), terminator(dialect)]))
    else:
        upstream.enqueue(Script(steps=[terminator(dialect)], hold_headers=silence))
    client = await committed_early(proxy, dialect)

    await client.to_end()
    assert_one_error_event(client.events(), dialect)
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, "upstream_timeout", dialect)
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)  # the proxy gave up on it


# --- 5. failures after the commit --------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    steps: Callable[[asyncio.Event], list[Step]]  # what follows the first events
    outcome: str
    edit: Edit = field(default_factory=set_defaults)
    upstream_left_waiting: bool = False  # the proxy must close an upstream that is still there


def oversized(gate: asyncio.Event) -> list[Step]:
    return [b"data: " + b"x" * 3000, b"x" * 3000, b"x" * 3000, Hold(gate)]


FAILURES: dict[str, Failure] = {
    "reset": Failure(lambda _: [Reset()], "upstream_error"),
    "close-without-last-chunk": Failure(lambda _: [Close()], "upstream_error"),
    "eof-without-terminator": Failure(lambda _: [], "truncated"),
    "eof-inside-an-event": Failure(lambda _: [b'data: {"cho'], "truncated"),
    "idle-timeout": Failure(
        lambda g: [Hold(g)], "upstream_timeout", set_defaults(timeouts={"idle_s": 0.2}), True
    ),
    "idle-timeout-despite-heartbeats": Failure(
        lambda g: [Hold(g)],
        "upstream_timeout",
        set_defaults(heartbeat_s=0.05, timeouts={"idle_s": 0.3}),
        True,
    ),
    "max-stream-duration": Failure(
        lambda g: [Hold(g)], "upstream_timeout", set_defaults(timeouts={"max_stream_s": 0.3}), True
    ),
    "oversized-event": Failure(
        oversized, "upstream_error", set_defaults(max_event_bytes=4096), True
    ),
}


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize("name", list(FAILURES))
async def test_a_failure_after_the_commit_is_one_error_event_and_an_unterminated_response(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, name: str, dialect: str
) -> None:
    failure = FAILURES[name]
    proxy = await start_proxy(edit=failure.edit)
    head, seen = head_events(dialect), gate()
    upstream.enqueue(Script(steps=[*head, Hold(seen), *failure.steps(gate())]))
    client = await open_stream(proxy, dialect)
    await client.until(lambda data: data.replace(HEARTBEAT, b"") == b"".join(head))
    seen.set()  # the first events reached the client: now the upstream fails

    await client.to_end()
    events = client.events()
    assert events[: len(head)] == parse_events(b"".join(head)) and len(events) == len(head) + 1
    error = assert_one_error_event(events, dialect)
    timed_out = failure.outcome == "upstream_timeout"
    assert (error["type"] == "timeout_error") == timed_out, error
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, failure.outcome, dialect)
    if failure.upstream_left_waiting:
        await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)


async def test_a_bug_of_ours_mid_stream_is_an_error_event_too(
    proxy: RunningProxy, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    explode_on_boom(monkeypatch)
    head = head_events("openai")
    upstream.enqueue(Script(steps=[*head, chat_chunk("boom"), *head]))
    client = await open_stream(proxy)

    await client.to_end()
    error = assert_one_error_event(client.events(), "openai")
    assert error["message"] == "internal error in the proxy"
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    line = await assert_finished(proxy, "internal_error")
    assert line["error"] == "internal error in the proxy (RuntimeError)"


@pytest.mark.parametrize("end", [Reset(), Close()], ids=["reset", "close"])
async def test_events_that_arrived_just_before_the_upstream_broke_still_reach_the_client(
    proxy: RunningProxy, upstream: FakeUpstream, end: Step
) -> None:
    head = head_events("openai")
    upstream.enqueue(Script(steps=[*head, end]))  # the break follows the last bytes at once
    client = await open_stream(proxy)

    await client.to_end()
    events = client.events()
    assert events[: len(head)] == parse_events(b"".join(head)), "delivered events were lost"
    assert_one_error_event(events, "openai")
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, "upstream_error")


async def test_max_stream_duration_applies_while_the_upstream_keeps_sending(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(timeouts={"max_stream_s": 0.3}))
    # Loopback kernel buffers can take megabytes: the relay may finish writing before the client
    # reads much. No terminator, then, and a hold after the body, so the stream can only end by
    # the deadline (idle_s is minutes): never as `completed`, however fast the relay is.
    stream = b"".join(big_stream(8 * 2**20))
    steps: list[Step] = [*cut_at(stream, set(range(0, len(stream), 65_536))), Hold(gate())]
    upstream.enqueue(Script(steps=steps))
    response = await proxy.post("/v1/chat/completions", payload("openai"))

    received, ended_by = await read_slowly(response)  # the whole stream would take seconds
    assert isinstance(ended_by, aiohttp.ClientPayloadError)  # cut, not completed
    assert stream.startswith(received) and len(received) < len(stream)
    line = await assert_finished(proxy, "upstream_timeout")
    assert line["duration_ms"] < 1000


class EndlessBody:
    """An upstream body whose next event is always ready: `read` never waits."""

    def __init__(self, give_up_at: float) -> None:
        self.give_up_at = give_up_at
        self.handed_out = 0

    @property
    def total_bytes(self) -> int:  # more than was read: the next bytes are always buffered
        return self.handed_out + 1

    def is_eof(self) -> bool:
        return False

    async def read(self, _limit: int = -1) -> bytes:
        if asyncio.get_running_loop().time() > self.give_up_at:
            raise AssertionError("max_stream_s was never checked: the relay would run forever")
        data = chat_chunk("tok")
        self.handed_out += len(data)
        return data


class SinkChannel:
    """The client side of `StreamPump`, accepting everything at once (writes never wait)."""

    def __init__(self, record: RequestRecord) -> None:
        self.record, self.dialect = record, dialect_for("openai")
        self.loop = asyncio.get_running_loop()
        self.started = self.last_write = record.started
        self.received = 0

    async def send(self, data: bytes) -> float:
        self.received += len(data)
        self.last_write = self.loop.time()
        return self.last_write

    async def heartbeat(self) -> None:
        raise AssertionError("no heartbeat is due on a stream that never pauses")


async def test_max_stream_duration_ends_a_stream_that_never_pauses() -> None:
    """Over sockets, kernel buffers make the relay wait now and then, where its timers fire; an
    upstream that always has data ready must be cut too. The pump alone, without sockets."""
    loop = asyncio.get_running_loop()
    record = RequestRecord(request_id="r1", started=loop.time(), stream=True)
    limits = RelaySettings(heartbeat_s=30, first_byte_s=30, idle_s=30, max_stream_s=0.05,
                           client_stall_s=30, max_event_bytes=2**20)  # fmt: skip
    body, channel = EndlessBody(give_up_at=record.started + 2), SinkChannel(record)
    upstream = cast(aiohttp.ClientResponse, SimpleNamespace(content=body))
    pump = StreamPump(upstream, cast(ClientChannel, channel), limits, sent_at=record.started)

    with pytest.raises(UpstreamTimeout) as failed:
        await pump.run()
    assert failed.value.outcome is Outcome.UPSTREAM_TIMEOUT
    assert channel.received > 0


# --- 6. the upstream's own error event ---------------------------------------------------------

UPSTREAM_ERROR_EVENTS = {
    "anthropic": anthropic_event(
        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    ),
    "openai": sse_event("data: " + compact({"error": {"message": "boom", "type": "server_error"}})),
}


@pytest.mark.parametrize("dialect", list(UPSTREAM_ERROR_EVENTS))
async def test_the_upstreams_own_error_event_is_relayed_as_is_and_nothing_added(
    proxy: RunningProxy, upstream: FakeUpstream, dialect: str
) -> None:
    steps: list[Step] = [*head_events(dialect), UPSTREAM_ERROR_EVENTS[dialect]]
    upstream.enqueue(Script(steps=steps))
    client = await open_stream(proxy, dialect)

    assert await client.to_end() == sent_bytes(steps)
    assert_one_error_event(client.events(), dialect)
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, "upstream_error", dialect)


@pytest.mark.parametrize("dialect", list(UPSTREAM_ERROR_EVENTS))
async def test_an_error_event_followed_by_the_terminator_is_still_an_upstream_error(
    proxy: RunningProxy, upstream: FakeUpstream, dialect: str
) -> None:
    """vLLM sends `data: {"error": ...}` and then `data: [DONE]`: relayed as sent (the SDKs raise
    on the error event), but the stream did not complete and is not counted as completed."""
    steps: list[Step] = [*head_events(dialect), UPSTREAM_ERROR_EVENTS[dialect], terminator(dialect)]
    upstream.enqueue(Script(steps=steps))
    client = await open_stream(proxy, dialect)

    assert await client.to_end() == sent_bytes(steps)
    assert client.ended_by is None  # the upstream ended it properly; nothing added or removed
    await assert_finished(proxy, "upstream_error", dialect)


# --- 7. client disconnects ---------------------------------------------------------------------


async def test_a_client_leaving_mid_stream_closes_the_upstream_and_frees_the_slot(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    upstream.enqueue(Script(steps=[chat_chunk("a"), Hold(gate()), OPENAI_DONE]))
    client = await open_stream(proxy)
    await client.contains(chat_chunk("a"))
    assert await proxy.limiter.held("alice") == 1

    client.response.close()
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_leaving_before_the_upstream_answered_closes_the_upstream(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    upstream.enqueue(Script(steps=[OPENAI_DONE], hold_headers=gate()))
    request = asyncio.ensure_future(proxy.post("/v1/chat/completions", payload("openai")))
    await eventually(lambda: len(upstream.requests) == 1, "the upstream has the request")
    assert await proxy.limiter.held("alice") == 1

    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_leaving_after_an_early_heartbeat_closes_the_waiting_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    upstream.enqueue(Script(steps=[OPENAI_DONE], hold_headers=gate()))
    client = await committed_early(proxy, "openai")

    client.response.close()
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_that_stops_reading_is_dropped_after_the_client_stall_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(timeouts={"client_stall_s": 0.3}))
    steps: list[Step] = [*big_stream(16 * 2**20), Hold(gate()), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps))
    response = await proxy.post("/v1/chat/completions", payload("openai"))
    assert response.status == 200  # and then the client reads nothing

    await assert_upstream_closed_and_slot_freed(proxy, upstream)
