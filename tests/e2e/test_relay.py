"""End-to-end tests of the relay: a real proxy between a scripted upstream and a raw-byte client,
on real sockets on 127.0.0.1. Each test asserts what a client (or the provider) would notice.
How streams fail is in test_relay_failures.py."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from tests.support.client_stream import ClientStream, open_stream, read_slowly
from tests.support.config_edits import set_defaults
from tests.support.fake_upstream import FakeUpstream, Gate, Hold, Script, Step
from tests.support.outcome_checks import assert_finished, assert_heartbeats_counted
from tests.support.request_bodies import payload
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import (
    BOM,
    CHUNKINGS,
    ENDINGS,
    HEARTBEAT,
    OPENAI_DONE,
    big_stream,
    chat_chunk,
    chunked,
    cut_at,
    fidelity_stream,
    head_events,
    sent_bytes,
    terminator,
)
from tests.support.sse_checks import (
    assert_sse_headers,
    count_heartbeats_at_boundaries,
    event_boundaries,
    heartbeats_after,
    parse_events,
)
from tests.support.waits import WAIT_S

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
    first, second, go = chat_chunk("first"), chat_chunk("second"), gate()
    upstream.enqueue(Script(steps=[first, Hold(go), second, OPENAI_DONE]))
    client = await open_stream(proxy)

    assert await client.contains(first) == first  # the upstream is still held here
    go.set()
    assert await client.to_end() == first + second + OPENAI_DONE


# --- 3. heartbeats -----------------------------------------------------------------------------


async def test_heartbeats_flow_while_the_upstream_stalls_between_events(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    go = gate()
    steps: list[Step] = [chat_chunk("a"), Hold(go), chat_chunk("b"), OPENAI_DONE]
    upstream.enqueue(Script(steps=steps))
    client = await open_stream(proxy)

    await client.until(heartbeats_after(chat_chunk("a"), 2))
    go.set()
    beats = count_heartbeats_at_boundaries(await client.to_end(), sent_bytes(steps))
    assert beats >= 2 and client.ended_by is None
    await assert_finished(proxy, "completed")
    await assert_heartbeats_counted(proxy, beats)


async def test_heartbeats_before_the_first_upstream_byte_commit_the_stream(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    answer = gate()
    steps: list[Step] = [chat_chunk("late"), OPENAI_DONE]
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


FIRST = chat_chunk("first")
SECOND = chat_chunk("s\u00e9cond")  # its "\u00e9" is b"\xc3\xa9"
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
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
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


# --- 8. byte order mark ------------------------------------------------------------------------

BOM_STREAM = chat_chunk("\ufeffkept") + OPENAI_DONE  # a BOM inside the stream is data
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
    steps: list[Step] = [chat_chunk("hi"), OPENAI_DONE]
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
    stream = chat_chunk("zipp\u00e9 \u20ac") + OPENAI_DONE
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
