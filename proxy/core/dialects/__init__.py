"""Provider dialects (pure): what an event means, and how errors are shaped for a client.

A dialect never touches I/O. It turns one parsed SSE event into a `Signal` (content? terminator?
usage?) and renders the proxy's own errors in the shape the provider's SDK expects.
"""

from __future__ import annotations

from proxy.core.dialects.anthropic import ANTHROPIC
from proxy.core.dialects.base import Dialect, Signal, Usage
from proxy.core.dialects.openai import OPENAI

__all__ = ["ANTHROPIC", "OPENAI", "Dialect", "Signal", "Usage", "dialect_for"]


def dialect_for(provider: str) -> Dialect:
    return ANTHROPIC if provider == "anthropic" else OPENAI
