"""The demo launcher (`./scripts/demo` runs `python -m proxy.demo.launch`) as a user runs it.

Its ports are taken first by an impostor: a real server on 127.0.0.1 that answers like a proxy
and a provider would, with its own text. The demo must show its own streams, never one from the
impostor (which must see no request at all), print the child's own error on the terminal, and
say where it listens instead. The demo's default ports (8080, 9100) are never used here: the
tests take free ports and pass them as the ports to try first.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from proxy.demo.text import reply_text

ROOT = Path(__file__).resolve().parents[2]
RUN_S = 60  # what a whole --once run may take on a loaded machine
FAST = ["--token-delay-ms", "0", "--first-token-delay-ms", "0"]
TAKEN = "Address already in use"
OPENAI_TEXT = reply_text("Hello through the proxy")
ANTHROPIC_START = "You said “Hello in the Anthropic dialect”."


class Impostor:
    """Another server on a port the demo would like: it answers everything, and records it."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(f"{request.method} {request.path}")
        if request.method == "GET":
            return web.json_response({"ready": True, "status": "ok"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"delta": {"content": "IMPOSTOR"}}]}\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]


@pytest.fixture
async def impostor() -> AsyncIterator[Impostor]:
    server = Impostor()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def launch(tmp_path: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy.demo.launch", *FAST, *args,
        cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def run_once(tmp_path: Path, *args: str) -> tuple[int, str]:
    """`--once` to its end: (exit status, everything it printed on the terminal)."""
    process = await launch(tmp_path, "--once", *args)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), RUN_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


def listening_url(output: str, name: str) -> str:
    match = re.search(rf"^{name}: +(http://127\.0\.0\.1:\d+)", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def assert_shows_its_own_streams(output: str) -> None:
    assert f"text:  {OPENAI_TEXT}" in output
    assert f"text:  {ANTHROPIC_START}" in output
    assert "IMPOSTOR" not in output
    assert output.count("stream.finished") == 2 + 1  # the two log lines and their heading


async def test_a_taken_proxy_port_gets_its_error_shown_and_a_free_port(
    tmp_path: Path, impostor: Impostor
) -> None:
    port = impostor.port
    status, output = await run_once(tmp_path, "--proxy-port", str(port), "--provider-port", "0")

    assert status == 0, output
    assert f"cannot listen on 127.0.0.1:{port}: {TAKEN}" in output  # the proxy's own words
    assert f"*** port {port} is taken by another program" in output
    url = listening_url(output, "proxy")
    assert url != f"http://127.0.0.1:{port}"
    assert f"$ POST {url}/v1/chat/completions" in output
    assert_shows_its_own_streams(output)
    assert impostor.seen == []


async def test_a_taken_provider_port_gets_its_error_shown_and_a_free_port(
    tmp_path: Path, impostor: Impostor
) -> None:
    port = impostor.port
    status, output = await run_once(tmp_path, "--provider-port", str(port), "--proxy-port", "0")

    assert status == 0, output
    assert f"cannot listen on 127.0.0.1:{port}: {TAKEN}" in output  # the provider's own words
    assert f"*** port {port} is taken by another program" in output
    assert listening_url(output, "demo provider") != f"http://127.0.0.1:{port}"
    assert_shows_its_own_streams(output)  # the proxy was sent to the real provider
    assert impostor.seen == []


async def test_a_child_that_fails_otherwise_has_its_error_shown_and_the_demo_stops(
    tmp_path: Path,
) -> None:
    config = tmp_path / "broken.yaml"
    demo_yaml = (ROOT / "config" / "demo.yaml").read_text(encoding="utf-8")
    config.write_text(demo_yaml.replace("  port: 8080", "  prot: 8080"), encoding="utf-8")

    status, output = await run_once(
        tmp_path, "--config", str(config), "--proxy-port", "0", "--provider-port", "0"
    )

    assert status == 1, output
    assert "the proxy exited with status 1:" in output
    assert "server.prot: unknown key; did you mean 'port'?" in output
    assert "$ POST" not in output  # nothing shown from anywhere else


async def read_until(process: asyncio.subprocess.Process, text: str) -> str:
    assert process.stdout is not None
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(process.stdout.readline(), RUN_S)
        assert line, f"the demo ended before printing {text!r}:\n{seen}"
        seen += line.decode()
    return seen


async def test_serving_prints_the_curl_for_its_real_port_and_ctrl_c_stops_everything(
    tmp_path: Path, impostor: Impostor
) -> None:
    process = await launch(tmp_path, "--proxy-port", str(impostor.port), "--provider-port", "0")
    try:
        output = await read_until(process, "Ctrl-C stops it.")
        url = listening_url(output, "proxy")
        assert f"The proxy is serving on {url} (not {impostor.port}, which is taken)" in output
        assert f"  curl -N {url}/v1/chat/completions" in output
        body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/v1/chat/completions", json=body) as response:
                assert response.status == 200
                assert b"data: [DONE]" in await response.read()
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), RUN_S) == 0
            with pytest.raises(aiohttp.ClientConnectionError):  # its children are gone too
                await session.get(url + "/healthz")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert impostor.seen == []
