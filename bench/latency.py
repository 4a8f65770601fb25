"""Latency scenarios: added TTFT at one stream, and disconnect -> upstream close."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bench.client import StreamResult, run_stream
from bench.procs import INPROC_MODEL
from bench.stats import Summary
from bench.upstream import UPSTREAM_STATS, request_body

TTFT_TOKENS = 8
PROXY_TWO_WRITES = "[DONE], then the end of the body in a second write (as by default)"
PROXY_ONE_WRITE = "[DONE] and the end of the body in one write"
PROXY_LATE_EOF = "the end of the body 2 ms after [DONE]"
DISCONNECT_WAIT_S = 5.0


async def upstream_stats(session: aiohttp.ClientSession, base_url: str) -> dict[str, Any]:
    async with session.get(base_url + "/stats") as response:
        stats: dict[str, Any] = await response.json()
        return stats


async def reset_upstream(session: aiohttp.ClientSession, base_url: str) -> None:
    async with session.post(base_url + "/stats/reset") as response:
        await response.read()


@dataclass
class TtftSeries:
    label: str
    url: str
    body: bytes
    ttft: list[float] = field(default_factory=list)  # request sent -> first content event
    headers: list[float] = field(default_factory=list)  # request sent -> response headers
    new_upstream_connections: int = 0  # requests the upstream saw arrive on a fresh connection
    # Proxied requests whose upstream connection was not reused: the next proxied request came
    # on a fresh connection (requests are sequential, so the proxy's pool holds one connection).
    closed_after: int = 0

    @property
    def summary(self) -> Summary:
        return Summary.of(self.ttft)


@dataclass
class TtftResult:
    requests: int
    series: list[TtftSeries]  # direct, then through the proxy: interleaved, the headline
    reuse: list[TtftSeries]  # through the proxy, one block per way the upstream ends its body
    errors: list[str]

    def added(self, fraction: float = 0.5) -> float:
        """The proxy's TTFT minus the direct one, at the median (0.5) or p95 (0.95)."""
        direct, proxy = self.series[0].summary, self.series[1].summary
        if fraction == 0.5:
            return proxy.median - direct.median
        return proxy.p95 - direct.p95


def _record(series: TtftSeries, result: StreamResult, errors: list[str]) -> None:
    if result.error or result.status != 200 or not result.done or result.ttft_s is None:
        errors.append(f"{series.label}: status={result.status} done={result.done} "
                      f"error={result.error}")  # fmt: skip
        return
    series.ttft.append(result.ttft_s)
    series.headers.append(result.headers_s or 0.0)
    series.new_upstream_connections += result.upstream_connection_requests == 1


async def _run_series(
    session: aiohttp.ClientSession, series: list[TtftSeries], requests: int, proxied: str,
    errors: list[str],
) -> None:  # fmt: skip
    """Sequential requests, rotating over `series` (and over which goes first)."""
    previous: TtftSeries | None = None  # the last series sent through the proxy
    for index in range(requests):
        for offset in range(len(series)):
            one = series[(index + offset) % len(series)]
            result = await run_stream(session, one.url, one.body)
            _record(one, result, errors)
            if one.url == proxied:
                if previous is not None and result.upstream_connection_requests == 1:
                    previous.closed_after += 1
                previous = one


async def measure_ttft(
    session: aiohttp.ClientSession, direct: str, proxied: str, requests: int, warmup: int
) -> TtftResult:
    """Direct and proxied requests interleaved; then connection reuse by upstream ending."""
    body = request_body(TTFT_TOKENS)
    series = [TtftSeries("direct", direct, body), TtftSeries("proxy", proxied, body)]
    reuse = [
        TtftSeries(PROXY_TWO_WRITES, proxied, body),
        TtftSeries(PROXY_ONE_WRITE, proxied, request_body(TTFT_TOKENS, eof_with_done=True)),
        TtftSeries(PROXY_LATE_EOF, proxied, request_body(TTFT_TOKENS, eof_delay_ms=2)),
    ]
    for _ in range(warmup):
        for one in series:
            await run_stream(session, one.url, one.body)
    errors: list[str] = []
    await _run_series(session, series, requests, proxied, errors)
    for one in reuse:
        await _run_series(session, [one], max(1, requests // 2), proxied, errors)
    return TtftResult(requests=requests, series=series, reuse=reuse, errors=errors)


@dataclass
class DisconnectResult:
    name: str
    how: str
    latencies: list[float] = field(default_factory=list)
    missed: int = 0  # the upstream saw no close within DISCONNECT_WAIT_S
    errors: list[str] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        return Summary.of(self.latencies)


async def _close_mid_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, request_id: str, close_after: int
) -> float | str:
    """Read `close_after` events, close; the close time, or what went wrong."""
    result = await run_stream(session, url, body, request_id=request_id, close_after=close_after)
    if result.closed_at is None:
        return f"no close: status={result.status} events={result.events} error={result.error}"
    return result.closed_at


async def _close_before_headers(
    session: aiohttp.ClientSession, url: str, body: bytes, request_id: str, wait_s: float
) -> float | str:
    """Give up on the request while its response headers are still awaited."""
    task = asyncio.ensure_future(run_stream(session, url, body, request_id=request_id))
    await asyncio.sleep(wait_s)
    if task.done():
        return f"answered before the cancel: status={task.result().status}"
    closed_at = time.monotonic()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return closed_at


async def _wait_upstream_close(app: web.Application, request_id: str) -> float | None:
    waiter = app[UPSTREAM_STATS].disconnected(request_id)
    try:
        return await asyncio.wait_for(asyncio.shield(waiter), DISCONNECT_WAIT_S)
    except TimeoutError:
        return None


async def _variant(
    name: str, how: str, trials: int, trial: Any, app: web.Application
) -> DisconnectResult:
    outcome = DisconnectResult(name, how)
    for index in range(trials):
        request_id = f"disc-{name}-{index}"
        closed_at = await trial(request_id)
        if isinstance(closed_at, str):
            outcome.errors.append(closed_at)
            continue
        seen_at = await _wait_upstream_close(app, request_id)
        if seen_at is None:
            outcome.missed += 1
        else:
            outcome.latencies.append(seen_at - closed_at)
    return outcome


async def measure_disconnects(
    session: aiohttp.ClientSession, proxy_url: str, app: web.Application, trials: int
) -> list[DisconnectResult]:
    """Three moments to leave; the in-process upstream `app` timestamps its side of the close."""
    mid = request_body(1000, model=INPROC_MODEL, token_delay_ms=10)
    first = request_body(10, model=INPROC_MODEL, first_delay_ms=DISCONNECT_WAIT_S * 2000)
    queued = request_body(10, model=INPROC_MODEL, headers_delay_ms=DISCONNECT_WAIT_S * 2000)
    plans = [
        ("mid-stream", "token every 10 ms; close after role chunk + 3 content events",
         lambda rid: _close_mid_stream(session, proxy_url, mid, rid, 4)),
        ("before-first-token", "role chunk sent, first token due in 10 s; close after it",
         lambda rid: _close_mid_stream(session, proxy_url, first, rid, 1)),
        ("before-headers", "upstream holds its response headers 10 s; client gives up at 200 ms",
         lambda rid: _close_before_headers(session, proxy_url, queued, rid, 0.2)),
    ]  # fmt: skip
    return [await _variant(name, how, trials, trial, app) for name, how, trial in plans]
