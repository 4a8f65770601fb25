"""The Anthropic Messages dialect.

Events are named (`event: content_block_delta` ...). Content is a non-empty text, tool-input or
thinking delta; input tokens come in `message_start`, cumulative output tokens in
`message_delta.usage`; `message_stop` ends the stream; `event: error` is the upstream's own error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.core.dialects.base import (
    CONTENT,
    NOTHING,
    TERMINAL,
    UPSTREAM_ERROR,
    Signal,
    Usage,
    token_count,
)
from proxy.core.sse import SSEEvent

_CONTENT_DELTA_KEYS = ("text", "partial_json", "thinking")
_INPUT_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _json_object(data: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def input_tokens_of(usage: Any) -> int | None:
    """Input tokens including cache writes and reads: what the request really consumed."""
    if not isinstance(usage, dict):
        return None
    counts = [token_count(usage.get(key)) for key in _INPUT_KEYS]
    present = [count for count in counts if count is not None]
    return sum(present) if present else None


def _delta_signal(body: dict[str, Any]) -> Signal:
    delta = body.get("delta")
    if isinstance(delta, dict) and any(delta.get(key) for key in _CONTENT_DELTA_KEYS):
        return CONTENT
    return NOTHING


def _message_delta_signal(body: dict[str, Any]) -> Signal:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return NOTHING
    return Signal(
        output_tokens=token_count(usage.get("output_tokens")),
        input_tokens=input_tokens_of(usage),
    )


def _message_start_signal(body: dict[str, Any]) -> Signal:
    message = body.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    return Signal(input_tokens=input_tokens_of(usage))


class AnthropicDialect:
    name = "anthropic"

    def interpret(self, event: SSEEvent) -> Signal:
        kind = event.event
        if kind == "content_block_delta":
            return _delta_signal(_json_object(event.data))
        if kind == "message_delta":
            return _message_delta_signal(_json_object(event.data))
        if kind == "message_stop":
            return TERMINAL
        if kind == "message_start":
            return _message_start_signal(_json_object(event.data))
        if kind == "error":
            return UPSTREAM_ERROR
        return NOTHING

    def usage_from_body(self, body: Any) -> Usage:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return Usage()
        return Usage(token_count(usage.get("output_tokens")), input_tokens_of(usage))

    def error_body(self, error_type: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type, "message": message}}

    def error_event(self, error_type: str, message: str) -> bytes:
        payload = json.dumps(self.error_body(error_type, message), ensure_ascii=False)
        return b"event: error\ndata: " + payload.encode() + b"\n\n"

    def upstream_auth_headers(self, api_key: str) -> Mapping[str, str]:
        return {"x-api-key": api_key}


ANTHROPIC = AnthropicDialect()
