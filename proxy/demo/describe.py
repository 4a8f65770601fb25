"""What the demo's display says about each SSE event on the wire (pure: no I/O).

`BlockReader` cuts a response body, chunk by chunk, into its SSE blocks (the raw lines of each
event, comments included: the display shows heartbeats too, which the proxy's own parser in
`proxy.core.sse` deliberately drops). `describe` turns one block into a few words: the text a
content event carries (quoted, so a leading space shows), or a short name for the rest (role
chunk, `message_start`, usage, finish, `[DONE]`/`message_stop`, errors), for the OpenAI chat
and completions dialects and Anthropic's messages; other events are named by their type.
"""

from __future__ import annotations

import codecs
import json
from typing import Any

Block = list[str]  # the lines of one SSE event block, without line endings


class BlockReader:
    """Complete SSE blocks from a body arriving in chunks; any of CRLF, LF, CR ends a line."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""  # the line under way
        self._lines: Block = []  # complete lines of the block under way
        self._after_cr = False  # the last line ended with CR: an LF next is part of that end

    def feed(self, chunk: bytes) -> list[Block]:
        text = self._decoder.decode(chunk)
        if self._after_cr and text.startswith("\n"):
            text, self._after_cr = text[1:], False
        if text:
            self._after_cr = text.endswith("\r")
        text = (self._pending + text).replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._pending = text.split("\n")
        blocks = []
        for line in lines:
            if line:
                self._lines.append(line)
            elif self._lines:
                blocks.append(self._lines)
                self._lines = []
        return blocks


def fields(block: Block) -> tuple[str | None, str | None, list[str]]:
    """(the `event:` name, the `data:` lines joined, the comment lines) of one block."""
    name, data, comments = None, [], []
    for line in block:
        if line.startswith(":"):
            comments.append(line)
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return name, "\n".join(data) if data else None, comments


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def shortened(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parsed(data: str | None) -> dict[str, Any] | None:
    """A data field's JSON object, or None (no data, `[DONE]`, not JSON, not an object)."""
    try:
        payload = json.loads(data) if data is not None and data != "[DONE]" else None
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def describe(block: Block) -> str:
    """A few words for one event; the text it carries in quotes."""
    name, data, comments = fields(block)
    if data is None:
        return "heartbeat " + " ".join(comments) if comments else "(empty event)"
    if data == "[DONE]":
        return "[DONE]"
    payload = _parsed(data)
    if payload is None:
        return f"{name or 'data'}: {shortened(data)}"
    if name is not None or "type" in payload:
        return _anthropic(name or str(payload.get("type")), payload)
    return _openai(payload)


def text_of(block: Block) -> str:
    """The generated text an event carries ("" for the others), to join a whole reply."""
    payload = _parsed(fields(block)[1])
    return "" if payload is None else _text(payload)


def _text(payload: dict[str, Any]) -> str:
    if payload.get("type") == "content_block_delta":  # Anthropic
        delta = payload.get("delta")
        text = delta.get("text") if isinstance(delta, dict) else None
    else:  # OpenAI chat (`delta.content`) or completions (`text`)
        choice = _first_choice(payload)
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
    return text if isinstance(text, str) else ""


def _first_choice(chunk: dict[str, Any]) -> dict[str, Any]:
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    return choice if isinstance(choice, dict) else {}


# --- the dialects ------------------------------------------------------------------------------


def _usage(usage: Any, input_key: str, output_key: str) -> str:
    if not isinstance(usage, dict):
        return ""
    return f"usage: {usage.get(input_key)} input, {usage.get(output_key)} output tokens"


def _openai(chunk: dict[str, Any]) -> str:
    error = chunk.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else error
        return f"error: {message}"
    words = []
    choice = _first_choice(chunk)
    delta = choice.get("delta")
    if isinstance(delta, dict) and delta.get("role"):
        words.append(f"role: {delta['role']}")
    if text := _text(chunk):
        words.append(quoted(text))
    if choice.get("finish_reason"):
        words.append(f"finish_reason: {choice['finish_reason']}")
    if chunk.get("usage"):
        words.append(_usage(chunk["usage"], "prompt_tokens", "completion_tokens"))
    return ", ".join(words) or "(no text)"


def _anthropic(kind: str, event: dict[str, Any]) -> str:
    if kind == "content_block_delta":
        delta = event.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        for key in ("text", "thinking", "partial_json"):
            if isinstance(delta.get(key), str):
                return quoted(delta[key]) if key == "text" else f"{key}: {quoted(delta[key])}"
    if kind == "message_start":
        message = event.get("message")
        usage = message.get("usage") if isinstance(message, dict) else None
        return f"message_start, {_usage(usage, 'input_tokens', 'output_tokens')}"
    if kind == "message_delta":
        delta = event.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        return f"message_delta, stop_reason: {stop}, " + _usage(
            event.get("usage"), "input_tokens", "output_tokens"
        )
    if kind == "error":
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        return f"error: {error.get('type')}: {error.get('message')}"
    return kind
