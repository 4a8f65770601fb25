"""Endpoints besides the streams: `GET /v1/models`, which many tools call first, Anthropic's
`count_tokens`, any method a routed path is called with. The upstream decides what they mean;
the proxy gives them the same auth, limits, metrics and log lines as every request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.outcome_checks import slots_released
from tests.support.running_proxy import CANARY_UPSTREAM_KEY, ProxyFactory

MODELS = {"object": "list", "data": [{"id": "gpt-test", "object": "model"}]}
COUNT = {"model": "claude-test", "messages": [{"role": "user", "content": "hi"}]}


def route_the_endpoints(document: dict[str, Any]) -> None:
    upstreams = document["routes"][0]["upstreams"]
    document["routes"][0]["models"] = ["gpt-*"]  # chat routes by model; /v1/models has none
    document["routes"].insert(0, {"name": "models", "paths": ["/v1/models"],
                                  "provider": "openai", "upstreams": upstreams})  # fmt: skip
    document["routes"][-1]["paths"].append("/v1/messages/count_tokens")


def json_answer(body: object, hold_headers: asyncio.Event | None = None) -> Script:
    whole = json.dumps(body).encode()
    return Script(whole_body=whole, content_type="application/json", hold_headers=hold_headers)


async def test_get_models_is_proxied_with_the_operators_key(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    upstream.enqueue(json_answer(MODELS))
    async with proxy.session.get(proxy.url + "/v1/models", headers=proxy.headers()) as got:
        assert (got.status, await got.json()) == (200, MODELS)
    seen = upstream.requests[0]
    assert (seen.method, seen.path, seen.body) == ("GET", "/v1/models", b"")
    assert seen.headers["Authorization"] == f"Bearer {CANARY_UPSTREAM_KEY}"
    line = await proxy.finished_line()
    assert (line["method"], line["path"], line["route"]) == ("GET", "/v1/models", "models")
    assert (line["status"], line["outcome"], line["stream"]) == (200, "completed", False)
    labels = {"route": "models", "stream": "false", "outcome": "completed"}
    assert proxy.metric("llm_proxy_requests_total", **labels) == 1


async def test_the_endpoints_need_a_key_like_every_request(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    async with proxy.session.get(proxy.url + "/v1/models") as got:
        assert got.status == 401
        assert (await got.json())["error"]["type"] == "authentication_error"
    url = proxy.url + "/v1/messages/count_tokens"
    async with proxy.session.post(url, json=COUNT) as counted:
        assert counted.status == 401
        assert (await counted.json())["type"] == "error"  # Anthropic's shape, for its path
    assert upstream.requests == []


async def test_count_tokens_reaches_the_anthropic_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    upstream.enqueue(json_answer({"input_tokens": 9}))
    url = proxy.url + "/v1/messages/count_tokens"
    async with proxy.session.post(url, json=COUNT, headers=proxy.headers()) as counted:
        assert (counted.status, await counted.json()) == (200, {"input_tokens": 9})
    seen = upstream.requests[0]
    assert (seen.path, seen.headers["x-api-key"]) == (
        "/v1/messages/count_tokens",
        CANARY_UPSTREAM_KEY,
    )
    assert (await proxy.finished_line())["route"] == "anthropic"


async def test_a_request_that_is_not_a_stream_holds_its_slot_only_while_it_runs(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    answer_now = asyncio.Event()
    upstream.enqueue(json_answer(MODELS, hold_headers=answer_now))
    listing = asyncio.ensure_future(
        proxy.session.get(proxy.url + "/v1/models", headers=proxy.headers())
    )
    await slots_released(proxy, held=1)
    answer_now.set()
    async with await listing as got:
        assert got.status == 200
    await slots_released(proxy)


async def test_any_method_on_a_routed_path_is_the_upstreams_to_answer(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    upstream.enqueue(Script(status=405, whole_body=b'{"error": {"message": "no"}}',
                            content_type="application/json"))  # fmt: skip
    async with proxy.session.delete(proxy.url + "/v1/models", headers=proxy.headers()) as got:
        assert got.status == 405
        assert await got.json() == {"error": {"message": "no"}}
    assert upstream.requests[0].method == "DELETE"


async def test_whole_answers_count_the_bytes_written(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=route_the_endpoints)
    body = json.dumps(MODELS).encode()
    upstream.enqueue(json_answer(MODELS))
    async with proxy.session.get(proxy.url + "/v1/models", headers=proxy.headers()) as got:
        assert await got.read() == body
    async with proxy.session.get(proxy.url + "/v1/nowhere", headers=proxy.headers()) as missing:
        refusal = await missing.read()
    lines = await proxy.finished_lines(2)
    assert [line["bytes_out"] for line in lines] == [len(body), len(refusal)]
