"""The OpenAI-compatible dialect: chat completions, legacy completions and the Responses API.

Chat/completions streams are `data: {json}` chunks ended by `data: [DONE]`; content is a non-empty
`delta.content`, `delta.tool_calls`, a refusal, audio, a reasoning delta, or a completion's `text`;
usage arrives in a final chunk (`stream_options.include_usage`). Responses API streams carry a
`type` in each event, content in `response.*.delta` events, and end with `response.completed` (or
`.incomplete`). Usage may say how many output tokens were reasoning (`*_tokens_details`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from proxy.core.dialects.base import (
    CONTENT,
    NOTHING,
    REASONING,
    TERMINAL,
    UPSTREAM_ERROR,
    Signal,
    Usage,
    token_count,
)
from proxy.core.sse import SSEEvent

_CONTENT_KEYS = ("tool_calls", "function_call", "refusal", "audio")  # besides "content"
_REASONING_KEYS = ("reasoning_content", "reasoning")  # raw reasoning (DeepSeek, vLLM, ...)
_RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete"})
_RESPONSES_ERROR = frozenset({"response.failed", "error"})
_RESPONSES_REASONING = "response.reasoning_text.delta"  # raw; summaries are content only


def _choice_signal(choice: Any) -> Signal:
    if not isinstance(choice, dict):
        return NOTHING
    if choice.get("text"):  # legacy completions
        return CONTENT
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return NOTHING
    if delta.get("content") or any(delta.get(key) for key in _CONTENT_KEYS):
        return CONTENT
    if any(delta.get(key) for key in _REASONING_KEYS):
        return REASONING
    return NOTHING


def _reasoning_tokens(usage: dict[str, Any], details_key: str) -> int | None:
    details = usage.get(details_key)
    return token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else None


def _chat_signal(chunk: dict[str, Any]) -> Signal:
    if chunk.get("error"):
        return UPSTREAM_ERROR
    signal = NOTHING
    choices = chunk.get("choices")
    if isinstance(choices, list):
        signal = next((s for s in map(_choice_signal, choices) if s is not NOTHING), NOTHING)
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return signal
    return Signal(
        content=signal.content,
        reasoning=signal.reasoning,
        output_tokens=token_count(usage.get("completion_tokens")),
        input_tokens=token_count(usage.get("prompt_tokens")),
        reasoning_tokens=_reasoning_tokens(usage, "completion_tokens_details"),
    )


def _responses_signal(event_type: str, body: dict[str, Any]) -> Signal:
    if event_type.endswith(".delta"):
        if not body.get("delta"):
            return NOTHING
        return REASONING if event_type == _RESPONSES_REASONING else CONTENT
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
        reasoning_tokens=_reasoning_tokens(usage, "output_tokens_details"),
    )


class OpenAIDialect:
    name = "openai"

    def interpret(self, event: SSEEvent) -> Signal:
        data = event.data
        if data.startswith("[DONE]"):  # as the SDK reads it: what follows is ignored
            return TERMINAL
        if not data.startswith("{"):
            data = data.lstrip()  # `data:  {...}`: JSON after more than the one space SSE drops
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
