"""Loading the configuration: YAML in, the validated and frozen objects of `proxy.config` out.

Two steps. Strict pydantic models check the document as written (types, ranges, unknown keys;
see `proxy.config` and `proxy.config.document`). A resolver then builds the public objects: routes
with the defaults filled in, provider keys read from the environment into `Secret`s, user keys
hashed; it also checks what spans several values (duplicate names, shared keys, the
environment). Each problem becomes one "key.path: what is wrong" line of a `ConfigError`; no
value from the file or the environment is ever quoted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationError

from proxy.config.document import (
    AuthDoc,
    RouteDoc,
    UpstreamDoc,
    UserDoc,
    describe_kind,
    read_yaml,
    render_errors,
)
from proxy.config.fields import (
    CONVENTIONAL_ENV_NAME,
    SANE_USER_NAME,
    STRICT,
    ConfigError,
    key_path,
)
from proxy.config.models import (
    AuthConfig,
    Config,
    Defaults,
    LimitsConfig,
    LoggingConfig,
    RouteConfig,
    Secret,
    ServerConfig,
    UpstreamConfig,
    UserConfig,
)

__all__ = ["ConfigError", "load_config", "parse_config"]

KeyPath = tuple[str | int, ...]
NO_USERS = (
    "auth.users: no users, but auth.mode is keys (the default when it is not set), so nobody "
    "could connect. auth.mode is one of: keys (clients send a key; list them in auth.users), "
    "header (a trusted front proxy names the user in auth.header), none (no authentication; "
    "local use only)"
)


# --- the document as a whole (its resolved sections are in proxy.config.document) ---


class _ConfigDoc(BaseModel):
    model_config = STRICT
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    defaults: Defaults = Defaults()
    auth: AuthDoc = AuthDoc()
    limits: LimitsConfig = LimitsConfig()
    routes: Annotated[list[RouteDoc], Field(min_length=1)]


# --- from a valid document to the public objects ---


class _Resolver:
    """Builds the public objects, collecting every cross-value problem in `errors`."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.errors: list[str] = []

    def config(self, doc: _ConfigDoc) -> Config:
        auth = self.auth(doc.auth)
        routes = tuple(
            self.route(route, doc.defaults, ("routes", index))
            for index, route in enumerate(doc.routes)
        )
        self.unique_names([route.name for route in routes], ("routes",), "route name")
        return Config(
            server=doc.server, logging=doc.logging, defaults=doc.defaults,
            auth=auth, limits=doc.limits, routes=routes,
        )  # fmt: skip

    def unique_names(self, names: Sequence[str], path: KeyPath, what: str) -> None:
        seen: set[str] = set()
        for index, name in enumerate(names):
            if name in seen:
                self.errors.append(f"{key_path((*path, index, 'name'))}: duplicate {what} {name!r}")
            seen.add(name)

    def env_value(self, variable: str, path: KeyPath) -> str | None:
        """The environment variable's value, or None after recording why it is unusable."""
        value = self.environ.get(variable)
        named = _variable_named(variable)
        if value is None:
            problem = f"{named} is not set"
            if not CONVENTIONAL_ENV_NAME.fullmatch(variable):
                problem += (
                    "; the value there does not look like a variable name (upper-case letters,"
                    " digits, '_') and may be a key pasted by mistake, so it is not shown"
                )
        elif not value:
            problem = f"{named} is empty"
        elif not (value.isascii() and value.isprintable()) or " " in value:
            problem = f"{named} holds whitespace or non-ASCII characters"
        else:
            return value
        self.errors.append(f"{key_path(path)}: {problem}")
        return None

    def auth(self, doc: AuthDoc) -> AuthConfig:
        path: KeyPath = ("auth", "users")
        users = tuple(self.user(user, (*path, index)) for index, user in enumerate(doc.users))
        self.unique_names([user.name for user in users], path, "user name")
        if doc.mode == "header":
            self.header_user_names([user.name for user in users], path)
        owners: dict[bytes, str] = {}
        for index, (user_doc, user) in enumerate(zip(doc.users, users, strict=True)):
            if doc.mode == "keys" and user.key_sha256 is None and user_doc.key_env is None:
                self.errors.append(f"{key_path((*path, index))}: auth mode 'keys' needs "
                                   "key_sha256 or key_env for every user")  # fmt: skip
            if user.key_sha256 is None:
                continue
            if user.key_sha256 in owners:
                where = key_path((*path, index, "key_env" if user_doc.key_env else "key_sha256"))
                self.errors.append(f"{where}: same key as user {owners[user.key_sha256]!r}")
            owners.setdefault(user.key_sha256, user.name)
        if doc.mode == "keys" and not users:
            self.errors.append(NO_USERS)
        return AuthConfig(mode=doc.mode, header=doc.header, users=users)

    def header_user_names(self, names: Sequence[str], path: KeyPath) -> None:
        """In mode header, a name the identity header can never carry is a user nobody can be."""
        for index, name in enumerate(names):
            if not SANE_USER_NAME.fullmatch(name):
                self.errors.append(
                    f"{key_path((*path, index, 'name'))}: auth mode 'header' only accepts user "
                    "names of 1 to 128 printable ASCII characters without spaces or commas"
                )

    def user(self, doc: UserDoc, path: KeyPath) -> UserConfig:
        digest = None if doc.key_sha256 is None else bytes.fromhex(doc.key_sha256)
        if doc.key_env is not None:
            key = self.env_value(doc.key_env, (*path, "key_env"))
            digest = None if key is None else hashlib.sha256(key.encode()).digest()
        return UserConfig(doc.name, digest, doc.max_concurrent_streams)

    def route(self, doc: RouteDoc, defaults: Defaults, path: KeyPath) -> RouteConfig:
        upstreams = tuple(
            self.upstream(upstream, (*path, "upstreams", index))
            for index, upstream in enumerate(doc.upstreams)
        )
        names = [upstream.name for upstream in upstreams]
        self.unique_names(names, (*path, "upstreams"), "upstream name")
        overrides = doc.timeouts.model_dump(exclude_none=True) if doc.timeouts else {}
        return RouteConfig(
            name=doc.name,
            paths=tuple(doc.paths),
            models=None if doc.models is None else tuple(doc.models),
            provider=doc.provider,
            upstreams=upstreams,
            heartbeat_s=defaults.heartbeat_s if doc.heartbeat_s is None else doc.heartbeat_s,
            timeouts=defaults.timeouts.model_copy(update=overrides),
            max_event_bytes=(
                defaults.max_event_bytes if doc.max_event_bytes is None else doc.max_event_bytes
            ),
        )

    def upstream(self, doc: UpstreamDoc, path: KeyPath) -> UpstreamConfig:
        api_key = None
        if doc.api_key_env is not None:
            value = self.env_value(doc.api_key_env, (*path, "api_key_env"))
            api_key = None if value is None else Secret(value)
        return UpstreamConfig(
            name=doc.name or urlsplit(doc.url).netloc,
            url=doc.url,
            api_key=api_key,
            headers=MappingProxyType(dict(doc.headers)),
        )


def _variable_named(variable: str) -> str:
    """How an error names an environment variable: by its name only if it looks like one."""
    if CONVENTIONAL_ENV_NAME.fullmatch(variable):
        return f"environment variable {variable}"
    return "the environment variable named there"


# --- entry points ---


def parse_config(document: object, environ: Mapping[str, str], source: str = "<config>") -> Config:
    """Validate an already-parsed YAML document; `source` names it in document-level errors."""
    if not isinstance(document, dict):
        empty = "is empty" if document is None else f"is {describe_kind(document)}"
        raise ConfigError([f"{source}: {empty}; expected a mapping with at least 'routes'"])
    try:
        doc = _ConfigDoc.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(render_errors(exc, source, _ConfigDoc)) from None
    resolver = _Resolver(environ)
    config = resolver.config(doc)
    if resolver.errors:
        raise ConfigError(resolver.errors)
    return config


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve the YAML file at `path` (keys from `environ`, or os.environ)."""
    document = read_yaml(path)
    return parse_config(document, os.environ if environ is None else environ, str(path))
