"""Opening the upstream request: headers, then failover across the route's upstreams.

Failover happens only while nothing can have reached a model twice: on a connect failure, and on
502/503/504 (a gateway in front of the model refused). A 500/501 is passed through: the request
may have reached the model, and a replay could bill twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from proxy.config.models import RouteConfig, UpstreamConfig
from proxy.core.dialects import Dialect
from proxy.core.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.core.headers import upstream_request_headers
from proxy.core.redaction import redact_text

FAILOVER_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    method: str
    path_qs: str
    client_headers: Mapping[str, str]
    body: bytes
    request_id: str
    drop_headers: frozenset[str] = frozenset()
    # How long the upstream may take to answer with headers: the first-byte timeout for a stream;
    # the whole max_stream_s otherwise (a non-streamed answer comes only once it is generated).
    answer_within_s: float = 120.0


async def _attempt(
    session: aiohttp.ClientSession,
    upstream: UpstreamConfig,
    call: UpstreamCall,
    dialect: Dialect,
    connect: aiohttp.ClientTimeout,
) -> aiohttp.ClientResponse:
    headers = upstream_request_headers(
        call.client_headers, upstream, dialect, call.request_id, call.drop_headers
    )
    return await session.request(
        call.method, upstream.url + call.path_qs, headers=headers, data=call.body,
        allow_redirects=False, timeout=connect,
    )  # fmt: skip


def connect_timeout(connect_s: float) -> aiohttp.ClientTimeout:
    """Only the TCP connect is timed by aiohttp (its default 5-minute total would kill long
    streams); first-byte, idle and duration limits are the relay's own."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=None)


def _not_connected(exc: BaseException) -> bool:
    """True when the request cannot have left: refused, unresolvable, or connect timed out."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


async def open_upstream(
    session: aiohttp.ClientSession,
    route: RouteConfig,
    call: UpstreamCall,
    dialect: Dialect,
    on_attempt: Callable[[UpstreamConfig], None],
) -> aiohttp.ClientResponse:
    """The first upstream that answers with something other than 502/503/504.

    Response headers must arrive within `call.answer_within_s`; the connection itself within
    the route's `connect_s`. Exhausting the route is a 502.
    """
    failures: list[str] = []
    retry_after: dict[str, str] = {}
    connect = connect_timeout(route.timeouts.connect_s)
    for upstream in route.upstreams:
        on_attempt(upstream)
        try:
            async with asyncio.timeout(call.answer_within_s) as timer:
                response = await _attempt(session, upstream, call, dialect, connect)
        except (aiohttp.ClientError, OSError) as exc:
            if timer.expired():
                raise UpstreamTimeout(
                    f"upstream {upstream.name!r} sent no response headers within "
                    f"{call.answer_within_s:g} s"
                ) from None
            if _not_connected(exc):
                failures.append(f"{upstream.name}: could not connect")
                continue
            raise UpstreamUnavailable(
                f"upstream {upstream.name!r} failed before answering ({type(exc).__name__})"
            ) from None
        if response.status not in FAILOVER_STATUSES:
            return response
        failures.append(f"{upstream.name}: HTTP {response.status}")
        if "Retry-After" in response.headers:
            retry_after = {
                "Retry-After": redact_text(response.headers["Retry-After"], route.revealed_keys())
            }
        response.close()
    raise UpstreamUnavailable(
        "no upstream could serve the request (" + "; ".join(failures) + ")", headers=retry_after
    )
