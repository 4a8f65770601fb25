"""Everything that ends a request early, as exceptions that say where they came from.

Each class fixes four things: its `source` (the client, the proxy itself, or the upstream), the
`outcome` it counts as (a closed set, a metric label), the HTTP `status` a client gets while
nothing is committed, and the provider-style `error_type` of its error body or event. Whether it
is reported as a whole response, an in-band error event or an abnormal end is decided in one
place, `proxy.core.endings`, from the class and from whether the response was committed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import ClassVar

from proxy.core.attempts import Attempt


class Outcome(StrEnum):
    """How a proxied request ended: a closed set, used as a metric label."""

    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    TRUNCATED = "truncated"
    REJECTED = "rejected"
    SHUTDOWN = "shutdown"  # cut by the drain: the grace period of a shutdown ran out
    INTERNAL_ERROR = "internal_error"


class Source(StrEnum):
    """Where an error came from."""

    CLIENT = "client"  # the request, or the client's connection
    PROXY = "proxy"  # a limit, the proxy stopping, a bug of ours
    UPSTREAM = "upstream"  # the provider's servers, or the connection to them


class ProxyError(Exception):
    """An error that ends a request. Subclasses fix where it came from and what it counts as."""

    source: ClassVar[Source] = Source.PROXY
    outcome: ClassVar[Outcome] = Outcome.INTERNAL_ERROR
    status: int = 500
    error_type: str = "api_error"
    # After the commit, the proxy writes its own error event for it (False: the upstream already
    # did, or there is nobody left to tell).
    own_event: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        cause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message  # in words, for the client
        self.headers: Mapping[str, str] = headers or {}
        self.cause = cause  # for the log line only: e.g. the exception class behind it

    def described(self) -> str:
        """The message with its cause, for the log line."""
        return self.message if self.cause is None else f"{self.message} ({self.cause})"


# --- the client ---


class ClientRequestError(ProxyError):
    """Refused before a route was known; counted by status, not under a route.

    Its log line says `rejected`, like a limit refusal: the proxy turned the request away and
    nothing went wrong inside it. The `status` field tells the two apart.
    """

    source = Source.CLIENT
    outcome = Outcome.REJECTED


class BadRequest(ClientRequestError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(ClientRequestError):
    status = 401
    error_type = "authentication_error"


class NotFound(ClientRequestError):
    status = 404
    error_type = "not_found_error"


class OriginNotAllowed(ClientRequestError):
    """A CORS preflight from an origin `server.cors_allow_origins` does not list."""

    status = 403
    error_type = "permission_error"


class RequestTimeout(ClientRequestError):
    status = 408
    error_type = "timeout_error"


class PayloadTooLarge(ClientRequestError):
    status = 413
    error_type = "request_too_large"


class ClientGone(ProxyError):
    """The client closed the connection or stopped reading (499: nobody sees a response)."""

    source = Source.CLIENT
    outcome = Outcome.CLIENT_DISCONNECTED
    status = 499
    error_type = "client_closed_request"
    own_event = False


# --- the proxy ---


class ConcurrencyLimitExceeded(ProxyError):
    status = 429
    error_type = "rate_limit_error"
    outcome = Outcome.REJECTED


class ProxyBusy(ProxyError):
    """The proxy refuses work it cannot take now (too many request bodies being read)."""

    status = 503
    error_type = "overloaded_error"
    outcome = Outcome.REJECTED


class ShuttingDown(ProxyError):
    """The shutdown grace period ran out while the request was still open: in-band with the
    code `server_shutdown`, or a 503 that closes the connection if nothing was committed."""

    status = 503
    error_type = "server_shutdown"
    outcome = Outcome.SHUTDOWN

    def __init__(self) -> None:
        super().__init__("the proxy is shutting down", headers={"Connection": "close"})


class InternalError(ProxyError):
    """A bug of ours; the client is told so in words, the log line names the exception."""

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        return cls("internal error in the proxy", cause=type(exc).__name__)


# --- the upstream ---


class UpstreamError(ProxyError):
    """The upstream failed: it broke the connection, broke the protocol or sent too much."""

    source = Source.UPSTREAM
    outcome = Outcome.UPSTREAM_ERROR
    status = 502


class UpstreamUnavailable(UpstreamError):
    """Every upstream of the route refused the connection or answered 502/503/504."""

    def __init__(
        self,
        message: str,
        attempts: tuple[Attempt, ...] = (),
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, headers=headers)
        self.attempts = attempts


class UpstreamTimeout(UpstreamError):
    """No headers, no first byte, no next byte or no end in time."""

    outcome = Outcome.UPSTREAM_TIMEOUT
    status = 504
    error_type = "timeout_error"

    def __init__(self, message: str, attempts: tuple[Attempt, ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class UpstreamBodyStalled(UpstreamTimeout):
    """A whole upstream body that did not arrive in time; `partial` is what did."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


class UpstreamTruncated(UpstreamError):
    """The upstream ended its body cleanly, but before the dialect's terminator."""

    outcome = Outcome.TRUNCATED


class UpstreamErrorEvent(UpstreamError):
    """The upstream sent its own error event, already relayed; the proxy adds none."""

    own_event = False

    def __init__(self) -> None:
        super().__init__("upstream reported an error in the stream")


# Provider error types for the statuses an upstream answers, as the SDKs name them.
_UPSTREAM_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    529: "overloaded_error",
}  # fmt: skip


class UpstreamAnswered(UpstreamError):
    """An upstream answer that cannot be relayed as a stream once the response is committed:
    an error status, or a body that is not an event stream. Carries the upstream's status."""

    def __init__(self, message: str, upstream_status: int | None = None) -> None:
        super().__init__(message)
        if upstream_status is not None:
            self.status = upstream_status
            self.error_type = _UPSTREAM_ERROR_TYPES.get(upstream_status, "api_error")
