"""What operators see: /metrics, the one `stream.finished` line, request ids, health, no secrets.

Metrics are read the way Prometheus reads them (GET /metrics, parsed with prometheus_client's
parser), after streams whose timings, token counts and endings the test controls.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from proxy.core.errors import Outcome
from tests.support.client_stream import ClientStream, ignore
from tests.support.config_edits import compose, set_defaults
from tests.support.fake_upstream import Close, FakeUpstream, Hold, Reset, Script, Step
from tests.support.metrics import sample_value, samples
from tests.support.patches import explode_on_boom
from tests.support.ports import unused_port
from tests.support.raw_http import raw_request
from tests.support.request_bodies import CHAT, MESSAGES
from tests.support.running_proxy import (
    CANARY_CLIENT_KEY,
    CANARY_UPSTREAM_KEY,
    ProxyFactory,
    RunningProxy,
)
from tests.support.sse_builders import (
    ANTHROPIC_PING,
    CONTENT_BLOCK_START,
    HEARTBEAT,
    MESSAGE_START,
    MESSAGE_STOP,
    OPENAI_DONE,
    ROLE,
    chat_chunk,
    chat_stream,
    message_delta,
    text_delta,
)
from tests.support.waits import eventually

USAGE = {"prompt_tokens": 17, "completion_tokens": 42, "total_tokens": 59}


def paced(*words: str, usage: dict[str, int] | None = None) -> tuple[Script, list[asyncio.Event]]:
    """A chat stream that waits before each word after the first, until the client has read
    the previous one: every content event reaches the client at its own moment."""
    gates = [asyncio.Event() for _ in words[1:]]
    steps: list[Step] = [ROLE, chat_chunk(words[0])]
    for gate, word in zip(gates, words[1:], strict=True):
        steps += [Hold(gate), chat_chunk(word)]
    if usage is not None:
        steps.append(chat_chunk(usage=usage))
    return Script(steps=[*steps, OPENAI_DONE]), gates


async def drive(
    response: aiohttp.ClientResponse, words: tuple[str, ...], gates: list[asyncio.Event]
) -> bytes:
    """Read a `paced` stream to its end, opening each gate once the word before it arrived."""
    assert response.status == 200, await response.text()
    reader = ClientStream(response)
    for word, gate in zip(words, gates, strict=False):
        await reader.event_with(json.dumps(word).encode())
        gate.set()
    return await reader.to_clean_end()


async def paced_stream(
    proxy: RunningProxy, upstream: FakeUpstream, *words: str, usage: dict[str, int] | None = None
) -> bytes:
    script, gates = paced(*words, usage=usage)
    upstream.enqueue(script)
    return await drive(await proxy.post("/v1/chat/completions", CHAT), words, gates)


async def read_all(response: aiohttp.ClientResponse) -> bytes:
    """Every body byte that arrived, also when the proxy ended the response abnormally."""
    body = b""
    while True:
        try:
            chunk = await response.content.readany()
        except aiohttp.ClientError:
            return body
        if not chunk:
            return body
        body += chunk


# --- /metrics ---


async def known_streams(proxy: RunningProxy, upstream: FakeUpstream) -> str:
    """A usage-reporting stream (3 words), a counted one (1 word), a truncated one (no [DONE],
    clean end of body); then scrape."""
    await paced_stream(proxy, upstream, "one", "two", "three", usage=USAGE)
    upstream.enqueue(Script(steps=chat_stream("solo")))
    assert (await (await proxy.post("/v1/chat/completions", CHAT)).read()).endswith(OPENAI_DONE)
    upstream.enqueue(Script(steps=[ROLE, chat_chunk("cut")]))
    await ignore((await proxy.post("/v1/chat/completions", CHAT)).read())
    await proxy.finished_lines(3)
    return await proxy.scrape()


TTFT = "llm_proxy_ttft_seconds"


async def test_request_counts_and_timings(proxy: RunningProxy, upstream: FakeUpstream) -> None:
    text = await known_streams(proxy, upstream)
    route = {"route": "openai", "stream": "true"}
    assert sample_value(text, "llm_proxy_requests_total", **route, outcome="completed") == 2
    assert sample_value(text, "llm_proxy_requests_total", **route, outcome="truncated") == 1
    assert sample_value(text, "llm_proxy_ttft_seconds_count", route="openai") == 3
    first_byte = {"route": "openai", "upstream": "fake"}
    assert sample_value(text, "llm_proxy_upstream_first_byte_seconds_count", **first_byte) == 3
    duration = "llm_proxy_stream_duration_seconds_count"
    assert sample_value(text, duration, route="openai", outcome="completed") == 2
    assert sample_value(text, duration, route="openai", outcome="truncated") == 1
    assert sample_value(text, "llm_proxy_active_streams", route="openai") == 0
    durations = sum(line["duration_ms"] for line in await proxy.finished_lines(3)) / 1000
    observed = sum(value for name, _, value in samples(text)
                   if name == "llm_proxy_stream_duration_seconds_sum")  # fmt: skip
    assert observed == pytest.approx(durations, abs=0.001 * 3)  # the log rounds to 0.1 ms
    ttft = [labels["le"] for name, labels, _ in samples(text) if name == f"{TTFT}_bucket"]
    bounds = sorted(float(le) for le in ttft if le != "+Inf")
    assert (bounds[0], bounds[-1]) == (0.01, 120.0)  # TTFT buckets: 10 ms to 120 s


async def test_token_counts_by_source(proxy: RunningProxy, upstream: FakeUpstream) -> None:
    text = await known_streams(proxy, upstream)
    output = "llm_proxy_output_tokens_total"
    assert sample_value(text, output, route="openai", source="usage") == 42
    assert sample_value(text, output, route="openai", source="counted") == 2  # "solo" + "cut"
    assert sample_value(text, "llm_proxy_input_tokens_total", route="openai") == 17
    # Only the three-word stream had two or more content events.
    rate = "llm_proxy_output_tokens_per_second"
    assert sample_value(text, f"{rate}_count", route="openai") == 1
    assert sample_value(text, f"{rate}_sum", route="openai") > 0  # type: ignore[operator]


@pytest.mark.parametrize("ending", [Reset(), Close()], ids=["reset", "close"])
async def test_content_sent_before_an_upstream_failure_is_delivered_and_counted(
    proxy: RunningProxy, upstream: FakeUpstream, ending: Step
) -> None:
    upstream.enqueue(Script(steps=[ROLE, chat_chunk("partial"), ending]))
    body = await read_all(await proxy.post("/v1/chat/completions", CHAT))
    assert b'"error"' in body  # the failure is reported in-band...
    assert b'"partial"' in body  # ...after the words the model had already produced
    assert body.index(b'"partial"') < body.index(b'"error"')
    line = await proxy.finished_line()
    assert line["outcome"] == "upstream_error"
    assert (line["output_tokens"], line["tokens_source"]) == (1, "counted")
    assert line["ttft_ms"] is not None


ALLOWED_LABELS: dict[str, set[str]] = {
    "route": {"openai", "anthropic"},
    "upstream": {"fake"},
    "outcome": {str(outcome) for outcome in Outcome},
    "stream": {"true", "false"},
    "source": {"usage", "counted"},
    "reason": {"concurrency"},
}
NOT_A_LABEL = ["alice", "secret", "gpt-odd-model-9", "/v1", "..", "crashed", "HTTP"]


async def odd_requests(proxy: RunningProxy, upstream: FakeUpstream) -> None:
    """Requests whose raw path, model, user or error text must not become a label value."""
    auth = [("Authorization", f"Bearer {CANARY_CLIENT_KEY}")]
    for path in ("/v1/../secret", "/v1/secret?user=alice", "/%2e%2e/secret"):
        assert (await raw_request(proxy.url, path, b"{}", auth)).status == 404
    odd = {**CHAT, "model": "gpt-odd-model-9"}
    assert (await (await proxy.post("/v1/chat/completions", odd)).read()).endswith(OPENAI_DONE)
    crash = b'{"error": {"message": "model crashed: secret detail"}}'
    upstream.enqueue(Script(status=500, content_type="application/json", whole_body=crash))
    assert (await proxy.post("/v1/chat/completions", odd)).status == 500
    assert (await proxy.post("/v1/chat/completions", odd, Authorization="Bearer x")).status == 401


async def test_label_values_stay_bounded(proxy: RunningProxy, upstream: FakeUpstream) -> None:
    await odd_requests(proxy, upstream)
    await proxy.finished_lines(6)
    text = await proxy.scrape()
    for name, labels, _ in samples(text):
        for key, value in labels.items():
            if key == "le":
                float(value)  # a histogram bucket bound
            elif key == "status":
                assert re.fullmatch(r"[1-5][0-9][0-9]", value), (name, labels)
            else:
                assert value in ALLOWED_LABELS[key], (name, labels)
    values = [value for _, labels, _ in samples(text) for value in labels.values()]
    for needle in NOT_A_LABEL:
        assert not any(needle in value for value in values), needle
    assert sample_value(text, "llm_proxy_client_errors_total", status="404") == 3


# --- TTFT ---

HOLD_S = 0.25

TTFT_STREAMS: dict[str, tuple[str, dict[str, Any], list[bytes], list[bytes]]] = {
    "openai": ("/v1/chat/completions", CHAT, [ROLE], [chat_chunk("Hello"), OPENAI_DONE]),
    "anthropic": (
        "/v1/messages", MESSAGES, [MESSAGE_START, CONTENT_BLOCK_START, ANTHROPIC_PING],
        [text_delta("Hello"), message_delta(1), MESSAGE_STOP],
    ),
}  # fmt: skip


@pytest.mark.parametrize("dialect", TTFT_STREAMS)
async def test_ttft_counts_from_the_first_content_event(
    proxy: RunningProxy, upstream: FakeUpstream, dialect: str
) -> None:
    path, payload, preamble, content = TTFT_STREAMS[dialect]
    gate = asyncio.Event()
    upstream.enqueue(Script(steps=[*preamble, Hold(gate), *content]))
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader = ClientStream(await proxy.post(path, payload))
    for event in preamble:  # relayed before any content: none of them is a first token
        assert await reader.next_event() == event
    loop.call_later(HOLD_S, gate.set)
    await reader.event_with(b"Hello")
    client_ttft_ms = (loop.time() - started) * 1000
    await reader.to_clean_end()
    ttft_ms = (await proxy.finished_line())["ttft_ms"]
    assert ttft_ms >= HOLD_S * 1000
    assert ttft_ms <= client_ttft_ms + 1  # the proxy wrote it before the client could read it
    observed = sample_value(await proxy.scrape(), "llm_proxy_ttft_seconds_sum", route=dialect)
    assert observed == pytest.approx(ttft_ms / 1000, abs=0.001)


async def test_a_streams_first_byte_is_its_first_body_byte(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """Headers at once, the first event after HOLD_S, the rest HOLD_S later still."""
    first, rest = asyncio.Event(), asyncio.Event()
    upstream.enqueue(Script(steps=[Hold(first), ROLE, chat_chunk("Hi"), Hold(rest), OPENAI_DONE]))
    request = asyncio.ensure_future(proxy.post("/v1/chat/completions", CHAT))
    await eventually(lambda: len(upstream.requests) == 1, "the upstream has the request")
    loop = asyncio.get_running_loop()
    loop.call_later(HOLD_S, first.set)  # deliberate pauses, the scripted upstream's pace
    loop.call_later(2 * HOLD_S, rest.set)
    assert (await (await request).read()).endswith(OPENAI_DONE)
    line = await proxy.finished_line()
    assert line["upstream_first_byte_ms"] >= HOLD_S * 1000
    assert line["duration_ms"] - line["upstream_first_byte_ms"] >= HOLD_S * 1000 / 2
    text = await proxy.scrape()
    first_byte = sample_value(text, "llm_proxy_upstream_first_byte_seconds_sum", route="openai")
    assert first_byte == pytest.approx(line["upstream_first_byte_ms"] / 1000, abs=0.001)


async def test_a_whole_bodys_first_byte_is_when_it_starts_arriving_not_when_it_ends(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """Non-streamed answers are generated before they are sent, but a body that trickles in
    must not put its whole transfer time into `llm_proxy_upstream_first_byte_seconds`."""
    body = json.dumps({"choices": [{"message": {"content": "Hi"}}]}).encode()
    gate = asyncio.Event()
    upstream.enqueue(
        Script(content_type="application/json", steps=[body[:10], Hold(gate), body[10:]])
    )
    request = asyncio.ensure_future(proxy.post("/v1/chat/completions", CHAT))
    await eventually(lambda: len(upstream.requests) == 1, "the upstream has the request")
    asyncio.get_running_loop().call_later(HOLD_S, gate.set)  # its first bytes are on the way
    assert await (await request).read() == body
    line = await proxy.finished_line()
    assert line["duration_ms"] - line["upstream_first_byte_ms"] >= HOLD_S * 1000 / 2


# --- the stream.finished line and request ids ---

FIELDS = {
    "request_id", "user", "route", "upstream", "model", "stream", "status", "outcome", "ttft_ms",
    "duration_ms", "output_tokens", "tokens_source", "tokens_per_s", "heartbeats", "bytes_out",
}  # fmt: skip


async def stream_with_heartbeats(
    proxy: RunningProxy, upstream: FakeUpstream, request_id: str
) -> tuple[aiohttp.ClientResponse, bytes]:
    """Two words with usage; the upstream is silent until a heartbeat reached the client."""
    script, gates = paced("Hello", " world", usage={"prompt_tokens": 5, "completion_tokens": 2})
    first = asyncio.Event()
    upstream.enqueue(Script(steps=[Hold(first), *script.steps]))
    response = await proxy.post("/v1/chat/completions", CHAT, **{"X-Request-Id": request_id})
    reader = ClientStream(response)
    assert await reader.next_event() == HEARTBEAT
    first.set()
    await reader.event_with(b'"Hello"')
    gates[0].set()
    return response, await reader.to_clean_end()


async def test_finished_line_describes_the_stream(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    response, received = await stream_with_heartbeats(proxy, upstream, "client-req.42:abc")
    line = await proxy.finished_line()
    assert set(line) >= FIELDS
    assert line["request_id"] == response.headers["X-Request-Id"] == "client-req.42:abc"
    sent = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
    assert sent["x-request-id"] == "client-req.42:abc"
    expected = {"user": "alice", "route": "openai", "upstream": "fake", "model": "gpt-test",
                "stream": True, "status": 200, "outcome": "completed", "output_tokens": 2,
                "tokens_source": "usage"}  # fmt: skip
    assert {key: line[key] for key in expected} == expected
    assert 0 < line["ttft_ms"] <= line["duration_ms"]
    assert line["tokens_per_s"] > 0
    assert line["heartbeats"] == received.count(HEARTBEAT) >= 1
    assert line["bytes_out"] == len(received)


@pytest.mark.parametrize(
    "offered",
    ["r" * 129, "has spaces in it", "semi;colon", 'quote"d'],
    ids=["long", "spaces", "semicolon", "quote"],
)
async def test_an_insane_client_request_id_is_replaced(
    proxy: RunningProxy, upstream: FakeUpstream, offered: str
) -> None:
    for count, key in enumerate((CANARY_CLIENT_KEY, "wrong"), start=1):  # a stream, a 401
        response = await proxy.post("/v1/chat/completions", CHAT, Authorization=f"Bearer {key}",
                                    **{"X-Request-Id": offered})  # fmt: skip
        await response.read()
        assert response.headers["X-Request-Id"] != offered
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])
        line = await proxy.finished_line(count)
        assert line["request_id"] == response.headers["X-Request-Id"]


async def test_a_request_id_with_a_newline_is_refused_by_the_http_parser(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    head = [("Authorization", f"Bearer {CANARY_CLIENT_KEY}"), ("X-Request-Id", "abc\n\tinjected")]
    response = await raw_request(proxy.url, "/v1/chat/completions", json.dumps(CHAT).encode(), head)
    assert response.status == 400
    assert upstream.requests == []
    assert proxy.log_lines()  # aiohttp logged the bad request; every line still parses as JSON


# --- no secret anywhere ---


@dataclass
class Seen:
    """Everything a client or an operator could read."""

    texts: list[str] = field(default_factory=list)

    async def response(self, response: aiohttp.ClientResponse) -> None:
        self.texts.append(str(list(response.headers.items())))
        self.texts.append((await read_all(response)).decode("utf-8", errors="replace"))


Scenario = Callable[[RunningProxy, FakeUpstream, Seen], Awaitable[None]]
ECHO = json.dumps({"error": {"message": f"Incorrect API key provided: {CANARY_UPSTREAM_KEY}"}})


async def wrong_client_keys(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    for key in (CANARY_UPSTREAM_KEY, CANARY_CLIENT_KEY + "x"):
        await seen.response(
            await proxy.post("/v1/chat/completions", CHAT, Authorization=f"Bearer {key}")
        )
        await seen.response(
            await proxy.session.post(
                proxy.url + "/v1/messages", data=json.dumps(MESSAGES), headers={"x-api-key": key}
            )
        )


async def upstream_echoes_its_key(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    for status in (401, 500, 503):
        upstream.enqueue(
            Script(status=status, content_type="application/json", whole_body=ECHO.encode())
        )
        await seen.response(await proxy.post("/v1/chat/completions", CHAT))


async def echo_after_commit(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    """The anthropic route heartbeats early, so the upstream's 401 is reported in-band."""
    gate = asyncio.Event()
    upstream.enqueue(
        Script(
            status=401, content_type="application/json", whole_body=ECHO.encode(), hold_headers=gate
        )
    )
    response = await proxy.post("/v1/messages", MESSAGES)
    assert await response.content.readuntil(b"\n\n") == HEARTBEAT
    gate.set()
    await seen.response(response)
    assert "authentication_error" in seen.texts[-1]


async def broken_streams(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    never = asyncio.Event()
    upstream.enqueue(
        Script(steps=[ROLE, chat_chunk("a"), Reset()]),
        Script(steps=[ROLE, chat_chunk("a"), Hold(never)]),  # idle timeout
        Script(steps=chat_stream("a"), hold_headers=never),  # first-byte timeout
        Script(steps=[ROLE, chat_chunk("boom"), OPENAI_DONE]),  # proxy code raises
    )
    for _ in range(4):
        await seen.response(await proxy.post("/v1/chat/completions", CHAT))
    never.set()


async def refused_requests(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    await seen.response(await proxy.post("/v1/embeddings", CHAT))  # all upstreams down: 502
    not_json = f"not json {CANARY_CLIENT_KEY}".encode()
    await seen.response(
        await proxy.session.post(
            proxy.url + "/v1/chat/completions", data=not_json, headers=proxy.headers()
        )
    )
    gate = asyncio.Event()
    upstream.enqueue(*(Script(steps=[ROLE, Hold(gate), OPENAI_DONE]) for _ in range(2)))
    held = [await proxy.post("/v1/chat/completions", CHAT) for _ in range(2)]
    await seen.response(await proxy.post("/v1/chat/completions", CHAT))  # 429
    gate.set()
    for response in held:
        await seen.response(response)


async def other_endings(proxy: RunningProxy, upstream: FakeUpstream, seen: Seen) -> None:
    never = asyncio.Event()
    upstream.enqueue(
        Script(steps=[ROLE, chat_chunk("cut")]),  # truncated: no [DONE]
        Script(steps=[ROLE, Hold(never)]),  # the client leaves
        Script(reset_before_headers=True),  # the upstream fails before answering: 502
    )
    await seen.response(await proxy.post("/v1/chat/completions", CHAT))
    leaving = await proxy.post("/v1/chat/completions", CHAT)
    await leaving.content.readuntil(b"\n\n")
    leaving.close()
    await seen.response(await proxy.post("/v1/chat/completions", CHAT))
    await seen.response(await proxy.post("/v1/nowhere", CHAT))  # 404
    await seen.response(await proxy.post("/v1/chat/completions", {**CHAT, "pad": "x" * 70_000}))
    never.set()


def canary_config(document: dict[str, Any]) -> None:
    document["routes"][1]["heartbeat_s"] = 0.05
    dead = {
        "name": "dead",
        "url": f"http://127.0.0.1:{unused_port()}",
        "api_key_env": "CANARY_UPSTREAM_KEY",
    }
    document["routes"].append(
        {"name": "down", "paths": ["/v1/embeddings"], "provider": "openai", "upstreams": [dead]}
    )


SCENARIOS: tuple[Scenario, ...] = (
    wrong_client_keys, upstream_echoes_its_key, echo_after_commit, broken_streams, refused_requests,
    other_endings,
)  # fmt: skip


async def test_no_canary_key_in_any_log_metric_body_or_header(
    start_proxy: ProxyFactory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    edit = compose(canary_config, set_defaults(timeouts={"first_byte_s": 0.3, "idle_s": 0.3}))
    proxy = await start_proxy(edit=edit)
    explode_on_boom(monkeypatch)
    seen = Seen()
    for scenario in SCENARIOS:
        await scenario(proxy, upstream, seen)
    outcomes = {line["outcome"] for line in await proxy.finished_lines(22)}
    assert outcomes >= {"completed", "upstream_error", "upstream_timeout", "rejected",
                        "truncated", "client_disconnected",
                        "internal_error"}  # fmt: skip
    everything = "\n".join([proxy.log_stream.getvalue(), await proxy.scrape(), *seen.texts])
    for key in (CANARY_UPSTREAM_KEY, CANARY_CLIENT_KEY):
        assert key not in everything


@pytest.mark.parametrize("stream", [False, True], ids=["whole-body", "stream"])
async def test_upstream_key_echoed_in_a_response_header_is_not_passed_on(
    proxy: RunningProxy, upstream: FakeUpstream, stream: bool
) -> None:
    echo = {"X-Debug-Authorization": f"Bearer {CANARY_UPSTREAM_KEY}"}
    if stream:
        upstream.enqueue(Script(steps=chat_stream("hi"), headers=echo))
    else:
        upstream.enqueue(Script(status=401, content_type="application/json",
                                whole_body=ECHO.encode(), headers=echo))  # fmt: skip
    response = await proxy.post("/v1/chat/completions", {**CHAT, "stream": stream})
    await response.read()
    assert CANARY_UPSTREAM_KEY not in str(list(response.headers.items()))


LONGER_KEY = CANARY_UPSTREAM_KEY + "-and-the-rest-of-a-longer-key"


def second_upstream_with_a_longer_key(document: dict[str, Any]) -> None:
    """The route's second upstream has a key that begins with the first upstream's key."""
    first = document["routes"][0]["upstreams"][0]
    document["routes"][0]["upstreams"].append({**first, "name": "longer", "api_key_env": "LONGER"})


async def test_a_key_that_begins_with_another_key_is_redacted_whole(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(
        edit=second_upstream_with_a_longer_key, environ={"LONGER": LONGER_KEY}
    )
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {LONGER_KEY}"}})
    busy = Script(status=503, content_type="text/plain", whole_body=b"busy",
                  headers={"Retry-After": LONGER_KEY})  # fmt: skip
    refused = Script(status=401, content_type="application/json", whole_body=echo.encode(),
                     headers={"X-Echo": LONGER_KEY})  # fmt: skip
    upstream.enqueue(busy, refused)
    upstream.enqueue(busy, busy)  # then both upstreams busy: the 502 repeats a Retry-After

    for expected in (401, 502):
        response = await proxy.post("/v1/chat/completions", CHAT)
        assert response.status == expected
        everything = str(list(response.headers.items())) + await response.text()
        assert "[redacted]" in everything
        assert "the-rest-of" not in everything and CANARY_UPSTREAM_KEY not in everything


# --- health ---


async def test_health_and_readiness(proxy: RunningProxy) -> None:
    for path in ("/healthz", "/readyz"):
        async with proxy.session.get(proxy.url + path) as response:
            assert response.status == 200, path
