"""A fast fake LLM upstream for the benchmark: OpenAI chat-completion-shaped SSE, paced per request.

`POST <any path>` with a JSON body streams a role chunk, `max_tokens` content chunks, a finish
chunk and `data: [DONE]`; every event is precomputed bytes, so the upstream does as little work
as possible per event. The body's `bench` object sets the pace of that one request:
`first_delay_ms` (before the first content chunk), `token_delay_ms` (between content chunks) and
`batch` (content chunks per write; 1 = one write per event, like a real provider), and
`headers_delay_ms` (before the response headers, like a provider still queueing the request),
`eof_with_done` (send `[DONE]` and the chunked terminator in one write instead of two), and
`eof_delay_ms` (a pause between `[DONE]` and the chunked terminator).

Each response carries `X-Bench-Connection-Requests`: how many requests its client connection
has carried, this one included (1 = a new connection). `GET /stats` returns counters (events
written, streams, distinct client connections, the first stream start and last stream end in
`time.monotonic()`), `POST /stats/reset` zeroes them.
Disconnects (a stream ended by its client before its last byte) are timestamped with
`time.monotonic()` and keyed by the request's `X-Request-Id`, for in-process waiters.

Run standalone: `python -m bench.upstream --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_ID = b'"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
_MODEL = b'"model":"bench-model","system_fingerprint":"fp_bench",'
_PREFIX = b"data: {" + _ID + _MODEL + b'"choices":[{"index":0,'
_GOING = b',"logprobs":null,"finish_reason":null}]}\n\n'
HEAD = _PREFIX + b'"delta":{"role":"assistant","content":""}' + _GOING
EVENT = _PREFIX + b'"delta":{"content":" token"}' + _GOING
FINISH = _PREFIX + b'"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n'
DONE = b"data: [DONE]\n\n"
CONTENT_MARKER = b'"delta":{"content":'
CONNECTION_REQUESTS = "X-Bench-Connection-Requests"  # 1 = the request came on a new connection
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def body_bytes(tokens: int) -> int:
    """The exact size of the SSE body the upstream sends for `tokens` content events."""
    return len(HEAD) + tokens * len(EVENT) + len(FINISH) + len(DONE)


def request_body(
    tokens: int,
    *,
    model: str = "bench-model",
    first_delay_ms: float = 0.0,
    token_delay_ms: float = 0.0,
    batch: int = 1,
    headers_delay_ms: float = 0.0,
    eof_with_done: bool = False,
    prompt_bytes: int = 0,
    eof_delay_ms: float = 0.0,
) -> bytes:
    """A chat-completions request body that asks this upstream for a given stream.

    `prompt_bytes` > 0 makes the conversation that long (many messages of ~1 KiB of words),
    like a real chat request with history."""
    pace = {"first_delay_ms": first_delay_ms, "token_delay_ms": token_delay_ms, "batch": batch,
            "headers_delay_ms": headers_delay_ms, "eof_with_done": eof_with_done,
            "eof_delay_ms": eof_delay_ms}  # fmt: skip
    body = {
        "model": model,
        "stream": True,
        "messages": _conversation(prompt_bytes),
        "max_tokens": tokens,
        "bench": pace,
    }
    return json.dumps(body).encode()


def _conversation(size: int) -> list[dict[str, str]]:
    messages = [{"role": "user", "content": "Say something."}]
    words = "the quick brown fox jumps over the lazy dog " * 23  # ~1 KiB
    for index in range(size // len(words)):
        messages.append({"role": "assistant" if index % 2 else "user", "content": words})
    return messages


@dataclass(frozen=True, slots=True)
class Pace:
    tokens: int
    first_delay_s: float
    token_delay_s: float
    batch: int
    headers_delay_s: float
    eof_with_done: bool
    eof_delay_s: float

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Pace:
        bench = body.get("bench") or {}
        return cls(
            tokens=int(body.get("max_tokens", 16)),
            first_delay_s=float(bench.get("first_delay_ms", 0)) / 1000,
            token_delay_s=float(bench.get("token_delay_ms", 0)) / 1000,
            batch=max(1, int(bench.get("batch", 1))),
            headers_delay_s=float(bench.get("headers_delay_ms", 0)) / 1000,
            eof_with_done=bench.get("eof_with_done") is True,
            eof_delay_s=float(bench.get("eof_delay_ms", 0)) / 1000,
        )


@dataclass
class UpstreamStats:
    events: int = 0
    streams: int = 0
    completed: int = 0
    first_start: float | None = None
    last_end: float | None = None
    peers: dict[tuple[str, int], int] = field(default_factory=dict)  # requests per connection
    disconnects: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events, "streams": self.streams, "completed": self.completed,
            "first_start": self.first_start, "last_end": self.last_end,
            "connections": len(self.peers), "disconnects": len(self.disconnects),
        }  # fmt: skip

    def disconnected(self, request_id: str) -> asyncio.Future[float]:
        """A future resolved with the monotonic time the stream `request_id` was cut."""
        future = self.waiters.get(request_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.waiters[request_id] = future
        if request_id in self.disconnects and not future.done():
            future.set_result(self.disconnects[request_id])
        return future

    def on_disconnect(self, request_id: str, at: float) -> None:
        self.disconnects[request_id] = at
        future = self.waiters.get(request_id)
        if future is not None and not future.done():
            future.set_result(at)


UPSTREAM_STATS = web.AppKey("upstream_stats", UpstreamStats)


async def _write_stream(
    request: web.Request, response: web.StreamResponse, pace: Pace, stats: UpstreamStats
) -> None:
    if pace.headers_delay_s > 0:
        await asyncio.sleep(pace.headers_delay_s)
    await response.prepare(request)
    await response.write(HEAD)
    if pace.first_delay_s > 0:
        await asyncio.sleep(pace.first_delay_s)
    sent = 0
    block = EVENT * pace.batch
    while sent < pace.tokens:
        if sent and pace.token_delay_s > 0:
            await asyncio.sleep(pace.token_delay_s)
        count = min(pace.batch, pace.tokens - sent)
        await response.write(block if count == pace.batch else EVENT * count)
        sent += count
        stats.events += count
    await response.write(FINISH)
    if pace.eof_with_done:
        await response.write_eof(DONE)
        return
    await response.write(DONE)
    if pace.eof_delay_s > 0:
        await asyncio.sleep(pace.eof_delay_s)
    await response.write_eof()


async def stream_handler(request: web.Request) -> web.StreamResponse:
    stats = request.app[UPSTREAM_STATS]
    pace = Pace.from_body(json.loads(await request.read()))
    peer = request.transport.get_extra_info("peername") if request.transport else None
    key = (str(peer[0]), int(peer[1])) if peer is not None else ("?", 0)
    stats.peers[key] = stats.peers.get(key, 0) + 1
    stats.streams += 1
    if stats.first_start is None:
        stats.first_start = time.monotonic()
    response = web.StreamResponse(headers=SSE_HEADERS)
    response.headers[CONNECTION_REQUESTS] = str(stats.peers[key])
    request_id = request.headers.get("X-Request-Id", "")
    try:
        await _write_stream(request, response, pace, stats)
    except asyncio.CancelledError:
        stats.on_disconnect(request_id, time.monotonic())
        raise
    except ConnectionError:
        stats.on_disconnect(request_id, time.monotonic())
        return response
    stats.completed += 1
    stats.last_end = time.monotonic()
    return response


async def stats_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[UPSTREAM_STATS].as_json())


async def reset_handler(request: web.Request) -> web.Response:
    request.app[UPSTREAM_STATS] = UpstreamStats()
    return web.json_response({"reset": True})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_upstream_app() -> web.Application:
    app = web.Application()
    app[UPSTREAM_STATS] = UpstreamStats()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats_handler)
    app.router.add_post("/stats/reset", reset_handler)
    app.router.add_post("/{tail:.*}", stream_handler)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """Handler cancellation on: a client that goes away is seen at once (connection_lost)."""
    return web.AppRunner(app, handler_cancellation=True, access_log=None)


async def _serve(host: str, port: int) -> None:
    runner = make_runner(create_upstream_app())
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=4096).start()
    print(f"bench upstream listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
