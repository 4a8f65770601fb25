"""Typed keys for app-scoped resources (aiohttp `AppKey`) and the per-request id."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from proxy.config.models import Config
from proxy.core.auth import Authenticator
from proxy.lifecycle import Lifecycle
from proxy.limits import ConcurrencyLimiter
from proxy.metrics import ProxyMetrics
from proxy.release import UpstreamReleaser

CONFIG = web.AppKey("config", Config)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", ProxyMetrics)
LIMITER = web.AppKey("limiter", ConcurrencyLimiter)
SESSION = web.AppKey("session", aiohttp.ClientSession)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
RELEASER = web.AppKey("releaser", UpstreamReleaser)
REQUEST_ID = web.RequestKey("request_id", str)
