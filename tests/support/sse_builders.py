"""What an upstream sends: SSE events in both dialects, whole streams, and the ways a stream is
cut into writes. JSON is encoded as providers send it: compact, with UTF-8 left unescaped."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from itertools import cycle, pairwise
from typing import Any

from tests.support.fake_upstream import Step

HEARTBEAT = b": ping\n\n"  # the proxy's keep-alive comment
OPENAI_DONE = b"data: [DONE]\n\n"
BOM = b"\xef\xbb\xbf"


def compact(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def sse_event(*lines: str, eol: bytes = b"\n") -> bytes:
    """One SSE event block: each line ended by `eol`, then a blank line."""
    return b"".join(line.encode() + eol for line in lines) + eol


# --- OpenAI chat completions -------------------------------------------------------------------


def chat_chunk_data(
    content: str | None = None, *, role: str | None = None, usage: dict[str, int] | None = None
) -> str:
    """The JSON of one chat-completions chunk: a role, a content delta, usage, or none of them."""
    delta: dict[str, str] = {}
    if role is not None:
        delta = {"role": role, "content": ""}
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "choices": []}
    if content is not None or role is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    if usage is not None:
        body["usage"] = usage
    return compact(body)


def chat_chunk(
    content: str | None = None, *, role: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    """One chat-completions chunk as an SSE event."""
    return sse_event("data: " + chat_chunk_data(content, role=role, usage=usage))


ROLE = chat_chunk(role="assistant")


def chat_stream(*words: str, usage: dict[str, int] | None = None) -> list[Step]:
    """A complete chat stream: role chunk, one chunk per word, optional usage chunk, [DONE]."""
    steps: list[Step] = [ROLE, *(chat_chunk(word) for word in words)]
    if usage is not None:
        steps.append(chat_chunk(usage=usage))
    steps.append(OPENAI_DONE)
    return steps


# --- Anthropic messages ------------------------------------------------------------------------


def anthropic_event(kind: str, body: dict[str, Any]) -> bytes:
    return sse_event(f"event: {kind}", "data: " + compact({"type": kind, **body}))


MESSAGE_START = anthropic_event(
    "message_start", {"message": {"id": "m1", "role": "assistant", "usage": {"input_tokens": 5}}}
)
CONTENT_BLOCK_START = anthropic_event(
    "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
)
ANTHROPIC_PING = anthropic_event("ping", {})
MESSAGE_STOP = anthropic_event("message_stop", {})


def text_delta(text: str) -> bytes:
    return anthropic_event(
        "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}}
    )


def message_delta(output_tokens: int) -> bytes:
    return anthropic_event(
        "message_delta",
        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output_tokens}},
    )


def anthropic_stream(*words: str) -> list[Step]:
    """A complete Messages stream: start, one text delta per word, usage, stop."""
    deltas = [text_delta(word) for word in words]
    return [MESSAGE_START, CONTENT_BLOCK_START, *deltas, message_delta(len(words)), MESSAGE_STOP]


# --- either dialect ----------------------------------------------------------------------------


def head_events(dialect: str) -> list[bytes]:
    """The first events of a stream in the dialect, before something goes wrong."""
    if dialect == "anthropic":
        return [MESSAGE_START, text_delta("Hel"), text_delta("lo")]
    return [chat_chunk("Hel"), chat_chunk("lo")]


def terminator(dialect: str) -> bytes:
    return MESSAGE_STOP if dialect == "anthropic" else OPENAI_DONE


def big_stream(total: int) -> Iterator[bytes]:
    """OpenAI events with multi-byte text, about `total` bytes in all (without [DONE])."""
    size = 0
    n = 0
    while size < total:
        chunk = chat_chunk(f"{n:06d} " + "\u00e9t\u00e9 \u20ac\U0001f600 " * 40)
        size += len(chunk)
        n += 1
        yield chunk


ENDINGS: dict[str, tuple[bytes, ...]] = {
    "lf": (b"\n",),
    "crlf": (b"\r\n",),
    "cr": (b"\r",),
    "mixed": (b"\r\n", b"\n", b"\r", b"\n", b"\r\n", b"\r", b"\r", b"\n"),
}


def fidelity_stream(ending: str) -> bytes:
    """An OpenAI stream exercising the parser: multi-byte UTF-8 (2, 3, 4 bytes), U+2028, a
    comment, id/retry fields, a multi-line data field, usage, [DONE]; lines end per `ending`."""
    role = compact({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    usage = compact({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    blocks: list[list[str]] = [
        [": keep-alive from upstream"],
        ["data: " + role],
        ["id: 1", "data: " + chat_chunk_data("h\u00e9llo w\u00f6rld")],
        ["data: " + chat_chunk_data("\u20ac 12 \u2014 \U0001f600\U0001f680")],
        ["retry: 3000", "data: " + chat_chunk_data("line\u2028sep\u2029end")],
        ['data: {"choices":[{"index":0,', 'data: "delta":{"content":"\u00df\u00f8"}}]}'],
        ["event: message", "data: " + chat_chunk_data("\u65e5\u672c\u8a9e")],
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


def sent_bytes(steps: list[Step]) -> bytes:
    """The bytes a script's steps write, without its holds, resets and closes."""
    return b"".join(step for step in steps if isinstance(step, bytes))
