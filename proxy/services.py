"""What lives longer than a runtime snapshot: one of each per process, shared by all requests."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from proxy.core.retry_advice import RetryAdvice
from proxy.lifecycle import Lifecycle
from proxy.limits import ConcurrencyLimiter
from proxy.metrics import ProxyMetrics
from proxy.request_body import PendingBodies


@dataclass(frozen=True, slots=True)
class Services:
    metrics: ProxyMetrics
    limiter: ConcurrencyLimiter
    lifecycle: Lifecycle
    session: aiohttp.ClientSession  # the upstream connection pool
    pending_bodies: PendingBodies
    retry_advice: RetryAdvice
