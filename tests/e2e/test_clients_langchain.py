"""LangChain's chat models (`langchain-openai`, `langchain-anthropic`) as real clients of the proxy.

Client -> proxy -> demo provider, all on 127.0.0.1, streaming and not, with the base URLs the
README's client table gives. A guard fails the test if anything in it (a tokenizer download,
telemetry, a proxy from the environment) connects or resolves a name beyond the loopback.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from proxy.demo.app import DemoSettings, create_demo_app
from proxy.demo.text import reply_text
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy

USER_TEXT = "Hello there, how are you?"
PROMPT_WORDS = 5  # the demo counts the words of every prompt text
REPLY = reply_text(USER_TEXT)  # 32 tokens, under the demo's default budget of 40
REPLY_TOKENS = 32


# --- nothing beyond 127.0.0.1 ------------------------------------------------------------------


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every connection and name lookup beyond the loopback is refused and recorded; the test
    fails on any, even one a library swallowed. Proxy and tracing variables are cleared."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith(("LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            attempts.append(f"connect {address[0]}")
            raise ConnectionRefusedError(f"test guard: no connections beyond 127.0.0.1 ({address})")

    def connect(self: socket.socket, address: Any) -> None:
        refuse(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            attempts.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, "test guard: no name lookups")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], "the test tried to reach beyond 127.0.0.1"


# --- the proxy in front of the demo provider ------------------------------------------------------


@pytest.fixture
async def demo_proxy(
    start_proxy: ProxyFactory, loopback_only: list[str]
) -> AsyncIterator[RunningProxy]:
    runner = web.AppRunner(create_demo_app(DemoSettings(0, 0)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    demo_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def to_demo(document: dict[str, Any]) -> None:
        for route in document["routes"]:
            route["upstreams"] = [{"name": "demo", "url": demo_url}]

    try:
        yield await start_proxy(to_demo)
    finally:
        await runner.cleanup()


def chat_openai(proxy: RunningProxy) -> ChatOpenAI:
    """The README's setup: `base_url` is the proxy with `/v1`, the key is the proxy key."""
    return ChatOpenAI(
        model="demo-model", base_url=proxy.url + "/v1", api_key=SecretStr(CANARY_CLIENT_KEY),
        max_retries=0, stream_usage=True,
        http_client=httpx.Client(trust_env=False),
        http_async_client=httpx.AsyncClient(trust_env=False),
    )  # fmt: skip


def chat_anthropic(proxy: RunningProxy) -> ChatAnthropic:
    """The README's setup: `base_url` is the proxy's root (the SDK adds `/v1/messages`)."""
    return ChatAnthropic(
        model="demo-model", base_url=proxy.url, api_key=SecretStr(CANARY_CLIENT_KEY),
        max_retries=0, max_tokens=100, timeout=30, stop=None,
    )  # fmt: skip


def joined(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    return whole


def assert_usage(message: AIMessage) -> None:
    usage = message.usage_metadata
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"]) == (PROMPT_WORDS, REPLY_TOKENS)
    assert usage["total_tokens"] == PROMPT_WORDS + REPLY_TOKENS


async def assert_logged(proxy: RunningProxy, count: int, route: str, stream: bool) -> None:
    line = await proxy.finished_line(count)
    assert (line["route"], line["stream"], line["outcome"]) == (route, stream, "completed")
    assert (line["user"], line["output_tokens"], line["input_tokens"]) == (
        "alice", REPLY_TOKENS, PROMPT_WORDS
    )  # fmt: skip


# --- the tests ------------------------------------------------------------------------------------


async def test_chat_openai_invoke_and_stream(demo_proxy: RunningProxy) -> None:
    model = chat_openai(demo_proxy)

    whole = await model.ainvoke(USER_TEXT)
    await assert_logged(demo_proxy, 1, "openai", stream=False)
    chunks = [chunk async for chunk in model.astream(USER_TEXT)]
    await assert_logged(demo_proxy, 2, "openai", stream=True)

    assert whole.content == REPLY
    assert_usage(whole)
    assert len(chunks) > REPLY_TOKENS  # token by token, not one piece
    streamed = joined(chunks)
    assert streamed.content == REPLY
    assert_usage(streamed)


async def test_chat_anthropic_invoke_and_stream(demo_proxy: RunningProxy) -> None:
    model = chat_anthropic(demo_proxy)

    whole = await model.ainvoke(USER_TEXT)
    await assert_logged(demo_proxy, 1, "anthropic", stream=False)
    chunks = [chunk async for chunk in model.astream(USER_TEXT)]
    await assert_logged(demo_proxy, 2, "anthropic", stream=True)

    assert whole.content == REPLY
    assert_usage(whole)
    assert len(chunks) > REPLY_TOKENS
    streamed = joined(chunks)
    assert "".join(str(block.get("text", "")) for block in streamed.content_blocks) == REPLY
    assert_usage(streamed)  # LangChain takes input tokens from message_delta's usage too


def test_the_guard_catches_a_connection_beyond_the_loopback(loopback_only: list[str]) -> None:
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("example.com", 443)
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("192.0.2.1", 443))  # TEST-NET-1: refused by the guard before any packet
    assert loopback_only == ["resolve example.com", "connect 192.0.2.1"]
    loopback_only.clear()  # this test's attempts were on purpose
