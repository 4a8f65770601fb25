"""The runtime snapshot (pure): one immutable view of a validated `Config`, built once.

A request takes the snapshot once, when it starts, and reads nothing else of the configuration:
its routes (with their dialect, relay settings and the keys to redact), the authenticator, the
body, limit, pool and CORS policies. Replacing the snapshot is one assignment
(`CurrentRuntime.snapshot`); requests in flight keep the one they started with. What lives
longer than a snapshot (the upstream connection pool, the limiter's counts, the metrics) is not
in it: see `proxy.services.Services`.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.config.models import Config, RouteConfig, UpstreamConfig
from proxy.core.auth import Authenticator
from proxy.core.dialects import Dialect, dialect_for


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """What the relay of one route's streams needs to know."""

    heartbeat_s: float
    first_byte_s: float
    idle_s: float
    max_stream_s: float
    client_stall_s: float
    max_event_bytes: int


@dataclass(frozen=True, slots=True)
class Route:
    """A route as requests use it: its config resolved into what each phase needs."""

    name: str
    paths: frozenset[str]
    models: tuple[str, ...] | None  # glob patterns on the body's "model"; None: any
    dialect: Dialect
    upstreams: tuple[UpstreamConfig, ...]
    connect_s: float
    relay: RelaySettings
    keys: tuple[str, ...]  # the upstream keys in clear, longest first: redacted from answers


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    """How the client's request body is read."""

    max_bytes: int
    stall_s: float  # longest wait for the next bytes
    total_s: float  # longest wait for the whole body
    max_pending_bytes: int  # process-wide: the bytes of all bodies being read at once


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    backend: str
    streams_per_user: int  # for users without a limit of their own


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """The upstream connection pool."""

    max_connections: int
    connect_s: float  # for anything that does not pass its route's own


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: frozenset[str]  # "*" among them: any origin

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


@dataclass(frozen=True, slots=True)
class Runtime:
    config: Config
    routes: tuple[Route, ...]
    auth: Authenticator
    body: BodyPolicy
    limits: LimitPolicy
    pool: PoolPolicy
    cors: CorsPolicy


@dataclass(slots=True)
class CurrentRuntime:
    """The snapshot new requests take. A reload is one assignment to `snapshot`; the cell itself
    is set once, before the app starts (aiohttp treats changing a started app as deprecated)."""

    snapshot: Runtime


def route_runtime(route: RouteConfig) -> Route:
    timeouts = route.timeouts
    relay = RelaySettings(
        heartbeat_s=route.heartbeat_s,
        first_byte_s=timeouts.first_byte_s,
        idle_s=timeouts.idle_s,
        max_stream_s=timeouts.max_stream_s,
        client_stall_s=timeouts.client_stall_s,
        max_event_bytes=route.max_event_bytes,
    )
    return Route(
        name=route.name, paths=frozenset(route.paths), models=route.models,
        dialect=dialect_for(route.provider), upstreams=route.upstreams,
        connect_s=timeouts.connect_s, relay=relay, keys=route.revealed_keys(),
    )  # fmt: skip


def build_runtime(config: Config) -> Runtime:
    """The snapshot of `config`: everything a request reads, resolved once."""
    defaults, server = config.defaults, config.server
    return Runtime(
        config=config,
        routes=tuple(route_runtime(route) for route in config.routes),
        auth=Authenticator(config.auth),
        body=BodyPolicy(
            server.max_body_bytes,
            defaults.timeouts.client_stall_s,
            defaults.timeouts.client_body_s,
            server.max_pending_body_bytes,
        ),
        limits=LimitPolicy(config.limits.backend, defaults.max_concurrent_streams_per_user),
        pool=PoolPolicy(server.max_upstream_connections, defaults.timeouts.connect_s),
        cors=CorsPolicy(frozenset(server.cors_allow_origins)),
    )
