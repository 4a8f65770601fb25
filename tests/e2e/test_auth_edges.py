"""Authentication at its edges: header bytes a client sends on purpose or by accident.

Raw HTTP/1.1 over `asyncio.open_connection` (`tests.support.raw_http`), because
aiohttp's client neither sends non-UTF-8 header bytes nor repeats a header on request: a header
value written as latin-1 text here reaches the proxy as exactly those bytes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.raw_http import raw_request
from tests.support.request_bodies import CHAT, MESSAGES
from tests.support.running_proxy import ProxyFactory, RunningProxy

UNKNOWN_KEY = "pk-unknown-key-3e8a1c"


@pytest.mark.parametrize(
    ("path", "payload", "header", "key"),
    [
        pytest.param("/v1/chat/completions", CHAT, "Authorization", "Bearer \xff\xfe-key",
                     id="bearer"),
        pytest.param("/v1/messages", MESSAGES, "x-api-key", "caf\xe9", id="x-api-key"),
    ],
)  # fmt: skip
async def test_a_key_that_is_not_utf8_is_refused_like_any_unknown_key(
    proxy: RunningProxy,
    upstream: FakeUpstream,
    path: str,
    payload: dict[str, Any],
    header: str,
    key: str,
) -> None:
    body = json.dumps(payload).encode()
    prefix = "Bearer " if header == "Authorization" else ""
    unknown = await raw_request(proxy.url, path, body, [(header, prefix + UNKNOWN_KEY)])
    not_utf8 = await raw_request(proxy.url, path, body, [(header, key)])

    assert (not_utf8.status, unknown.status) == (401, 401)
    assert not_utf8.body == unknown.body  # the same answer: nothing tells the two apart
    assert b"Traceback" not in not_utf8.body
    lines = await proxy.finished_lines(2)
    assert [(line["status"], line["outcome"]) for line in lines] == [(401, "rejected")] * 2
    assert upstream.requests == []


def trusted_header(document: dict[str, Any]) -> None:
    document["auth"] = {"mode": "header"}


@pytest.mark.parametrize(
    "identity",
    [
        pytest.param([("X-User-Id", "mallory"), ("X-User-Id", "bob")], id="prepended"),
        pytest.param([("x-user-id", "bob"), ("X-User-Id", "bob")], id="same-name-twice"),
    ],
)
async def test_header_mode_refuses_an_identity_header_given_more_than_once(
    start_proxy: ProxyFactory, upstream: FakeUpstream, identity: list[tuple[str, str]]
) -> None:
    proxy = await start_proxy(edit=trusted_header)
    body = json.dumps(CHAT).encode()

    once = await raw_request(proxy.url, "/v1/chat/completions", body, [("X-User-Id", "bob")])
    twice = await raw_request(proxy.url, "/v1/chat/completions", body, identity)

    assert once.status == 200
    assert twice.status == 401
    error = json.loads(twice.body)["error"]
    assert error["type"] == "authentication_error"
    assert error["message"] == "X-User-Id must appear exactly once"
    lines = await proxy.finished_lines(2)
    assert [(line["user"], line["status"]) for line in lines] == [("bob", 200), (None, 401)]
    assert len(upstream.requests) == 1  # only the request that named one user went upstream


async def test_header_mode_refuses_identities_a_gateway_joined_with_commas(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """A gateway that folds repeated headers into one yields `mallory,bob`: not a new user."""
    proxy = await start_proxy(edit=trusted_header)
    body = json.dumps(CHAT).encode()
    joined = await raw_request(
        proxy.url, "/v1/chat/completions", body, [("X-User-Id", "mallory,bob")]
    )
    assert joined.status == 401
    assert upstream.requests == []
