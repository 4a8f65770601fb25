"""What a client asks the proxy for: a streamed chat completion, a plain one, a streamed
message; by dialect, with the path of its route (routes are named after their dialect)."""

from __future__ import annotations

import copy
from typing import Any

CHAT = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
PLAIN = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {
    "model": "claude-test",
    "stream": True,
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


def payload(dialect: str) -> dict[str, Any]:
    """A streaming request in the dialect (a copy: callers may change it)."""
    return copy.deepcopy(MESSAGES if dialect == "anthropic" else CHAT)
