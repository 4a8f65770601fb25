"""Opening the upstream request: headers, then failover across the route's upstreams.

Failover happens only while nothing can have reached a model twice: on a connect failure, and on
502/503/504 (a gateway in front of the model refused). A 500/501 is passed through: the request
may have reached the model, and a replay could bill twice. Each try is an `Attempt`
(`proxy.core.attempts`); the caller gets them with the response, or inside the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from proxy.config.models import UpstreamConfig
from proxy.core.attempts import Attempt, AttemptKind
from proxy.core.errors import UpstreamTimeout, UpstreamUnavailable
from proxy.core.headers import upstream_request_headers
from proxy.core.redaction import redact_text
from proxy.core.runtime import Route


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


@dataclass(frozen=True, slots=True)
class Opened:
    """The upstream that answered, and every attempt it took (the last one answered)."""

    response: aiohttp.ClientResponse
    attempts: tuple[Attempt, ...]

    @property
    def sent_at(self) -> float:
        return self.attempts[-1].started


def connect_timeout(connect_s: float) -> aiohttp.ClientTimeout:
    """Only the TCP connect is timed by aiohttp (its default 5-minute total would kill long
    streams); first-byte, idle and duration limits are the relay's own."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect_s, sock_read=None)


def _not_connected(exc: BaseException) -> bool:
    """True when the request cannot have left: refused, unresolvable, or connect timed out."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


async def _attempt(
    session: aiohttp.ClientSession, upstream: UpstreamConfig, call: UpstreamCall, route: Route
) -> aiohttp.ClientResponse | AttemptKind:
    """One try: the response, or what kept it from answering."""
    headers = upstream_request_headers(
        call.client_headers, upstream, route.dialect, call.request_id, call.drop_headers
    )
    try:
        async with asyncio.timeout(call.answer_within_s) as timer:
            return await session.request(
                call.method, upstream.url + call.path_qs, headers=headers, data=call.body,
                allow_redirects=False, timeout=connect_timeout(route.connect_s),
            )  # fmt: skip
    except (aiohttp.ClientError, OSError) as exc:
        if timer.expired():
            return AttemptKind.TIMEOUT
        return AttemptKind.CONNECT if _not_connected(exc) else AttemptKind.DROPPED


async def open_upstream(
    session: aiohttp.ClientSession,
    route: Route,
    call: UpstreamCall,
    on_attempt: Callable[[str, float], None],
) -> Opened:
    """The first upstream that answers with something other than 502/503/504.

    Response headers must arrive within `call.answer_within_s`; the connection itself within
    the route's `connect_s`. `on_attempt(name, started)` is told of each try as it begins.
    Exhausting the route is a 502; an upstream that took the request and then failed (timed
    out, dropped the connection) ends it there: another try could bill twice.
    """
    attempts: list[Attempt] = []
    retry_after: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    for upstream in route.upstreams:
        started = loop.time()
        on_attempt(upstream.name, started)
        answer = await _attempt(session, upstream, call, route)
        kind = answer if isinstance(answer, AttemptKind) else AttemptKind.STATUS
        status = None if isinstance(answer, AttemptKind) else answer.status
        attempt = Attempt(upstream.name, kind, started, loop.time() - started, status)
        attempts.append(attempt)
        if isinstance(answer, aiohttp.ClientResponse):
            if not attempt.fails_over:
                return Opened(answer, tuple(attempts))
            if "Retry-After" in answer.headers:
                retry_after = {
                    "Retry-After": redact_text(answer.headers["Retry-After"], route.keys)
                }
            answer.close()
        elif not attempt.fails_over:
            raise _failed_before_answering(attempt, call, tuple(attempts))
    failures = "; ".join(attempt.describe() for attempt in attempts)
    raise UpstreamUnavailable(
        f"no upstream could serve the request ({failures})", tuple(attempts), headers=retry_after
    )


def _failed_before_answering(
    attempt: Attempt, call: UpstreamCall, attempts: tuple[Attempt, ...]
) -> UpstreamTimeout | UpstreamUnavailable:
    if attempt.kind is AttemptKind.TIMEOUT:
        return UpstreamTimeout(
            f"upstream {attempt.upstream!r} sent no response headers within "
            f"{call.answer_within_s:g} s",
            attempts,
        )
    return UpstreamUnavailable(
        f"upstream {attempt.upstream!r} failed before answering (the connection dropped)",
        attempts,
    )
