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

from dataclasses import dataclass

from proxy.core.dialects import Signal
from proxy.core.errors import Outcome


@dataclass(frozen=True, slots=True)
class StreamReport:
    request_id: str
    user: str | None
    route: str | None
    upstream: str | None
    model: str | None
    stream: bool
    status: int
    outcome: Outcome
    duration_s: float
    ttft_s: float | None
    upstream_first_byte_s: float | None
    output_tokens: int | None
    tokens_source: str | None
    input_tokens: int | None
    tokens_per_s: float | None
    heartbeats: int
    bytes_out: int
    error: str | None


@dataclass(slots=True)
class RequestRecord:
    """Everything one request learns on its way; mutated by the phases, read once at the end."""

    request_id: str
    started: float
    user: str | None = None
    route: str | None = None
    upstream: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0
    outcome: Outcome = Outcome.INTERNAL_ERROR
    error: str | None = None
    upstream_started: float | None = None
    upstream_first_byte: float | None = None
    first_content: float | None = None
    last_content: float | None = None
    content_events: int = 0
    usage_output_tokens: int | None = None
    input_tokens: int | None = None
    terminated: bool = False
    upstream_reported_error: bool = False
    usage_reasoning_tokens: int | None = None
    reasoning_streamed: bool = False
    heartbeats: int = 0
    bytes_out: int = 0
    settled: bool = False

    def settle(self, outcome: Outcome, status: int, error: str | None = None) -> None:
        """Fix how the request ended; the first (innermost, most specific) call wins."""
        if self.settled:
            return
        self.settled = True
        self.outcome, self.status, self.error = outcome, status, error

    def on_signal(self, signal: Signal, written_at: float) -> None:
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
        if signal.error:
            self.upstream_reported_error = True

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

    def report(self, finished: float) -> StreamReport:
        output_tokens, source = self.output_tokens()
        first_byte = None
        if self.upstream_first_byte is not None and self.upstream_started is not None:
            first_byte = self.upstream_first_byte - self.upstream_started
        return StreamReport(
            request_id=self.request_id,
            user=self.user,
            route=self.route,
            upstream=self.upstream,
            model=self.model,
            stream=self.stream,
            status=self.status,
            outcome=self.outcome,
            duration_s=finished - self.started,
            ttft_s=None if self.first_content is None else self.first_content - self.started,
            upstream_first_byte_s=first_byte,
            output_tokens=output_tokens,
            tokens_source=source,
            input_tokens=self.input_tokens,
            tokens_per_s=self.tokens_per_second(output_tokens),
            heartbeats=self.heartbeats,
            bytes_out=self.bytes_out,
            error=self.error,
        )
