"""A page of another origin calling the proxy with `fetch`: what the browser needs to see.

The browser sends a preflight without credentials, then the real request with its key; it hands
the page a response (an error too) only if the response names the page's origin.
"""

from __future__ import annotations

import json

import pytest

from tests.support.config_edits import allow_origins
from tests.support.fake_upstream import FakeUpstream, Script
from tests.support.patches import spy_on_acquire
from tests.support.raw_http import raw_request
from tests.support.request_bodies import CHAT
from tests.support.running_proxy import ProxyFactory
from tests.support.sse_builders import OPENAI_DONE

APP = "https://app.example.com"
PREFLIGHT = [
    ("Origin", APP),
    ("Access-Control-Request-Method", "POST"),
    ("Access-Control-Request-Headers", "authorization,content-type,x-request-id"),
]


@pytest.mark.parametrize("origins", [[APP], ["*"]], ids=["listed", "any"])
async def test_a_preflight_from_an_allowed_origin_is_answered_before_authentication(
    start_proxy: ProxyFactory,
    upstream: FakeUpstream,
    monkeypatch: pytest.MonkeyPatch,
    origins: list[str],
) -> None:
    proxy = await start_proxy(edit=allow_origins(*origins))
    acquired = spy_on_acquire(monkeypatch, proxy)
    response = await raw_request(proxy.url, "/v1/chat/completions", b"", PREFLIGHT, "OPTIONS")
    assert response.status == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization,content-type,x-request-id"
    assert upstream.requests == [] and acquired == []


async def test_a_stream_and_an_error_both_reach_a_page_of_an_allowed_origin(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    proxy = await start_proxy(edit=allow_origins(APP))
    streamed = await proxy.post("/v1/chat/completions", CHAT, Origin=APP)
    assert (await streamed.read()).endswith(OPENAI_DONE)
    refused = await proxy.post("/v1/chat/completions", CHAT, Origin=APP, Authorization="Bearer x")
    assert refused.status == 401

    for response in (streamed, refused):
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert response.headers["Access-Control-Expose-Headers"] == "*"  # X-Request-Id, ...
        assert "Origin" in response.headers.getall("Vary")


@pytest.mark.parametrize("origins", [[], ["https://other.example.com"]], ids=["off", "other"])
async def test_an_origin_not_allowed_gets_no_cors_headers(
    start_proxy: ProxyFactory, upstream: FakeUpstream, origins: list[str]
) -> None:
    proxy = await start_proxy(edit=allow_origins(*origins))
    preflight = await raw_request(proxy.url, "/v1/chat/completions", b"", PREFLIGHT, "OPTIONS")
    assert preflight.status == 403
    assert (
        "origin is not in server.cors_allow_origins"
        in json.loads(preflight.body)["error"]["message"]
    )
    refusal = await proxy.finished_line()
    assert (refusal["status"], refusal["outcome"], refusal["method"]) == (
        403,
        "rejected",
        "OPTIONS",
    )
    streamed = await proxy.post("/v1/chat/completions", CHAT, Origin=APP)
    assert (await streamed.read()).endswith(OPENAI_DONE)
    for headers in (preflight.headers, streamed.headers):
        assert not any(name.lower().startswith("access-control-") for name in headers)


async def test_the_providers_own_cors_headers_never_reach_the_client(
    start_proxy: ProxyFactory, upstream: FakeUpstream
) -> None:
    """Whether a page may read the proxy's answers is the proxy's decision, not the provider's."""
    proxy = await start_proxy(edit=allow_origins("https://other.example.com"))
    providers = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Credentials": "true"}
    upstream.enqueue(Script(steps=[OPENAI_DONE], headers=providers))
    response = await proxy.post("/v1/chat/completions", CHAT, Origin=APP)
    assert (await response.read()).endswith(OPENAI_DONE)
    assert not any(name.lower().startswith("access-control-") for name in response.headers)
    assert "Origin" in response.headers.getall("Vary")  # allowed or not, the answer depends on it


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
async def test_the_proxys_own_endpoints_stay_closed_to_other_origins(
    start_proxy: ProxyFactory, path: str
) -> None:
    """/metrics needs no key: any page a colleague opens could read route and traffic figures."""
    proxy = await start_proxy(edit=allow_origins("*"))
    async with proxy.session.get(proxy.url + path, headers={"Origin": APP}) as got:
        assert got.status == 200
        assert "Access-Control-Allow-Origin" not in got.headers
    preflight = await raw_request(proxy.url, path, b"", PREFLIGHT, "OPTIONS")
    assert preflight.status != 204 and "Access-Control-Allow-Origin" not in preflight.headers
