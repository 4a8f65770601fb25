"""Load scenarios: CPU per relayed event, memory per open stream, one stream's throughput."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.client import HEARTBEAT, StreamResult, run_stream
from bench.latency import reset_upstream, upstream_stats
from bench.procs import CpuSnapshot, counters_delta, open_fds, rss_kib, tcp_counters
from bench.stats import Summary
from bench.upstream import body_bytes, request_body

LOAD_TIMEOUT_S = 180.0
RAMP_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes, and the processes whose CPU is charged for it."""

    name: str  # "direct" or "proxy"
    url: str
    upstream_base: str
    proxy_pid: int
    upstream_pid: int


@dataclass
class LoadResult:
    target: str
    streams: int
    tokens: int
    token_delay_ms: float
    wall_s: float
    events: int  # content events received by the clients
    chunks: int  # body reads the clients made (events per chunk shows the coalescing)
    cpu: CpuSnapshot  # CPU seconds used during the run
    upstream_span_s: float  # upstream's first stream start -> last stream end
    first_event: Summary  # request sent -> first content event, per stream
    failures: list[str] = field(default_factory=list)
    tcp: dict[str, int] = field(default_factory=dict)  # machine-wide TCP counters that moved

    @property
    def client_rate(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def upstream_rate(self) -> float:
        return self.events / self.upstream_span_s if self.upstream_span_s > 0 else 0.0

    @property
    def proxy_cpu_per_10k(self) -> float:
        return self.cpu.proxy / self.events * 10_000 if self.events else float("nan")


def _verify(result: StreamResult, tokens: int) -> str | None:
    expected = body_bytes(tokens) + result.heartbeats * len(HEARTBEAT)
    complete = result.done and result.eof and result.content_events == tokens
    if result.error or result.status != 200 or not complete or result.bytes != expected:
        return (
            f"status={result.status} content={result.content_events}/{tokens} done={result.done} "
            f"eof={result.eof} bytes={result.bytes}/{expected} error={result.error}"
        )
    return None


async def run_load(
    session: aiohttp.ClientSession, target: Target, streams: int, tokens: int,
    token_delay_ms: float = 0.0,
) -> LoadResult:  # fmt: skip
    """`streams` concurrent streams of `tokens` content events each; CPU measured around it."""
    body = request_body(tokens, token_delay_ms=token_delay_ms)
    await reset_upstream(session, target.upstream_base)
    before, counters = CpuSnapshot.take(target.proxy_pid, target.upstream_pid), tcp_counters()
    started = time.monotonic()
    async with asyncio.timeout(LOAD_TIMEOUT_S):
        streaming = (run_stream(session, target.url, body, timeout_s=LOAD_TIMEOUT_S)
                     for _ in range(streams))  # fmt: skip
        results = await asyncio.gather(*streaming)
    wall = time.monotonic() - started
    used = CpuSnapshot.take(target.proxy_pid, target.upstream_pid) - before
    stats = await upstream_stats(session, target.upstream_base)
    span = (stats["last_end"] or 0.0) - (stats["first_start"] or 0.0)
    failures = [problem for r in results if (problem := _verify(r, tokens)) is not None]
    return LoadResult(
        target=target.name, streams=streams, tokens=tokens, token_delay_ms=token_delay_ms,
        wall_s=wall, events=sum(r.content_events for r in results),
        chunks=sum(r.chunks for r in results), cpu=used, upstream_span_s=span,
        first_event=Summary.of([r.ttft_s for r in results if r.ttft_s is not None]),
        failures=failures, tcp=counters_delta(counters, tcp_counters()),
    )  # fmt: skip


@dataclass
class MemoryResult:
    streams: int
    hold_s: float
    heartbeat_s: float
    request_bytes: int  # each request body's size
    idle_kib: int
    open_kib: list[int]  # samples while every stream was open and waiting
    after_kib: int  # once all streams ended, after a pause
    fds_idle: int
    fds_open: int
    first_event: Summary  # request sent -> first content event, with all streams starting at once
    got_first: int
    open_at_sample: int
    heartbeats: Summary
    failures: list[str] = field(default_factory=list)
    tcp: dict[str, int] = field(default_factory=dict)  # machine-wide TCP counters that moved

    @property
    def per_stream_kib(self) -> float:
        return (max(self.open_kib) - self.idle_kib) / self.streams

    @property
    def per_stream_median_kib(self) -> float:
        return (sorted(self.open_kib)[len(self.open_kib) // 2] - self.idle_kib) / self.streams


async def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _sample_rss(pid: int, count: int, gap_s: float) -> list[int]:
    samples = []
    for _ in range(count):
        samples.append(rss_kib(pid))
        await asyncio.sleep(gap_s)
    return samples


async def measure_memory(
    session: aiohttp.ClientSession, target: Target, streams: int, hold_s: float,
    heartbeat_s: float, prompt_bytes: int = 0,
) -> MemoryResult:  # fmt: skip
    """Open `streams` streams that each send one token, stay silent `hold_s`, then finish."""
    body = request_body(2, token_delay_ms=hold_s * 1000, prompt_bytes=prompt_bytes)
    idle = min(await _sample_rss(target.proxy_pid, 3, 0.1))
    fds_idle, counters = open_fds(target.proxy_pid), tcp_counters()
    results = [StreamResult() for _ in range(streams)]
    limit = hold_s + RAMP_TIMEOUT_S
    tasks = [asyncio.ensure_future(run_stream(session, target.url, body, r, timeout_s=limit))
             for r in results]  # fmt: skip
    await _wait_until(lambda: all(r.content_events or r.error or r.done for r in results),
                      RAMP_TIMEOUT_S)  # fmt: skip
    await asyncio.sleep(min(1.0, hold_s / 4))
    open_at_sample = sum(r.content_events == 1 and not r.done and not r.error for r in results)
    fds_open = open_fds(target.proxy_pid)
    samples = await _sample_rss(target.proxy_pid, 5, 0.2)
    async with asyncio.timeout(limit + 5):
        await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)
    firsts = [r.ttft_s for r in results if r.ttft_s is not None]
    failures = [problem for r in results if (problem := _verify(r, 2)) is not None]
    return MemoryResult(
        streams=streams, hold_s=hold_s, heartbeat_s=heartbeat_s, request_bytes=len(body),
        idle_kib=idle,
        open_kib=samples, after_kib=rss_kib(target.proxy_pid), fds_idle=fds_idle,
        fds_open=fds_open, first_event=Summary.of(firsts), got_first=len(firsts),
        open_at_sample=open_at_sample,
        heartbeats=Summary.of([float(r.heartbeats) for r in results]), failures=failures,
        tcp=counters_delta(counters, tcp_counters()),
    )  # fmt: skip
