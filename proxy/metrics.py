"""Prometheus collectors on an injected registry; `record(report)` is the one place they move.

Labels stay bounded: route and upstream names come from the config, outcome and source from
closed sets, status from the HTTP status codes the proxy itself answers. Never a user, a key, a
raw path, a raw model string or error text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from proxy.core.stats import StreamReport

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TOKENS_PER_SECOND_BUCKETS = (1, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
NO_ROUTE = "none"


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "llm_proxy_requests", "Proxied requests by how they ended",
            ["route", "stream", "outcome"], registry=registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "llm_proxy_ttft_seconds",
            "Request received to first content event written to the client",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.upstream_first_byte = Histogram(
            "llm_proxy_upstream_first_byte_seconds",
            "Upstream request sent to first upstream body byte",
            ["route", "upstream"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.tokens_per_second = Histogram(
            "llm_proxy_output_tokens_per_second",
            "Output tokens over the time from first to last content event",
            ["route"], buckets=TOKENS_PER_SECOND_BUCKETS, registry=registry,
        )  # fmt: skip
        self.output_tokens = Counter(
            "llm_proxy_output_tokens", "Output tokens (source: usage or counted)",
            ["route", "source"], registry=registry,
        )  # fmt: skip
        self.input_tokens = Counter(
            "llm_proxy_input_tokens", "Input tokens reported by the provider",
            ["route"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "llm_proxy_stream_duration_seconds", "Request received to response ended",
            ["route", "outcome"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.active_streams = Gauge(
            "llm_proxy_active_streams", "Admitted requests in flight",
            ["route"], registry=registry,
        )  # fmt: skip
        self.heartbeats = Counter(
            "llm_proxy_heartbeats", "Heartbeat comments written to clients",
            ["route"], registry=registry,
        )  # fmt: skip
        self.limit_rejections = Counter(
            "llm_proxy_limit_rejections", "Requests refused by a limit",
            ["route", "reason"], registry=registry,
        )  # fmt: skip
        self.pending_body_bytes = Gauge(
            "llm_proxy_pending_request_body_bytes",
            "Bytes of the request bodies being read at once (capped by max_pending_body_bytes)",
            registry=registry,
        )
        self.client_errors = Counter(
            "llm_proxy_client_errors",
            "Requests that ended before a route was chosen (refused, or failed early), by status",
            ["status"], registry=registry,
        )  # fmt: skip

    def record(self, report: StreamReport) -> None:
        """Account one finished request that had a route."""
        route = report.route or NO_ROUTE
        self.requests.labels(route, str(report.stream).lower(), report.outcome).inc()
        self.duration.labels(route, report.outcome).observe(report.duration_s)
        if report.ttft_s is not None:
            self.ttft.labels(route).observe(report.ttft_s)
        if report.upstream_first_byte_s is not None and report.upstream is not None:
            self.upstream_first_byte.labels(route, report.upstream).observe(
                report.upstream_first_byte_s
            )
        if report.output_tokens is not None and report.tokens_source is not None:
            self.output_tokens.labels(route, report.tokens_source).inc(report.output_tokens)
        if report.input_tokens is not None:
            self.input_tokens.labels(route).inc(report.input_tokens)
        if report.tokens_per_s is not None:
            self.tokens_per_second.labels(route).observe(report.tokens_per_s)
        if report.heartbeats:
            self.heartbeats.labels(route).inc(report.heartbeats)

    def record_client_error(self, status: int) -> None:
        self.client_errors.labels(str(status)).inc()
