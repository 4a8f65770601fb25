"""Checks of what a client received: the events it dispatches, where heartbeats were put, the
error event a failed stream ends with, and the headers of a stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp

from proxy.core.sse import SSEEvent, SSEFramer
from tests.support.sse_builders import HEARTBEAT


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


def assert_sse_headers(response: aiohttp.ClientResponse) -> None:
    headers = response.headers
    assert response.content_type == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache, no-transform"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Request-Id"]
    assert "Content-Length" not in headers and "Content-Encoding" not in headers
    assert headers["Transfer-Encoding"] == "chunked"
