"""The official openai and anthropic SDKs as real clients of the proxy, on real sockets.

Happy paths go proxy -> demo provider (`proxy.demo`, no delays); failures go proxy -> the
scripted fake upstream, whose events are rendered by the demo's own renderers so the SDKs parse
them exactly as they would a real provider's. Every request must leave one `stream.finished`
line; a stream that breaks must make the SDK raise, never return a short answer silently.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from anthropic.types import MessageParam, TextBlock
from openai.types.chat import ChatCompletionMessageParam

from proxy.demo.app import DemoSettings, create_demo_app
from proxy.demo.text import (
    AnthropicRenderer,
    Call,
    ChatRenderer,
    Event,
    Renderer,
    ResponsesRenderer,
    make_reply,
)
from tests.support.fake_upstream import Close, FakeUpstream, Hold, Reset, Script, Step
from tests.support.running_proxy import (
    CANARY_CLIENT_KEY,
    CANARY_UPSTREAM_KEY,
    ProxyFactory,
    RunningProxy,
)
from tests.support.sdk_clients import local_anthropic, local_openai

USER_TEXT = "Hello there, how are you?"
PROMPT_WORDS = 5  # the demo counts the words of every prompt text
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": USER_TEXT}]
CLAUDE: list[MessageParam] = [{"role": "user", "content": USER_TEXT}]
MODEL = "demo-model"


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def demo_url() -> AsyncIterator[str]:
    """The demo provider on a real socket, answering at once."""
    settings = DemoSettings(token_delay_s=0, first_token_delay_s=0)
    runner = web.AppRunner(create_demo_app(settings), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def upstreams_at(url: str, name: str) -> Callable[[dict[str, Any]], None]:
    """A config edit sending both routes to `url` (upstream keys stay the canary's)."""

    def edit(document: dict[str, Any]) -> None:
        for route in document["routes"]:
            for upstream in route["upstreams"]:
                upstream["url"] = url
                upstream["name"] = name

    return edit


@pytest.fixture
async def demo_proxy(start_proxy: ProxyFactory, demo_url: str) -> RunningProxy:
    return await start_proxy(upstreams_at(demo_url, "demo"))


def openai_client(proxy: RunningProxy, api_key: str = CANARY_CLIENT_KEY) -> openai.AsyncOpenAI:
    return local_openai(proxy.url + "/v1", api_key)


def anthropic_client(
    proxy: RunningProxy, api_key: str = CANARY_CLIENT_KEY
) -> anthropic.AsyncAnthropic:
    return local_anthropic(proxy.url, api_key)


@pytest.fixture
async def oai(demo_proxy: RunningProxy) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(demo_proxy) as client:
        yield client


@pytest.fixture
async def claude(demo_proxy: RunningProxy) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_client(demo_proxy) as client:
        yield client


@pytest.fixture
async def fake_oai(proxy: RunningProxy) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai_client(proxy) as client:
        yield client


@pytest.fixture
async def fake_claude(proxy: RunningProxy) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_client(proxy) as client:
        yield client


# --- helpers -----------------------------------------------------------------------------------


def assert_completed(
    line: dict[str, Any],
    *,
    route: str,
    stream: bool,
    output_tokens: int,
    source: str,
    input_tokens: int | None,
) -> None:
    assert line["outcome"] == "completed", line
    assert line["status"] == 200
    assert (line["route"], line["upstream"], line["user"]) == (route, "demo", "alice")
    assert line["model"] == MODEL
    assert line["stream"] is stream
    assert (line["output_tokens"], line["tokens_source"]) == (output_tokens, source)
    assert line["input_tokens"] == input_tokens
    assert line["error"] is None
    assert line["duration_ms"] >= 0
    if stream:
        assert line["ttft_ms"] is not None
        assert 0 <= line["ttft_ms"] <= line["duration_ms"]
        assert line["bytes_out"] > 0
    else:
        assert line["ttft_ms"] is None


def encode(event: Event) -> bytes:
    name, payload = event
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    prefix = f"event: {name}\n" if name else ""
    return f"{prefix}data: {data}\n\n".encode()


def partial_stream(renderer: Callable[[Call], Renderer], tokens: int) -> tuple[list[Step], str]:
    """A provider's stream up to its `tokens`-th content event (one write per event), and the
    text those events carry."""
    reply = make_reply("Hi", 1, 40)
    rendered = renderer(Call(reply, MODEL, "x00001", 1_700_000_000))
    head = [encode(event) for event in rendered.head()]
    content = [encode(rendered.token(token)) for token in reply.tokens[:tokens]]
    return [*head, *content], "".join(reply.tokens[:tokens])


def whole_stream(renderer: Callable[[Call], Renderer]) -> tuple[list[Step], str]:
    """A provider's complete stream (one write per event), and its text."""
    reply = make_reply("Hi", 1, 40)
    rendered = renderer(Call(reply, MODEL, "x00002", 1_700_000_000))
    events = [*rendered.head(), *(rendered.token(t) for t in reply.tokens), *rendered.tail()]
    return [encode(event) for event in events], reply.text


# Ways an upstream can break after some content: its connection aborted, its connection closed
# without the chunked terminator, or its body ended properly but without the dialect's terminator.
BREAKS: dict[str, tuple[list[Step], str]] = {
    "reset": ([Reset()], "upstream_error"),
    "close": ([Close()], "upstream_error"),
    "no_terminator": ([], "truncated"),
}


class BreakingUpstream:
    """The upstream sends the first words of a stream, waits until the SDK has handed all their
    text to the caller, then breaks as `kind` says."""

    def __init__(self, upstream: FakeUpstream, renderer: Callable[[Call], Renderer], kind: str):
        steps, self.expected_text = partial_stream(renderer, 3)
        breaking, self.outcome = BREAKS[kind]
        self.release = asyncio.Event()
        self.received: list[str] = []
        upstream.enqueue(Script(steps=[*steps, Hold(self.release), *breaking]))

    def got(self, text: str) -> None:
        self.received.append(text)
        if self.text == self.expected_text:
            self.release.set()

    @property
    def text(self) -> str:
        return "".join(self.received)


def assert_failed(line: dict[str, Any], outcome: str, content_events: int) -> None:
    assert line["outcome"] == outcome, line
    assert line["status"] == 200  # committed: the failure was reported in-band
    assert line["error"]
    assert (line["output_tokens"], line["tokens_source"]) == (content_events, "counted")


# --- happy paths through the demo provider -----------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_stream_joins_to_the_non_streaming_text(
    oai: openai.AsyncOpenAI, demo_proxy: RunningProxy, include_usage: bool
) -> None:
    stream = await oai.chat.completions.create(
        model=MODEL, messages=CHAT, stream=True, stream_options={"include_usage": include_usage}
    )
    chunks = [chunk async for chunk in stream]
    whole = await oai.chat.completions.create(model=MODEL, messages=CHAT)

    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    content = [delta for delta in deltas if delta]
    assert "".join(content) == whole.choices[0].message.content
    assert whole.usage is not None
    assert whole.usage.completion_tokens == len(content)
    streamed, plain = await demo_proxy.finished_lines(2)
    if include_usage:
        usage = chunks[-1].usage
        assert chunks[-1].choices == []
        assert usage is not None
        assert usage == whole.usage
        assert_completed(streamed, route="openai", stream=True, output_tokens=len(content),
                         source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip
    else:
        assert all(chunk.usage is None for chunk in chunks)
        assert_completed(streamed, route="openai", stream=True, output_tokens=len(content),
                         source="counted", input_tokens=None)  # fmt: skip
    assert_completed(plain, route="openai", stream=False, output_tokens=len(content),
                     source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip


async def test_completions_stream_and_non_streaming(
    oai: openai.AsyncOpenAI, demo_proxy: RunningProxy
) -> None:
    stream = await oai.completions.create(
        model=MODEL, prompt="Say hi", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    whole = await oai.completions.create(model=MODEL, prompt="Say hi")

    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert "".join(texts) == whole.choices[0].text
    assert whole.choices[0].text.startswith("You said “Say hi”.")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage == whole.usage
    streamed, plain = await demo_proxy.finished_lines(2)
    assert_completed(streamed, route="openai", stream=True, output_tokens=len(texts),
                     source="usage", input_tokens=2)  # fmt: skip
    assert_completed(plain, route="openai", stream=False, output_tokens=len(texts),
                     source="usage", input_tokens=2)  # fmt: skip


async def test_responses_create_stream_and_non_streaming(
    oai: openai.AsyncOpenAI, demo_proxy: RunningProxy
) -> None:
    stream = await oai.responses.create(model=MODEL, input=USER_TEXT, stream=True)
    events = [event async for event in stream]
    whole = await oai.responses.create(model=MODEL, input=USER_TEXT)

    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == whole.output_text == events[-1].response.output_text
    assert whole.status == "completed"
    assert whole.usage is not None
    assert whole.usage.output_tokens == len(deltas)
    streamed, plain = await demo_proxy.finished_lines(2)
    assert_completed(streamed, route="openai", stream=True, output_tokens=len(deltas),
                     source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip
    assert_completed(plain, route="openai", stream=False, output_tokens=len(deltas),
                     source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip


async def test_responses_stream_helper(oai: openai.AsyncOpenAI, demo_proxy: RunningProxy) -> None:
    async with oai.responses.stream(model=MODEL, input=USER_TEXT) as stream:
        deltas = [
            event.delta async for event in stream if event.type == "response.output_text.delta"
        ]
        final = await stream.get_final_response()

    assert "".join(deltas) == final.output_text
    assert final.output_text.startswith(f"You said “{USER_TEXT}”.")
    assert final.usage is not None
    assert final.usage.output_tokens == len(deltas)
    (line,) = await demo_proxy.finished_lines(1)
    assert_completed(line, route="openai", stream=True, output_tokens=len(deltas),
                     source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip


async def test_anthropic_stream_helper_raw_stream_and_non_streaming(
    claude: anthropic.AsyncAnthropic, demo_proxy: RunningProxy
) -> None:
    async with claude.messages.stream(model=MODEL, max_tokens=100, messages=CLAUDE) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    raw = await claude.messages.create(model=MODEL, max_tokens=100, messages=CLAUDE, stream=True)
    events = [event async for event in raw]
    whole = await claude.messages.create(model=MODEL, max_tokens=100, messages=CLAUDE)

    assert isinstance(final.content[0], TextBlock)
    assert isinstance(whole.content[0], TextBlock)
    assert text == final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason == "end_turn"
    raw_text = [
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    assert "".join(raw_text) == text
    assert [events[0].type, events[-1].type] == ["message_start", "message_stop"]
    tokens = whole.usage.output_tokens
    assert final.usage.output_tokens == tokens == len(raw_text)
    assert final.usage.input_tokens == whole.usage.input_tokens == PROMPT_WORDS

    helper, raw_line, plain = await demo_proxy.finished_lines(3)
    for line in (helper, raw_line):
        assert_completed(line, route="anthropic", stream=True, output_tokens=tokens,
                         source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip
    assert_completed(plain, route="anthropic", stream=False, output_tokens=tokens,
                     source="usage", input_tokens=PROMPT_WORDS)  # fmt: skip


# --- a broken stream makes each SDK raise ------------------------------------------------------
#
# The upstream sends its first events, waits until the SDK has handed their text to the caller
# (`Hold`), then breaks: the realistic case of a stream that fails after tokens went out.


@pytest.mark.parametrize("kind", list(BREAKS))
async def test_openai_chat_stream_broken_mid_way_raises(
    fake_oai: openai.AsyncOpenAI, upstream: FakeUpstream, proxy: RunningProxy, kind: str
) -> None:
    breaks = BreakingUpstream(upstream, ChatRenderer, kind)
    stream = await fake_oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            breaks.got(chunk.choices[0].delta.content or "")

    assert breaks.text == breaks.expected_text
    # The proxy's in-band error event (not only the broken connection) is what the SDK saw.
    assert type(raised.value) is openai.APIError
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "api_error"
    (line,) = await proxy.finished_lines(1)
    assert_failed(line, breaks.outcome, 3)


@pytest.mark.parametrize("kind", list(BREAKS))
@pytest.mark.parametrize("helper", [True, False], ids=["responses.stream", "create-stream"])
async def test_openai_responses_stream_broken_mid_way_raises(
    fake_oai: openai.AsyncOpenAI,
    upstream: FakeUpstream,
    proxy: RunningProxy,
    kind: str,
    helper: bool,
) -> None:
    breaks = BreakingUpstream(upstream, ResponsesRenderer, kind)
    got = breaks.got

    with pytest.raises(openai.APIError):
        if helper:
            async with fake_oai.responses.stream(model=MODEL, input=USER_TEXT) as stream:
                async for event in stream:
                    if event.type == "response.output_text.delta":
                        got(event.delta)
        else:
            raw = await fake_oai.responses.create(model=MODEL, input=USER_TEXT, stream=True)
            async for raw_event in raw:
                if raw_event.type == "response.output_text.delta":
                    got(raw_event.delta)

    assert breaks.text == breaks.expected_text
    (line,) = await proxy.finished_lines(1)
    assert_failed(line, breaks.outcome, 3)


@pytest.mark.parametrize("kind", list(BREAKS))
@pytest.mark.parametrize("helper", [True, False], ids=["messages.stream", "create-stream"])
async def test_anthropic_stream_broken_mid_way_raises(
    fake_claude: anthropic.AsyncAnthropic,
    upstream: FakeUpstream,
    proxy: RunningProxy,
    kind: str,
    helper: bool,
) -> None:
    breaks = BreakingUpstream(upstream, AnthropicRenderer, kind)
    got = breaks.got

    # anthropic.APIError covers APIStatusError and APIConnectionError; a bare httpx2 transport
    # error (what this SDK raises for a truncated body without an error event) would not match.
    with pytest.raises(anthropic.APIError) as raised:
        if helper:
            async with fake_claude.messages.stream(
                model=MODEL, max_tokens=100, messages=CLAUDE
            ) as stream:
                async for piece in stream.text_stream:
                    got(piece)
        else:
            raw = await fake_claude.messages.create(
                model=MODEL, max_tokens=100, messages=CLAUDE, stream=True
            )
            async for event in raw:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    got(event.delta.text)

    assert breaks.text == breaks.expected_text
    assert isinstance(raised.value, anthropic.APIStatusError)  # from the `event: error`
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "api_error"
    (line,) = await proxy.finished_lines(1)
    assert_failed(line, breaks.outcome, 3)
    assert line["route"] == "anthropic"


@pytest.mark.parametrize("kind", list(BREAKS))
async def test_events_that_arrive_with_the_failure_still_reach_the_sdk(
    fake_oai: openai.AsyncOpenAI, upstream: FakeUpstream, proxy: RunningProxy, kind: str
) -> None:
    """The upstream sends its events and breaks at once (no pause): the proxy has received
    every byte of those events before it learns of the failure, so it must relay them all."""
    steps, expected_text = partial_stream(ChatRenderer, 3)
    breaking, outcome = BREAKS[kind]
    upstream.enqueue(Script(steps=[*steps, *breaking]))
    received: list[str] = []

    stream = await fake_oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert "".join(received) == expected_text
    (line,) = await proxy.finished_lines(1)
    assert_failed(line, outcome, 3)


async def test_upstream_error_events_are_relayed_and_raised(
    fake_oai: openai.AsyncOpenAI,
    fake_claude: anthropic.AsyncAnthropic,
    upstream: FakeUpstream,
    proxy: RunningProxy,
) -> None:
    chat_steps, chat_text = partial_stream(ChatRenderer, 2)
    chat_error = {"error": {"message": "model overloaded", "type": "server_error", "code": None}}
    claude_steps, claude_text = partial_stream(AnthropicRenderer, 2)
    claude_error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    upstream.enqueue(
        Script(steps=[*chat_steps, encode((None, chat_error))]),
        Script(steps=[*claude_steps, encode(("error", claude_error))]),
    )

    received: list[str] = []
    stream = await fake_oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    with pytest.raises(openai.APIError, match="model overloaded"):
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == chat_text

    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        async with fake_claude.messages.stream(
            model=MODEL, max_tokens=100, messages=CLAUDE
        ) as claude_stream:
            async for piece in claude_stream.text_stream:
                pieces.append(piece)
    assert "".join(pieces) == claude_text
    assert raised.value.body == claude_error  # the upstream's own event, not a second one

    lines = await proxy.finished_lines(2)
    assert [line["outcome"] for line in lines] == ["upstream_error", "upstream_error"]


async def test_sdk_requests_reach_the_upstream_with_its_key_and_not_the_clients(
    fake_oai: openai.AsyncOpenAI,
    fake_claude: anthropic.AsyncAnthropic,
    upstream: FakeUpstream,
    proxy: RunningProxy,
) -> None:
    chat_steps, chat_text = whole_stream(ChatRenderer)
    claude_steps, claude_text = whole_stream(AnthropicRenderer)
    upstream.enqueue(Script(steps=chat_steps), Script(steps=claude_steps))

    stream = await fake_oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    async with fake_claude.messages.stream(model=MODEL, max_tokens=100, messages=CLAUDE) as s:
        claude_said = await s.get_final_text()

    assert (text, claude_said) == (chat_text, claude_text)
    chat_request, claude_request = upstream.requests
    assert chat_request.path == "/v1/chat/completions"
    assert chat_request.headers["Authorization"] == f"Bearer {CANARY_UPSTREAM_KEY}"
    assert json.loads(chat_request.body)["messages"] == CHAT
    assert claude_request.path == "/v1/messages"
    assert claude_request.headers["x-api-key"] == CANARY_UPSTREAM_KEY
    assert "anthropic-version" in claude_request.headers  # the SDK's API version goes through
    assert "Authorization" not in claude_request.headers
    for seen in (chat_request, claude_request):
        assert CANARY_CLIENT_KEY not in repr(seen.headers)
        assert seen.headers["Accept-Encoding"] == "identity"
    lines = await proxy.finished_lines(2)
    assert [line["outcome"] for line in lines] == ["completed", "completed"]


# --- errors before the commit reach the SDK as the right exception -----------------------------


async def test_wrong_key_is_an_authentication_error(demo_proxy: RunningProxy) -> None:
    async with openai_client(demo_proxy, api_key="pk-wrong") as oai:
        with pytest.raises(openai.AuthenticationError) as oai_raised:
            await oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    async with anthropic_client(demo_proxy, api_key="pk-wrong") as claude:
        with pytest.raises(anthropic.AuthenticationError) as claude_raised:
            async with claude.messages.stream(model=MODEL, max_tokens=10, messages=CLAUDE):
                pass

    assert oai_raised.value.status_code == claude_raised.value.status_code == 401
    assert isinstance(claude_raised.value.body, dict)
    assert claude_raised.value.body["error"]["type"] == "authentication_error"
    lines = await demo_proxy.finished_lines(2)
    assert [line["status"] for line in lines] == [401, 401]


async def test_unknown_model_route_is_not_found(start_proxy: ProxyFactory, demo_url: str) -> None:
    def edit(document: dict[str, Any]) -> None:
        upstreams_at(demo_url, "demo")(document)
        document["routes"][0]["models"] = ["gpt-*"]
        document["routes"][1]["models"] = ["claude-*"]

    proxy = await start_proxy(edit)
    async with openai_client(proxy) as oai, anthropic_client(proxy) as claude:
        with pytest.raises(openai.NotFoundError):
            await oai.chat.completions.create(model="llama-3", messages=CHAT, stream=True)
        with pytest.raises(anthropic.NotFoundError):
            await claude.messages.create(model="gpt-4o", max_tokens=10, messages=CLAUDE)
        # the same proxy serves the models its routes do name
        whole = await oai.chat.completions.create(model="gpt-4o", messages=CHAT)
        assert whole.choices[0].message.content


async def test_proxy_stream_limit_is_a_rate_limit_error(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    def one_stream_each(document: dict[str, Any]) -> None:
        document["defaults"]["max_concurrent_streams_per_user"] = 1

    proxy = await start_proxy(one_stream_each)
    steps, _ = partial_stream(ChatRenderer, 1)
    release = asyncio.Event()
    upstream.enqueue(Script(steps=[*steps, Hold(release), b"data: [DONE]\n\n"]))

    async with openai_client(proxy) as oai, anthropic_client(proxy) as claude:
        holding = await oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
        first = await holding.__anext__()  # the stream is open and holds alice's one slot
        assert first.choices[0].delta.role == "assistant"

        with pytest.raises(openai.RateLimitError) as oai_raised:
            await oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
        with pytest.raises(anthropic.RateLimitError) as claude_raised:
            await claude.messages.create(model=MODEL, max_tokens=10, messages=CLAUDE)

        release.set()
        rest = [chunk async for chunk in holding]
    assert rest  # the held stream then completes normally

    for error in (oai_raised.value, claude_raised.value):
        assert error.status_code == 429
        # One slot held, no finished request yet: about 1 s (a first guess of 2 s over held + 1),
        # spread by the jitter (proxy/core/retry_advice.py); Retry-After is it in whole seconds.
        milliseconds = int(error.response.headers["retry-after-ms"])
        assert 500 <= milliseconds <= 1500
        assert error.response.headers["Retry-After"] == str(math.ceil(milliseconds / 1000))
    assert len(upstream.requests) == 1  # rejected requests never reach the upstream
    rejected = [line for line in await proxy.finished_lines(3) if line["status"] == 429]
    assert [line["outcome"] for line in rejected] == ["rejected", "rejected"]


@pytest.mark.parametrize(
    ("status", "openai_error", "anthropic_error"),
    [
        (400, openai.BadRequestError, anthropic.BadRequestError),
        (429, openai.RateLimitError, anthropic.RateLimitError),
    ],
)
async def test_upstream_errors_pass_through_as_the_same_exception(
    fake_oai: openai.AsyncOpenAI,
    fake_claude: anthropic.AsyncAnthropic,
    upstream: FakeUpstream,
    status: int,
    openai_error: type[openai.APIStatusError],
    anthropic_error: type[anthropic.APIStatusError],
) -> None:
    oai_body = {"error": {"message": "upstream says no", "type": "x", "code": None}}
    claude_body = {"type": "error", "error": {"type": "x", "message": "upstream says no"}}
    upstream.enqueue(
        Script(status=status, content_type="application/json",
               whole_body=json.dumps(oai_body).encode()),
        Script(status=status, content_type="application/json",
               whole_body=json.dumps(claude_body).encode()),
    )  # fmt: skip

    with pytest.raises(openai_error, match="upstream says no"):
        await fake_oai.chat.completions.create(model=MODEL, messages=CHAT, stream=True)
    with pytest.raises(anthropic_error, match="upstream says no"):
        await fake_claude.messages.create(model=MODEL, max_tokens=10, messages=CLAUDE, stream=True)
