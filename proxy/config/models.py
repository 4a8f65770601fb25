"""The proxy's configuration as the rest of the code sees it: validated, frozen objects.

The sections used exactly as written in the file are strict pydantic models; the others are
built by `proxy.config.load` (YAML in, these objects out), which also holds the entry points
`load_config` and `parse_config`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Literal, final

from pydantic import AfterValidator, BaseModel, Field

from proxy.config.fields import (
    STRICT,
    ConfigError,
    Count,
    Name,
    Seconds,
    check_origin,
)

__all__ = [
    "AuthConfig", "Config", "ConfigError", "Defaults", "LimitsConfig", "LoggingConfig",
    "RouteConfig", "Secret", "ServerConfig", "Timeouts", "UpstreamConfig", "UserConfig",
]  # fmt: skip

KeyPath = tuple[str | int, ...]


@final
class Secret:
    """A credential: masked in repr, str and format; `reveal()` is the only way to the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return format(repr(self), format_spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


# --- public sections that are used exactly as written in the file ---


Origin = Annotated[str, AfterValidator(check_origin)]


class ServerConfig(BaseModel):
    """`server:` where to listen, and how much to accept."""

    model_config = STRICT
    host: Name = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port
    max_body_bytes: Count = 20 * 1024 * 1024
    # Process-wide: the bytes of all request bodies being read at once (503 past it).
    max_pending_body_bytes: Count = 256 * 1024 * 1024
    max_upstream_connections: Count = 4096
    listen_backlog: Annotated[int, Field(ge=1, le=65535)] = 1024
    # A request's head (request line and headers) must be complete this long after the
    # connection opened, or after its first byte on a kept-alive connection: else 408, closed.
    header_timeout_s: Seconds = 10.0
    # Client connections held at once; past it the proxy stops accepting until one closes.
    # None: what the file limit leaves after the upstream side (proxy.connection_limit).
    max_connections: Count | None = None
    # Below Kubernetes' default terminationGracePeriodSeconds (30), so that the in-band error
    # events for streams still open at the deadline go out before the pod is killed.
    shutdown_grace_s: Seconds = 20.0
    # Still listening (new requests served) while /readyz already says 503, so that a load
    # balancer has time to stop sending before the listener closes. 0: close at once.
    shutdown_delay_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    # Origins whose pages may call the proxy with `fetch` (proxy/cors.py); "*" for any.
    cors_allow_origins: list[Origin] = Field(default_factory=list)


class LoggingConfig(BaseModel):
    """`logging:` the minimum level and the output format."""

    model_config = STRICT
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Timeouts(BaseModel):
    """Seconds allowed for each phase of an upstream stream."""

    model_config = STRICT
    connect_s: Seconds = 10.0
    first_byte_s: Seconds = 120.0
    idle_s: Seconds = 300.0
    max_stream_s: Seconds = 3600.0
    client_stall_s: Seconds = 60.0
    # The whole request body must arrive within this (only under `defaults`: it is read before a
    # route is chosen).
    client_body_s: Seconds = 30.0


class Defaults(BaseModel):
    """`defaults:` what every route and user gets unless it says otherwise."""

    model_config = STRICT
    heartbeat_s: Seconds = 15.0
    timeouts: Timeouts = Timeouts()
    max_concurrent_streams_per_user: Count = 4
    max_event_bytes: Count = 1024 * 1024


class LimitsConfig(BaseModel):
    """`limits:` where the per-user stream counts live."""

    model_config = STRICT
    backend: Literal["memory"] = "memory"


# --- public objects built by the resolver ---


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One server a route can send to; `url` has no trailing "/"; `headers` are extra, static."""

    name: str
    url: str
    api_key: Secret | None = None
    headers: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False, hash=False
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteConfig:
    """A route with heartbeat, timeouts and event size already resolved against `defaults`."""

    name: str
    paths: tuple[str, ...]
    models: tuple[str, ...] | None = None
    provider: Literal["openai", "anthropic"]
    upstreams: tuple[UpstreamConfig, ...]
    heartbeat_s: float = 15.0
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_event_bytes: int = 1024 * 1024

    def revealed_keys(self) -> tuple[str, ...]:
        """The route's upstream keys in clear, for redacting whatever an upstream echoes;
        longest first, so a key that begins another cannot leave the other's tail behind."""
        keys = {up.api_key.reveal() for up in self.upstreams if up.api_key is not None}
        return tuple(sorted(keys, key=len, reverse=True))


@dataclass(frozen=True, slots=True)
class UserConfig:
    """A user; `key_sha256` is the raw 32-byte digest of their key (None: no key)."""

    name: str
    key_sha256: bytes | None = field(default=None, repr=False)
    max_concurrent_streams: int | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How clients are identified: by key, by a trusted header, or not at all."""

    mode: Literal["keys", "header", "none"] = "keys"
    header: str = "X-User-Id"
    users: tuple[UserConfig, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration, as the proxy uses it."""

    server: ServerConfig = field(default_factory=ServerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    defaults: Defaults = field(default_factory=Defaults)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    routes: tuple[RouteConfig, ...]
