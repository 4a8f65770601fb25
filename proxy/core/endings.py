"""How a request ended (pure): the one place its status, outcome and delivery are decided.

Every request ends in exactly one `Ending`. Normal ends: a stream that reached the dialect's
terminator (`stream_completed`) or a whole body passed through (`passed_through`). Early ends: an
exception, turned into an ending by `ending_for` from its class (`proxy.core.errors`) and from
whether the response was already committed to the client:

- not committed: a whole error response in the provider's shape, with the error's status;
- committed: the status already sent (200) stands, and the error becomes our error event in the
  client's dialect followed by an abnormal end (also for a bug of ours), or just the abnormal
  end when the upstream sent its own error event;
- the client gone: nothing to deliver; the connection is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from proxy.core.errors import ClientGone, Outcome, ProxyError, Source

COMMIT_STATUS = 200  # a committed event stream: the status line the client already has


class Delivery(StrEnum):
    """What the client gets when the request ends."""

    RESPONSE = "response"  # the response as it stands (a relayed stream, a passed-through body)
    ERROR_RESPONSE = "error_response"  # nothing committed yet: a whole error response
    ERROR_EVENT = "error_event"  # committed: our error event, then the end without terminator
    ABNORMAL_END = "abnormal_end"  # committed: what was written goes out, then that end
    DROP = "drop"  # the client is gone: close the connection now


@dataclass(frozen=True, slots=True)
class Ending:
    outcome: Outcome
    status: int
    delivery: Delivery = Delivery.RESPONSE
    error: str | None = None  # what went wrong, for the log line
    error_source: Source | None = None


def ending_for(error: ProxyError, *, committed: bool) -> Ending:
    """The ending of a request that `error` ended."""
    if isinstance(error, ClientGone):
        delivery = Delivery.DROP
    elif not committed:
        delivery = Delivery.ERROR_RESPONSE
    else:
        delivery = Delivery.ERROR_EVENT if error.own_event else Delivery.ABNORMAL_END
    status = COMMIT_STATUS if committed else error.status
    return Ending(error.outcome, status, delivery, error.described(), error.source)


def stream_completed(*, upstream_reported_error: bool) -> Ending:
    """A stream relayed to the dialect's terminator. An upstream that sent its own error event
    and then its terminator (vLLM does) did not complete the answer."""
    if upstream_reported_error:
        message = "upstream reported an error in the stream"
        return Ending(Outcome.UPSTREAM_ERROR, COMMIT_STATUS, error=message,
                      error_source=Source.UPSTREAM)  # fmt: skip
    return Ending(Outcome.COMPLETED, COMMIT_STATUS)


def passed_through(upstream_status: int) -> Ending:
    """A whole upstream answer passed to the client with its own status."""
    if upstream_status < 300:
        return Ending(Outcome.COMPLETED, upstream_status)
    message = f"upstream answered HTTP {upstream_status}"
    return Ending(Outcome.UPSTREAM_ERROR, upstream_status, error=message,
                  error_source=Source.UPSTREAM)  # fmt: skip


# A request whose handler ended without any of the above (only a BaseException that is not a
# cancellation, e.g. SystemExit, can do that): counted as our bug, never silently.
UNSETTLED = Ending(Outcome.INTERNAL_ERROR, 500, Delivery.DROP, "request ended without an outcome",
                   Source.PROXY)  # fmt: skip
