"""Per-request record (pure): timestamped signals in, one `StreamReport` out.

Definitions (see docs in README "Metrics"):
- TTFT: from the proxy receiving the request to writing the first event that carries generated
  content to the client. Role-only chunks, `message_start`, pings and heartbeats are not content.
- Output tokens: the provider's usage figure when the stream carried one (source `usage`),
  otherwise the number of content events (source `counted`).
- Tokens per second: output tokens over the time from the first to the last content event; only
  for streams with at least two content events. Reasoning tokens that the usage counts but the
  stream never carried (OpenAI's hidden reasoning) are left out: they were produced before the
  first content event, not at the rate the client saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from proxy.core.attempts import Attempt
from proxy.core.dialects import Signal, Usage
from proxy.core.endings import Ending
from proxy.core.errors import Outcome, Source

_IN_MS: dict[str, Any] = {"log": "ms"}  # logged as `<name without _s>_ms`, in milliseconds
_TWO_DECIMALS: dict[str, Any] = {"log": "2dp"}


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What one request came to; its fields, in order, are the `stream.finished` log line."""

    request_id: str
    method: str | None  # None: the request line could not be parsed
    path: str | None
    user: str | None
    route: str | None
    upstream: str | None
    model: str | None
    stream: bool
    status: int
    outcome: Outcome
    ttft_s: float | None = field(metadata=_IN_MS)
    duration_s: float = field(metadata=_IN_MS)
    upstream_first_byte_s: float | None = field(metadata=_IN_MS)
    output_tokens: int | None
    tokens_source: str | None
    input_tokens: int | None
    tokens_per_s: float | None = field(metadata=_TWO_DECIMALS)
    heartbeats: int
    bytes_out: int
    error: str | None
    error_source: Source | None
    attempts: tuple[Attempt, ...]

    def log_fields(self) -> dict[str, Any]:
        """The log line's fields: seconds as milliseconds, enums as strings, attempts as lists."""
        line: dict[str, Any] = {}
        for each in fields(self):
            name, value, how = each.name, getattr(self, each.name), each.metadata.get("log")
            if how == "ms":
                name, value = name.removesuffix("_s") + "_ms", _rounded(value, 1000, 1)
            elif how == "2dp":
                value = _rounded(value, 1, 2)
            elif isinstance(value, Outcome | Source):
                value = str(value)
            elif name == "attempts":
                value = [attempt.log_fields() for attempt in value]
            line[name] = value
        return line


def _rounded(value: float | None, scale: float, digits: int) -> float | None:
    return None if value is None else round(value * scale, digits)


@dataclass(slots=True)
class RequestRecord:
    """Everything one request learns on its way, as signals from the phases; read once, at the
    end, into a `StreamReport`. Nothing branches on it."""

    request_id: str
    started: float
    method: str | None = None
    path: str | None = None
    user: str | None = None
    route: str | None = None
    upstream: str | None = None
    model: str | None = None
    stream: bool = False
    attempts: tuple[Attempt, ...] = ()
    upstream_started: float | None = None
    upstream_first_byte: float | None = None
    first_content: float | None = None
    last_content: float | None = None
    content_events: int = 0
    usage_output_tokens: int | None = None
    input_tokens: int | None = None
    terminated: bool = False
    usage_reasoning_tokens: int | None = None
    reasoning_streamed: bool = False
    heartbeats: int = 0
    bytes_out: int = 0

    def on_attempt_started(self, upstream: str, at: float) -> None:
        self.upstream, self.upstream_started = upstream, at

    def on_attempts(self, attempts: tuple[Attempt, ...]) -> None:
        self.attempts = attempts

    def on_upstream_first_byte(self, at: float) -> None:
        if self.upstream_first_byte is None:
            self.upstream_first_byte = at

    def on_written(self, size: int) -> None:
        self.bytes_out += size

    def on_heartbeat(self) -> None:
        self.heartbeats += 1

    def on_usage(self, usage: Usage) -> None:
        """The usage figures of a whole (non-streamed) body."""
        self.usage_output_tokens, self.input_tokens = usage.output_tokens, usage.input_tokens

    def on_event(self, signal: Signal, written_at: float) -> None:
        """Account one event that was written to the client at `written_at`."""
        if signal.content:
            if self.first_content is None:
                self.first_content = written_at
            self.last_content = written_at
            self.content_events += 1
            if signal.reasoning:
                self.reasoning_streamed = True
        if signal.output_tokens is not None:
            self.usage_output_tokens = signal.output_tokens
            self.usage_reasoning_tokens = signal.reasoning_tokens
        if signal.input_tokens is not None:
            self.input_tokens = signal.input_tokens
        if signal.terminal:
            self.terminated = True

    def output_tokens(self) -> tuple[int | None, str | None]:
        if self.usage_output_tokens is not None:
            return self.usage_output_tokens, "usage"
        if self.stream and (self.content_events or self.terminated):
            return self.content_events, "counted"
        return None, None

    def tokens_per_second(self, output_tokens: int | None) -> float | None:
        if output_tokens is None or self.content_events < 2:
            return None
        assert self.first_content is not None and self.last_content is not None
        span = self.last_content - self.first_content
        streamed = output_tokens - self._unstreamed_reasoning_tokens()
        return streamed / span if span > 0 and streamed > 0 else None

    def _unstreamed_reasoning_tokens(self) -> int:
        if self.usage_output_tokens is None or self.reasoning_streamed:
            return 0
        return self.usage_reasoning_tokens or 0

    def report(self, finished: float, ending: Ending) -> StreamReport:
        output_tokens, source = self.output_tokens()
        first_byte = None
        if self.upstream_first_byte is not None and self.upstream_started is not None:
            first_byte = self.upstream_first_byte - self.upstream_started
        return StreamReport(
            request_id=self.request_id,
            method=self.method,
            path=self.path,
            user=self.user,
            route=self.route,
            upstream=self.upstream,
            model=self.model,
            stream=self.stream,
            status=ending.status,
            outcome=ending.outcome,
            duration_s=finished - self.started,
            ttft_s=None if self.first_content is None else self.first_content - self.started,
            upstream_first_byte_s=first_byte,
            output_tokens=output_tokens,
            tokens_source=source,
            input_tokens=self.input_tokens,
            tokens_per_s=self.tokens_per_second(output_tokens),
            heartbeats=self.heartbeats,
            bytes_out=self.bytes_out,
            error=ending.error,
            error_source=ending.error_source,
            attempts=self.attempts,
        )
