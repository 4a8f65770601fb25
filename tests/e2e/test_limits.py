"""Per-user concurrent-stream limits: who is refused, and that every admitted slot comes back.

A slot that leaks locks a user out until a restart, so each way a stream can end is tried while a
second "witness" stream of the same user stays open: afterwards the user must hold exactly the
witness's slot (a double release would show as 0, a leak as 2), then none, and be admitted again.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from tests.support.client_stream import ignore
from tests.support.config_edits import Edit, add_user, set_defaults
from tests.support.fake_upstream import FakeUpstream, Hold, Reset, Script
from tests.support.outcome_checks import slots_released
from tests.support.patches import explode_on_boom
from tests.support.raw_http import RawClient, request_bytes
from tests.support.request_bodies import CHAT, MESSAGES
from tests.support.running_proxy import CANARY_CLIENT_KEY, ProxyFactory, RunningProxy
from tests.support.sse_builders import (
    MESSAGE_START,
    OPENAI_DONE,
    ROLE,
    chat_chunk,
    chat_stream,
    cut_at,
    sent_bytes,
    text_delta,
)
from tests.support.waits import eventually

CHAT_BODY = b'{"model": "gpt-test", "stream": true}'


def raw_chat() -> bytes:
    """A streamed chat request from alice, as bytes for a raw connection."""
    return request_bytes(
        "/v1/chat/completions", CHAT_BODY, [("Authorization", f"Bearer {CANARY_CLIENT_KEY}")]
    )


async def open_held_stream(
    proxy: RunningProxy, upstream: FakeUpstream, gate: asyncio.Event, **headers: str
) -> aiohttp.ClientResponse:
    """An admitted stream whose upstream waits for `gate` after the role chunk."""
    upstream.enqueue(Script(steps=[ROLE, Hold(gate), chat_chunk("x"), OPENAI_DONE]))
    response = await proxy.post("/v1/chat/completions", CHAT, **headers)
    assert response.status == 200, await response.text()
    return response


async def finish_all(gate: asyncio.Event, responses: list[aiohttp.ClientResponse]) -> None:
    gate.set()
    for response in responses:
        assert (await response.read()).endswith(OPENAI_DONE)


def active_gauge(proxy: RunningProxy) -> float | None:
    return proxy.metric("llm_proxy_active_streams", route="openai")


# --- who is refused ---


async def test_the_stream_beyond_the_limit_is_429_and_never_reaches_the_upstream(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    gate = asyncio.Event()
    held = [await open_held_stream(proxy, upstream, gate) for _ in range(2)]
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert 50 <= int(response.headers["retry-after-ms"]) <= 1000  # a first guess, with jitter
    error = (await response.json())["error"]
    assert error["type"] == "rate_limit_error"
    assert "at most 2 streams" in error["message"]
    assert len(upstream.requests) == 2
    labels = {"route": "openai", "reason": "concurrency"}
    assert proxy.metric("llm_proxy_limit_rejections_total", **labels) == 1
    rejected = {"route": "openai", "stream": "true", "outcome": "rejected"}
    assert proxy.metric("llm_proxy_requests_total", **rejected) == 1
    await finish_all(gate, held)
    await slots_released(proxy)


async def test_a_users_own_limit_overrides_the_default_and_limits_are_per_user(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=add_user("carol", "CAROL_KEY", 3), environ={"CAROL_KEY": "k-c"})
    gate = asyncio.Event()
    carol = {"Authorization": "Bearer k-c"}
    held = [await open_held_stream(proxy, upstream, gate, **carol) for _ in range(3)]
    refused = await proxy.post("/v1/chat/completions", CHAT, **carol)
    assert refused.status == 429
    assert "at most 3 streams" in (await refused.json())["error"]["message"]
    held.append(await open_held_stream(proxy, upstream, gate))  # alice has her own slots
    assert (await proxy.limiter.held("carol"), await proxy.limiter.held("alice")) == (3, 1)
    await finish_all(gate, held)
    await slots_released(proxy, "carol")
    await slots_released(proxy, "alice")


# --- every admitted slot comes back exactly once ---

Run = Callable[[RunningProxy, FakeUpstream, asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class Ending:
    run: Run
    outcome: str
    edit: Edit = field(default=lambda document: None)


async def completes(proxy: RunningProxy, upstream: FakeUpstream, never: asyncio.Event) -> None:
    upstream.enqueue(Script(steps=chat_stream("a", "b")))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert (await response.read()).endswith(OPENAI_DONE)


async def upstream_refuses(proxy: RunningProxy, upstream: FakeUpstream, _: asyncio.Event) -> None:
    upstream.enqueue(Script(status=503, content_type="application/json", whole_body=b"{}"))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 502


async def upstream_resets(proxy: RunningProxy, upstream: FakeUpstream, _: asyncio.Event) -> None:
    upstream.enqueue(Script(steps=[ROLE, chat_chunk("a"), Reset()]))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 200
    await ignore(response.read())


def anthropic_idle_s(seconds: float) -> Edit:
    """Only the anthropic route times out quickly (the witness streams on the openai one)."""

    def edit(document: dict[str, Any]) -> None:
        document["routes"][1]["timeouts"] = {"idle_s": seconds}

    return edit


async def upstream_idles(proxy: RunningProxy, upstream: FakeUpstream, never: asyncio.Event) -> None:
    upstream.enqueue(Script(steps=[MESSAGE_START, text_delta("a"), Hold(never)]))
    response = await proxy.post("/v1/messages", MESSAGES)
    assert response.status == 200
    await ignore(response.read())


async def leaves_before_headers(
    proxy: RunningProxy, upstream: FakeUpstream, never: asyncio.Event
) -> None:
    upstream.enqueue(Script(steps=chat_stream("a"), hold_headers=never))
    seen = len(upstream.requests)
    client = await RawClient.connect(proxy.url)
    await client.send(raw_chat())
    await eventually(lambda: len(upstream.requests) > seen, "the upstream has the request")
    client.close(abort=True)


async def leaves_mid_stream(
    proxy: RunningProxy, upstream: FakeUpstream, never: asyncio.Event
) -> None:
    upstream.enqueue(Script(steps=[ROLE, chat_chunk("first"), Hold(never), OPENAI_DONE]))
    client = await RawClient.connect(proxy.url)
    await client.send(raw_chat())
    await client.reader.readuntil(b'"first"')
    client.close()


async def leaves_during_a_heartbeat_wait(
    proxy: RunningProxy, upstream: FakeUpstream, never: asyncio.Event
) -> None:
    upstream.enqueue(Script(steps=chat_stream("a"), hold_headers=never))
    client = await RawClient.connect(proxy.url)
    await client.send(raw_chat())
    await client.reader.readuntil(b": ping")
    client.close()


async def proxy_code_raises(proxy: RunningProxy, upstream: FakeUpstream, _: asyncio.Event) -> None:
    upstream.enqueue(Script(steps=[ROLE, chat_chunk("boom"), chat_chunk("b"), OPENAI_DONE]))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 200
    await ignore(response.read())


ENDINGS = {
    "completed": Ending(completes, "completed"),
    "upstream-error-before-commit": Ending(upstream_refuses, "upstream_error"),
    "upstream-reset-after-commit": Ending(upstream_resets, "upstream_error"),
    "idle-timeout": Ending(upstream_idles, "upstream_timeout", anthropic_idle_s(0.2)),
    "client-gone-before-headers": Ending(leaves_before_headers, "client_disconnected"),
    "client-gone-mid-stream": Ending(leaves_mid_stream, "client_disconnected"),
    "client-gone-during-heartbeat-wait": Ending(leaves_during_a_heartbeat_wait,
                                                "client_disconnected",
                                                set_defaults(heartbeat_s=0.05)),
    "exception-in-proxy-code": Ending(proxy_code_raises, "internal_error"),
}  # fmt: skip


@asynccontextmanager
async def witness(proxy: RunningProxy, upstream: FakeUpstream) -> AsyncIterator[None]:
    """Alice's second stream, open around the block and completed after it."""
    gate = asyncio.Event()
    response = await open_held_stream(proxy, upstream, gate)
    yield
    await finish_all(gate, [response])


@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
async def test_every_ending_releases_the_slot_exactly_once(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    ending: Ending,
) -> None:
    proxy = await start_proxy(edit=ending.edit)
    explode_on_boom(monkeypatch)
    never = asyncio.Event()
    try:
        async with witness(proxy, upstream):
            await ending.run(proxy, upstream, never)
            assert (await proxy.finished_lines(1))[0]["outcome"] == ending.outcome
            await slots_released(proxy, held=1)  # the witness's slot, and only that
    finally:
        never.set()
    await slots_released(proxy)
    assert active_gauge(proxy) == 0
    for _ in range(2):  # both slots are usable again
        response = await proxy.post("/v1/chat/completions", CHAT)
        assert (await response.read()).endswith(OPENAI_DONE)


# --- random cancellation points ---

STAGES = ("before-headers", "after-headers", "first-event", "heartbeat", "bytes")


def random_script(rng: random.Random, stage: str, gate: asyncio.Event) -> Script:
    steps = chat_stream(*(f"w{index}" for index in range(rng.randint(1, 8))))
    if stage == "before-headers":
        return Script(steps=steps, hold_headers=gate)
    if stage in ("after-headers", "heartbeat"):
        return Script(steps=[Hold(gate), *steps])
    if stage == "first-event":
        return Script(steps=[steps[0], Hold(gate), *steps[1:]])
    data = sent_bytes(steps)
    cuts = rng.sample(range(1, len(data)), rng.randint(0, 6))
    return Script(steps=list(cut_at(data, set(cuts))))


async def leave_at_random(
    proxy: RunningProxy, upstream: FakeUpstream, rng: random.Random, gate: asyncio.Event
) -> None:
    """Open one stream and close the connection at a random stage or byte."""
    stage = rng.choice(STAGES)
    upstream.enqueue(random_script(rng, stage, gate))
    seen = len(upstream.requests)
    client = await RawClient.connect(proxy.url)
    await client.send(raw_chat())
    await eventually(lambda: len(upstream.requests) > seen, "the upstream has the request")
    if stage == "after-headers":
        await client.reader.readuntil(b"\r\n\r\n")
    elif stage == "first-event":
        await client.reader.readuntil(b"\n\n")
    elif stage == "heartbeat":
        await client.reader.readuntil(b": ping")
    elif stage == "bytes":
        await ignore(client.reader.readexactly(rng.randint(0, 600)))
    client.close(abort=rng.random() < 0.5)


async def test_slots_return_when_clients_leave_at_random_moments(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=set_defaults(heartbeat_s=0.05))
    streams = 0
    for seed in range(30):
        rng = random.Random(seed)
        gate = asyncio.Event()
        for _ in range(rng.randint(1, 2)):  # up to alice's limit at once
            await leave_at_random(proxy, upstream, rng, gate)
            streams += 1
        gate.set()
        await slots_released(proxy)
        assert active_gauge(proxy) == 0, f"seed {seed}"
    assert len(await proxy.finished_lines(streams)) == streams  # each logged exactly once
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert (await response.read()).endswith(OPENAI_DONE)


async def test_refused_clients_are_sent_back_apart_around_when_a_slot_frees(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """The SDKs retry by themselves: told the same second, they all come back and fail again.
    Each 429 names its own moment (retry-after-ms), near when one of the slots should free."""
    proxy = await start_proxy(edit=add_user("carol", "CAROL_KEY", 3), environ={"CAROL_KEY": "k"})
    carol = {"Authorization": "Bearer k"}
    gate = asyncio.Event()
    held = [await open_held_stream(proxy, upstream, gate, **carol) for _ in range(3)]
    told = []
    for _ in range(20):
        refused = await proxy.post("/v1/chat/completions", CHAT, **carol)
        assert refused.status == 429
        milliseconds = int(refused.headers["retry-after-ms"])
        assert refused.headers["Retry-After"] == str(math.ceil(milliseconds / 1000))
        told.append(milliseconds)
    assert len(set(told)) >= 15
    assert all(50 <= ms <= 60_000 for ms in told)
    await finish_all(gate, held)
