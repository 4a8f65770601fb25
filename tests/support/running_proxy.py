"""The real proxy on a real socket on 127.0.0.1, in front of the fake upstream: its config
document, the canary keys it is given, and a handle on what it logs and counts."""

from __future__ import annotations

import copy
import functools
import io
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from proxy.app import create_app, make_runner
from proxy.config.load import parse_config
from proxy.config.models import Config
from proxy.limits.memory import MemoryLimiter
from proxy.log import configure_logging
from tests.support.config_edits import Edit
from tests.support.metrics import sample_value
from tests.support.waits import eventually

CANARY_UPSTREAM_KEY = "sk-canary-UPSTREAM-7f3e9b2a41d8c6"
CANARY_CLIENT_KEY = "pk-canary-CLIENT-5c1d8e0f9a2b47"
ENVIRON = {"CANARY_UPSTREAM_KEY": CANARY_UPSTREAM_KEY, "CANARY_CLIENT_KEY": CANARY_CLIENT_KEY}


def base_document(upstream_url: str) -> dict[str, Any]:
    """A config document with an OpenAI and an Anthropic route on the fake upstream."""
    upstream = {"name": "fake", "url": upstream_url, "api_key_env": "CANARY_UPSTREAM_KEY"}
    return {
        "server": {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 65536},
        "logging": {"level": "info", "format": "json"},
        "defaults": {
            "heartbeat_s": 30,
            "timeouts": {"connect_s": 2, "first_byte_s": 30, "idle_s": 30, "max_stream_s": 60},
            "max_concurrent_streams_per_user": 2,
        },
        "auth": {
            "mode": "keys",
            "users": [
                {"name": "alice", "key_env": "CANARY_CLIENT_KEY"},
                {"name": "bob", "key_sha256": "0" * 64, "max_concurrent_streams": 1},
            ],
        },
        "routes": [
            {"name": "openai", "paths": ["/v1/chat/completions", "/v1/completions",
             "/v1/responses"], "provider": "openai", "upstreams": [dict(upstream)]},
            {"name": "anthropic", "paths": ["/v1/messages"], "provider": "anthropic",
             "upstreams": [dict(upstream)]},
        ],
    }  # fmt: skip


@dataclass
class RunningProxy:
    url: str
    app: web.Application
    config: Config
    registry: CollectorRegistry
    limiter: MemoryLimiter
    log_stream: io.StringIO
    session: aiohttp.ClientSession
    runner: web.AppRunner

    def log_lines(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (only those of `event`, if given)."""
        lines = [json.loads(line) for line in self.log_stream.getvalue().splitlines() if line]
        return [line for line in lines if event is None or line.get("event") == event]

    async def finished_lines(self, count: int) -> list[dict[str, Any]]:
        """The `stream.finished` lines once there are `count` of them, and never more: a
        response can reach the client a moment before the handler's `finally` logs it."""
        written = functools.partial(self.log_lines, "stream.finished")
        await eventually(lambda: len(written()) >= count, f"{count} stream.finished lines")
        lines = written()
        assert len(lines) == count, lines
        return lines

    async def finished_line(self, count: int = 1) -> dict[str, Any]:
        """The last `stream.finished` line, once `count` requests (and no more) have finished."""
        return (await self.finished_lines(count))[-1]

    def metric(self, name: str, **labels: str) -> float | None:
        """The one sample of `name` with `labels`, in the registry's exposition text."""
        return sample_value(generate_latest(self.registry).decode(), name, **labels)

    async def scrape(self) -> str:
        """The exposition text as Prometheus gets it: GET /metrics."""
        async with self.session.get(self.url + "/metrics") as response:
            assert response.status == 200
            return await response.text()

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {CANARY_CLIENT_KEY}", **extra}

    async def post(self, path: str, payload: Any, **headers: str) -> aiohttp.ClientResponse:
        return await self.session.post(
            self.url + path, data=json.dumps(payload), headers=self.headers(**headers)
        )

    async def close(self) -> None:
        await self.session.close()
        await self.runner.cleanup()


ProxyFactory = Callable[..., Coroutine[Any, Any, RunningProxy]]


async def start_running_proxy(
    upstream_url: str, edit: Edit | None = None, environ: dict[str, str] | None = None
) -> RunningProxy:
    """Start the proxy on a free port; `edit(document)` may change the config document first."""
    document = copy.deepcopy(base_document(upstream_url))
    if edit is not None:
        edit(document)
    config = parse_config(document, {**ENVIRON, **(environ or {})})
    log_stream = io.StringIO()
    configure_logging("debug", "json", stream=log_stream)
    registry, limiter = CollectorRegistry(), MemoryLimiter()
    app = create_app(config, registry=registry, limiter=limiter)
    runner = make_runner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    session = aiohttp.ClientSession()
    url = f"http://127.0.0.1:{port}"
    return RunningProxy(url, app, config, registry, limiter, log_stream, session, runner)
