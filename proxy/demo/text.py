"""What the demo provider says, and how each dialect spells it on the wire. Pure, no I/O.

The reply is deterministic: an echo of the last user message plus a fixed pangram-like
continuation with non-ASCII letters and an emoji, split into word-ish tokens (leading whitespace
plus a word, or one other character) whose concatenation is exactly the reply text.

A renderer turns one answered request (`Call`) into a dialect's stream events (`head`, one
`token` event per token, `tail`) or its non-streaming JSON body, in the shapes the official
`openai` and `anthropic` SDKs parse.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Protocol

CONTINUATION = (
    "The quick brown fox jumps over the lazy dog; a naïve café robot waves 👋 token by token."
)
ECHO_WORDS = 6  # the echo quotes at most this many words of the user's message

_TOKEN = re.compile(r"\s*(?:\w+|\S)|\s+")

Event = tuple[str | None, Any]  # (SSE `event:` name or None, JSON payload or raw data string)
JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """The generated reply, capped at the request's token budget."""

    tokens: tuple[str, ...]
    truncated: bool  # the budget cut the reply short ("length" / "max_tokens")
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def tokenize(text: str) -> list[str]:
    """Split `text` into word-ish tokens; `"".join(tokenize(text)) == text`."""
    return _TOKEN.findall(text)


def reply_text(last_user: str) -> str:
    """The full (uncapped) reply to a user message."""
    words = last_user.split()
    if not words:
        return f"Hello! {CONTINUATION}"
    echo = " ".join(words[:ECHO_WORDS]) + ("…" if len(words) > ECHO_WORDS else "")
    return f"You said “{echo}”. {CONTINUATION}"


def make_reply(last_user: str, prompt_tokens: int, max_tokens: int) -> Reply:
    tokens = tokenize(reply_text(last_user))
    return Reply(tuple(tokens[:max_tokens]), len(tokens) > max_tokens, prompt_tokens)


@dataclass(frozen=True, slots=True)
class Call:
    """One request being answered: what every rendered event needs."""

    reply: Reply
    model: str
    ident: str  # unique suffix for the provider's ids
    created: int  # unix seconds
    include_usage: bool = False  # OpenAI `stream_options.include_usage`


class Renderer(Protocol):
    """One dialect's spelling of a call: its stream events, or its non-streaming body."""

    def head(self) -> list[Event]: ...  # sent before the first token ("thinking" comes after)
    def token(self, text: str) -> Event: ...
    def tail(self) -> list[Event]: ...
    def body(self) -> JSON: ...


class ChatRenderer:
    """`/v1/chat/completions`: a role chunk, content chunks, a finish chunk, usage, `[DONE]`."""

    prefix, chunk_object, body_object = "chatcmpl", "chat.completion.chunk", "chat.completion"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.finish = "length" if call.reply.truncated else "stop"

    def _choice(self, delta: dict[str, str], finish: str | None = None) -> JSON:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _chunk(self, choices: list[JSON], usage: JSON | None = None) -> JSON:
        call = self.call
        chunk: JSON = {
            "id": f"{self.prefix}-{call.ident}",
            "object": self.chunk_object,
            "created": call.created,
            "model": call.model,
            "choices": choices,
        }
        if call.include_usage:  # then every chunk has `usage`, null until the last
            chunk["usage"] = usage
        return chunk

    def _usage(self) -> JSON:
        reply = self.call.reply
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.total_tokens,
        }

    def head(self) -> list[Event]:
        return [(None, self._chunk([self._choice({"role": "assistant", "content": ""})]))]

    def token(self, text: str) -> Event:
        return None, self._chunk([self._choice({"content": text})])

    def tail(self) -> list[Event]:
        events: list[Event] = [(None, self._chunk([self._choice({}, self.finish)]))]
        if self.call.include_usage:
            events.append((None, self._chunk([], self._usage())))
        return [*events, (None, "[DONE]")]

    def _final_choice(self) -> JSON:
        message = {"role": "assistant", "content": self.call.reply.text, "refusal": None}
        return {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}

    def body(self) -> JSON:
        body = self._chunk([self._final_choice()])
        return body | {"object": self.body_object, "usage": self._usage()}


class CompletionRenderer(ChatRenderer):
    """`/v1/completions` (legacy): `text_completion` chunks carrying `choices[0].text`."""

    prefix, chunk_object, body_object = "cmpl", "text_completion", "text_completion"

    def _choice(self, delta: dict[str, str], finish: str | None = None) -> JSON:
        text = delta.get("content", "")
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    def _final_choice(self) -> JSON:
        return self._choice({"content": self.call.reply.text}, self.finish)

    def head(self) -> list[Event]:
        return []


class ResponsesRenderer:
    """`/v1/responses`: typed, numbered events from `response.created` to `response.completed`.

    A reply cut short by `max_output_tokens` ends with `response.incomplete`, as OpenAI's does.
    """

    def __init__(self, call: Call) -> None:
        self.call = call
        self.status = "incomplete" if call.reply.truncated else "completed"
        self._sequence = itertools.count()
        self._where = {"item_id": f"msg_{call.ident}", "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> Event:
        return kind, {"type": kind, "sequence_number": next(self._sequence), **fields}

    def _part(self, text: str) -> JSON:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _item(self, status: str, parts: list[JSON]) -> JSON:
        item_id = self._where["item_id"]
        return {"id": item_id, "type": "message", "status": status, "role": "assistant"} | {
            "content": parts
        }

    def _usage(self) -> JSON:
        reply = self.call.reply
        return {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.total_tokens,
        }

    def _response(self, *, final: bool) -> JSON:
        call, truncated = self.call, self.call.reply.truncated
        return {
            "id": f"resp_{call.ident}",
            "object": "response",
            "created_at": call.created,
            "status": self.status if final else "in_progress",
            "model": call.model,
            "output": [self._item(self.status, [self._part(call.reply.text)])] if final else [],
            "usage": self._usage() if final else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if final and truncated else None,
            "instructions": None,
            "metadata": {},
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "text": {"format": {"type": "text"}},
        }

    def head(self) -> list[Event]:
        item = self._item("in_progress", [])
        return [
            self._event("response.created", response=self._response(final=False)),
            self._event("response.in_progress", response=self._response(final=False)),
            self._event("response.output_item.added", output_index=0, item=item),
            self._event("response.content_part.added", **self._where, part=self._part("")),
        ]

    def token(self, text: str) -> Event:
        return self._event("response.output_text.delta", **self._where, delta=text, logprobs=[])

    def tail(self) -> list[Event]:
        text = self.call.reply.text
        item = self._item(self.status, [self._part(text)])
        return [
            self._event("response.output_text.done", **self._where, text=text, logprobs=[]),
            self._event("response.content_part.done", **self._where, part=self._part(text)),
            self._event("response.output_item.done", output_index=0, item=item),
            self._event(f"response.{self.status}", response=self._response(final=True)),
        ]

    def body(self) -> JSON:
        return self._response(final=True)


class AnthropicRenderer:
    """`/v1/messages`: named events from `message_start` to `message_stop`."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.stop_reason = "max_tokens" if call.reply.truncated else "end_turn"

    def _usage(self, output_tokens: int) -> JSON:
        """Usage as Anthropic sends it today, in `message_start`, `message_delta` and bodies:
        cumulative input figures (no prompt caching here) beside the output tokens."""
        return {
            "input_tokens": self.call.reply.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    def _message(self, content: list[JSON], *, final: bool) -> JSON:
        call, reply = self.call, self.call.reply
        return {
            "id": f"msg_{call.ident}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": self.stop_reason if final else None,
            "stop_sequence": None,
            "usage": self._usage(reply.completion_tokens if final else 1),
        }

    def head(self) -> list[Event]:
        start = {"type": "content_block_start", "index": 0}
        return [
            ("message_start", {"type": "message_start", "message": self._message([], final=False)}),
            ("content_block_start", start | {"content_block": {"type": "text", "text": ""}}),
            ("ping", {"type": "ping"}),
        ]

    def token(self, text: str) -> Event:
        delta = {"type": "text_delta", "text": text}
        return "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}

    def tail(self) -> list[Event]:
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        usage = self._usage(self.call.reply.completion_tokens)
        return [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def body(self) -> JSON:
        return self._message([{"type": "text", "text": self.call.reply.text}], final=True)
