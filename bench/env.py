"""The benchmark's processes: the upstream child, the proxy child (restartable), an in-process
upstream that timestamps disconnects, and the client session."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.client import make_session, run_stream
from bench.load import Target
from bench.procs import Child, free_port, start_child, wait_ready, write_config
from bench.upstream import create_upstream_app, make_runner, request_body

CHAT_PATH = "/v1/chat/completions"
WARM_UP_REQUESTS = 20


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    inproc: web.Application  # the in-process upstream (disconnect timestamps)
    upstream: Child
    upstream_base: str
    proxy_port: int
    config: Path
    proxy_child: Child | None = None
    proxy_logs: list[Path] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The client session; a new one per proxy process, so no stale pooled connection to
        a stopped proxy is ever reused."""
        assert self._session is not None
        return self._session

    @property
    def proxy_base(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def _target(self, name: str, base: str) -> Target:
        assert self.proxy_child is not None
        return Target(name, base + CHAT_PATH, self.upstream_base, self.proxy_child.pid,
                      self.upstream.pid)  # fmt: skip

    @property
    def proxy(self) -> Target:
        return self._target("proxy", self.proxy_base)

    @property
    def direct(self) -> Target:
        return self._target("direct", self.upstream_base)

    async def start_proxy(self) -> None:
        """Start a proxy process (stopping the running one) and warm it up."""
        if self.proxy_child is not None:
            self.proxy_child.stop()
        if self._session is not None:
            await self._session.close()
        self._session = make_session()
        index = len(self.proxy_logs) + 1
        profile = self.args.profile_proxy
        wrap = ["-m", "cProfile", "-o", f"{profile}.{index}"] if profile else []
        module = ["-m", "proxy"]
        if self.args.proxy_gc or self.args.proxy_backlog:
            module = ["-m", "bench.proxy_wrap", "--gc", self.args.proxy_gc or "default"]
            if self.args.proxy_backlog:
                module += ["--backlog", str(self.args.proxy_backlog)]
        argv = [*wrap, *module, "--config", str(self.config), "--port", str(self.proxy_port)]
        self.proxy_child = start_child(f"proxy-{index}", argv, self.workdir)
        self.proxy_logs.append(self.proxy_child.log_path)
        await wait_ready(self.proxy_child, self.proxy_base + "/readyz")
        await warm_up(self)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.proxy_child is not None:
            self.proxy_child.stop()
        self.upstream.stop()


async def warm_up(bench: Bench, requests: int = WARM_UP_REQUESTS) -> None:
    body = request_body(8)
    for _ in range(requests):
        for target in (bench.direct, bench.proxy):
            result = await run_stream(bench.session, target.url, body)
            if not result.done:
                raise RuntimeError(f"warm-up failed on {target.name}: {result}")


@asynccontextmanager
async def in_process_upstream() -> AsyncIterator[tuple[web.Application, str]]:
    app = create_upstream_app()
    runner = make_runner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def environment(args: argparse.Namespace, workdir: Path) -> AsyncIterator[Bench]:
    """Everything running; the proxy started and warmed up; all stopped on exit."""
    upstream_port, proxy_port = free_port(), free_port()
    upstream_base = f"http://127.0.0.1:{upstream_port}"
    async with in_process_upstream() as (inproc_app, inproc_base):
        config = write_config(workdir, proxy_port, upstream_base, inproc_base, args.heartbeat_s)
        argv = ["-m", "bench.upstream", "--port", str(upstream_port)]
        upstream = start_child("upstream", argv, workdir)
        bench = Bench(args, workdir, inproc_app, upstream, upstream_base, proxy_port, config)
        try:
            await wait_ready(upstream, upstream_base + "/healthz")
            await bench.start_proxy()
            yield bench
        finally:
            await bench.stop()
