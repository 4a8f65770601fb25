"""End-to-end tests of the relay: a real proxy between a scripted upstream and a raw-byte client,
on real sockets on 127.0.0.1. Each test asserts what a client (or the provider) would notice."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import pytest

from proxy.errors import Outcome, StreamFailure
from proxy.providers import dialect_for
from proxy.relay import ClientChannel, RelaySettings, StreamPump
from proxy.stats import RequestRecord
from tests.conftest import ProxyFactory, RunningProxy
from tests.fake_upstream import Close, FakeUpstream, Hold, Reset, Script, Step
from tests.relay_support import (
    BOM,
    CHUNKINGS,
    ENDINGS,
    HEARTBEAT,
    OPENAI_DONE,
    WAIT_S,
    ClientStream,
    anthropic_event,
    assert_one_error_event,
    big_stream,
    chunked,
    compact,
    count_heartbeats_at_boundaries,
    cut_at,
    event,
    event_boundaries,
    eventually,
    fidelity_stream,
    finished_line,
    head_events,
    heartbeats_after,
    openai_event,
    parse_events,
    payload,
    requests_total,
    route_of,
    terminator,
)

Gate = Callable[[], asyncio.Event]
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture
async def gate(start_proxy: ProxyFactory) -> AsyncIterator[Gate]:
    """Makes `Hold` events; all are released at teardown so no upstream handler lingers."""
    made: list[asyncio.Event] = []

    def make() -> asyncio.Event:
        made.append(asyncio.Event())
        return made[-1]

    yield make
    for held in made:
        held.set()


def settings(
    heartbeat_s: float = 30.0, max_event_bytes: int | None = None, **timeouts: float
) -> Edit:
    """A config edit: heartbeat interval, event size cap and timeouts under `defaults`."""

    def edit(document: dict[str, Any]) -> None:
        document["defaults"]["heartbeat_s"] = heartbeat_s
        document["defaults"]["timeouts"].update(timeouts)
        if max_event_bytes is not None:
            document["defaults"]["max_event_bytes"] = max_event_bytes

    return edit


async def open_stream(proxy: RunningProxy, dialect: str = "openai", **headers: str) -> ClientStream:
    response = await proxy.post(route_of(dialect)[1], payload(dialect), **headers)
    assert response.status == 200, await response.text()
    return ClientStream(response)


def sent_bytes(steps: list[Step]) -> bytes:
    return b"".join(step for step in steps if isinstance(step, bytes))


def assert_sse_headers(response: aiohttp.ClientResponse) -> None:
    headers = response.headers
    assert response.content_type == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Request-Id"]
    assert "Content-Length" not in headers and "Content-Encoding" not in headers
    assert headers["Transfer-Encoding"] == "chunked"


async def assert_finished(
    proxy: RunningProxy, outcome: str, route: str = "openai"
) -> dict[str, Any]:
    """The log line and the request counter agree on how the (only) stream ended."""
    line = await finished_line(proxy)
    assert (line["outcome"], line["route"], line["stream"]) == (outcome, route, True)
    assert requests_total(proxy, route, outcome) == 1
    return line


async def assert_heartbeats_counted(proxy: RunningProxy, beats: int, route: str = "openai") -> None:
    line = await finished_line(proxy)
    assert line["heartbeats"] == beats
    assert proxy.metric("llm_proxy_heartbeats_total", {"route": route}) == beats


async def read_slowly(
    response: aiohttp.ClientResponse, piece: int = 16_384
) -> tuple[bytes, aiohttp.ClientPayloadError | None]:
    """Read `piece` bytes at a time with a pause after each, to the end (clean or not).

    An aiohttp client that lags behind drops what it had buffered when the connection ends
    abnormally: what is returned is only what this client managed to read."""
    received = bytearray()
    try:
        while data := await response.content.read(piece):
            received += data
            await asyncio.sleep(0.001)
    except aiohttp.ClientPayloadError as exc:
        return bytes(received), exc
    return bytes(received), None


# --- 1. byte fidelity --------------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("ending", list(ENDINGS))
async def test_client_receives_exactly_the_upstream_bytes(
    proxy: RunningProxy, upstream: FakeUpstream, ending: str, how: str
) -> None:
    stream = fidelity_stream(ending)
    upstream.enqueue(Script(steps=list(chunked(stream, how))))
    client = await open_stream(proxy)

    assert await client.to_end() == stream
    assert client.ended_by is None
    assert len(parse_events(stream)) == 8 and client.events() == parse_events(stream)
    await assert_finished(proxy, "completed")


async def test_an_anthropic_stream_is_relayed_byte_for_byte(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    stream = b"".join([*head_events("anthropic"), terminator("anthropic")])
    upstream.enqueue(Script(steps=list(chunked(stream, "bytes"))))
    client = await open_stream(proxy, "anthropic")

    assert await client.to_end() == stream
    assert client.ended_by is None
    await assert_finished(proxy, "completed", "anthropic")


# --- 2. unbuffered -----------------------------------------------------------------------------


async def test_an_event_reaches_the_client_while_the_upstream_is_stalled(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    first, second, go = openai_event("first"), openai_event("second"), gate()
    upstream.enqueue(Script(steps=[first, Hold(go), second, OPENAI_DONE]))
    client = await open_stream(proxy)

    assert await client.contains(first) == first  # the upstream is still held here
    go.set()
    assert await client.to_end() == first + second + OPENAI_DONE


# --- 3. heartbeats -----------------------------------------------------------------------------


async def test_heartbeats_flow_while_the_upstream_stalls_between_events(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05))
    go = gate()
    steps: list[Step] = [openai_event("a"), Hold(go), openai_event("b"), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps))
    client = await open_stream(proxy)

    await client.until(heartbeats_after(openai_event("a"), 2))
    go.set()
    beats = count_heartbeats_at_boundaries(await client.to_end(), sent_bytes(steps))
    assert beats >= 2 and client.ended_by is None
    await assert_finished(proxy, "completed")
    await assert_heartbeats_counted(proxy, beats)


async def test_heartbeats_before_the_first_upstream_byte_commit_the_stream(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05))
    answer = gate()
    steps: list[Step] = [openai_event("late"), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps, hold_headers=answer))

    # The response arrives while the upstream has not answered: a heartbeat committed it.
    response = await asyncio.wait_for(proxy.post("/v1/chat/completions", payload("openai")), WAIT_S)
    assert response.status == 200
    assert_sse_headers(response)
    client = ClientStream(response)
    await client.until(lambda data: data.count(HEARTBEAT) >= 2)
    answer.set()
    beats = count_heartbeats_at_boundaries(await client.to_end(), sent_bytes(steps))
    assert beats >= 2 and client.ended_by is None
    await assert_finished(proxy, "completed")
    await assert_heartbeats_counted(proxy, beats)


FIRST = openai_event("first")
SECOND = openai_event("s\u00e9cond")  # its "\u00e9" is b"\xc3\xa9"
SECOND_CRLF = SECOND.replace(b"\n", b"\r\n")
COMMENTED = b": upstream comment\n" + SECOND


def split_at(data: bytes, marker: bytes) -> tuple[bytes, bytes]:
    at = data.index(marker)
    return data[:at], data[at:]


SPLIT_EVENTS: dict[str, tuple[bytes, bytes]] = {
    # (half an event, the rest of it): the upstream stalls in between
    "inside-a-data-line": split_at(SECOND, b"cond"),
    "inside-a-utf8-char": split_at(SECOND, b"\xa9"),
    "before-the-blank-line": (SECOND[:-1], SECOND[-1:]),
    "cr-ends-the-write": (SECOND_CRLF[:-3], SECOND_CRLF[-3:]),
    "after-a-comment": split_at(COMMENTED, b"data"),
    # complete at the CR of its CRLF blank line: forwarded, and its LF comes after the stall
    "lf-of-the-blank-line-late": (SECOND_CRLF[:-1], SECOND_CRLF[-1:]),
}


@pytest.mark.parametrize(("half", "rest"), SPLIT_EVENTS.values(), ids=list(SPLIT_EVENTS))
async def test_heartbeats_never_land_inside_an_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, half: bytes, rest: bytes
) -> None:
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05))
    go = gate()
    steps: list[Step] = [FIRST, half, Hold(go), rest, OPENAI_DONE]
    upstream.enqueue(Script(steps=steps))
    client = await open_stream(proxy)

    # Heartbeats keep flowing while the partial event is held, and none of it is forwarded.
    before = FIRST + half
    await client.until(heartbeats_after(before[: event_boundaries(before)[-1]], 2))
    go.set()
    body = await client.to_end()
    assert client.events() == parse_events(sent_bytes(steps))
    beats = count_heartbeats_at_boundaries(body, sent_bytes(steps))
    assert beats >= 2
    await assert_heartbeats_counted(proxy, beats)


# --- 4. upstream failures after an early commit ------------------------------------------------


async def committed_early(proxy: RunningProxy, dialect: str) -> ClientStream:
    """A stream the proxy committed with a heartbeat while the upstream had not answered."""
    response = await asyncio.wait_for(proxy.post(route_of(dialect)[1], payload(dialect)), WAIT_S)
    assert response.status == 200
    assert_sse_headers(response)
    client = ClientStream(response)
    await client.contains(HEARTBEAT)
    return client


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
@pytest.mark.parametrize(("status", "error_type"), [(500, "api_error"), (429, "rate_limit_error")])
async def test_an_error_status_after_an_early_heartbeat_becomes_an_error_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate,
    dialect: str, status: int, error_type: str,
) -> None:  # fmt: skip
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05))
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
    await assert_finished(proxy, "upstream_error", route_of(dialect)[0])


@pytest.mark.parametrize("headers_sent", [False, True], ids=["no-headers", "headers-no-body"])
@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
async def test_a_first_byte_timeout_after_an_early_heartbeat_becomes_an_error_event(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str, headers_sent: bool
) -> None:
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05, first_byte_s=0.3))
    silence = gate()
    if headers_sent:
        upstream.enqueue(Script(steps=[Hold(silence), terminator(dialect)]))
    else:
        upstream.enqueue(Script(steps=[terminator(dialect)], hold_headers=silence))
    client = await committed_early(proxy, dialect)

    await client.to_end()
    assert_one_error_event(client.events(), dialect)
    assert isinstance(client.ended_by, aiohttp.ClientPayloadError)
    await assert_finished(proxy, "upstream_timeout", route_of(dialect)[0])
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)  # the proxy gave up on it


# --- 5. failures after the commit --------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    steps: Callable[[asyncio.Event], list[Step]]  # what follows the first events
    outcome: str
    edit: Edit = field(default_factory=settings)
    upstream_left_waiting: bool = False  # the proxy must close an upstream that is still there


def oversized(gate: asyncio.Event) -> list[Step]:
    return [b"data: " + b"x" * 3000, b"x" * 3000, b"x" * 3000, Hold(gate)]


FAILURES: dict[str, Failure] = {
    "reset": Failure(lambda _: [Reset()], "upstream_error"),
    "close-without-last-chunk": Failure(lambda _: [Close()], "upstream_error"),
    "eof-without-terminator": Failure(lambda _: [], "truncated"),
    "eof-inside-an-event": Failure(lambda _: [b'data: {"cho'], "truncated"),
    "idle-timeout": Failure(lambda g: [Hold(g)], "upstream_timeout", settings(idle_s=0.2), True),
    "idle-timeout-despite-heartbeats": Failure(
        lambda g: [Hold(g)], "upstream_timeout", settings(heartbeat_s=0.05, idle_s=0.3), True
    ),
    "max-stream-duration": Failure(
        lambda g: [Hold(g)], "upstream_timeout", settings(max_stream_s=0.3), True
    ),
    "oversized-event": Failure(oversized, "upstream_error", settings(max_event_bytes=4096), True),
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
    await assert_finished(proxy, failure.outcome, route_of(dialect)[0])
    if failure.upstream_left_waiting:
        await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)


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
    proxy = await start_proxy(edit=settings(max_stream_s=0.3))
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
    """An upstream body whose next event is always ready: `readany` never waits."""

    def __init__(self, give_up_at: float) -> None:
        self.give_up_at = give_up_at
        self.handed_out = 0

    @property
    def total_bytes(self) -> int:  # more than was read: the next bytes are always buffered
        return self.handed_out + 1

    def is_eof(self) -> bool:
        return False

    async def readany(self) -> bytes:
        if asyncio.get_running_loop().time() > self.give_up_at:
            raise AssertionError("max_stream_s was never checked: the relay would run forever")
        data = openai_event("tok")
        self.handed_out += len(data)
        return data


class SinkChannel:
    """The client side of `StreamPump`, accepting everything at once (writes never wait)."""

    def __init__(self, record: RequestRecord) -> None:
        self.record, self.dialect = record, dialect_for("openai")
        self.loop = asyncio.get_running_loop()
        self.last_write, self.received = record.started, 0

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
    pump = StreamPump(upstream, cast(ClientChannel, channel), limits)

    with pytest.raises(StreamFailure) as failed:
        await pump.run()
    assert failed.value.outcome is Outcome.UPSTREAM_TIMEOUT
    assert channel.received > 0


# --- 6. the upstream's own error event ---------------------------------------------------------

UPSTREAM_ERROR_EVENTS = {
    "anthropic": anthropic_event(
        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    ),
    "openai": event("data: " + compact({"error": {"message": "boom", "type": "server_error"}})),
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
    await assert_finished(proxy, "upstream_error", route_of(dialect)[0])


# --- 7. client disconnects ---------------------------------------------------------------------


async def assert_upstream_closed_and_slot_freed(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)
    await eventually(lambda: proxy.limiter.active("alice") == 0)
    await assert_finished(proxy, "client_disconnected")


async def test_a_client_leaving_mid_stream_closes_the_upstream_and_frees_the_slot(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    upstream.enqueue(Script(steps=[openai_event("a"), Hold(gate()), OPENAI_DONE]))
    client = await open_stream(proxy)
    await client.contains(openai_event("a"))
    assert proxy.limiter.active("alice") == 1

    client.response.close()
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_leaving_before_the_upstream_answered_closes_the_upstream(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    upstream.enqueue(Script(steps=[OPENAI_DONE], hold_headers=gate()))
    request = asyncio.ensure_future(proxy.post("/v1/chat/completions", payload("openai")))
    await eventually(lambda: len(upstream.requests) == 1)
    assert proxy.limiter.active("alice") == 1

    request.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await request
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_leaving_after_an_early_heartbeat_closes_the_waiting_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=settings(heartbeat_s=0.05))
    upstream.enqueue(Script(steps=[OPENAI_DONE], hold_headers=gate()))
    client = await committed_early(proxy, "openai")

    client.response.close()
    await assert_upstream_closed_and_slot_freed(proxy, upstream)


async def test_a_client_that_stops_reading_is_dropped_after_the_client_stall_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=settings(client_stall_s=0.3))
    steps: list[Step] = [*big_stream(16 * 2**20), Hold(gate()), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps))
    response = await proxy.post("/v1/chat/completions", payload("openai"))
    assert response.status == 200  # and then the client reads nothing

    await assert_upstream_closed_and_slot_freed(proxy, upstream)


# --- 8. byte order mark ------------------------------------------------------------------------

BOM_STREAM = openai_event("\ufeffkept") + OPENAI_DONE  # a BOM inside the stream is data
BOM_CASES: dict[str, tuple[list[bytes], bytes]] = {
    "leading-bom": ([BOM + BOM_STREAM], BOM_STREAM),
    "bom-alone-in-a-write": ([BOM, BOM_STREAM], BOM_STREAM),
    "bom-split-across-writes": ([BOM[:1], BOM[1:2], BOM[2:] + BOM_STREAM], BOM_STREAM),
    "only-the-first-of-two": ([BOM + BOM + BOM_STREAM], BOM + BOM_STREAM),
    "bom-like-prefix-kept": (
        [BOM[:2], b"\xbc\n\n" + BOM_STREAM],
        BOM[:2] + b"\xbc\n\n" + BOM_STREAM,
    ),
    "no-bom": ([BOM_STREAM], BOM_STREAM),
}


@pytest.mark.parametrize(("writes", "expected"), BOM_CASES.values(), ids=list(BOM_CASES))
async def test_only_a_leading_bom_is_dropped(
    proxy: RunningProxy, upstream: FakeUpstream, writes: list[bytes], expected: bytes
) -> None:
    upstream.enqueue(Script(steps=list(writes)))
    client = await open_stream(proxy)

    assert await client.to_end() == expected
    assert client.ended_by is None


# --- 9. response headers -----------------------------------------------------------------------


async def test_a_stream_carries_sse_headers_and_ends_with_the_chunked_terminator(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    upstream_headers = {"X-Request-Id": "upstream-id-1", "X-Ratelimit-Remaining-Requests": "41"}
    steps: list[Step] = [openai_event("hi"), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps, content_type="text/event-stream",
                            headers=upstream_headers))  # fmt: skip
    client = await open_stream(proxy, **{"X-Request-Id": "client-req-42"})

    headers = client.response.headers
    assert_sse_headers(client.response)
    assert headers["Content-Type"] == "text/event-stream"  # the upstream's, as it was
    assert headers["X-Request-Id"] == "client-req-42"
    assert headers["X-Upstream-Request-Id"] == "upstream-id-1"
    assert headers["X-Ratelimit-Remaining-Requests"] == "41"
    assert await client.to_end() == sent_bytes(steps)
    assert client.ended_by is None  # the terminating chunk arrived
    assert (await assert_finished(proxy, "completed"))["request_id"] == "client-req-42"


async def test_an_upstream_that_compresses_anyway_reaches_the_client_plain(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    stream = openai_event("zipp\u00e9 \u20ac") + OPENAI_DONE
    packer = zlib.compressobj(wbits=31)
    gzipped = packer.compress(stream) + packer.flush()
    upstream.enqueue(Script(steps=list(cut_at(gzipped, {7, 20})),
                            headers={"Content-Encoding": "gzip"}))  # fmt: skip
    client = await open_stream(proxy)

    assert upstream.requests[0].headers["Accept-Encoding"] == "identity"
    assert_sse_headers(client.response)
    assert await client.to_end() == stream


# --- 10. backpressure --------------------------------------------------------------------------


async def test_a_slow_client_receives_five_megabytes_intact(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    stream = b"".join(big_stream(5 * 2**20)) + OPENAI_DONE
    writes = cut_at(stream, set(range(0, len(stream), 65_537)))
    upstream.enqueue(Script(steps=list(writes)))
    response = await proxy.post("/v1/chat/completions", payload("openai"))
    assert response.status == 200

    await asyncio.sleep(0.2)  # a slow client: it reads nothing at first, then small pieces
    assert await read_slowly(response, 32_768) == (stream, None)
    await assert_finished(proxy, "completed")
