"""The proxy's own errors: the one place HTTP statuses and error types are chosen.

A `ProxyError` carries what a client needs (status, error type, message, extra headers) and the
outcome it counts as. The dialect of the client (OpenAI or Anthropic) decides the body's shape;
see `proxy.core.dialects`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Outcome(StrEnum):
    """How a proxied request ended: a closed set, used as a metric label."""

    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    TRUNCATED = "truncated"
    REJECTED = "rejected"
    INTERNAL_ERROR = "internal_error"


class ProxyError(Exception):
    """An error the proxy answers itself, before or after the response was committed."""

    status: int = 500
    error_type: str = "api_error"
    outcome: Outcome = Outcome.INTERNAL_ERROR

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


class ClientRequestError(ProxyError):
    """Refused before a route was known; counted by status, not under a route.

    Its log line says `rejected`, like a limit refusal: the proxy turned the request away and
    nothing went wrong inside it. The `status` field tells the two apart.
    """

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


class MethodNotAllowed(ClientRequestError):
    status = 405
    error_type = "invalid_request_error"


class RequestTimeout(ClientRequestError):
    status = 408
    error_type = "timeout_error"


class PayloadTooLarge(ClientRequestError):
    status = 413
    error_type = "request_too_large"


class ConcurrencyLimitExceeded(ProxyError):
    status = 429
    error_type = "rate_limit_error"
    outcome = Outcome.REJECTED


class UpstreamUnavailable(ProxyError):
    """Every upstream of the route refused the connection or answered 502/503/504."""

    status = 502
    error_type = "api_error"
    outcome = Outcome.UPSTREAM_ERROR


class UpstreamTimeout(ProxyError):
    status = 504
    error_type = "timeout_error"
    outcome = Outcome.UPSTREAM_TIMEOUT


class StreamFailure(ProxyError):
    """A failure after the response was committed; reported in-band as an error event."""

    status = 502
    error_type = "api_error"

    def __init__(self, message: str, outcome: Outcome, *, status: int = 502) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        if outcome is Outcome.UPSTREAM_TIMEOUT:
            self.error_type = UpstreamTimeout.error_type
