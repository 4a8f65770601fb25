"""A demo LLM provider: OpenAI- and Anthropic-shaped token streams without any provider key.

`python -m proxy.demo [--host H] [--port P] [--token-delay-ms N] [--first-token-delay-ms N]`
serves `POST /v1/chat/completions`, `/v1/completions`, `/v1/responses` (OpenAI) and
`/v1/messages` (Anthropic), streaming (`"stream": true`) or not, plus `GET /v1/models`,
`POST /v1/messages/count_tokens` and `GET /healthz`.

This module is the HTTP side: it reads a request, derives its prompt and token budget, and paces
the writes like a model (a pause before the first content token, then one between tokens; each
SSE event is its own `write`). What is said and its wire shapes live in `proxy.demo.text`.
Tests and benchmarks use it as a deterministic upstream with both delays set to 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from proxy.demo.text import (
    AnthropicRenderer,
    Call,
    ChatRenderer,
    CompletionRenderer,
    Renderer,
    Reply,
    ResponsesRenderer,
    make_reply,
)
from proxy.lifecycle import stop_signals

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Prompt = tuple[list[str], str]  # (every text the model reads, the last user message)

_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
_dumps = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class DemoSettings:
    token_delay_s: float = 0.04
    first_token_delay_s: float = 0.3
    default_max_tokens: int = 40


class RequestError(ValueError):
    """The request body is unusable; the message goes back to the client in a 400 error."""


# --- reading requests ------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """A message's text: a string, or the `text` of a list of content parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = (part.get("text") for part in content if isinstance(part, Mapping))
        return " ".join(text for text in texts if isinstance(text, str))
    return ""


def _messages_prompt(messages: Any, instructions: Any = None, field: str = "messages") -> Prompt:
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise RequestError(f"'{field}' must be a list of message objects")
    texts = [_text_of(instructions), *(_text_of(m.get("content")) for m in messages)]
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    return texts, users[-1] if users else ""


def _chat_prompt(body: Mapping[str, Any]) -> Prompt:
    return _messages_prompt(body.get("messages"))


def _anthropic_prompt(body: Mapping[str, Any]) -> Prompt:
    return _messages_prompt(body.get("messages"), body.get("system"))


def _completion_prompt(body: Mapping[str, Any]) -> Prompt:
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and all(isinstance(part, str) for part in prompt):
        prompt = "\n".join(prompt)
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string or a list of strings")
    return [prompt], prompt


def _responses_prompt(body: Mapping[str, Any]) -> Prompt:
    given, instructions = body.get("input", ""), body.get("instructions")
    if isinstance(given, str):
        return [_text_of(instructions), given], given
    return _messages_prompt(given, instructions, field="input")


def _max_tokens(body: Mapping[str, Any], keys: Iterable[str], default: int) -> int:
    """The first of `keys` present in the body, which must be a positive integer."""
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer")
        return value
    return default


async def _read_json(request: web.Request) -> Mapping[str, Any]:
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):  # includes UnicodeDecodeError; nesting too deep
        raise RequestError("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    return body


def _openai_error(message: str) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return web.json_response({"error": error}, status=400, dumps=_dumps)


def _anthropic_error(message: str) -> web.Response:
    error = {"type": "invalid_request_error", "message": message}
    return web.json_response({"type": "error", "error": error}, status=400, dumps=_dumps)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    prompt: Callable[[Mapping[str, Any]], Prompt]
    max_token_keys: tuple[str, ...]
    renderer: Callable[[Call], Renderer]
    error: Callable[[str], web.Response]


_ENDPOINTS = {
    "/v1/chat/completions": _Endpoint(
        _chat_prompt, ("max_completion_tokens", "max_tokens"), ChatRenderer, _openai_error
    ),
    "/v1/completions": _Endpoint(
        _completion_prompt, ("max_tokens",), CompletionRenderer, _openai_error
    ),
    "/v1/responses": _Endpoint(
        _responses_prompt, ("max_output_tokens",), ResponsesRenderer, _openai_error
    ),
    "/v1/messages": _Endpoint(
        _anthropic_prompt, ("max_tokens",), AnthropicRenderer, _anthropic_error
    ),
}


# --- answering -------------------------------------------------------------------------------


def _reply_to(body: Mapping[str, Any], endpoint: _Endpoint, settings: DemoSettings) -> Reply:
    texts, last_user = endpoint.prompt(body)
    budget = _max_tokens(body, endpoint.max_token_keys, settings.default_max_tokens)
    return make_reply(last_user, sum(len(text.split()) for text in texts), budget)


def _new_call(body: Mapping[str, Any], reply: Reply, ids: Iterator[int]) -> Call:
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    model = body.get("model")
    model = model if isinstance(model, str) and model else "demo"
    return Call(reply, model, f"demo{next(ids):06d}", int(time.time()), include_usage)


def _encode(name: str | None, payload: Any) -> bytes:
    data = payload if isinstance(payload, str) else _dumps(payload)
    return f"event: {name}\ndata: {data}\n\n".encode() if name else f"data: {data}\n\n".encode()


async def _pause(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


async def _stream(
    request: web.Request, renderer: Renderer, reply: Reply, settings: DemoSettings
) -> web.StreamResponse:
    response = web.StreamResponse(headers=_SSE_HEADERS)
    await response.prepare(request)
    try:
        for event in renderer.head():
            await response.write(_encode(*event))
        for index, token in enumerate(reply.tokens):
            await _pause(settings.first_token_delay_s if index == 0 else settings.token_delay_s)
            await response.write(_encode(*renderer.token(token)))
        for event in renderer.tail():
            await response.write(_encode(*event))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away: stop generating for it
    return response


def _handler(endpoint: _Endpoint, settings: DemoSettings, ids: Iterator[int]) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await _read_json(request)
            reply = _reply_to(body, endpoint, settings)
        except RequestError as error:
            return endpoint.error(str(error))
        renderer = endpoint.renderer(_new_call(body, reply, ids))
        if body.get("stream") is True:
            return await _stream(request, renderer, reply, settings)
        later_tokens = max(reply.completion_tokens - 1, 0)
        await _pause(settings.first_token_delay_s + settings.token_delay_s * later_tokens)
        return web.json_response(renderer.body(), dumps=_dumps)

    return handle


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _models(_request: web.Request) -> web.Response:
    """`GET /v1/models`, which many tools call first: the one model the demo serves."""
    model = {"id": "demo", "object": "model", "created": 0, "owned_by": "llm-stream-proxy"}
    return web.json_response({"object": "list", "data": [model]})


async def _count_tokens(request: web.Request) -> web.Response:
    """Anthropic's `POST /v1/messages/count_tokens`: the input tokens a message would use."""
    try:
        texts, _ = _anthropic_prompt(await _read_json(request))
    except RequestError as error:
        return _anthropic_error(str(error))
    return web.json_response({"input_tokens": sum(len(text.split()) for text in texts)})


def create_demo_app(settings: DemoSettings = DemoSettings()) -> web.Application:
    """The demo provider as an aiohttp application (response ids are numbered per app)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # over the proxy's default 20 MiB
    ids = itertools.count(1)
    for path, endpoint in _ENDPOINTS.items():
        app.router.add_post(path, _handler(endpoint, settings, ids))
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/messages/count_tokens", _count_tokens)
    app.router.add_get("/healthz", _healthz)
    return app


# --- command line ----------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.demo", description="A demo LLM provider (no key needed)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--token-delay-ms", type=float, default=40.0)
    parser.add_argument("--first-token-delay-ms", type=float, default=300.0)
    return parser.parse_args(argv)


def _reason(error: OSError) -> str:
    """`Address already in use`, without asyncio's wording around it."""
    if error.errno and not isinstance(error, socket.gaierror):
        return os.strerror(error.errno)
    return error.strerror or str(error)


async def _serve(app: web.Application, host: str, port: int) -> int:
    """Serve until a stop signal: 0; or 1 if it cannot listen, which it says on stderr."""
    stop = stop_signals()
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:  # the port is taken, say
            print(f"cannot listen on {host}:{port}: {_reason(error)}", file=sys.stderr)
            return 1
        bound_port = runner.addresses[0][1] if runner.addresses else port
        print(f"demo provider listening on http://{host}:{bound_port}", flush=True)
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    """Serve the demo provider until SIGINT (Ctrl-C) or SIGTERM; exit 1 if it cannot listen."""
    args = _parse_args(argv)
    settings = DemoSettings(
        token_delay_s=args.token_delay_ms / 1000,
        first_token_delay_s=args.first_token_delay_ms / 1000,
    )
    with contextlib.suppress(KeyboardInterrupt):
        if asyncio.run(_serve(create_demo_app(settings), args.host, args.port)) != 0:
            sys.exit(1)


if __name__ == "__main__":
    main()
