"""Incremental Server-Sent Events framer and parser over raw bytes.

`SSEFramer.feed()` takes the upstream stream chunk by chunk and returns, for each
chunk, the bytes that may be written to the client now and the events they
complete. Parsing follows the WHATWG EventSource rules:

* Lines end with CRLF, LF or CR (only these three: U+2028, U+2029 and NEL are
  ordinary data). A CR that ends one chunk and an LF that starts the next form a
  single CRLF terminator; that LF is never read as an extra blank line.
* A blank line ends an event block. The block is dispatched as an `SSEEvent`
  only if it had at least one `data` field; otherwise it dispatches nothing but
  is still a boundary.
* A line starting with `:` is a comment. A line without a colon is a field name
  with an empty value. One space after the colon is dropped from the value.
  Fields other than `data`, `event`, `id` and `retry` are ignored; an `id` value
  containing U+0000 is ignored; a `retry` value that is not all ASCII digits is
  ignored. `id` and `retry` are reported per event: the last valid value in
  the block, else None (a client keeping WHATWG's persistent last-event-ID has
  to carry it across events itself).
* Each complete line is decoded as UTF-8 with errors="replace", so a character
  split across chunks is never decoded in halves.

Framing is byte-faithful: the concatenation of every `forward` is exactly the
input, except for one UTF-8 BOM at the very start of the stream, which is
dropped (it may arrive split across chunks). `forward` always ends at an event
boundary; the partial event after it is held (`held_bytes`) until its blank line
arrives. At end of stream the held bytes stay held: the caller decides, and may take them
with `release_held` to pass the stream's very end on as it is. The framer has no size cap; the
caller enforces one with `held_bytes`.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

__all__ = ["FeedResult", "SSEEvent", "SSEFramer"]

_BOM = b"\xef\xbb\xbf"
_LF = 0x0A
_CR = 0x0D


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event."""

    event: str  # the event type; "message" when no (or an empty) `event:` field was given
    data: str  # data lines joined with "\n"
    id: str | None  # value of the last valid `id:` field in this event, None if none
    retry: int | None  # last `retry:` value made of ASCII digits only, else None


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one `SSEFramer.feed()` call produced."""

    forward: bytes  # bytes to write to the client now, ending at an event boundary; b"" if none
    events: tuple[SSEEvent, ...]  # events completed by these bytes, in order


_NOTHING = FeedResult(b"", ())


class SSEFramer:
    """Splits a byte stream into complete SSE event blocks and parses their events."""

    __slots__ = (
        "_at_start",
        "_bom_prefix",
        "_data",
        "_event",
        "_id",
        "_line_start",
        "_pending",
        "_retry",
        "_skip_lf",
    )

    def __init__(self) -> None:
        self._pending = bytearray()  # received but not forwarded (the partial block)
        self._line_start = 0  # offset in _pending of the incomplete, unparsed line
        self._at_start = True  # still deciding whether the stream starts with a BOM
        self._bom_prefix = b""  # leading bytes that may yet turn out to be a BOM
        self._skip_lf = False  # the last chunk ended with CR: a leading LF completes its CRLF
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    @property
    def held_bytes(self) -> int:
        """Bytes received but not yet forwarded (the partial event being held)."""
        return len(self._pending) + len(self._bom_prefix)

    def release_held(self) -> bytes:
        """Give up the held bytes (a partial event, or what may have begun a BOM) for a caller
        that passes the end of the stream on as it is; parsing restarts at a boundary."""
        held = self._bom_prefix + bytes(self._pending)
        self._bom_prefix, self._at_start = b"", False
        self._pending, self._line_start = bytearray(), 0
        self._data, self._event, self._id, self._retry = [], "", None, None
        return held

    def feed(self, chunk: bytes) -> FeedResult:
        """Take the next chunk of the stream; return the bytes to forward and the events."""
        if self._at_start:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return _NOTHING
        # Skip an LF completing a CRLF split across chunks: it is part of no line.
        start = 1 if self._skip_lf and chunk[0] == _LF else 0
        self._skip_lf = False
        cut = 0 if self._pending else start  # at a boundary, that LF is forwarded at once
        tail = start if start else -1  # chunk offset of the incomplete line; -1: it began earlier
        last = _last_terminator(chunk, start)
        events: list[SSEEvent] = []
        if last >= start:
            boundary = self._parse_lines(chunk, start, last + 1, events)
            if boundary > 0:
                cut = boundary
            tail = last + 1
            self._skip_lf = tail == len(chunk) and chunk[last] == _CR
        forward = self._advance(chunk, cut, tail)
        if not forward:
            return _NOTHING
        return FeedResult(forward, tuple(events))

    def _strip_bom(self, chunk: bytes) -> bytes:
        """Drop a BOM at the very start of the stream, holding bytes until it is decided."""
        head = self._bom_prefix + chunk if self._bom_prefix else chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._bom_prefix = head
            return b""
        self._at_start = False
        self._bom_prefix = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _parse_lines(self, chunk: bytes, start: int, end: int, events: list[SSEEvent]) -> int:
        """Parse the lines completed by chunk[start:end]; return the chunk offset just
        past the last blank line, or -1 if there was none."""
        partial = len(self._pending) - self._line_start
        if partial:
            head = memoryview(self._pending)[self._line_start :]
            segment = b"".join((head, memoryview(chunk)[start:end]))
            head.release()
        elif start == 0 and end == len(chunk):
            segment = chunk
        else:
            segment = chunk[start:end]
        position = 0
        boundary = -1
        for line in segment.splitlines(keepends=True):
            position += len(line)
            if line[0] in b"\r\n":
                boundary = position
                self._dispatch(events)
            else:
                self._parse_field(line)
        return boundary if boundary < 0 else boundary + start - partial

    def _parse_field(self, line: bytes) -> None:
        """Apply one non-blank line (still carrying its terminator) to the current event."""
        content = line.rstrip(b"\r\n")
        colon = content.find(b":")
        if colon == 0:
            return  # comment
        if colon < 0:
            name, value = content, b""
        else:
            name = content[:colon]
            value_start = colon + 2 if content.startswith(b" ", colon + 1) else colon + 1
            value = content[value_start:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            # More digits than sys.get_int_max_str_digits() raise ValueError: ignore those.
            with suppress(ValueError):
                self._retry = int(value)

    def _dispatch(self, events: list[SSEEvent]) -> None:
        """End the current block at a blank line, emitting its event if it has data."""
        if self._data:
            data = "\n".join(self._data)
            events.append(SSEEvent(self._event or "message", data, self._id, self._retry))
            self._data = []
        self._event = ""
        self._id = None
        self._retry = None

    def _advance(self, chunk: bytes, cut: int, tail: int) -> bytes:
        """Forward everything held plus chunk[:cut] (nothing if cut is 0) and hold the rest.

        `tail` is the chunk offset where the incomplete line starts, -1 if it started
        in an earlier chunk."""
        pending = self._pending
        if cut == 0:
            if tail >= 0:
                self._line_start = len(pending) + tail
            pending += chunk
            return b""
        if pending:
            forward = b"".join((pending, memoryview(chunk)[:cut]))
        else:
            forward = chunk if cut == len(chunk) else chunk[:cut]
        if cut < len(chunk):
            self._pending = bytearray(memoryview(chunk)[cut:])
        elif pending:
            self._pending = bytearray()
        self._line_start = tail - cut if tail >= 0 else 0
        return forward


def _last_terminator(chunk: bytes, start: int) -> int:
    """Index of the last CR or LF in chunk[start:], or -1."""
    if chunk[-1] in b"\r\n":
        return len(chunk) - 1
    return max(chunk.rfind(b"\n", start), chunk.rfind(b"\r", start))
