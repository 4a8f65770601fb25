"""The OpenAI-compatible dialect: chat completions, legacy completions and the Responses API.

Chat/completions streams are `data: {json}` chunks ended by `data: [DONE]`; content is a non-empty
`delta.content`, `delta.tool_calls`, a reasoning delta, or a completion's `text`; usage arrives in
a final chunk (`stream_options.include_usage`). Responses API streams carry a `type` in each
event, content in `response.*.delta` events, and end with `response.completed` (or `.incomplete`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.providers import (
    CONTENT,
    NOTHING,
    TERMINAL,
    UPSTREAM_ERROR,
    Signal,
    Usage,
    token_count,
)
from proxy.sse import SSEEvent

_REASONING_KEYS = ("reasoning_content", "reasoning")
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete"})
_RESPONSES_ERROR = frozenset({"response.failed", "error"})


def _choice_has_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("text"):  # legacy completions
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    if delta.get("content") or delta.get("tool_calls") or delta.get("function_call"):
        return True
    return any(delta.get(key) for key in _REASONING_KEYS)


def _chat_signal(chunk: dict[str, Any]) -> Signal:
    if chunk.get("error"):
        return UPSTREAM_ERROR
    usage = chunk.get("usage")
    choices = chunk.get("choices")
    content = isinstance(choices, list) and any(_choice_has_content(c) for c in choices)
    if isinstance(usage, dict):
        return Signal(
            content=content,
            output_tokens=token_count(usage.get("completion_tokens")),
            input_tokens=token_count(usage.get("prompt_tokens")),
        )
    return CONTENT if content else NOTHING


def _responses_signal(event_type: str, body: dict[str, Any]) -> Signal:
    if event_type.endswith(".delta"):
        return CONTENT if body.get("delta") else NOTHING
    if event_type in _RESPONSES_ERROR:
        return UPSTREAM_ERROR
    if event_type not in _RESPONSES_TERMINAL:
        return NOTHING
    response = body.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return TERMINAL
    return Signal(
        terminal=True,
        output_tokens=token_count(usage.get("output_tokens")),
        input_tokens=token_count(usage.get("input_tokens")),
    )


class OpenAIDialect:
    name = "openai"

    def interpret(self, event: SSEEvent) -> Signal:
        data = event.data
        if data == "[DONE]":
            return TERMINAL
        if not data.startswith("{"):
            return NOTHING
        try:
            body = json.loads(data)
        except ValueError:
            return NOTHING
        if not isinstance(body, dict):
            return NOTHING
        event_type = body.get("type")
        if isinstance(event_type, str) and event_type.startswith(("response.", "error")):
            return _responses_signal(event_type, body)
        return _chat_signal(body)

    def usage_from_body(self, body: Any) -> Usage:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return Usage()
        if "completion_tokens" in usage or "prompt_tokens" in usage:
            return Usage(
                token_count(usage.get("completion_tokens")),
                token_count(usage.get("prompt_tokens")),
            )
        return Usage(
            token_count(usage.get("output_tokens")), token_count(usage.get("input_tokens"))
        )

    def error_body(self, error_type: str, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": error_type, "code": error_type}}

    def error_event(self, error_type: str, message: str) -> bytes:
        payload = json.dumps(self.error_body(error_type, message), ensure_ascii=False)
        return b"data: " + payload.encode() + b"\n\n"

    def upstream_auth_headers(self, api_key: str) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {api_key}"}


OPENAI = OpenAIDialect()
