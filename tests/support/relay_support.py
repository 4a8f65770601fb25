"""Helpers for the end-to-end relay tests: upstream streams, chunkings, a client-side reader,
SSE checks (events, heartbeat positions) and bounded waits."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import cycle, pairwise
from typing import Any

import aiohttp

from proxy.core.sse import SSEEvent, SSEFramer
from tests.support.waits import WAIT_S

HEARTBEAT = b": ping\n\n"
BOM = b"\xef\xbb\xbf"

ENDINGS: dict[str, tuple[bytes, ...]] = {
    "lf": (b"\n",),
    "crlf": (b"\r\n",),
    "cr": (b"\r",),
    "mixed": (b"\r\n", b"\n", b"\r", b"\n", b"\r\n", b"\r", b"\r", b"\n"),
}

# --- upstream streams --------------------------------------------------------------------------


def compact(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def chat_chunk(content: str) -> str:
    return compact({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {
        "content": content}}]})  # fmt: skip


def event(*lines: str, eol: bytes = b"\n") -> bytes:
    """One SSE event block: each line ended by `eol`, then a blank line."""
    return b"".join(line.encode() + eol for line in lines) + eol


def openai_event(content: str) -> bytes:
    return event("data: " + chat_chunk(content))


OPENAI_DONE = b"data: [DONE]\n\n"


def anthropic_event(kind: str, body: dict[str, Any]) -> bytes:
    return event(f"event: {kind}", "data: " + compact({"type": kind, **body}))


def anthropic_text(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return anthropic_event("content_block_delta", {"index": 0, "delta": delta})


ANTHROPIC_START = anthropic_event(
    "message_start", {"message": {"id": "msg_1", "usage": {"input_tokens": 7}}}
)
ANTHROPIC_STOP = anthropic_event("message_stop", {})


def fidelity_stream(ending: str) -> bytes:
    """An OpenAI stream exercising the parser: multi-byte UTF-8 (2, 3, 4 bytes), U+2028, a
    comment, id/retry fields, a multi-line data field, usage, [DONE]; lines end per `ending`."""
    role = compact({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    usage = compact({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    blocks: list[list[str]] = [
        [": keep-alive from upstream"],
        ["data: " + role],
        ["id: 1", "data: " + chat_chunk("h\u00e9llo w\u00f6rld")],
        ["data: " + chat_chunk("\u20ac 12 \u2014 \U0001f600\U0001f680")],
        ["retry: 3000", "data: " + chat_chunk("line\u2028sep\u2029end")],
        ['data: {"choices":[{"index":0,', 'data: "delta":{"content":"\u00df\u00f8"}}]}'],
        ["event: message", "data: " + chat_chunk("\u65e5\u672c\u8a9e")],
        ["data: " + usage],
        ["data: [DONE]"],
    ]
    eols = cycle(ENDINGS[ending])
    out = bytearray()

    def end_line() -> None:
        eol = next(eols)
        if out.endswith(b"\r") and eol.startswith(b"\n"):
            eol = next(eols)  # a CR then an LF would be one CRLF, not two line ends
        out.extend(eol)

    for block in blocks:
        for line in block:
            out += line.encode()
            end_line()
        end_line()
    return bytes(out)


# --- chunkings ---------------------------------------------------------------------------------


def cut_at(data: bytes, positions: set[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p for p in positions if 0 < p < len(data))})
    return [data[a:b] for a, b in pairwise(edges)]


def chunked(data: bytes, how: str) -> list[bytes]:
    """`data` split into upstream writes in one of several adversarial ways."""
    if how == "whole":
        return [data]
    if how == "bytes":
        return [data[i : i + 1] for i in range(len(data))]
    if how == "cr|lf":  # a CR ends one write, whatever follows starts the next
        return cut_at(data, {i + 1 for i, b in enumerate(data) if b == 0x0D})
    if how == "utf8":  # cut after the lead byte of every multi-byte character
        return cut_at(data, {i + 1 for i, b in enumerate(data) if b >= 0xC0})
    if how == "thirds":  # several events per write, each write ending inside an event
        return cut_at(data, {len(data) // 3, 2 * len(data) // 3})
    seed = int(how.removeprefix("random"))
    rng = random.Random(seed)
    return cut_at(data, {rng.randrange(1, len(data)) for _ in range(len(data) // 8)})


CHUNKINGS = ["whole", "bytes", "cr|lf", "utf8", "thirds", "random1", "random2", "random3"]

# --- SSE checks --------------------------------------------------------------------------------


def parse_events(data: bytes) -> list[SSEEvent]:
    """The events a WHATWG client dispatches from `data` (a trailing partial event is not)."""
    return list(SSEFramer().feed(data).events)


def event_boundaries(data: bytes) -> list[int]:
    """Offsets in `data` at which an SSE event block has just ended (0 included)."""
    framer, edges, total = SSEFramer(), [0], 0
    for i in range(len(data)):
        total += len(framer.feed(data[i : i + 1]).forward)
        if total != edges[-1]:
            edges.append(total)
    return edges


def count_heartbeats_at_boundaries(client: bytes, upstream: bytes) -> int:
    """Check that `client` is `upstream` with heartbeats inserted only at event boundaries;
    return how many heartbeats there were."""
    edges = event_boundaries(upstream)
    beats = p = 0
    for q, end in zip(edges, [*edges[1:], len(upstream)], strict=True):
        while client.startswith(HEARTBEAT, p):
            beats, p = beats + 1, p + len(HEARTBEAT)
        segment = upstream[q:end]
        assert client[p : p + len(segment)] == segment, (
            f"client bytes differ from upstream's at upstream offset {q} (client offset {p}): "
            f"{client[p : p + len(segment) + 20]!r} != {segment!r}"
        )
        p += len(segment)
    assert p == len(client), f"unexpected trailing client bytes {client[p:]!r}"
    return beats


def error_events(events: list[SSEEvent]) -> list[dict[str, Any]]:
    """The `error` objects of error events, in either dialect."""
    found = []
    for ev in events:
        body = json.loads(ev.data) if ev.data.startswith("{") else None
        if isinstance(body, dict) and (ev.event == "error" or "error" in body):
            found.append(body)
    return found


def assert_one_error_event(events: list[SSEEvent], dialect: str) -> dict[str, Any]:
    """Exactly one error event, in the dialect's shape, and no terminator; its error object."""
    errors = error_events(events)
    assert len(errors) == 1, f"expected one error event, got {errors}"
    body = errors[0]
    assert error_events(events[-1:]) == errors, "the error event must be the last event"
    if dialect == "anthropic":
        assert events[-1].event == "error" and body["type"] == "error"
        assert all(ev.event != "message_stop" for ev in events)
    else:
        assert events[-1].event == "message" and set(body) == {"error"}
        assert all(ev.data != "[DONE]" for ev in events)
    error = body["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


# --- the client side ---------------------------------------------------------------------------


class ClientStream:
    """Raw bytes of one proxied response as the client reads them."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.data = bytearray()
        self.ended_by: aiohttp.ClientPayloadError | None = None
        self.eof = False
        self._chunks: AsyncIterator[bytes] = response.content.iter_any()

    async def _read_once(self) -> None:
        try:
            self.data += await self._chunks.__anext__()
        except StopAsyncIteration:
            self.eof = True
        except aiohttp.ClientPayloadError as exc:
            self.ended_by, self.eof = exc, True

    async def until(self, done: Callable[[bytes], bool], within: float = WAIT_S) -> bytes:
        """Read until `done(data)`; fail if the stream ends first or it takes over `within` s."""
        async with asyncio.timeout(within):
            while not done(bytes(self.data)):
                assert not self.eof, f"stream ended early after {bytes(self.data)!r}"
                await self._read_once()
        return bytes(self.data)

    async def contains(self, needle: bytes, within: float = WAIT_S) -> bytes:
        return await self.until(lambda data: needle in data, within)

    async def to_end(self, within: float = WAIT_S) -> bytes:
        """Read to the end of the response (clean or not)."""
        async with asyncio.timeout(within):
            while not self.eof:
                await self._read_once()
        return bytes(self.data)

    def events(self) -> list[SSEEvent]:
        return parse_events(bytes(self.data))


def heartbeats_after(forwarded: bytes, count: int) -> Callable[[bytes], bool]:
    """A condition: `forwarded` and nothing more has arrived (heartbeats aside), followed by at
    least `count` heartbeats. Fails at once if more than `forwarded` arrives."""

    def done(data: bytes) -> bool:
        stripped = data.replace(HEARTBEAT, b"")
        partial_ping = next((k for k in range(len(HEARTBEAT) - 1, 0, -1)
                             if stripped.endswith(HEARTBEAT[:k])), 0)  # fmt: skip
        stripped = stripped[: len(stripped) - partial_ping]
        assert forwarded.startswith(stripped), f"got more than {forwarded!r}: {stripped!r}"
        return stripped == forwarded and data.endswith(HEARTBEAT * count)

    return done


# --- waits -------------------------------------------------------------------------------------


def route_of(dialect: str) -> tuple[str, str]:
    """(route name, path) for a dialect."""
    return (
        (dialect, "/v1/messages") if dialect == "anthropic" else (dialect, "/v1/chat/completions")
    )


def payload(dialect: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m-1", "stream": True, "messages": [{"role": "user",
                            "content": "hi"}]}  # fmt: skip
    if dialect == "anthropic":
        body["max_tokens"] = 16
    return body


def head_events(dialect: str) -> list[bytes]:
    """The first events of a stream in the dialect, before something goes wrong."""
    if dialect == "anthropic":
        return [ANTHROPIC_START, anthropic_text("Hel"), anthropic_text("lo")]
    return [openai_event("Hel"), openai_event("lo")]


def terminator(dialect: str) -> bytes:
    return ANTHROPIC_STOP if dialect == "anthropic" else OPENAI_DONE


def big_stream(total: int) -> Iterator[bytes]:
    """OpenAI events with multi-byte text, about `total` bytes in all (without [DONE])."""
    size = 0
    n = 0
    while size < total:
        chunk = openai_event(f"{n:06d} " + "\u00e9t\u00e9 \u20ac\U0001f600 " * 40)
        size += len(chunk)
        n += 1
        yield chunk
