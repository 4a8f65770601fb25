"""Log lines have a size bound: client-controlled strings are cut, with a marker that says so.

`model` is cut to 256 characters, any other string value to 1,024 (a formatted traceback to
16,384), and what was cut ends in `…[cut N chars]`. aiohttp's own log records go through the same
chain.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from proxy.log import configure_logging, get_logger
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.request_bodies import CHAT
from tests.support.running_proxy import ProxyFactory, RunningProxy
from tests.support.sse_builders import OPENAI_DONE, ROLE, chat_chunk

HUGE = 1_000_000  # a model name of about 1 MB (the fake upstream reads at most 1 MiB)


def big_bodies(document: dict[str, Any]) -> None:
    document["server"]["max_body_bytes"] = 2 * HUGE


def raw_lines(proxy: RunningProxy) -> list[str]:
    return [line for line in proxy.log_stream.getvalue().splitlines() if line]


async def test_a_huge_model_name_is_cut_in_the_log_line_with_a_marker(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=big_bodies)
    response = await proxy.post("/v1/chat/completions", {**CHAT, "model": "m" * HUGE})
    assert response.status == 200
    assert (await response.read()).endswith(OPENAI_DONE)
    (line,) = await proxy.finished_lines(1)
    assert line["outcome"] == "completed"
    assert line["model"] == "m" * 256 + f"…[cut {HUGE - 256} chars]"
    assert max(len(text) for text in raw_lines(proxy)) < 4096


async def test_a_huge_model_name_is_cut_also_when_the_request_is_refused_with_429(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=big_bodies)
    gate = asyncio.Event()
    upstream.enqueue(
        *(Script(steps=[ROLE, Hold(gate), chat_chunk("x"), OPENAI_DONE]) for _ in range(2))
    )
    held = [await proxy.post("/v1/chat/completions", CHAT) for _ in range(2)]
    for _ in range(3):
        refused = await proxy.post("/v1/chat/completions", {**CHAT, "model": "m" * HUGE})
        assert refused.status == 429
    gate.set()
    for response in held:
        await response.read()
    lines = await proxy.finished_lines(5)
    assert [line["status"] for line in lines].count(429) == 3
    assert all(len(line["model"]) < 300 for line in lines)
    assert max(len(text) for text in raw_lines(proxy)) < 4096


@pytest.fixture
def log_output() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    return stream


def only_line(stream: io.StringIO) -> dict[str, Any]:
    (line,) = stream.getvalue().splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_every_string_of_our_own_lines_is_cut_also_inside_lists(log_output: io.StringIO) -> None:
    get_logger("proxy").info("x" * 5000, error="e" * 5000, errors=["a" * 2000, "ok"], n=7)
    line = only_line(log_output)
    assert line["event"] == "x" * 1024 + "…[cut 3976 chars]"
    assert line["error"] == "e" * 1024 + "…[cut 3976 chars]"
    assert line["errors"] == ["a" * 1024 + "…[cut 976 chars]", "ok"]
    assert line["n"] == 7


def test_aiohttps_own_log_records_are_cut_too(log_output: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request %s", "h" * 100_000)
    line = only_line(log_output)
    assert line["logger"] == "aiohttp.server"
    assert line["event"].endswith("…[cut 98999 chars]")
    assert len(line["event"]) < 1100


def test_a_traceback_carrying_a_client_string_is_cut(log_output: io.StringIO) -> None:
    try:
        raise ValueError("q" * 100_000)
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Unhandled exception")
    line = only_line(log_output)
    assert line["exception"].startswith("Traceback")
    assert "…[cut " in line["exception"]
    assert len(line["exception"]) < 16_384 + 32
