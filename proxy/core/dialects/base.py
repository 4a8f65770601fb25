"""What every dialect shares: the `Signal` an event gives, usage figures, the `Dialect` protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.core.sse import SSEEvent


@dataclass(frozen=True, slots=True)
class Signal:
    """What one upstream event tells the proxy."""

    content: bool = False  # carries generated content (text, tool-call, reasoning delta)
    reasoning: bool = False  # that content is the model's raw reasoning, streamed
    terminal: bool = False  # the dialect's end-of-stream marker
    error: bool = False  # the upstream's own in-band error event
    output_tokens: int | None = None  # provider usage figure (cumulative)
    input_tokens: int | None = None
    reasoning_tokens: int | None = None  # how many of the output tokens were reasoning


NOTHING = Signal()
CONTENT = Signal(content=True)
REASONING = Signal(content=True, reasoning=True)
TERMINAL = Signal(terminal=True)
UPSTREAM_ERROR = Signal(error=True)


@dataclass(frozen=True, slots=True)
class Usage:
    output_tokens: int | None = None
    input_tokens: int | None = None


class Dialect(Protocol):
    name: str

    def interpret(self, event: SSEEvent) -> Signal: ...

    def usage_from_body(self, body: Any) -> Usage: ...

    def error_body(self, error_type: str, message: str) -> dict[str, Any]: ...

    def error_event(self, error_type: str, message: str) -> bytes: ...

    def upstream_auth_headers(self, api_key: str) -> Mapping[str, str]: ...


def token_count(value: object) -> int | None:
    """A usage figure if it is a non-negative int (bools excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
