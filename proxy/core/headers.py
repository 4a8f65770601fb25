"""Which headers cross the proxy, in each direction (pure).

Upstream, the client's headers go minus hop-by-hop ones and the client's own credentials and
account, plus the operator's key for the upstream. Back to the client, the upstream's headers go
minus hop-by-hop and framing headers, cookies, the operator's account at the provider and what
only holds for the provider's own host; values are redacted of the route's keys.
"""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict

from proxy.config.models import UpstreamConfig
from proxy.core.dialects import Dialect
from proxy.core.redaction import redact_text

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
    }
)  # fmt: skip
# Never forwarded upstream: the client's credentials and account (the upstream key is the
# operator's: a client's organization or project would not match it; routes can set their own in
# `headers`), cookies, framing set by aiohttp, Content-Encoding (aiohttp's server has already
# decoded a compressed body, it goes up plain) and Expect (the body is already here: waiting
# for a 100 Continue would only cost a round trip, or hang on an upstream that sends none).
_CLIENT_ONLY = frozenset(
    {"host", "content-length", "content-encoding", "authorization", "x-api-key", "cookie",
     "expect", "openai-organization", "openai-project"}
)  # fmt: skip
# Not returned to clients: framing, cookies, the upstream's request id (returned renamed), the
# operator's account at the provider, and what only holds for the provider's own host.
_NOT_RETURNED = frozenset(
    {"content-length", "content-encoding", "set-cookie", "x-request-id", "openai-organization",
     "openai-project", "anthropic-organization-id", "alt-svc", "strict-transport-security"}
)  # fmt: skip


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Every header named in any `Connection` header: a message may carry several, and each
    names hop-by-hop headers (RFC 9110 7.6.1). `items()` of a multidict yields every one."""
    values = (value for name, value in headers.items() if name.lower() == "connection")
    tokens = (token.strip().lower() for value in values for token in value.split(","))
    return {token for token in tokens if token}


def upstream_request_headers(
    client_headers: Mapping[str, str],
    upstream: UpstreamConfig,
    dialect: Dialect,
    request_id: str,
    drop: frozenset[str] = frozenset(),
) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop and credentials, plus the upstream's key."""
    skip = HOP_BY_HOP | _CLIENT_ONLY | _connection_listed(client_headers) | drop
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in client_headers.items() if name.lower() not in skip
    )
    headers.update(upstream.headers)
    if upstream.api_key is not None:
        headers.update(dialect.upstream_auth_headers(upstream.api_key.reveal()))
    headers["Accept-Encoding"] = "identity"
    headers["X-Request-Id"] = request_id
    return headers


def client_response_headers(
    upstream_headers: Mapping[str, str], keys: tuple[str, ...]
) -> CIMultiDict[str]:
    """The upstream's response headers a client may see (rate-limit headers and the like).

    Values are redacted of the route's upstream `keys`: a debugging upstream may echo them.
    """
    skip = HOP_BY_HOP | _NOT_RETURNED | _connection_listed(upstream_headers)
    headers: CIMultiDict[str] = CIMultiDict(
        (name, redact_text(value, keys))
        for name, value in upstream_headers.items()
        if name.lower() not in skip and not name.lower().startswith("access-control-")
    )  # CORS is the proxy's own decision (proxy/cors.py), never the provider's
    upstream_id = upstream_headers.get("X-Request-Id")
    if upstream_id is not None:
        headers["X-Upstream-Request-Id"] = redact_text(upstream_id, keys)
    return headers
