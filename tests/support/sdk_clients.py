"""The official SDKs' async clients for tests: no retries, and no proxy from the environment.

httpx (under both SDKs) honours HTTP(S)_PROXY by default; a test's traffic must stay on
127.0.0.1 whatever the machine's environment says.
"""

from __future__ import annotations

import anthropic
import openai


def local_openai(base_url: str, api_key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=base_url, api_key=api_key, max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
    )  # fmt: skip


def local_anthropic(base_url: str, api_key: str = "x") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=base_url, api_key=api_key, max_retries=0,
        http_client=anthropic.DefaultAsyncHttpxClient(trust_env=False),
    )  # fmt: skip
