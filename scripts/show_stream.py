"""Wait for the proxy to be ready, then show one stream per dialect as it arrives."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

CHAT = {
    "model": "demo",
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "Hello through the proxy"}],
}
MESSAGES = {
    "model": "demo",
    "stream": True,
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Hello in the Anthropic dialect"}],
}


async def wait_ready(session: aiohttp.ClientSession, base: str, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            async with session.get(base + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)  # polling a process we started; nothing to await instead
    sys.exit(f"proxy at {base} did not become ready within {deadline_s:g} s")


async def show(session: aiohttp.ClientSession, url: str, payload: dict[str, object]) -> None:
    print(f"\n$ POST {url}  (stream: true)")
    started = time.monotonic()
    async with session.post(url, json=payload) as response:
        print(f"HTTP {response.status}  X-Request-Id: {response.headers.get('X-Request-Id')}")
        async for chunk in response.content.iter_any():
            elapsed_ms = (time.monotonic() - started) * 1000
            for line in chunk.decode("utf-8", errors="replace").splitlines():
                if line:
                    print(f"{elapsed_ms:8.1f} ms | {line[:110]}")


async def main(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, base)
        await show(session, base + "/v1/chat/completions", CHAT)
        await show(session, base + "/v1/messages", MESSAGES)
        async with session.get(base + "/metrics") as response:
            text = await response.text()
        print("\n$ GET /metrics  (llm_proxy_requests_total)")
        for line in text.splitlines():
            if line.startswith("llm_proxy_requests_total"):
                print(line)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"))
