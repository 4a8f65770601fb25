"""The runtime snapshot (issue 7.1): a request takes the snapshot once, when it starts, and keeps
it to its end; replacing the snapshot is one assignment, and only requests that start afterwards
see the new one. This is the whole of what a hot reload has to do."""

from __future__ import annotations

import asyncio

from proxy import keys
from proxy.config.load import parse_config
from proxy.core.runtime import build_runtime
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.request_bodies import CHAT, MESSAGES
from tests.support.running_proxy import ENVIRON, RunningProxy, base_document
from tests.support.sse_builders import OPENAI_DONE, ROLE, chat_chunk, chat_stream


def renamed_openai_route_only(upstream: FakeUpstream) -> dict[str, object]:
    """The proxy's config with its OpenAI route renamed and its Anthropic route gone."""
    document = base_document(upstream.url)
    openai = next(route for route in document["routes"] if route["name"] == "openai")
    document["routes"] = [{**openai, "name": "openai-next"}]
    return document


async def test_a_stream_keeps_the_snapshot_it_started_with_and_new_requests_take_the_new_one(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    gate = asyncio.Event()
    upstream.enqueue(Script(steps=[ROLE, Hold(gate), chat_chunk("late"), OPENAI_DONE]))
    held = await proxy.post("/v1/chat/completions", CHAT)
    assert held.status == 200
    await held.content.readuntil(b"\n\n")  # the role chunk: the stream is under way

    new_config = parse_config(renamed_openai_route_only(upstream), ENVIRON)
    proxy.app[keys.RUNTIME].snapshot = build_runtime(new_config)  # the reload: one assignment

    upstream.enqueue(Script(steps=chat_stream("fresh")))
    fresh = await proxy.post("/v1/chat/completions", CHAT)
    assert (await fresh.read()).endswith(OPENAI_DONE)
    gone = await proxy.post("/v1/messages", MESSAGES)
    assert gone.status == 404  # the new snapshot routes no Anthropic path

    gate.set()
    rest = await held.read()
    assert b'"late"' in rest and rest.endswith(OPENAI_DONE)  # the old route, to its end
    lines = await proxy.finished_lines(3)
    assert sorted((line["route"] or "", line["path"], line["status"]) for line in lines) == [
        ("", "/v1/messages", 404),  # refused before any route
        ("openai", "/v1/chat/completions", 200),  # the held stream: the snapshot it started with
        ("openai-next", "/v1/chat/completions", 200),  # the fresh request: the new snapshot
    ]
