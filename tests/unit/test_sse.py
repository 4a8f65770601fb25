"""Tests for proxy.core.sse: the incremental SSE framer and parser."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.sse import FeedResult, SSEEvent, SSEFramer
from tests.support.sse_builders import BOM, chunked

OPENAI_CHUNK = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk",'
    b'"choices":[{"index":0,"delta":{"content":"hello"}}]}\n\n'
)


def msg(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> SSEEvent:
    return SSEEvent(event=event, data=data, id=id, retry=retry)


def run(chunks: Iterable[bytes]) -> tuple[bytes, list[SSEEvent], SSEFramer]:
    """Feed chunks to a fresh framer; return the forwarded bytes, the events, the framer."""
    framer = SSEFramer()
    forwarded = bytearray()
    events: list[SSEEvent] = []
    for chunk in chunks:
        result = framer.feed(chunk)
        forwarded += result.forward
        events.extend(result.events)
    return bytes(forwarded), events, framer


# --- WHATWG examples -------------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r", "\r\n"])
def test_whatwg_stock_example_with_every_line_ending(eol: str) -> None:
    stream = eol.join(["data: YHOO", "data: +2", "data: 10", "", ""]).encode()
    for chunks in ([stream], chunked(stream, "bytes")):
        forwarded, events, framer = run(chunks)
        assert events == [msg("YHOO\n+2\n10")]
        assert forwarded == stream
        assert framer.held_bytes == 0


def test_whatwg_id_example() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n"
    )
    forwarded, events, framer = run([stream])
    assert events == [msg("first event", id="1"), msg("second event", id="")]
    assert framer.held_bytes == len(b"data:  third event\n")
    assert forwarded == stream[: -framer.held_bytes]
    # Once its blank line arrives the third event keeps the second of its two spaces.
    assert framer.feed(b"\n").events == (msg(" third event"),)


def test_whatwg_empty_data_example_holds_the_unterminated_last_block() -> None:
    stream = b"data\n\ndata\ndata\n\ndata:"
    forwarded, events, framer = run([stream])
    assert events == [msg(""), msg("\n")]
    assert forwarded == b"data\n\ndata\ndata\n\n"
    assert framer.held_bytes == len(b"data:")


def test_whatwg_leading_space_example_gives_two_identical_events() -> None:
    _, events, _ = run([b"data:test\n\ndata: test\n\n"])
    assert events == [msg("test"), msg("test")]


# --- line endings ----------------------------------------------------------------------


def test_mixed_line_endings() -> None:
    stream = b"event: a\rdata: 1\r\ndata: 2\n\r\ndata: 3\r\rdata: 4\n\n"
    for chunks in ([stream], chunked(stream, "bytes")):
        forwarded, events, _ = run(chunks)
        assert events == [msg("1\n2", event="a"), msg("3"), msg("4")]
        assert forwarded == stream


def test_cr_blank_line_completes_the_block_at_once() -> None:
    framer = SSEFramer()
    chunk = b"data: a\r\r"
    result = framer.feed(chunk)
    assert result == FeedResult(chunk, (msg("a"),))
    assert framer.held_bytes == 0


def test_cr_at_chunk_end_inside_an_event_joins_the_next_lf() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r") == FeedResult(b"", ())
    assert framer.held_bytes == 8
    result = framer.feed(b"\ndata: b\n\n")
    assert result == FeedResult(b"data: a\r\ndata: b\n\n", (msg("a\nb"),))
    assert framer.held_bytes == 0


def test_cr_at_chunk_end_inside_an_event_with_lone_lf_chunk() -> None:
    framer = SSEFramer()
    framer.feed(b"data: a\r")
    assert framer.feed(b"\n") == FeedResult(b"", ())  # the CRLF's LF, held with its event
    assert framer.held_bytes == 9
    # Only the byte right after the CR is skipped: this LF is a real blank line.
    result = framer.feed(b"\ndata: b\n\n")
    assert result == FeedResult(b"data: a\r\n\ndata: b\n\n", (msg("a"), msg("b")))


def test_cr_at_chunk_end_of_a_block_forwards_the_lf_alone() -> None:
    framer = SSEFramer()
    assert framer.feed(b"data: a\r\r").events == (msg("a"),)
    assert framer.feed(b"\n") == FeedResult(b"\n", ())
    assert framer.held_bytes == 0


def test_cr_at_chunk_end_of_a_block_forwards_the_lf_before_a_partial_event() -> None:
    framer = SSEFramer()
    framer.feed(b"data: a\r\r")
    assert framer.feed(b"\ndata: b") == FeedResult(b"\n", ())
    assert framer.held_bytes == len(b"data: b")
    assert framer.feed(b"\r\n\r\n") == FeedResult(b"data: b\r\n\r\n", (msg("b"),))


def test_cr_at_chunk_end_of_a_block_then_next_event() -> None:
    framer = SSEFramer()
    framer.feed(b"data: a\r\r")
    chunk = b"\ndata: b\n\n"
    result = framer.feed(chunk)
    assert result.events == (msg("b"),)
    assert result.forward is chunk


def test_unicode_line_separators_are_data() -> None:
    text = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg"
    _, events, _ = run([f"data: {text}\n\n".encode()])
    assert events == [msg(text)]


# --- BOM -------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [[3], [1], [2], [1, 2], [1, 1, 1], [4]])
def test_leading_bom_is_dropped_however_it_is_split(split: list[int]) -> None:
    body = b"data: x\n\n"
    stream = BOM + body
    chunks, position = [], 0
    for size in split:
        chunks.append(stream[position : position + size])
        position += size
    chunks.append(stream[position:])
    forwarded, events, framer = run(chunks)
    assert forwarded == body
    assert events == [msg("x")]
    assert framer.held_bytes == 0


def test_partial_bom_is_held_then_forwarded_when_it_is_not_a_bom() -> None:
    framer = SSEFramer()
    assert framer.feed(b"\xef\xbb") == FeedResult(b"", ())
    assert framer.held_bytes == 2
    result = framer.feed(b"\n\n")
    assert result.forward == b"\xef\xbb\n\n"
    assert framer.held_bytes == 0


def test_only_one_leading_bom_is_dropped() -> None:
    forwarded, events, _ = run([BOM + BOM + b"data: x\n\n"])
    assert forwarded == BOM + b"data: x\n\n"
    assert events == []  # the field name is "\ufeffdata", an unknown field


def test_bom_later_in_the_stream_is_kept() -> None:
    stream = b"data: a\n\n" + BOM + b"data: b\n\ndata: " + BOM + b"c\n\n"
    for chunks in ([stream], chunked(stream, "bytes")):
        forwarded, events, _ = run(chunks)
        assert forwarded == stream
        assert events == [msg("a"), msg("\ufeffc")]


# --- decoding --------------------------------------------------------------------------


def test_multibyte_characters_split_across_chunks() -> None:
    text = "h\xe9llo \u20ac \U0001f600 \u4e2d"
    stream = f"event: \U0001f600\ndata: {text}\n\n".encode()
    for cut in range(len(stream) + 1):
        _, events, _ = run([stream[:cut], stream[cut:]])
        assert events == [msg(text, event="\U0001f600")], cut


def test_invalid_utf8_is_replaced() -> None:
    _, events, _ = run([b"data: a\xffb\xe2\x82\n\n"])
    assert events == [msg("a\ufffdb\ufffd")]


# --- fields ----------------------------------------------------------------------------


def test_comment_only_block_is_forwarded_without_events() -> None:
    framer = SSEFramer()
    chunk = b": ping\n\n"
    result = framer.feed(chunk)
    assert result.forward is chunk
    assert result.events == ()
    assert framer.held_bytes == 0


def test_comments_inside_an_event_are_ignored() -> None:
    _, events, _ = run([b": a\ndata: x\n:data: y\n: b\ndata: z\n\n"])
    assert events == [msg("x\nz")]


def test_blank_lines_without_data_are_boundaries() -> None:
    framer = SSEFramer()
    assert framer.feed(b"\n\r\n\r") == FeedResult(b"\n\r\n\r", ())
    assert framer.feed(b"id: 1\nevent: e\n\n") == FeedResult(b"id: 1\nevent: e\n\n", ())
    assert framer.held_bytes == 0


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"event: e\ndata: x\n\n", msg("x", event="e")),
        (b"event: e\nevent\ndata: x\n\n", msg("x")),  # empty type means "message"
        (b"data:x\n\n", msg("x")),
        (b"data:  x \n\n", msg(" x ")),
        (b"data: a: b\n\n", msg("a: b")),
        (b"foo: bar\nDATA: no\ndata : no\ndata: x\n\n", msg("x")),
        (b"id: 1\nid: 2\ndata: x\n\n", msg("x", id="2")),
        (b"id: 1\nid: a\x00b\ndata: x\n\n", msg("x", id="1")),
        (b"id: a\x00b\ndata: x\n\n", msg("x")),
        (b"id:\ndata: x\n\n", msg("x", id="")),
    ],
)
def test_field_parsing(block: bytes, expected: SSEEvent) -> None:
    _, events, _ = run([block])
    assert events == [expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"3000", 3000),
        (b"0", 0),
        (b"007", 7),
        (b"", None),
        (b"30a", None),
        (b"-1", None),
        (b" 5", None),  # only one space is stripped
        ("\uff13".encode(), None),  # a non-ASCII digit
        (b"9" * 5000, None),  # longer than Python converts: ignored, no crash
    ],
)
def test_retry_parsing(value: bytes, expected: int | None) -> None:
    _, events, _ = run([b"retry: " + value + b"\ndata: x\n\n"])
    assert events == [msg("x", retry=expected)]


def test_invalid_retry_keeps_the_earlier_valid_one() -> None:
    _, events, _ = run([b"retry: 10\nretry: x\ndata: x\n\n"])
    assert events == [msg("x", retry=10)]


def test_fields_do_not_leak_into_the_next_event() -> None:
    _, events, _ = run([b"id: 7\nevent: e\nretry: 5\n\ndata: x\n\n"])
    assert events == [msg("x")]


# --- forwarding and held bytes ---------------------------------------------------------


def test_fast_path_forwards_the_chunk_object_itself() -> None:
    framer = SSEFramer()
    for chunk in (OPENAI_CHUNK, b"data: a\n\ndata: b\r\n\r\n", b": ping\n\n", OPENAI_CHUNK):
        result = framer.feed(chunk)
        assert result.forward is chunk
    assert framer.held_bytes == 0


def test_events_complete_by_a_chunk_are_returned_in_order() -> None:
    framer = SSEFramer()
    result = framer.feed(b"data: 1\n\nevent: e\ndata: 2\n\ndata: 3\n\ndata: 4")
    assert result.events == (msg("1"), msg("2", event="e"), msg("3"))
    assert result.forward == b"data: 1\n\nevent: e\ndata: 2\n\ndata: 3\n\n"
    assert framer.held_bytes == len(b"data: 4")


def test_held_bytes_grows_with_the_partial_event_and_resets() -> None:
    framer = SSEFramer()
    assert framer.held_bytes == 0
    partial = b'data: {"a": 1}\ndata: 2\r\n'
    for count, byte in enumerate(chunked(partial, "bytes"), start=1):
        assert framer.feed(byte) == FeedResult(b"", ())
        assert framer.held_bytes == count
    result = framer.feed(b"\r\ndata: nex")
    assert result == FeedResult(partial + b"\r\n", (msg('{"a": 1}\n2'),))
    assert framer.held_bytes == len(b"data: nex")
    framer.feed(b"t\n\n")
    assert framer.held_bytes == 0


def test_empty_chunks_change_nothing() -> None:
    framer = SSEFramer()
    assert framer.feed(b"") == FeedResult(b"", ())
    framer.feed(b"data: a\r")
    assert framer.feed(b"") == FeedResult(b"", ())
    assert framer.feed(b"\n\n") == FeedResult(b"data: a\r\n\n", (msg("a"),))


def test_one_mib_line_in_one_byte_chunks_is_linear() -> None:
    size = 1 << 20
    framer = SSEFramer()
    framer.feed(b"data: ")
    byte = b"x"
    deadline = time.perf_counter() + 15.0  # linear takes well under 1 s; quadratic, minutes
    for index in range(size):
        framer.feed(byte)
        if index % 4096 == 0:
            assert time.perf_counter() < deadline, f"too slow after {index} bytes"
    assert framer.held_bytes == size + len(b"data: ")
    result = framer.feed(b"\n\n")
    assert len(result.forward) == size + len(b"data: \n\n")
    assert result.events == (msg("x" * size),)


# --- properties ------------------------------------------------------------------------

ENDINGS = ("\n", "\r", "\r\n")
_SPECIAL_CHARS = st.sampled_from(
    ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\ufeff", "\x00", ":", " ", "\U0001f600"]
)
_VALUES = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8", exclude_characters="\r\n"), _SPECIAL_CHARS),
    max_size=10,
)
_NAMES = st.one_of(
    st.sampled_from(["data", "data", "event", "id", "retry", "Data", "data "]),
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="\r\n:\ufeff"),
        min_size=1,
        max_size=5,
    ),
)
_RETRY_VALUES = st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["", "1x", "\uff15"]))


@dataclass(frozen=True)
class Field:
    """One generated non-blank line: a comment, or a field as the parser should read it."""

    text: str  # the line's content, without its terminator
    name: str | None  # None for a comment
    value: str  # the value after WHATWG's single-space removal


@st.composite
def fields(draw: st.DrawFn) -> Field:
    kind = draw(st.sampled_from(["comment", "no-colon", "colon", "colon"]))
    if kind == "comment":
        return Field(":" + draw(_VALUES), None, "")
    name = draw(_NAMES)
    if kind == "no-colon":
        return Field(name, name, "")
    raw = draw(_RETRY_VALUES if name == "retry" and draw(st.booleans()) else _VALUES)
    if draw(st.booleans()):
        return Field(f"{name}: {raw}", name, raw)
    return Field(f"{name}:{raw}", name, raw.removeprefix(" "))


def expected_event(block: list[Field]) -> SSEEvent | None:
    """The event a WHATWG parser dispatches for a complete block (independent model)."""
    data: list[str] = []
    event, id_, retry = "", None, None
    for field in block:
        if field.name == "data":
            data.append(field.value)
        elif field.name == "event":
            event = field.value
        elif field.name == "id" and "\x00" not in field.value:
            id_ = field.value
        elif field.name == "retry" and field.value.isascii() and field.value.isdigit():
            retry = int(field.value)
    return SSEEvent(event or "message", "\n".join(data), id_, retry) if data else None


@dataclass(frozen=True)
class Stream:
    raw: bytes
    bom: bool
    boundaries: tuple[int, ...]  # every offset in raw at which a complete block ends
    events: tuple[SSEEvent, ...]


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    bom = draw(st.booleans())
    raw = bytearray(BOM if bom else b"")
    boundaries, events = [0, len(raw)], []
    blocks = draw(st.lists(st.lists(fields(), max_size=4), max_size=5))
    tail = draw(st.lists(fields(), max_size=3))
    for block in [*blocks, tail]:
        for field in block:
            raw += (field.text + draw(st.sampled_from(ENDINGS))).encode()
        if block is tail:
            if draw(st.booleans()) and tail:
                raw = raw.rstrip(b"\r\n")  # the last line is unterminated too
            break
        blank = draw(st.sampled_from(ENDINGS))
        if blank == "\n" and raw.endswith(b"\r"):
            blank = "\r\n"  # a lone LF here would be the previous line's CRLF
        if blank == "\r\n":
            boundaries.append(len(raw) + 1)  # complete at the CR already
        raw += blank.encode()
        boundaries.append(len(raw))
        event = expected_event(block)
        if event is not None:
            events.append(event)
    return Stream(bytes(raw), bom, tuple(boundaries), tuple(events))


@st.composite
def chunkings(draw: st.DrawFn, size: int) -> list[int]:
    """End offsets of the chunks: random cuts (empty chunks included) or every byte."""
    if draw(st.integers(0, 4)) == 0:
        return list(range(1, size + 1))
    return [*sorted(draw(st.lists(st.integers(0, size), max_size=12))), size]


@settings(max_examples=200, deadline=None)
@given(stream=streams(), data=st.data())
def test_any_chunking_forwards_the_stream_at_boundaries(
    stream: Stream, data: st.DataObject
) -> None:
    raw, skip = stream.raw, len(BOM) if stream.bom else 0
    framer = SSEFramer()
    forwarded = bytearray()
    events: list[SSEEvent] = []
    position = 0
    for end in data.draw(chunkings(len(raw))):
        result = framer.feed(raw[position:end])
        position = end
        forwarded += result.forward
        events.extend(result.events)
        consumed = position - framer.held_bytes
        # Each forward ends exactly at the last boundary received: a complete block is
        # never held, a partial one is never forwarded.
        assert consumed == max(b for b in stream.boundaries if b <= position)
        assert forwarded == raw[skip:consumed]
    assert forwarded == raw[skip : stream.boundaries[-1]]
    assert tuple(events) == stream.events
    assert run([raw])[1] == events


@settings(max_examples=100, deadline=None)
@given(stream=streams())
def test_held_bytes_is_the_incomplete_block(stream: Stream) -> None:
    framer = SSEFramer()
    for position in range(1, len(stream.raw) + 1):
        framer.feed(stream.raw[position - 1 : position])
        incomplete_block = position - max(b for b in stream.boundaries if b <= position)
        assert framer.held_bytes == incomplete_block
        assert 0 <= framer.held_bytes <= position


@settings(max_examples=100, deadline=None)
@given(stream=streams(), data=st.data())
def test_what_is_forwarded_and_then_released_is_the_whole_stream(
    stream: Stream, data: st.DataObject
) -> None:
    """The end of a stream passed on as it is (`release_held`): nothing lost, nothing added."""
    raw, skip = stream.raw, len(BOM) if stream.bom else 0
    framer, forwarded, position = SSEFramer(), bytearray(), 0
    for end in data.draw(chunkings(len(raw))):
        forwarded += framer.feed(raw[position:end]).forward
        position = end
    forwarded += framer.release_held()
    assert forwarded == raw[skip:]
    assert framer.held_bytes == 0


def test_a_released_partial_bom_is_data() -> None:
    framer = SSEFramer()
    assert framer.feed(BOM[:2]).forward == b""
    assert framer.release_held() == BOM[:2]
    assert framer.feed(b"data: x\n\n").events == (msg("x"),)
