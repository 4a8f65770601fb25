"""Show one stream per dialect through a running proxy as it arrives, then its request counters.

`python scripts/show_stream.py [--raw] [URL]` (URL: the proxy, default http://127.0.0.1:8080).
Each event is one line: its arrival time since the request was sent, and the text it carries (or
a short name: role chunk, `message_start`, usage, `[DONE]`...); `--raw` adds the event as it came
over the wire. `./scripts/demo` calls `show_all` once its own proxy has said where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping

import aiohttp

from proxy.demo.describe import BlockReader, describe, shortened, text_of

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
TIME_WIDTH = 11  # "   304.5 ms"


def say(line: str = "") -> None:
    print(line, flush=True)  # at once, also when stdout is a pipe: the times are the point


async def show_stream(
    session: aiohttp.ClientSession, url: str, payload: Mapping[str, object], raw: bool
) -> str:
    """Print one streamed request event by event; the whole text it carried."""
    say(f"\n$ POST {url}  (stream: true)")
    started = time.monotonic()
    texts: list[str] = []
    async with session.post(url, json=payload) as response:
        say(f"HTTP {response.status}  X-Request-Id: {response.headers.get('X-Request-Id')}")
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            say(shortened((await response.text()).strip(), 300))
            return ""
        reader = BlockReader()
        async for chunk in response.content.iter_any():
            elapsed_ms = (time.monotonic() - started) * 1000
            for block in reader.feed(chunk):
                say(f"{elapsed_ms:8.1f} ms  {describe(block)}")
                if raw:
                    for line in block:
                        say(f"{'':{TIME_WIDTH}}| {line}")
                texts.append(text_of(block))
    text = "".join(texts)
    say(f"{'text:':>{TIME_WIDTH}}  {text}")
    return text


async def show_counters(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/metrics") as response:
        text = await response.text()
    say("\n$ GET /metrics  (llm_proxy_requests_total)")
    for line in text.splitlines():
        if line.startswith("llm_proxy_requests_total"):
            say(line)


async def show_all(base: str, raw: bool = False) -> None:
    """Both dialects' streams through the proxy at `base`, then its request counters."""
    async with aiohttp.ClientSession() as session:  # trust_env=False: no proxy from the env
        await show_stream(session, base + "/v1/chat/completions", CHAT, raw)
        await show_stream(session, base + "/v1/messages", MESSAGES, raw)
        await show_counters(session, base)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/show_stream.py", description="Show a stream per dialect through the proxy."
    )
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080", help="the proxy")
    parser.add_argument("--raw", action="store_true", help="also print each event as it came")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = args.url.rstrip("/")
    try:
        asyncio.run(show_all(base, args.raw))
    except aiohttp.ClientError as error:
        sys.exit(f"cannot talk to the proxy at {base}: {error}")


if __name__ == "__main__":
    main()
