"""Graceful shutdown: open streams may finish within the grace period; after it they end with
an in-band error event, never a silent cut. /readyz turns 503 while draining."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import keys
from proxy.app import create_app, make_runner
from proxy.config.load import parse_config
from proxy.log import configure_logging
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.raw_http import RawClient, request_bytes
from tests.support.running_proxy import CANARY_CLIENT_KEY, ENVIRON, base_document

CHAT = {"model": "gpt-x", "stream": True, "messages": []}
FIRST = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


@asynccontextmanager
async def serving(upstream: FakeUpstream, grace_s: float) -> AsyncIterator[tuple[str, Any]]:
    document = base_document(upstream.url)
    document["server"]["shutdown_grace_s"] = grace_s
    configure_logging("info", "json", stream=io.StringIO())
    app = create_app(parse_config(document, ENVIRON), registry=CollectorRegistry())
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", runner
    finally:
        await runner.cleanup()


async def open_stream(url: str) -> RawClient:
    """A stream read by the raw client, which sees whether its last chunk arrives."""
    stream = await RawClient.connect(url)
    headers = [
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
    ]
    await stream.send(request_bytes("/v1/chat/completions", json.dumps(CHAT).encode(), headers))
    await stream.read_head()
    assert stream.status == 200
    assert await stream.read_until(b"\n\n") == FIRST
    return stream


async def test_a_stream_finishing_within_the_grace_period_completes(upstream: FakeUpstream):
    release = asyncio.Event()
    upstream.enqueue(Script(steps=[FIRST, Hold(release), b"data: [DONE]\n\n"]))
    async with serving(upstream, grace_s=30) as (url, runner):
        stream = await open_stream(url)
        stopping = asyncio.create_task(runner.cleanup())
        lifecycle = runner.app[keys.LIFECYCLE]
        await asyncio.wait_for(lifecycle.drain_started.wait(), 10)
        release.set()
        body = await stream.read_to_end()
        await asyncio.wait_for(stopping, 10)
    assert body == FIRST + b"data: [DONE]\n\n"
    assert stream.complete


async def test_a_stream_outliving_the_grace_period_gets_an_error_event(upstream: FakeUpstream):
    upstream.enqueue(Script(steps=[FIRST, Hold(asyncio.Event())]))
    async with serving(upstream, grace_s=0.2) as (url, runner):
        stream = await open_stream(url)
        await asyncio.wait_for(runner.cleanup(), 10)
        rest = (await stream.read_to_end())[len(FIRST) :]
    assert rest.startswith(b"data: ") and rest.endswith(b"\n\n")
    error = json.loads(rest[len(b"data: ") :])["error"]
    assert "shutting down" in error["message"]
    assert b"[DONE]" not in rest
    assert not stream.complete
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
