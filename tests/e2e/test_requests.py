"""One request through the proxy: who may ask, what the upstream receives, what the client gets.

Real sockets on 127.0.0.1 only: the proxy in front of the scripted fake upstream. Heartbeats stay
at the default 30 s, so nothing in this file is committed early: every status is the honest one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tests.support.client_stream import ClientStream
from tests.support.config_edits import Edit, add_user, compose, set_defaults
from tests.support.fake_upstream import FakeUpstream, Hold, Script
from tests.support.patches import spy_on_acquire
from tests.support.ports import unused_port
from tests.support.raw_http import RawClient, raw_request, request_bytes
from tests.support.request_bodies import CHAT, MESSAGES, PLAIN
from tests.support.running_proxy import (
    CANARY_CLIENT_KEY,
    CANARY_UPSTREAM_KEY,
    ProxyFactory,
    RunningProxy,
)
from tests.support.sse_builders import (
    MESSAGE_STOP,
    OPENAI_DONE,
    ROLE,
    anthropic_stream,
    chat_chunk,
    chat_stream,
)

WRONG_KEY = "pk-wrong-key-0d9c8b7a6f"


async def post_with(
    proxy: RunningProxy, path: str, payload: Any, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    """POST with exactly `headers` (no default client key)."""
    return await proxy.session.post(proxy.url + path, data=json.dumps(payload), headers=headers)


def assert_openai_error(body: Any, error_type: str) -> str:
    assert set(body) == {"error"}, body
    assert {"message", "type", "code"} <= set(body["error"]), body
    assert body["error"]["type"] == error_type
    message: str = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def assert_anthropic_error(body: Any, error_type: str) -> str:
    assert body["type"] == "error", body
    assert body["error"]["type"] == error_type
    message: str = body["error"]["message"]
    assert isinstance(message, str) and message
    return message


def assert_error(dialect: str, body: Any, error_type: str) -> str:
    check = assert_anthropic_error if dialect == "anthropic" else assert_openai_error
    return check(body, error_type)


async def completed(response: aiohttp.ClientResponse) -> bytes:
    """The whole body of a successful response."""
    assert response.status == 200, await response.text()
    return await response.read()


# --- authentication ---


async def test_bearer_and_x_api_key_both_authenticate(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    bearer = await post_with(
        proxy, "/v1/chat/completions", CHAT, {"Authorization": f"Bearer {CANARY_CLIENT_KEY}"}
    )
    assert await completed(bearer) == b"data: [DONE]\n\n"
    upstream.enqueue(Script(steps=anthropic_stream("Hi")))
    api_key = await post_with(proxy, "/v1/messages", MESSAGES, {"x-api-key": CANARY_CLIENT_KEY})
    assert (await completed(api_key)).endswith(MESSAGE_STOP)
    assert [line["user"] for line in await proxy.finished_lines(2)] == ["alice", "alice"]
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": f"Bearer {WRONG_KEY}"}, id="unknown-bearer"),
        pytest.param({"x-api-key": WRONG_KEY}, id="unknown-x-api-key"),
        pytest.param({"Authorization": f"Basic {WRONG_KEY}"}, id="not-bearer"),
    ],
)
async def test_missing_or_unknown_key_is_401_in_openai_shape(
    proxy: RunningProxy, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    response = await post_with(proxy, "/v1/chat/completions", CHAT, headers)
    assert response.status == 401
    assert_openai_error(await response.json(), "authentication_error")
    assert WRONG_KEY not in await response.text()
    assert WRONG_KEY not in str(response.headers)
    assert upstream.requests == []
    assert (await proxy.finished_line())["status"] == 401
    assert proxy.metric("llm_proxy_client_errors_total", status="401") == 1


async def test_401_on_messages_is_in_anthropic_shape(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    headers = {"x-api-key": WRONG_KEY, "anthropic-version": "2023-06-01"}
    response = await post_with(proxy, "/v1/messages", MESSAGES, headers)
    assert response.status == 401
    assert_anthropic_error(await response.json(), "authentication_error")
    assert WRONG_KEY not in await response.text()
    assert upstream.requests == []


async def test_401_is_sent_before_the_body_is_read(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    client = await RawClient.connect(proxy.url)
    try:
        head = request_bytes("/v1/chat/completions", b"", [("Content-Length", "100000")])
        await client.send(head)  # and never a byte of the promised body
        async with asyncio.timeout(5):
            response = await client.response()
    finally:
        client.close()
    assert response.status == 401
    assert_openai_error(json.loads(response.body), "authentication_error")
    assert upstream.requests == []


def header_auth(header: str) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        document["auth"] = {"mode": "header", "header": header}

    return edit


async def test_header_mode_names_the_user_and_keeps_the_header_from_the_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=header_auth("X-Trusted-User"))
    response = await post_with(proxy, "/v1/chat/completions", CHAT, {"X-Trusted-User": "carol"})
    await completed(response)
    assert (await proxy.finished_line())["user"] == "carol"
    seen = {name.lower() for name in upstream.requests[0].headers}
    assert "x-trusted-user" not in seen
    assert upstream.requests[0].headers["Authorization"] == f"Bearer {CANARY_UPSTREAM_KEY}"


async def test_header_mode_without_the_header_is_401(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=header_auth("X-Trusted-User"))
    # A client key is no substitute for the trusted header.
    response = await proxy.post("/v1/chat/completions", CHAT, **{"X-User-Id": "alice"})
    assert response.status == 401
    assert_openai_error(await response.json(), "authentication_error")
    assert upstream.requests == []


async def test_mode_none_logs_the_user_as_anonymous(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=lambda document: document.update(auth={"mode": "none"}))
    await completed(await post_with(proxy, "/v1/chat/completions", CHAT, {}))
    assert (await proxy.finished_line())["user"] == "anonymous"
    assert len(upstream.requests) == 1


# --- what the upstream receives ---


async def test_upstream_receives_the_exact_body_bytes(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = b'{ "stream" :true,\n\t"z": [ 1,2 ],  "model":"gpt-test" , "a":"\\u00e9"}  \n'
    response = await proxy.session.post(
        proxy.url + "/v1/chat/completions", data=body, headers=proxy.headers()
    )
    await completed(response)
    assert upstream.requests[0].body == body


async def test_a_gzipped_request_body_reaches_the_upstream_decoded_and_labelled_so(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """aiohttp's server decodes the body the proxy reads: it must not go up still labelled gzip."""
    body = json.dumps({**CHAT, "stream": True}).encode()
    response = await proxy.session.post(
        proxy.url + "/v1/chat/completions",
        data=gzip.compress(body),
        headers=proxy.headers(**{"Content-Encoding": "gzip", "Content-Type": "application/json"}),
    )
    await completed(response)
    seen = upstream.requests[0]
    assert seen.body == body
    assert "content-encoding" not in {name.lower() for name in seen.headers}


HOP_BY_HOP_REQUEST = [
    ("Authorization", f"Bearer {CANARY_CLIENT_KEY}"),
    ("Connection", "close, X-Hop-Named"),
    ("X-Hop-Named", "1"),
    ("Keep-Alive", "timeout=5"),
    ("TE", "trailers"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0"),
    ("Cookie", "session=abc"),
    ("Accept-Encoding", "gzip, br"),
    ("Expect", "100-continue"),  # curl's, for bodies over 1 KiB: the proxy has the body already
    ("OpenAI-Organization", "org-of-the-client"),  # the upstream key is the operator's
    ("OpenAI-Project", "proj-of-the-client"),
    ("X-Client-Note", "kept"),
]
NEVER_FORWARDED = [
    "x-api-key", "cookie", "connection", "x-hop-named", "keep-alive", "te", "upgrade",
    "proxy-authorization", "expect", "openai-organization", "openai-project",
]  # fmt: skip


async def test_upstream_gets_no_client_credentials_or_hop_by_hop_headers(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = json.dumps(CHAT).encode()
    response = await raw_request(proxy.url, "/v1/chat/completions", body, HOP_BY_HOP_REQUEST)
    assert response.status == 200
    seen = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
    for name in NEVER_FORWARDED:
        assert name not in seen, f"{name} was forwarded upstream"
    assert seen["authorization"] == f"Bearer {CANARY_UPSTREAM_KEY}"
    assert seen["accept-encoding"] == "identity"
    assert seen["x-client-note"] == "kept"


def catch_all_route(first: bool) -> Edit:
    """The openai route for gpt-* models, and a route for any model on the same paths."""

    def edit(document: dict[str, Any]) -> None:
        routes = document["routes"]
        catch_all = {**routes[0], "name": "any-model"}
        routes[0]["models"] = ["gpt-*"]
        routes.insert(0 if first else 1, catch_all)

    return edit


@pytest.mark.parametrize(
    ("catch_all_first", "expected"),
    [(False, ["openai", "any-model"]), (True, ["any-model", "any-model"])],
)
async def test_the_first_route_in_file_order_that_matches_wins(
    start_proxy: ProxyFactory, upstream: FakeUpstream, catch_all_first: bool, expected: list[str]
) -> None:
    proxy = await start_proxy(edit=catch_all_route(catch_all_first))
    for model in ("gpt-test", "llama-3"):
        await completed(await proxy.post("/v1/chat/completions", {**CHAT, "model": model}))
    assert [line["route"] for line in await proxy.finished_lines(2)] == expected


async def test_an_absolute_form_request_target_reaches_the_upstream_as_a_path(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    auth = [("Authorization", f"Bearer {CANARY_CLIENT_KEY}")]
    target = proxy.url + "/v1/chat/completions?trace=1"  # as a client configured as a proxy sends
    response = await raw_request(proxy.url, target, json.dumps(CHAT).encode(), auth)
    assert response.status == 200
    assert upstream.requests[0].path == "/v1/chat/completions?trace=1"


async def test_anthropic_route_sends_x_api_key_and_keeps_anthropic_version(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    headers = {"x-api-key": CANARY_CLIENT_KEY, "anthropic-version": "2023-06-01"}
    upstream.enqueue(Script(steps=anthropic_stream("Hi")))
    await completed(await post_with(proxy, "/v1/messages", MESSAGES, headers))
    seen = {name.lower(): value for name, value in upstream.requests[0].headers.items()}
    assert seen["x-api-key"] == CANARY_UPSTREAM_KEY
    assert seen["anthropic-version"] == "2023-06-01"
    assert "authorization" not in seen
    assert seen["accept-encoding"] == "identity"


def static_headers(document: dict[str, Any]) -> None:
    document["routes"][0]["upstreams"][0]["headers"] = {"OpenAI-Organization": "org-test"}


async def test_route_static_headers_and_the_query_string_reach_the_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=static_headers)
    await completed(await proxy.post("/v1/chat/completions?api-version=2024-10-01&x=a%20b", CHAT))
    seen = upstream.requests[0]
    assert seen.path == "/v1/chat/completions?api-version=2024-10-01&x=a%20b"
    assert seen.headers["OpenAI-Organization"] == "org-test"


# --- client errors: no upstream call, no slot, counted by status only ---


@dataclass(frozen=True)
class ClientError:
    path: str
    body: bytes
    status: int
    error_type: str
    method: str = "POST"
    dialect: str = "openai"


def route_by_model(document: dict[str, Any]) -> None:
    document["routes"][0]["models"] = ["gpt-*"]


CLIENT_ERRORS = [
    pytest.param(ClientError("/v1/chat/completions", b"{not json", 400, "invalid_request_error"),
                 id="not-json"),
    pytest.param(ClientError("/v1/messages", b"[1, 2", 400, "invalid_request_error",
                             dialect="anthropic"), id="not-json-anthropic"),
    pytest.param(ClientError("/v1/chat/completions", b'{"model": "gpt-test", "x": '
                             + b"[" * 20_000 + b"]" * 20_000 + b"}", 400, "invalid_request_error"),
                 id="nested-deeper-than-the-parser-goes"),
    pytest.param(ClientError("/v1/chat/completions", b'{"model": "gpt-test", "pad": "'
                             + b"x" * 70_000 + b'"}', 413, "request_too_large"), id="too-large"),
    pytest.param(ClientError("/v1/nowhere", json.dumps(CHAT).encode(), 404, "not_found_error"),
                 id="unknown-path"),
    pytest.param(ClientError("/v1/chat/completions", b'{"model": "llama-3", "stream": true}',
                             404, "not_found_error"), id="model-matches-no-route"),
    pytest.param(ClientError("/v1/chat/completions", b'{"stream": true}', 400,
                             "invalid_request_error"), id="model-missing"),
    pytest.param(ClientError("/v1/chat/completions", b"", 400, "invalid_request_error",
                             method="GET"), id="get-without-a-model-on-a-path-routed-by-model"),
    pytest.param(ClientError("/v1/nowhere", b"", 404, "not_found_error", method="DELETE"),
                 id="any-method-on-an-unrouted-path"),
]  # fmt: skip


@pytest.mark.parametrize("case", CLIENT_ERRORS)
async def test_client_error_touches_neither_upstream_nor_slot(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    case: ClientError,
) -> None:
    proxy = await start_proxy(edit=route_by_model)
    acquired = spy_on_acquire(monkeypatch, proxy)
    response = await proxy.session.request(
        case.method, proxy.url + case.path, data=case.body, headers=proxy.headers()
    )
    assert response.status == case.status
    assert_error(case.dialect, await response.json(), case.error_type)
    line = await proxy.finished_line()
    assert (line["status"], line["route"]) == (case.status, None)
    assert upstream.requests == []
    assert acquired == []
    assert proxy.metric("llm_proxy_client_errors_total", status=str(case.status)) == 1
    assert proxy.metric("llm_proxy_requests_total") is None  # not counted under any route


async def test_chunked_body_over_the_cap_is_refused_without_an_upstream_call(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    """No Content-Length to refuse on: the cap is enforced while the body is read."""

    async def chunks() -> Any:
        yield b'{"model": "gpt-test", "pad": "'
        for _ in range(10):
            yield b"x" * 10_000
        yield b'"}'

    response = await proxy.session.post(
        proxy.url + "/v1/chat/completions", data=chunks(), headers=proxy.headers()
    )
    assert response.status == 413
    assert_openai_error(await response.json(), "request_too_large")
    assert upstream.requests == []


BODY_FAULTS = {
    # (what the client sends after the head, extra headers, status, error type)
    "gzip-that-is-not": (b"not gzip at all" * 4, [("Content-Encoding", "gzip")], 400,
                         "invalid_request_error"),
    "body-that-stops-coming": (b'{"model": "gpt-', [("Content-Length", "100")], 408,
                               "timeout_error"),
}  # fmt: skip


@pytest.mark.parametrize(("sent", "headers", "status", "error_type"), BODY_FAULTS.values(),
                         ids=list(BODY_FAULTS))  # fmt: skip
async def test_a_body_the_proxy_cannot_read_is_a_client_error(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    sent: bytes,
    headers: list[tuple[str, str]],
    status: int,
    error_type: str,
) -> None:
    proxy = await start_proxy(edit=set_defaults(timeouts={"client_stall_s": 0.3}))
    auth = ("Authorization", f"Bearer {CANARY_CLIENT_KEY}")
    response = await raw_request(proxy.url, "/v1/chat/completions", sent, [auth, *headers])
    assert response.status == status
    assert_openai_error(json.loads(response.body), error_type)
    assert upstream.requests == []
    assert proxy.metric("llm_proxy_client_errors_total", status=str(status)) == 1


async def test_client_errors_are_not_logged_as_internal_errors(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """An operator looking for proxy bugs (outcome internal_error) must not find 401s and 404s."""
    proxy = await start_proxy(edit=route_by_model)
    for case in (param.values[0] for param in CLIENT_ERRORS):
        assert isinstance(case, ClientError)
        await proxy.session.request(
            case.method, proxy.url + case.path, data=case.body, headers=proxy.headers()
        )
    await post_with(proxy, "/v1/chat/completions", CHAT, {})  # 401
    lines = await proxy.finished_lines(len(CLIENT_ERRORS) + 1)
    assert [line["outcome"] for line in lines] == ["rejected"] * len(lines)


# --- the upstream, before anything was committed to the client ---


def upstreams(*urls: str) -> Edit:
    """The openai route over the given upstreams, named u0, u1, ... (each tags its requests)."""

    def edit(document: dict[str, Any]) -> None:
        document["routes"][0]["upstreams"] = [
            {"name": f"u{index}", "url": url, "api_key_env": "CANARY_UPSTREAM_KEY",
             "headers": {"X-Which": f"u{index}"}}
            for index, url in enumerate(urls)
        ]  # fmt: skip

    return edit


def which(upstream: FakeUpstream) -> list[str]:
    return [request.headers["X-Which"] for request in upstream.requests]


async def test_connect_failure_fails_over_to_the_next_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    proxy = await start_proxy(edit=upstreams(dead, upstream.url))
    upstream.enqueue(Script(steps=chat_stream("Hello")))
    body = await completed(await proxy.post("/v1/chat/completions", CHAT))
    assert b'"Hello"' in body and body.endswith(b"data: [DONE]\n\n")
    assert which(upstream) == ["u1"]
    line = await proxy.finished_line()
    assert (line["upstream"], line["outcome"]) == ("u1", "completed")


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port on 127.0.0.1 where a connect hangs: its listener's accept queue is full."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # the only place in the queue
            yield port


async def test_a_routes_own_connect_timeout_decides_when_to_fail_over(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    with unanswered_port() as port:

        def edit(document: dict[str, Any]) -> None:
            upstreams(f"http://127.0.0.1:{port}", upstream.url)(document)
            document["defaults"]["timeouts"]["connect_s"] = 60
            document["routes"][0]["timeouts"] = {"connect_s": 0.2}

        proxy = await start_proxy(edit=edit)
        upstream.enqueue(Script(steps=chat_stream("Hello")))
        sent = proxy.post("/v1/chat/completions", CHAT)
        body = await completed(await asyncio.wait_for(sent, 30))  # not the default's 60 s
        assert b'"Hello"' in body
        assert which(upstream) == ["u1"]


def refusal(status: int) -> Script:
    return Script(status=status, content_type="application/json", whole_body=b'{"error": "busy"}')


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gateway_error_fails_over_to_the_next_upstream(
    start_proxy: ProxyFactory, upstream: FakeUpstream, status: int
) -> None:
    proxy = await start_proxy(edit=upstreams(upstream.url, upstream.url))
    upstream.enqueue(refusal(status), Script(steps=chat_stream("Hello")))
    body = await completed(await proxy.post("/v1/chat/completions", CHAT))
    assert body.endswith(b"data: [DONE]\n\n")
    assert which(upstream) == ["u0", "u1"]
    assert (await proxy.finished_line())["upstream"] == "u1"


async def test_all_upstreams_failing_is_a_502_naming_no_secret(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    dead = f"http://127.0.0.1:{unused_port()}"
    proxy = await start_proxy(edit=upstreams(upstream.url, dead))
    upstream.enqueue(refusal(503))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 502
    assert_openai_error(await response.json(), "api_error")
    text = await response.text()
    for secret in (CANARY_UPSTREAM_KEY, CANARY_CLIENT_KEY):
        assert secret not in text and secret not in str(response.headers)
    line = await proxy.finished_line()
    assert (line["status"], line["outcome"]) == (502, "upstream_error")


@pytest.mark.parametrize("status", [500, 501])
async def test_upstream_500_is_passed_through_and_not_retried(
    start_proxy: ProxyFactory, upstream: FakeUpstream, status: int
) -> None:
    proxy = await start_proxy(edit=upstreams(upstream.url, upstream.url))
    body = b'{"error": {"message": "model crashed", "type": "server_error"}}'
    upstream.enqueue(Script(status=status, content_type="application/json", whole_body=body))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == status
    assert await response.read() == body
    assert which(upstream) == ["u0"]
    line = await proxy.finished_line()
    assert (line["status"], line["outcome"]) == (status, "upstream_error")


async def test_an_upstream_that_drops_the_sent_request_is_not_retried(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """The request reached it, so the model may be generating: a replay could bill twice."""
    proxy = await start_proxy(edit=upstreams(upstream.url, upstream.url))
    upstream.enqueue(Script(reset_before_headers=True))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 502
    assert "failed before answering" in (await response.json())["error"]["message"]
    assert which(upstream) == ["u0"]


async def test_upstream_429_is_passed_through_with_its_retry_after(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = b'{"error": {"message": "slow down", "type": "rate_limit_error"}}'
    upstream.enqueue(Script(status=429, content_type="application/json", whole_body=body,
                            headers={"Retry-After": "17"}))  # fmt: skip
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 429
    assert response.headers["Retry-After"] == "17"
    assert await response.read() == body
    assert len(upstream.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_upstream_4xx_passes_through(
    proxy: RunningProxy, upstream: FakeUpstream, status: int
) -> None:
    body = b'{"error": {"message": "bad field: temperature", "code": "x"}}'
    upstream.enqueue(Script(status=status, content_type="application/json", whole_body=body))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == status
    assert await response.read() == body
    assert len(upstream.requests) == 1


async def test_json_answer_to_a_streaming_request_passes_through_as_is(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = b'{"id": "c1", "choices": [{"message": {"content": "hi"}}]}'
    upstream.enqueue(Script(content_type="application/json", whole_body=body))
    response = await proxy.post("/v1/chat/completions", CHAT)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.read() == body


async def test_slow_upstream_headers_are_a_504(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=set_defaults(timeouts={"first_byte_s": 0.3}))
    never = asyncio.Event()
    upstream.enqueue(Script(steps=chat_stream("late"), hold_headers=never))
    try:
        response = await proxy.post("/v1/chat/completions", CHAT)
        assert response.status == 504
        assert_openai_error(await response.json(), "timeout_error")
        line = await proxy.finished_line()
        assert (line["status"], line["outcome"]) == (504, "upstream_timeout")
    finally:
        never.set()


# --- non-streaming requests ---


async def test_a_non_streamed_answer_may_take_longer_than_the_first_byte_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """Its headers come only once the whole answer is generated: max_stream_s bounds that."""
    proxy = await start_proxy(edit=set_defaults(timeouts={"first_byte_s": 0.2}))
    done = asyncio.Event()
    upstream.enqueue(Script(content_type="application/json", whole_body=b'{"id": "c1"}',
                            hold_headers=done))  # fmt: skip
    asyncio.get_running_loop().call_later(0.6, done.set)  # generation takes 3x first_byte_s
    response = await proxy.post("/v1/chat/completions", PLAIN)
    assert response.status == 200
    assert await response.read() == b'{"id": "c1"}'


COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


@pytest.mark.parametrize("asked", [{}, {"stream": "true"}], ids=["no-stream-key", "string-true"])
async def test_an_event_stream_answer_is_relayed_as_a_stream_whatever_the_request_said(
    proxy: RunningProxy, upstream: FakeUpstream, asked: dict[str, Any]
) -> None:
    """An upstream that accepts `"stream": "true"` (or streams by default) must not have its
    stream gathered into one late body without heartbeats or timeouts."""
    go = asyncio.Event()
    upstream.enqueue(
        Script(steps=[ROLE, chat_chunk("early"), Hold(go), chat_chunk("late"), OPENAI_DONE])
    )
    reader = ClientStream(await proxy.post("/v1/chat/completions", {**PLAIN, **asked}))
    await reader.event_with(b'"early"')  # while the upstream still holds the rest
    go.set()
    await reader.to_clean_end()
    line = await proxy.finished_line()
    assert (line["stream"], line["outcome"], line["output_tokens"]) == (True, "completed", 2)


async def test_an_event_stream_answer_that_took_its_time_still_gets_its_first_byte_timeout(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """Asked as non-streamed, its headers had max_stream_s; its first event then gets
    first_byte_s from the headers, not from when the request went up."""
    proxy = await start_proxy(edit=set_defaults(timeouts={"first_byte_s": 0.2}))
    answer, first = asyncio.Event(), asyncio.Event()
    upstream.enqueue(Script(steps=[Hold(first), *chat_stream("late")], hold_headers=answer))
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, answer.set)  # headers after 2.5x first_byte_s
    loop.call_later(0.6, first.set)  # and the first event 0.1 s after them
    response = await proxy.post("/v1/chat/completions", PLAIN)
    assert (await response.read()).endswith(OPENAI_DONE)
    assert (await proxy.finished_line())["outcome"] == "completed"


# The operator's account at the provider, and what only holds for the provider's own host.
OPERATOR_ONLY = {
    "openai-organization": "org-operator",
    "anthropic-organization-id": "a1b2",
    "alt-svc": 'h3=":443"',
    "strict-transport-security": "max-age=31536000",
}


async def test_non_streaming_request_is_proxied_and_its_usage_counted(
    proxy: RunningProxy, upstream: FakeUpstream
) -> None:
    body = json.dumps(COMPLETION, indent=1).encode()
    headers = {**OPERATOR_ONLY, "x-ratelimit-remaining-tokens": "999"}
    upstream.enqueue(Script(content_type="application/json", whole_body=body, headers=headers))
    response = await proxy.post("/v1/chat/completions", PLAIN)
    assert response.status == 200
    assert await response.read() == body
    assert response.headers["x-ratelimit-remaining-tokens"] == "999"
    assert not set(OPERATOR_ONLY) & {name.lower() for name in response.headers}
    line = await proxy.finished_line()
    assert line["ttft_ms"] is None
    assert (line["stream"], line["outcome"], line["output_tokens"]) == (False, "completed", 7)
    output = {"route": "openai", "source": "usage"}
    assert proxy.metric("llm_proxy_output_tokens_total", **output) == 7
    plain = {"route": "openai", "stream": "false", "outcome": "completed"}
    assert proxy.metric("llm_proxy_requests_total", **plain) == 1
    assert proxy.metric("llm_proxy_input_tokens_total", route="openai") == 11
    assert proxy.metric("llm_proxy_ttft_seconds_count", route="openai") is None


async def test_anthropic_non_streaming_usage_is_counted(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(
        edit=compose(add_user("dora", "DORA_KEY")), environ={"DORA_KEY": "k-dora"}
    )
    message = {"type": "message", "content": [{"type": "text", "text": "Hi"}],
               "usage": {"input_tokens": 9, "output_tokens": 3}}  # fmt: skip
    upstream.enqueue(
        Script(content_type="application/json", whole_body=json.dumps(message).encode())
    )
    payload = {key: value for key, value in MESSAGES.items() if key != "stream"}
    response = await post_with(proxy, "/v1/messages", payload, {"x-api-key": "k-dora"})
    assert await response.json() == message
    line = await proxy.finished_line()
    assert (line["user"], line["output_tokens"], line["ttft_ms"]) == ("dora", 3, None)
    assert proxy.metric("llm_proxy_input_tokens_total", route="anthropic") == 9
