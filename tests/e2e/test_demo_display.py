"""The demo's display (`scripts/show_stream.py`, `proxy.demo.show`): per event its arrival time
and the text it carries, in both dialects, non-content events named briefly, `--raw` for the
wire; checked through the real proxy in front of the demo provider, and on odd wire input."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from proxy.core.dialects.anthropic import ANTHROPIC
from proxy.core.dialects.openai import OPENAI
from proxy.demo.app import DemoSettings, create_demo_app
from proxy.demo.describe import BlockReader, describe, text_of
from proxy.demo.show import show_all
from proxy.demo.text import reply_text, tokenize
from tests.support.running_proxy import ProxyFactory, RunningProxy

EVENT_LINE = re.compile(r"^ +\d+\.\d ms  (.*)$")  # "   304.5 ms  what it carries"
OPENAI_REPLY = reply_text("Hello through the proxy")
ANTHROPIC_TOKENS = tokenize(reply_text("Hello in the Anthropic dialect"))[:20]  # max_tokens 20


@pytest.fixture
async def open_proxy(start_proxy: ProxyFactory) -> AsyncIterator[RunningProxy]:
    """The proxy (auth mode none, as in config/demo.yaml) in front of the demo provider."""
    runner = web.AppRunner(create_demo_app(DemoSettings(0, 0)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    demo_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def edit(document: dict[str, Any]) -> None:
        document["auth"] = {"mode": "none"}
        for route in document["routes"]:
            route["upstreams"] = [{"name": "demo", "url": demo_url}]

    try:
        yield await start_proxy(edit)
    finally:
        await runner.cleanup()


def quoted(tokens: list[str]) -> list[str]:
    return [f'"{token}"' for token in tokens]


def between(lines: list[str], first: str, last: str) -> list[str]:
    """The lines from the one starting with `first` to the next starting with `last`."""
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(last))
    return lines[start : end + 1]


async def test_each_event_is_its_time_and_its_text_in_both_dialects(
    open_proxy: RunningProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    await show_all(open_proxy.url)
    lines = capsys.readouterr().out.splitlines()

    chat = between(lines, "$ POST", "      text:")
    events = [EVENT_LINE.match(line) for line in chat[2:-1]]
    assert all(events), chat
    assert [event.group(1) for event in events if event] == [
        "role: assistant",
        *quoted(tokenize(OPENAI_REPLY)),
        "finish_reason: stop",
        "usage: 4 input, 29 output tokens",
        "[DONE]",
    ]
    assert chat[-1] == f"      text:  {OPENAI_REPLY}"

    claude = between(lines[lines.index(chat[-1]) :], "$ POST", "      text:")
    assert claude[0].endswith("/v1/messages  (stream: true)")
    events = [EVENT_LINE.match(line) for line in claude[2:-1]]
    assert all(events), claude
    assert [event.group(1) for event in events if event] == [
        "message_start, usage: 5 input, 1 output tokens",
        "content_block_start",
        "ping",
        *quoted(ANTHROPIC_TOKENS),
        "content_block_stop",
        "message_delta, stop_reason: max_tokens, usage: 5 input, 20 output tokens",
        "message_stop",
    ]
    assert claude[-1] == f"      text:  {''.join(ANTHROPIC_TOKENS)}"

    counters = lines[lines.index("$ GET /metrics  (llm_proxy_requests_total)") + 1 :]
    assert counters == [
        'llm_proxy_requests_total{outcome="completed",route="openai",stream="true"} 1.0',
        'llm_proxy_requests_total{outcome="completed",route="anthropic",stream="true"} 1.0',
    ]


async def test_raw_adds_each_event_as_it_came_over_the_wire(
    open_proxy: RunningProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    await show_all(open_proxy.url, raw=True)
    lines = capsys.readouterr().out.splitlines()

    done = lines.index(next(line for line in lines if line.endswith("ms  [DONE]")))
    assert lines[done + 1] == "           | data: [DONE]"
    stop = lines.index(next(line for line in lines if line.endswith("ms  message_stop")))
    assert lines[stop + 1 : stop + 3] == [
        "           | event: message_stop",
        '           | data: {"type":"message_stop"}',
    ]
    first_token = next(i for i, line in enumerate(lines) if line.endswith('ms  "You"'))
    assert lines[first_token + 1].startswith('           | data: {"id":"chatcmpl-')
    assert '"delta":{"content":"You"}' in lines[first_token + 1]


# --- odd input on the wire ---------------------------------------------------------------------


def test_errors_in_the_proxys_own_shapes_are_named() -> None:
    openai_error, anthropic_error = (
        BlockReader().feed(dialect.error_event("upstream_error", "the upstream went away"))
        for dialect in (OPENAI, ANTHROPIC)
    )
    assert [describe(block) for block in openai_error] == ["error: the upstream went away"]
    assert [describe(block) for block in anthropic_error] == [
        "error: upstream_error: the upstream went away"
    ]


def test_heartbeats_line_endings_and_split_characters() -> None:
    wire = ': ping\r\n\r\ndata: {"choices": [{"text": "café"}]}\r\r'.encode()
    cut = wire.index("é".encode()) + 1  # inside the two bytes of é
    reader = BlockReader()
    blocks = reader.feed(wire[:cut]) + reader.feed(wire[cut:-1]) + reader.feed(wire[-1:])
    assert [describe(block) for block in blocks] == ["heartbeat : ping", '"café"']
    assert [text_of(block) for block in blocks] == ["", "café"]


def test_a_cr_lf_split_across_chunks_is_one_line_end() -> None:
    reader = BlockReader()
    blocks = reader.feed(b"data: [DONE]\r") + reader.feed(b"\n")
    assert blocks == []  # one line end so far, not the blank line that ends the event
    assert [describe(block) for block in reader.feed(b"\r\n")] == ["[DONE]"]


@pytest.mark.parametrize(
    ("wire", "said"),
    [
        (b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
         b'"delta": {"type": "thinking_delta", "thinking": "hm"}}\n\n', 'thinking: "hm"'),
        (b"data: not json\n\n", "data: not json"),
        (b'data: {"choices": [{"index": 0, "delta": {}}]}\n\n', "(no text)"),
        (b'event: response.created\ndata: {"type": "response.created"}\n\n', "response.created"),
    ],
)  # fmt: skip
def test_other_events_get_a_short_name(wire: bytes, said: str) -> None:
    (block,) = BlockReader().feed(wire)
    assert describe(block) == said
