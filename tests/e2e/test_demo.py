"""The demo provider, checked directly (no proxy) with the official openai and anthropic SDKs."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from anthropic.types import MessageParam, TextBlock
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import ResponseInputParam
from pytest_aiohttp import AiohttpClient, AiohttpServer

from proxy.demo.app import DemoSettings, create_demo_app
from proxy.demo.text import tokenize
from tests.support.sdk_clients import local_anthropic, local_openai
from tests.support.waits import eventually

FAST = DemoSettings(token_delay_s=0, first_token_delay_s=0)
CHAT: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello there, how are you?"},
]
PROMPT_WORDS = 8  # words in CHAT
Client = TestClient[web.Request, web.Application]  # of an app
ServerClient = TestClient[web.Request, None]  # of a server already running


@pytest.fixture
async def demo(aiohttp_server: AiohttpServer) -> TestServer:
    server: TestServer = await aiohttp_server(create_demo_app(FAST))
    return server


@pytest.fixture
async def http(demo: TestServer, aiohttp_client: AiohttpClient) -> ServerClient:
    client: ServerClient = await aiohttp_client(demo)
    return client


@pytest.fixture
async def oai(demo: TestServer) -> AsyncIterator[openai.AsyncOpenAI]:
    base = f"http://127.0.0.1:{demo.port}/v1"
    async with local_openai(base) as client:
        yield client


@pytest.fixture
async def claude(demo: TestServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    base = f"http://127.0.0.1:{demo.port}"
    async with local_anthropic(base) as client:
        yield client


# --- chat completions --------------------------------------------------------------------------


async def test_chat_stream_joins_to_the_non_streaming_text_with_usage(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.chat.completions.create(
        model="demo-1", messages=CHAT, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    whole = await oai.chat.completions.create(model="demo-1", messages=CHAT)

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    content = [c.choices[0].delta.content or "" for c in chunks[1:-2]]
    assert "".join(content) == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(content)
    assert chunks[-1].usage.prompt_tokens == PROMPT_WORDS
    assert chunks[-1].usage.total_tokens == PROMPT_WORDS + len(content)
    assert whole.object == "chat.completion"
    assert whole.usage == chunks[-1].usage
    assert all(c.usage is None for c in chunks[:-1])


async def test_chat_reply_is_deterministic_unicode_and_echoes_the_user(
    oai: openai.AsyncOpenAI,
) -> None:
    first = await oai.chat.completions.create(model="m", messages=CHAT)
    again = await oai.chat.completions.create(model="m", messages=CHAT)
    text = first.choices[0].message.content
    assert text == again.choices[0].message.content
    assert text is not None
    assert "Hello there, how are you?" in text
    assert "naïve" in text
    assert "👋" in text
    assert first.model == "m"
    assert first.id != again.id


async def test_chat_stream_without_include_usage_has_no_usage_chunk(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.chat.completions.create(model="m", messages=CHAT, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(len(c.choices) == 1 and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
async def test_chat_max_tokens_caps_the_reply(oai: openai.AsyncOpenAI, key: str) -> None:
    budget = {key: 5}
    stream = await oai.chat.completions.create(
        model="m",
        messages=CHAT,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=budget,
    )
    chunks = [chunk async for chunk in stream]
    whole = await oai.chat.completions.create(model="m", messages=CHAT, extra_body=budget)

    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert whole.choices[0].finish_reason == "length"
    assert whole.choices[0].message.content == "You said “Hello there"


async def test_chat_default_budget_is_the_settings_default(
    aiohttp_server: AiohttpServer,
) -> None:
    server = await aiohttp_server(create_demo_app(DemoSettings(0, 0, default_max_tokens=3)))
    base = f"http://127.0.0.1:{server.port}/v1"
    async with local_openai(base) as client:
        whole = await client.chat.completions.create(model="m", messages=CHAT)
    assert whole.usage is not None
    assert whole.usage.completion_tokens == 3


# --- legacy completions ------------------------------------------------------------------------


async def test_completions_stream_and_non_streaming(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.completions.create(
        model="m", prompt="Say hi", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    whole = await oai.completions.create(model="m", prompt="Say hi")

    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert whole.choices[0].text.startswith("You said “Say hi”.")
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 2
    assert whole.usage == chunks[-1].usage


# --- responses ---------------------------------------------------------------------------------


async def test_responses_stream_events_and_final_response(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.responses.create(model="m", input="Hello there", stream=True)
    events = [event async for event in stream]
    whole = await oai.responses.create(model="m", input="Hello there")

    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == whole.output_text
    final = events[-1].response
    assert final.output_text == whole.output_text
    assert final.usage is not None
    assert final.usage.output_tokens == len(deltas)
    assert final.usage.input_tokens == 2
    assert whole.status == "completed"
    assert whole.usage is not None
    assert whole.usage.total_tokens == 2 + len(deltas)


async def test_responses_stream_helper_accumulates_the_text(oai: openai.AsyncOpenAI) -> None:
    messages: ResponseInputParam = [
        {"role": "user", "content": [{"type": "input_text", "text": "Ping pong"}]}
    ]
    async with oai.responses.stream(model="m", input=messages, instructions="Be nice") as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert final.output_text.startswith("You said “Ping pong”.")
    assert final.usage is not None
    assert final.usage.input_tokens == 4


async def test_responses_max_output_tokens_gives_an_incomplete_response(
    oai: openai.AsyncOpenAI,
) -> None:
    stream = await oai.responses.create(model="m", input="Hi", stream=True, max_output_tokens=16)
    events = [event async for event in stream]
    whole = await oai.responses.create(model="m", input="Hi", max_output_tokens=16)

    assert events[-1].type == "response.incomplete"
    assert len([e for e in events if e.type == "response.output_text.delta"]) == 16
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert len(tokenize(whole.output_text)) == 16


# --- anthropic messages ------------------------------------------------------------------------


async def test_anthropic_stream_helper_and_non_streaming(claude: anthropic.AsyncAnthropic) -> None:
    messages: list[MessageParam] = [{"role": "user", "content": "Hello there, how are you?"}]
    async with claude.messages.stream(
        model="demo", max_tokens=100, system="You are terse.", messages=messages
    ) as stream:
        text = "".join([chunk async for chunk in stream.text_stream])
        final = await stream.get_final_message()
    whole = await claude.messages.create(
        model="demo", max_tokens=100, system="You are terse.", messages=messages
    )

    assert isinstance(whole.content[0], TextBlock)
    assert isinstance(final.content[0], TextBlock)
    assert text == whole.content[0].text == final.content[0].text
    assert final.stop_reason == whole.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens == PROMPT_WORDS
    assert final.usage.output_tokens == whole.usage.output_tokens == len(tokenize(text))


async def test_anthropic_raw_stream_event_order_and_max_tokens(
    claude: anthropic.AsyncAnthropic,
) -> None:
    messages: list[MessageParam] = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    stream = await claude.messages.create(
        model="demo", max_tokens=4, messages=messages, stream=True
    )
    kinds = [event.type async for event in stream]
    whole = await claude.messages.create(model="demo", max_tokens=4, messages=messages)

    head = ["message_start", "content_block_start"]
    tail = ["content_block_stop", "message_delta", "message_stop"]
    assert kinds == [*head, *["content_block_delta"] * 4, *tail]  # the SDK drops `ping`
    assert whole.stop_reason == "max_tokens"
    assert whole.usage.output_tokens == 4


# --- wire details, errors, CLI ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "last_event"),
    [
        ("/v1/chat/completions", "data: [DONE]"),
        ("/v1/completions", "data: [DONE]"),
        ("/v1/responses", 'event: response.completed\ndata: {"type":"response.completed",'),
        ("/v1/messages", 'event: message_stop\ndata: {"type":"message_stop"}'),
    ],
)
async def test_raw_wire_format(http: ServerClient, path: str, last_event: str) -> None:
    body = {"model": "m", "messages": CHAT, "prompt": "x", "input": "x", "stream": True}
    async with http.post(path, json=body) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    assert raw.endswith("\n\n")
    events = raw.removesuffix("\n\n").split("\n\n")
    assert events[-1].startswith(last_event)
    assert "👋" in raw  # multi-byte UTF-8 on the wire, not \\u escapes
    assert ("[DONE]" in raw) == (path in {"/v1/chat/completions", "/v1/completions"})
    named = path in {"/v1/responses", "/v1/messages"}
    assert all(event.startswith("event: ") == named for event in events)


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"]
)
@pytest.mark.parametrize(
    "payload",
    [b"{not json", b"[1, 2]", b"[" * 20_000 + b"]" * 20_000],
    ids=["not-json", "not-an-object", "nested-too-deep"],
)
async def test_invalid_json_gets_the_providers_error_shape(
    http: ServerClient, path: str, payload: bytes
) -> None:
    async with http.post(path, data=payload) as response:
        assert response.status == 400
        body = await response.json()
    if path == "/v1/messages":
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"]
    else:
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] is None
        assert body["error"]["message"]


async def test_a_prompt_over_a_mebibyte_is_answered(http: ServerClient) -> None:
    """The proxy lets 20 MiB through by default; the demo behind it must not refuse at 1 MiB."""
    long = {"model": "demo", "messages": [{"role": "user", "content": "x" * 2_000_000}]}
    async with http.post("/v1/chat/completions", json=long) as response:
        assert response.status == 200
        assert (await response.json())["object"] == "chat.completion"


async def test_sdks_raise_bad_request_for_an_invalid_budget(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        await oai.chat.completions.create(model="m", messages=CHAT, max_tokens=0)
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        await claude.messages.create(model="m", max_tokens=5, messages="nope")  # type: ignore[arg-type]


async def test_pacing_delays_the_first_token_then_each_token(
    aiohttp_client: AiohttpClient,
) -> None:
    settings = DemoSettings(token_delay_s=0.01, first_token_delay_s=0.05)
    client: Client = await aiohttp_client(create_demo_app(settings))
    body = {"model": "m", "messages": CHAT, "stream": True, "max_tokens": 3}
    started = time.monotonic()
    async with client.post("/v1/chat/completions", json=body) as response:
        role = await response.content.readline()
        assert await response.content.readline() == b"\n"
        first_token = await response.content.readline()
        first_token_at = time.monotonic()
        await response.read()
        done_at = time.monotonic()
    assert b'"role":"assistant"' in role
    assert b'"content":"You"' in first_token
    # Lower bounds only, which load cannot break; how precise the pacing is belongs in bench/.
    assert first_token_at - started >= 0.05  # "thinking" before the first token
    assert done_at - started >= 0.05 + 2 * 0.01 - 0.005


async def test_a_client_leaving_mid_stream_is_quiet_and_harmless(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client: Client = await aiohttp_client(create_demo_app(DemoSettings(0.005, 0)))
    body = {"model": "m", "messages": CHAT, "stream": True}
    response = await client.post("/v1/chat/completions", json=body)
    assert b"role" in await response.content.readline()
    response.close()  # drop the connection with most of the reply unsent
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    server = runner.server
    await eventually(lambda: not server.connections, "the server has seen the client go")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    async with client.get("/healthz") as health:  # and the server carries on
        assert health.status == 200


async def test_healthz(http: ServerClient) -> None:
    async with http.get("/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


async def test_models_and_count_tokens_answer_as_the_providers_do(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic
) -> None:
    assert [model.id async for model in oai.models.list()] == ["demo"]
    counted = await claude.messages.count_tokens(
        model="demo", system="be brief", messages=[{"role": "user", "content": "two words"}]
    )
    assert counted.input_tokens == 4


def ignore_sigint() -> None:
    """What a shell does to a job it starts in the background: the child inherits it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_module_main_prints_its_address_and_stops_on_a_signal(stop: signal.Signals) -> None:
    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, "-m", "proxy.demo", "--port", "0", "--first-token-delay-ms", "0"]
    process = subprocess.Popen(
        command, cwd=root, stdout=subprocess.PIPE, text=True, preexec_fn=ignore_sigint
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("demo provider listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP_PROXY
        with direct.open(url + "/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        process.send_signal(stop)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
