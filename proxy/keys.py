"""Typed keys for app-scoped resources (aiohttp `AppKey`) and the per-request id.

`RUNTIME` holds the current snapshot of the configuration (`.snapshot`); a request takes it
once, when it starts (`SNAPSHOT`, set by the first middleware), and uses that one throughout.
`SERVICES` holds the process-wide resources, there once the app has started.
"""

from __future__ import annotations

from aiohttp import web

from proxy.core.runtime import CurrentRuntime, Runtime
from proxy.lifecycle import Lifecycle
from proxy.limits import ConcurrencyLimiter
from proxy.metrics import ProxyMetrics
from proxy.services import Services

RUNTIME = web.AppKey("runtime", CurrentRuntime)
SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", ProxyMetrics)
LIMITER = web.AppKey("limiter", ConcurrencyLimiter)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REQUEST_ID = web.RequestKey("request_id", str)
SNAPSHOT = web.RequestKey("snapshot", Runtime)
