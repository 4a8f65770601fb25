"""Monkeypatches of the running proxy's parts: a bug planted in a dialect, a spy on the limiter."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.core.dialects import Signal
from proxy.core.dialects.openai import OPENAI
from proxy.core.sse import SSEEvent
from tests.support.running_proxy import RunningProxy


def explode_on_boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the OpenAI dialect: interpreting an event that says "boom" raises."""
    interpret = OPENAI.interpret

    def broken(event: SSEEvent) -> Signal:
        if "boom" in event.data:
            raise RuntimeError("dialect bug")
        return interpret(event)

    monkeypatch.setattr(OPENAI, "interpret", broken)


def spy_on_acquire(monkeypatch: pytest.MonkeyPatch, proxy: RunningProxy) -> list[str]:
    """The users the proxy asks the limiter for a slot for."""
    calls: list[str] = []
    original = proxy.limiter.acquire

    def acquire(user: str, limit: int) -> Any:
        calls.append(user)
        return original(user, limit)

    monkeypatch.setattr(proxy.limiter, "acquire", acquire)
    return calls
