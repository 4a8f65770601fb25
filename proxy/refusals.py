"""Requests refused before the proxy's handler could see them: answered, logged and counted here.

Two kinds: a request head that aiohttp's HTTP parser refuses (a header byte HTTP does not allow,
an over-long request line or header, a malformed request line; all 400), and a head that is not
complete within `server.header_timeout_s` (408). Each gets what a refused request always gets:
one `stream.finished` line with outcome `rejected` and the status, a count in
`llm_proxy_client_errors_total{status}`, and a JSON body in the OpenAI error shape.

Nothing of the request is ever repeated: not in the line, not in the body. aiohttp's own path
logged the raw header line at ERROR (a client's key with one bad byte in it) and echoed it in a
text/plain answer; here the error is only named by its kind.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import (
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)

from proxy.core.dialects import dialect_for
from proxy.core.endings import Delivery, Ending
from proxy.core.errors import Outcome, Source
from proxy.core.stats import RequestRecord
from proxy.log import get_logger
from proxy.metrics import ProxyMetrics

log = get_logger("proxy.request")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    error_type: str
    message: str  # what the client and the log line are told: never anything of the request

    def body(self) -> bytes:
        return json.dumps(dialect_for("openai").error_body(self.error_type, self.message)).encode()


def _kind(error: HttpProcessingError) -> str:
    """The kind of parser error, in words of ours (aiohttp's message quotes the bytes)."""
    if isinstance(error, LineTooLong):
        return "the request line or a header is too long"
    if isinstance(error, InvalidURLError):
        return "the request target is not a valid URL"
    if isinstance(error, BadStatusLine):  # also BadHttpMethod
        return "the request line is malformed"
    if isinstance(error, InvalidHeader):
        return "a header is malformed"
    return "a header has a byte HTTP does not allow, or the headers are malformed or too many"


def parse_refusal(error: HttpProcessingError) -> Refusal:
    return Refusal(400, "invalid_request_error", f"the request cannot be parsed: {_kind(error)}")


def header_timeout_refusal(timeout_s: float) -> Refusal:
    return Refusal(408, "timeout_error", f"request headers not complete within {timeout_s:g} s")


def record(refusal: Refusal, metrics: ProxyMetrics, duration_s: float) -> str:
    """Count the refusal and write its one log line (the fields of every request's line);
    the new request id."""
    request_id, now = uuid.uuid4().hex, time.monotonic()
    request = RequestRecord(request_id, now - duration_s, method=None, path=None)
    request.on_written(len(refusal.body()))
    ending = Ending(Outcome.REJECTED, refusal.status, Delivery.ERROR_RESPONSE, refusal.message,
                    Source.CLIENT)  # fmt: skip
    metrics.record_client_error(refusal.status)
    log.info("stream.finished", **request.report(now, ending).log_fields())
    return request_id


def response(refusal: Refusal, request_id: str) -> web.Response:
    """The answer through aiohttp's writer; the connection closes after it."""
    answer = web.Response(
        status=refusal.status, body=refusal.body(), content_type="application/json",
        headers={"X-Request-Id": request_id},
    )  # fmt: skip
    answer.force_close()
    return answer


def raw_response(refusal: Refusal, request_id: str) -> bytes:
    """The same answer as bytes, for a connection on which no request was ever parsed."""
    body = refusal.body()
    head = (
        f"HTTP/1.1 {refusal.status} {HTTPStatus(refusal.status).phrase}\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"X-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
