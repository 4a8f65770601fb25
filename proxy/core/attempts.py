"""What each try of an upstream came to (pure): the data failover decides on and the log shows.

An attempt ends in one of four ways: the connection could not be made (`connect`: refused,
unresolvable, or the connect timeout), the request was sent but the connection dropped before
an answer (`dropped`), no response headers came in time (`timeout`), or an HTTP answer with
its status (`status`; 502/503/504 move on to the next upstream, anything else is the answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

FAILOVER_STATUSES = frozenset({502, 503, 504})


class AttemptKind(StrEnum):
    CONNECT = "connect"
    DROPPED = "dropped"
    TIMEOUT = "timeout"
    STATUS = "status"


@dataclass(frozen=True, slots=True)
class Attempt:
    upstream: str
    kind: AttemptKind
    started: float  # loop time the request to this upstream began
    elapsed_s: float
    status: int | None = None  # for kind STATUS

    @property
    def fails_over(self) -> bool:
        """True when the request cannot have reached a model: the next upstream may be tried."""
        if self.kind is AttemptKind.CONNECT:
            return True
        return self.kind is AttemptKind.STATUS and self.status in FAILOVER_STATUSES

    def describe(self) -> str:
        """For error messages: `primary: could not connect`, `backup: HTTP 503`."""
        what = {
            AttemptKind.CONNECT: "could not connect",
            AttemptKind.DROPPED: "dropped the connection before answering",
            AttemptKind.TIMEOUT: "sent no response headers in time",
        }.get(self.kind, f"HTTP {self.status}")
        return f"{self.upstream}: {what}"

    def log_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {"upstream": self.upstream, "kind": str(self.kind)}
        if self.status is not None:
            fields["status"] = self.status
        fields["elapsed_ms"] = round(self.elapsed_s * 1000, 1)
        return fields
