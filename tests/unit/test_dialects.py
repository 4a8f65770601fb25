"""What the OpenAI dialect reads from an event, and what the record makes of it (pure, no I/O).

These decide the metrics a user watches: a first token missed delays TTFT, a terminator missed
turns a complete stream into `truncated`, hidden reasoning tokens counted as streamed ones put
tokens per second in the `+Inf` bucket.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.core.dialects import Signal
from proxy.core.dialects.openai import OPENAI
from proxy.core.endings import stream_completed
from proxy.core.sse import SSEEvent
from proxy.core.stats import RequestRecord

COMPLETED = stream_completed(upstream_reported_error=False)


def chat(delta: dict[str, Any], **extra: Any) -> SSEEvent:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}], **extra}
    return SSEEvent("message", json.dumps(chunk), None, None)


def responses(event_type: str, **body: Any) -> SSEEvent:
    return SSEEvent(event_type, json.dumps({"type": event_type, **body}), None, None)


CONTENT_CASES = {
    "text": (chat({"content": "Hi"}), True, False),
    "role-only": (chat({"role": "assistant", "content": ""}), False, False),
    "refusal": (chat({"refusal": "I can't help with that."}), True, False),
    "audio": (chat({"audio": {"id": "a1", "data": "UklGR...", "transcript": "Hi"}}), True, False),
    "tool-call": (
        chat({"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}),
        True,
        False,
    ),
    "reasoning_content": (chat({"reasoning_content": "Let me think"}), True, True),
    "reasoning": (chat({"reasoning": "Let me think"}), True, True),
    "responses-text": (responses("response.output_text.delta", delta="Hi"), True, False),
    "responses-raw-reasoning": (responses("response.reasoning_text.delta", delta="Hm"), True, True),
    "responses-summary": (
        responses("response.reasoning_summary_text.delta", delta="Thought about it"),
        True,
        False,
    ),
}


@pytest.mark.parametrize(("event", "content", "reasoning"), CONTENT_CASES.values(),
                         ids=list(CONTENT_CASES))  # fmt: skip
def test_which_events_carry_content_and_which_of_it_is_reasoning(
    event: SSEEvent, content: bool, reasoning: bool
) -> None:
    signal = OPENAI.interpret(event)
    assert (signal.content, signal.reasoning) == (content, reasoning)


@pytest.mark.parametrize("data", ["[DONE]", "[DONE] ", "[DONE]\n"])
def test_done_is_read_the_way_the_sdk_reads_it(data: str) -> None:
    assert OPENAI.interpret(SSEEvent("message", data, None, None)).terminal


def test_json_after_more_than_one_space_is_still_read() -> None:
    event = SSEEvent("message", " " + chat({"content": "Hi"}).data, None, None)
    assert OPENAI.interpret(event).content


def test_usage_reports_its_reasoning_tokens() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2002,
             "completion_tokens_details": {"reasoning_tokens": 2000}}  # fmt: skip
    signal = OPENAI.interpret(chat({}, usage=usage))
    assert (signal.output_tokens, signal.reasoning_tokens) == (2002, 2000)
    final = responses("response.completed", response={"usage": {
        "input_tokens": 5, "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 256}
    }})  # fmt: skip
    assert OPENAI.interpret(final).reasoning_tokens == 256


def record_of(*timed: tuple[float, Signal]) -> RequestRecord:
    record = RequestRecord(request_id="r", started=0.0, stream=True)
    for at, signal in timed:
        record.on_event(signal, at)
    return record


HIDDEN_REASONING_USAGE = Signal(output_tokens=2002, reasoning_tokens=2000)


def test_hidden_reasoning_tokens_are_not_in_the_streaming_rate() -> None:
    """o-series: 2000 reasoning tokens before the first word, 2 words streamed in 0.5 s."""
    record = record_of((1.0, Signal(content=True)), (1.5, Signal(content=True)),
                       (1.6, HIDDEN_REASONING_USAGE))  # fmt: skip
    report = record.report(2.0, COMPLETED)
    assert (report.output_tokens, report.tokens_source) == (2002, "usage")  # billed: all of them
    assert report.tokens_per_s == pytest.approx(2 / 0.5)


def test_streamed_reasoning_tokens_are_in_the_streaming_rate() -> None:
    """DeepSeek-style: the reasoning itself was streamed within the span, so it counts."""
    record = record_of((1.0, Signal(content=True, reasoning=True)), (1.5, Signal(content=True)),
                       (1.6, HIDDEN_REASONING_USAGE))  # fmt: skip
    assert record.report(2.0, COMPLETED).tokens_per_s == pytest.approx(2002 / 0.5)
