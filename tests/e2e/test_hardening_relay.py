"""Issue 8, items 1, 4 and 7: the relay's defects, end to end (the real proxy on real sockets on
127.0.0.1 against the scripted fake upstream).

- 8.1: once the upstream has reported an error in the stream, the stream ends as `upstream_error`
  with no event of ours, whatever comes after (a reset, a body cut without its chunked
  terminator, silence: the proxy stops waiting at once).
- 8.4: a streaming request whose upstream answers an error status (or a 200 that is not an event
  stream) and then stalls its body is answered within `idle_s` between bytes and `first_byte_s`
  in total, with the status the proxy knows and the message it has; not after `max_stream_s`.
- 8.7: the client's body equals the upstream's to the body's end, whatever the chunking around
  the dialect's terminator (waiting for that end at most `proxy.relay.TAIL_WAIT_S`, 1 s, and
  `TAIL_MAX_BYTES`, 64 KiB, without heartbeats).

Each rule's tests failed before its fix (marked `xfail(strict=True)` until then), except the two
8.7 guards that say they held already.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.support.config_edits import set_defaults
from tests.support.fake_upstream import Close, FakeUpstream, Gate, Hold, Reset, Script, Step
from tests.support.outcome_checks import assert_finished, slots_released
from tests.support.raw_http import RawClient, open_raw_stream
from tests.support.request_bodies import PATHS, payload
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import (
    HEARTBEAT,
    MESSAGE_STOP,
    OPENAI_DONE,
    anthropic_event,
    compact,
    head_events,
    sent_bytes,
    sse_event,
)
from tests.support.waits import WAIT_S

DIALECTS = ["openai", "anthropic"]

UPSTREAM_ERROR_EVENTS = {
    "anthropic": anthropic_event(
        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
    ),
    "openai": sse_event("data: " + compact({"error": {"message": "boom", "type": "server_error"}})),
}


async def open_raw(proxy: RunningProxy, dialect: str) -> RawClient:
    """A streaming request read byte by byte (every byte up to an abnormal end is seen)."""
    stream = await open_raw_stream(proxy, dialect)
    assert stream.status == 200
    return stream


def beyond(body: bytes, expected: bytes) -> str:
    """How `body` differs from `expected`, for an assertion message."""
    if body.startswith(expected):
        return f"the client got more than the upstream sent: {body[len(expected) :]!r}"
    if expected.startswith(body):
        return f"the client's body stops short of the upstream's: missing {expected[len(body) :]!r}"
    return f"the client's body differs from the upstream's: {body!r} != {expected!r}"


# --- 8.1: the upstream's own error event, then anything ----------------------------------------


@pytest.mark.parametrize("end", [Reset(), Close()], ids=["reset", "close-without-last-chunk"])
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_upstream_error_event_then_a_broken_body_reaches_the_client_as_sent(
    proxy: RunningProxy, upstream: FakeUpstream, dialect: str, end: Step
) -> None:
    steps: list[Step] = [*head_events(dialect), UPSTREAM_ERROR_EVENTS[dialect], end]
    upstream.enqueue(Script(steps=steps))
    stream = await open_raw(proxy, dialect)

    body = await stream.read_to_end()
    assert body == sent_bytes(steps), beyond(body, sent_bytes(steps))
    assert not stream.complete  # the upstream's body did not end properly: neither does ours
    await assert_finished(proxy, "upstream_error", dialect)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_upstream_error_event_then_silence_ends_the_stream_at_once(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str
) -> None:
    """idle_s is 30 s: "at once" is well within WAIT_S, and before the next heartbeat is due
    (heartbeat_s 2 leaves room for a short tail read, such as the 1 s of item 7)."""
    proxy = await start_proxy(
        edit=set_defaults(heartbeat_s=2.0, timeouts={"idle_s": 30, "first_byte_s": 30})
    )
    said = b"".join([*head_events(dialect), UPSTREAM_ERROR_EVENTS[dialect]])
    upstream.enqueue(Script(steps=[said, Hold(gate())]))  # one write: no heartbeat inside
    stream = await open_raw(proxy, dialect)

    await stream.read_past(len(said), within=WAIT_S)
    after = bytes(stream.body[len(said) :])
    assert stream.ended, (
        "the stream was still open after the upstream's error event (idle_s 30 s); "
        f"what followed it: {after!r}"
    )
    assert bytes(stream.body) == said, beyond(bytes(stream.body), said)
    assert not stream.complete
    line = await assert_finished(proxy, "upstream_error", dialect)
    assert line["heartbeats"] == 0
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)  # the proxy let go of it


# --- 8.4: an error status (or a non-SSE 200) whose body stalls ----------------------------------

SHORT = set_defaults(
    heartbeat_s=30.0, timeouts={"idle_s": 0.3, "first_byte_s": 1.0, "max_stream_s": 60.0}
)
PARTIAL = b'{"error": {"message": "model overl'  # the message the proxy has when the body stalls
ANSWER_WITHIN_S = 3.0  # first_byte_s (1 s) with room to spare; max_stream_s is 60 s


async def answered(proxy: RunningProxy, dialect: str) -> tuple[aiohttp.ClientResponse, bytes]:
    """The proxy's answer to a streaming request, which must come well before max_stream_s."""
    try:
        async with asyncio.timeout(ANSWER_WITHIN_S):
            response = await proxy.post(PATHS[dialect], payload(dialect))
            body = await response.read()
    except TimeoutError:
        raise AssertionError(
            f"no answer within {ANSWER_WITHIN_S:g} s (idle_s 0.3, first_byte_s 1): the proxy "
            "waits for the body up to max_stream_s (60 s)"
        ) from None
    return response, body


async def assert_let_go(proxy: RunningProxy, upstream: FakeUpstream) -> None:
    """The upstream connection is closed and the user's slot is back."""
    await asyncio.wait_for(upstream.disconnected.wait(), WAIT_S)
    await slots_released(proxy)


@pytest.mark.parametrize(
    ("status", "sent", "dialect"),
    [(500, b"", "openai"), (500, PARTIAL, "anthropic"), (429, PARTIAL, "openai")],
    ids=["500-no-body-byte", "500-part-of-the-body", "429-part-of-the-body"],
)
async def test_an_error_status_whose_body_stalls_is_answered_within_the_idle_timeout(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    gate: Gate,
    status: int,
    sent: bytes,
    dialect: str,
) -> None:
    proxy = await start_proxy(edit=SHORT)
    steps: list[Step] = [sent, Hold(gate())] if sent else [Hold(gate())]
    upstream.enqueue(Script(status=status, content_type="application/json", steps=steps))

    response, body = await answered(proxy, dialect)
    assert response.status == status  # the status the proxy already knows
    if sent:
        assert b"model overl" in body, body  # with the message it has
    line = await proxy.finished_line()
    assert (line["outcome"], line["status"]) == ("upstream_error", status)
    await assert_let_go(proxy, upstream)


@pytest.fixture
async def pacer() -> AsyncIterator[Callable[[list[asyncio.Event], float], None]]:
    """Sets events one after another at a pace (an upstream that trickles); stopped at teardown."""
    tasks: list[asyncio.Task[None]] = []

    async def pace(events: list[asyncio.Event], every_s: float) -> None:
        for each in events:
            await asyncio.sleep(every_s)  # the pace of the scenario, not a synchronisation
            each.set()

    def start(events: list[asyncio.Event], every_s: float) -> None:
        tasks.append(asyncio.create_task(pace(events, every_s)))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_an_error_body_that_trickles_is_answered_within_the_first_byte_timeout(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    gate: Gate,
    pacer: Callable[[list[asyncio.Event], float], None],
) -> None:
    """A byte every 0.1 s never trips idle_s (0.3 s); first_byte_s (1 s) caps the whole wait."""
    proxy = await start_proxy(edit=SHORT)
    holds = [gate() for _ in range(200)]  # 20 s of trickle: longer than any bound here
    steps: list[Step] = [PARTIAL]
    for hold in holds:
        steps += [Hold(hold), b"o"]
    upstream.enqueue(Script(status=500, content_type="application/json", steps=steps))
    pacer(holds, 0.1)

    response, body = await answered(proxy, "openai")
    assert response.status == 500
    assert b"model overl" in body, body
    line = await proxy.finished_line()
    assert (line["outcome"], line["status"]) == ("upstream_error", 500)
    await assert_let_go(proxy, upstream)


def assert_error_shape(dialect: str, body: bytes) -> dict[str, Any]:
    """The proxy's own error body in the dialect's shape; its `error` object."""
    parsed = json.loads(body)
    if dialect == "anthropic":
        assert parsed["type"] == "error" and set(parsed) == {"type", "error"}, parsed
    else:
        assert set(parsed) == {"error"}, parsed
    error = parsed["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str), error
    return dict(error)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_non_sse_answer_whose_body_stalls_is_answered_within_the_idle_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream, gate: Gate, dialect: str
) -> None:
    """Half a JSON body cannot be passed on as a 200: the proxy reports the timeout (504, or
    502), in the provider's shape, as it does for a whole body after max_stream_s."""
    proxy = await start_proxy(edit=SHORT)
    half = b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": ['
    upstream.enqueue(Script(content_type="application/json", steps=[half, Hold(gate())]))

    response, body = await answered(proxy, dialect)
    assert response.status in (502, 504), (response.status, body)
    assert_error_shape(dialect, body)
    line = await proxy.finished_line()
    assert line["outcome"] in ("upstream_timeout", "upstream_error"), line
    await assert_let_go(proxy, upstream)


# --- 8.7: bytes after the dialect's terminator --------------------------------------------------

HOLD = b"<hold>"  # in a case's writes: the upstream waits here until the client has the terminator


def writes(dialect: str, *parts: bytes) -> tuple[str, list[bytes]]:
    return dialect, list(parts)


DONE_CR = b"data: [DONE]\r\n\r"  # its last CR ends the event; the LF that follows belongs to it
AFTER_TERMINATOR: dict[str, tuple[str, list[bytes]]] = {
    "same-write-partial": writes("openai", OPENAI_DONE + b": bye"),
    "separate-writes": writes("openai", OPENAI_DONE, HOLD, b": bye\n\n"),
    "cr|lf": writes("openai", DONE_CR, HOLD, b"\n"),
    "trailer-split": writes("openai", OPENAI_DONE + b": b", HOLD, b"ye\n\n"),
    "extra-blank-line-later": writes("openai", OPENAI_DONE, HOLD, b"\n"),
    "anthropic-separate-writes": writes("anthropic", MESSAGE_STOP, HOLD, b"\n"),
}
# True before item 7's fix too: trailing bytes that complete an event in the terminator's write.
AFTER_TERMINATOR["same-write-complete"] = writes("openai", OPENAI_DONE + b": bye\n\n")


@pytest.mark.parametrize("case", list(AFTER_TERMINATOR))
async def test_bytes_after_the_terminator_reach_the_client_to_the_body_end(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate, case: str
) -> None:
    dialect, parts = AFTER_TERMINATOR[case]
    release = gate()
    steps: list[Step] = [*head_events(dialect)]
    steps += [Hold(release) if part == HOLD else part for part in parts]
    upstream.enqueue(Script(steps=steps))
    stream = await open_raw(proxy, dialect)

    the_end = {"openai": OPENAI_DONE, "anthropic": MESSAGE_STOP}[dialect]
    if case == "cr|lf":
        the_end = DONE_CR
    await stream.read_until(the_end, within=WAIT_S)
    release.set()  # the client has the terminator: now the upstream sends the rest of its body
    body = await stream.read_to_end(within=WAIT_S)
    assert body == sent_bytes(steps), beyond(body, sent_bytes(steps))
    assert stream.complete
    await assert_finished(proxy, "completed", dialect)


async def test_a_body_end_that_never_comes_after_the_terminator_still_completes_the_stream(
    proxy: RunningProxy, upstream: FakeUpstream, gate: Gate
) -> None:
    """The wait for the body's end is bounded (`TAIL_WAIT_S`, 1 s): the client's stream
    completes without it. True before item 7's fix too; it must stay true under its rule."""
    steps: list[Step] = [*head_events("openai"), OPENAI_DONE, Hold(gate())]
    upstream.enqueue(Script(steps=steps))
    stream = await open_raw(proxy, "openai")

    body = await stream.read_to_end(within=WAIT_S)
    assert body == sent_bytes(steps)
    assert stream.complete
    await assert_finished(proxy, "completed")
    assert (
        proxy.metric("llm_proxy_requests_total", route="openai", stream="true", outcome="completed")
        == 1
    )
    assert HEARTBEAT not in body
