"""Tests for proxy.config: the shipped files, defaults and inheritance, every validation error,
secret handling, and the strict YAML loader."""

from __future__ import annotations

import copy
import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from proxy.config.load import NO_USERS, load_config, parse_config
from proxy.config.models import (
    Config,
    ConfigError,
    Defaults,
    RouteConfig,
    Secret,
    ServerConfig,
    Timeouts,
    UpstreamConfig,
)
from proxy.core.runtime import build_runtime

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant", "BOB_PROXY_KEY": "bk"}
CANARY = "canary-7Hq2ZxW9vR4mKp1L"
SHA_ALICE = hashlib.sha256(b"alice-demo-key").hexdigest()
SHA_OTHER = hashlib.sha256(b"another key").hexdigest()

Edit = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    """A valid document: two keyed users, two routes, one upstream key from the environment."""
    return {
        "auth": {"users": [{"name": "alice", "key_sha256": SHA_ALICE},
                           {"name": "bob", "key_env": "BOB_KEY"}]},
        "routes": [
            {"name": "openai", "paths": ["/v1/chat/completions"], "provider": "openai",
             "upstreams": [{"url": "https://api.openai.com", "api_key_env": "OPENAI_KEY"}]},
            {"name": "anthropic", "paths": ["/v1/messages"], "provider": "anthropic",
             "upstreams": [{"url": "http://127.0.0.1:9100"}]},
        ],
    }  # fmt: skip


ENV = {"BOB_KEY": "bob-key", "OPENAI_KEY": "sk-openai-key"}


def parse(edit: Edit | None = None, environ: dict[str, str] | None = None) -> Config:
    document = base()
    if edit is not None:
        edit(document)
    return parse_config(document, ENV if environ is None else environ)


def errors(edit: Edit | None = None, environ: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse(edit, environ)
    assert str(caught.value) == "\n".join(caught.value.errors)
    return caught.value.errors


def put(*path: str | int, value: Any) -> Edit:
    """An edit that sets the value at `path`, creating missing mappings on the way."""

    def edit(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = copy.deepcopy(value)

    return edit


def drop(*path: str | int) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return edit


def append(*path: str | int, value: Any) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        node: Any = document
        for key in path:
            node = node[key]
        node.append(copy.deepcopy(value))

    return edit


def both(*edits: Edit) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        for one in edits:
            one(document)

    return edit


# --- the shipped files ---


def test_example_file_loads_with_every_key_resolved() -> None:
    config = load_config(REPO / "config" / "example.yaml", EXAMPLE_ENV)
    assert config.server == ServerConfig(
        host="127.0.0.1", port=8080, max_body_bytes=20971520, max_upstream_connections=4096,
        listen_backlog=1024, shutdown_grace_s=20, shutdown_delay_s=0,
        max_pending_body_bytes=268435456,
    )  # fmt: skip
    assert (config.logging.level, config.logging.format) == ("info", "json")
    assert config.defaults == Defaults()
    alice, bob = config.auth.users
    assert (config.auth.mode, config.auth.header) == ("keys", "X-User-Id")
    assert (alice.name, alice.key_sha256, alice.max_concurrent_streams) == (
        "alice", hashlib.sha256(b"alice-demo-key").digest(), 8,
    )  # fmt: skip
    assert (bob.name, bob.key_sha256) == ("bob", hashlib.sha256(b"bk").digest())
    assert config.limits.backend == "memory"
    openai, models, anthropic = config.routes
    assert openai.paths == ("/v1/chat/completions", "/v1/completions", "/v1/responses")
    assert (openai.models, openai.provider) == (("gpt-*", "o*"), "openai")
    assert (openai.heartbeat_s, openai.max_event_bytes) == (10.0, 2097152)
    assert openai.timeouts == Timeouts(first_byte_s=60)
    (primary,) = openai.upstreams
    assert (primary.name, primary.url, dict(primary.headers)) == (
        "primary", "https://api.openai.com", {},
    )  # fmt: skip
    assert primary.api_key is not None and primary.api_key.reveal() == "sk-openai"
    assert (models.name, models.paths, models.models) == ("openai-models", ("/v1/models",), None)
    assert (anthropic.models, anthropic.provider, anthropic.paths) == (
        None, "anthropic", ("/v1/messages", "/v1/messages/count_tokens"),
    )  # fmt: skip
    assert (anthropic.heartbeat_s, anthropic.timeouts) == (15.0, Timeouts())
    (upstream,) = anthropic.upstreams
    assert (upstream.name, upstream.url) == ("api.anthropic.com", "https://api.anthropic.com")
    assert upstream.api_key == Secret("sk-ant")


def test_example_file_names_its_missing_environment_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(REPO / "config" / "example.yaml", {"OPENAI_API_KEY": "sk-openai"})
    assert caught.value.errors == (
        "auth.users[1].key_env: environment variable BOB_PROXY_KEY is not set",
        "routes[2].upstreams[0].api_key_env: environment variable ANTHROPIC_API_KEY is not set",
    )


def test_demo_file_loads_without_any_environment() -> None:
    config = load_config(REPO / "config" / "demo.yaml", {})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert (config.logging.format, config.auth.mode, config.defaults.heartbeat_s) == (
        "console", "none", 5.0,
    )  # fmt: skip
    by_name = {route.name: route for route in config.routes}
    assert by_name["openai"].paths == ("/v1/chat/completions", "/v1/completions", "/v1/responses")
    assert by_name["anthropic"].paths == ("/v1/messages", "/v1/messages/count_tokens")
    assert [route.provider for route in config.routes] == ["openai", "openai", "anthropic"]
    for route in config.routes:
        assert route.heartbeat_s == 5.0
        assert [(u.url, u.api_key) for u in route.upstreams] == [("http://127.0.0.1:9100", None)]


# --- defaults and inheritance ---


def test_every_section_but_routes_defaults_to_the_documented_values() -> None:
    config = parse_config({"auth": {"mode": "none"}, "routes": [base()["routes"][1]]}, environ={})
    assert config.server == ServerConfig()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert (config.server.max_body_bytes, config.server.max_upstream_connections) == (
        20971520, 4096,
    )  # fmt: skip
    # The grace period ends before Kubernetes' default 30 s, so cut streams still hear why.
    assert (config.server.listen_backlog, config.server.shutdown_grace_s) == (1024, 20.0)
    assert (config.logging.level, config.logging.format) == ("info", "json")
    assert config.defaults.heartbeat_s == 15.0
    assert config.defaults.timeouts == Timeouts(
        connect_s=10, first_byte_s=120, idle_s=300, max_stream_s=3600
    )
    assert config.defaults.max_concurrent_streams_per_user == 4
    assert config.defaults.max_event_bytes == 1048576
    assert (config.auth.header, config.auth.users) == ("X-User-Id", ())
    assert config.limits.backend == "memory"
    (route,) = config.routes
    assert (route.models, route.heartbeat_s, route.max_event_bytes) == (None, 15.0, 1048576)
    assert route.timeouts == config.defaults.timeouts
    assert dict(route.upstreams[0].headers) == {}


def test_request_bodies_are_read_under_the_documented_defaults() -> None:
    """What the request-body reader is given when the config names none of its keys: the whole
    body within 30 s though 60 s may pass between bytes, and 256 MiB of bodies being read at once
    in the process (issue 8, item 3). That the reader enforces what it is given is proved end to
    end with small values (tests/e2e/test_hardening_bodies.py), in a second, not in 30 s or with
    260 MiB of bodies."""
    body = build_runtime(parse()).body
    assert (body.total_s, body.stall_s) == (30.0, 60.0)
    assert body.max_pending_bytes == 256 * 2**20
    assert body.max_bytes == 20 * 2**20


def test_routes_inherit_defaults_and_merge_timeouts_key_by_key() -> None:
    config = parse(
        both(
            put("defaults", value={"heartbeat_s": 7, "max_event_bytes": 4096,
                                   "timeouts": {"connect_s": 3, "idle_s": 30}}),
            put("routes", 0, "timeouts", value={"idle_s": 5, "max_stream_s": 60}),
            put("routes", 0, "heartbeat_s", value=2.5),
            put("routes", 0, "max_event_bytes", value=999),
        )
    )  # fmt: skip
    overriding, inheriting = config.routes
    assert overriding.timeouts == Timeouts(connect_s=3, first_byte_s=120, idle_s=5, max_stream_s=60)
    assert (overriding.heartbeat_s, overriding.max_event_bytes) == (2.5, 999)
    assert inheriting.timeouts == Timeouts(connect_s=3, first_byte_s=120, idle_s=30)
    assert (inheriting.heartbeat_s, inheriting.max_event_bytes) == (7.0, 4096)
    assert config.defaults.timeouts == Timeouts(connect_s=3, idle_s=30)


def test_integers_are_accepted_where_seconds_are_expected() -> None:
    config = parse(put("defaults", "heartbeat_s", value=10))
    assert config.defaults.heartbeat_s == 10.0 and isinstance(config.defaults.heartbeat_s, float)
    assert isinstance(config.routes[0].timeouts.connect_s, float)


def test_urls_lose_their_trailing_slash_and_names_default_to_host_and_port() -> None:
    config = parse(
        put("routes", 1, "upstreams", value=[
            {"url": "http://127.0.0.1:9100/prefix/v1/"},
            {"url": "HTTPS://api.example.com/"},
            {"name": "third", "url": "http://localhost", "headers": {"X-Org": "o-1"}},
        ])
    )  # fmt: skip
    first, second, third = config.routes[1].upstreams
    assert (first.name, first.url) == ("127.0.0.1:9100", "http://127.0.0.1:9100/prefix/v1")
    assert (second.name, second.url) == ("api.example.com", "https://api.example.com")
    assert (third.name, third.url, dict(third.headers)) == (
        "third", "http://localhost", {"X-Org": "o-1"},
    )  # fmt: skip


def test_models_keys_and_header_mode() -> None:
    config = parse(
        both(
            put("routes", 0, "models", value=["gpt-*"]),
            put("auth", value={"mode": "header", "header": "X-Team",
                               "users": [{"name": "ops", "max_concurrent_streams": 9},
                                         {"name": "dev", "key_sha256": SHA_ALICE.upper()}]}),
        )
    )  # fmt: skip
    assert config.routes[0].models == ("gpt-*",)
    assert (config.auth.mode, config.auth.header) == ("header", "X-Team")
    ops, dev = config.auth.users
    assert (ops.key_sha256, ops.max_concurrent_streams) == (None, 9)
    assert dev.key_sha256 == bytes.fromhex(SHA_ALICE)


def test_config_objects_are_frozen() -> None:
    config = parse()
    route = config.routes[0]
    with pytest.raises(AttributeError):
        route.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        config.server.port = 1
    with pytest.raises(TypeError):
        route.upstreams[0].headers["X-Extra"] = "1"  # type: ignore[index]
    assert hash(route) == hash(parse().routes[0])


def test_objects_can_be_built_directly_with_defaults() -> None:
    upstream = UpstreamConfig("local", "http://127.0.0.1:9100")
    route = RouteConfig(name="r", paths=("/v1",), provider="openai", upstreams=(upstream,))
    config = Config(routes=(route,))
    assert (route.heartbeat_s, route.timeouts, route.max_event_bytes) == (15.0, Timeouts(), 1048576)
    assert (config.auth.mode, upstream.api_key, dict(upstream.headers)) == ("keys", None, {})


# --- secrets ---


def test_secret_is_masked_everywhere_but_reveal() -> None:
    secret = Secret(CANARY)
    assert secret.reveal() == CANARY
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret!s}",
             f"{secret:>40}", "%s %r" % (secret, secret), format(secret, "")]  # noqa: UP031  # fmt: skip
    assert all(CANARY not in text for text in shown)
    assert repr(secret) == str(secret) == "Secret('***')"
    assert not hasattr(secret, "__dict__")
    assert secret == Secret(CANARY) and secret != Secret("other") and secret != CANARY
    assert hash(secret) == hash(Secret(CANARY))


def test_keys_from_the_environment_never_show_in_the_config() -> None:
    environ = {"BOB_KEY": CANARY + "-user", "OPENAI_KEY": CANARY}
    config = parse(environ=environ)
    assert CANARY not in repr(config) and CANARY not in str(config)
    assert CANARY.encode() not in pickle.dumps(config.auth)
    key = config.routes[0].upstreams[0].api_key
    assert key is not None and key.reveal() == CANARY
    assert config.auth.users[1].key_sha256 == hashlib.sha256((CANARY + "-user").encode()).digest()
    assert SHA_ALICE not in repr(config)  # digests are left out of the repr too


def test_values_never_show_in_errors() -> None:
    problems = errors(
        both(
            put("routes", 0, "upstreams", 0, "url", value=f"https://x/?key={CANARY}"),
            put("routes", 0, "upstreams", 0, "headers", value={"X-A": f"{CANARY}\r\n"}),
            put("routes", 1, "upstreams", 0, "url", value=f"https://{CANARY}:{CANARY}@x"),
            put("auth", "users", 0, "key_sha256", value=CANARY),
            put("server", "host", value=[CANARY]),
        )
    )
    assert len(problems) == 5
    assert all(CANARY not in problem for problem in problems)


@pytest.mark.parametrize("value", [f"{CANARY} ", f"{CANARY}\n", f"{CANARY}\u00e9"])
def test_environment_values_never_show_in_errors(value: str) -> None:
    problems = errors(
        put("routes", 1, "name", value="openai"), environ={"BOB_KEY": value, "OPENAI_KEY": value}
    )
    assert len(problems) == 3
    assert all(CANARY not in problem for problem in problems)


def test_key_env_is_read_and_hashed_and_the_key_is_not_kept() -> None:
    config = parse(environ={**ENV, "BOB_KEY": "s3cret-bob"})
    bob = config.auth.users[1]
    assert bob.key_sha256 == hashlib.sha256(b"s3cret-bob").digest()
    assert len(bob.key_sha256) == 32
    assert b"s3cret-bob" not in pickle.dumps(config.auth)


def test_load_config_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.yaml").write_text(
        "auth: {mode: none}\nroutes:\n  - {name: r, paths: [/a], provider: openai,\n"
        "     upstreams: [{url: 'http://x', api_key_env: PROXY_TEST_KEY}]}\n"
    )
    monkeypatch.setenv("PROXY_TEST_KEY", "from-os-environ")
    key = load_config(tmp_path / "c.yaml").routes[0].upstreams[0].api_key
    assert key == Secret("from-os-environ")


# --- validation errors: each names its key path ---

ERROR_CASES: list[tuple[Edit, str]] = [
    # unknown keys, at every level
    (put("extra", value=1), "extra: unknown key"),
    (put("server", "prot", value=1), "server.prot: unknown key; did you mean 'port'?"),
    (put("defaults", "timeouts", "read_s", value=1), "defaults.timeouts.read_s: unknown key"),
    (put("auth", "users", 0, "key", value="k"), "auth.users[0].key: unknown key"),
    (put("routes", 0, "upstrems", value=[]),
     "routes[0].upstrems: unknown key; did you mean 'upstreams'?"),
    (put("routes", 1, "upstreams", 0, "api_key", value="k"),
     "routes[1].upstreams[0].api_key: unknown key; did you mean 'api_key_env'?"),
    (put("routes", 0, "timeouts", value={"idle": 1}),
     "routes[0].timeouts.idle: unknown key; did you mean 'idle_s'?"),
    # wrong types
    (put("server", "port", value="8080"), "server.port: must be an integer, not a string"),
    (put("server", "port", value=True), "server.port: must be an integer, not a boolean"),
    (put("server", "port", value=80.0), "server.port: must be an integer, not a number"),
    (put("server", "host", value=None), "server.host: must be a string, not null"),
    (put("defaults", "heartbeat_s", value="15"),
     "defaults.heartbeat_s: must be a number, not a string"),
    (put("server", value=[]), "server: must be a mapping, not a list"),
    (put("routes", 0, "paths", value="/v1"), "routes[0].paths: must be a list, not a string"),
    (put("routes", 0, "upstreams", 0, "headers", value={"X-A": 1}),
     "routes[0].upstreams[0].headers.X-A: must be a string, not an integer"),
    (put("routes", value=[5]), "routes[0]: must be a mapping, not an integer"),
    # ranges
    (put("server", "port", value=-1), "server.port: must be at least 0"),
    (put("server", "port", value=65536), "server.port: must be at most 65535"),
    (put("server", "listen_backlog", value=0), "server.listen_backlog: must be at least 1"),
    (put("server", "listen_backlog", value=3_000_000_000),
     "server.listen_backlog: must be at most 65535"),
    (put("server", "max_body_bytes", value=0), "server.max_body_bytes: must be greater than 0"),
    (put("server", "max_upstream_connections", value=-1),
     "server.max_upstream_connections: must be greater than 0"),
    (put("defaults", "heartbeat_s", value=0), "defaults.heartbeat_s: must be greater than 0"),
    (put("defaults", "timeouts", "connect_s", value=0),
     "defaults.timeouts.connect_s: must be greater than 0"),
    (put("defaults", "timeouts", "first_byte_s", value=-1),
     "defaults.timeouts.first_byte_s: must be greater than 0"),
    (put("defaults", "timeouts", "idle_s", value=float("inf")),
     "defaults.timeouts.idle_s: must be a finite number"),
    (put("defaults", "timeouts", "max_stream_s", value=0),
     "defaults.timeouts.max_stream_s: must be greater than 0"),
    (put("defaults", "max_event_bytes", value=0),
     "defaults.max_event_bytes: must be greater than 0"),
    (put("defaults", "max_concurrent_streams_per_user", value=0),
     "defaults.max_concurrent_streams_per_user: must be greater than 0"),
    (put("auth", "users", 0, "max_concurrent_streams", value=0),
     "auth.users[0].max_concurrent_streams: must be greater than 0"),
    (put("routes", 0, "heartbeat_s", value=-5), "routes[0].heartbeat_s: must be greater than 0"),
    (put("routes", 0, "max_event_bytes", value=0),
     "routes[0].max_event_bytes: must be greater than 0"),
    (put("routes", 1, "timeouts", value={"idle_s": 0}),
     "routes[1].timeouts.idle_s: must be greater than 0"),
    # enumerations
    (put("logging", "level", value="INFO"),
     "logging.level: must be 'debug', 'info', 'warning' or 'error'"),
    (put("logging", "format", value="text"), "logging.format: must be 'json' or 'console'"),
    (put("auth", "mode", value="oauth"), "auth.mode: must be 'keys', 'header' or 'none'"),
    (put("limits", "backend", value="redis"), "limits.backend: must be 'memory'"),
    (put("routes", 1, "provider", value="google"),
     "routes[1].provider: must be 'openai' or 'anthropic'"),
    # routes
    (drop("routes"), "routes: required key is missing"),
    (put("routes", value=[]), "routes: must not be empty"),
    (put("routes", 1, "name", value="openai"), "routes[1].name: duplicate route name 'openai'"),
    (put("routes", 0, "name", value=""), "routes[0].name: must not be empty"),
    (drop("routes", 0, "provider"), "routes[0].provider: required key is missing"),
    (drop("routes", 0, "upstreams"), "routes[0].upstreams: required key is missing"),
    (put("routes", 0, "upstreams", value=[]), "routes[0].upstreams: must not be empty"),
    (put("routes", 0, "paths", value=[]), "routes[0].paths: must not be empty"),
    (put("routes", 0, "paths", value=["/ok", "v1/chat"]),
     "routes[0].paths[1]: must start with '/'"),
    (put("routes", 0, "paths", value=["/v1?x=1"]),
     "routes[0].paths[0]: must be a plain path, without query, fragment or whitespace"),
    (put("routes", 0, "models", value=[]), "routes[0].models: must not be empty"),
    # upstreams
    (drop("routes", 1, "upstreams", 0, "url"),
     "routes[1].upstreams[0].url: required key is missing"),
    (put("routes", 1, "upstreams", 0, "url", value="ftp://example.com"),
     "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
     "e.g. https://api.openai.com"),
    (put("routes", 1, "upstreams", 0, "url", value="https:///v1"),
     "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
     "e.g. https://api.openai.com"),
    (put("routes", 1, "upstreams", 0, "url", value="localhost:9100"),
     "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
     "e.g. https://api.openai.com"),
    (put("routes", 1, "upstreams", 0, "url", value="http://host:99999"),
     "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
     "e.g. https://api.openai.com"),
    (put("routes", 1, "upstreams", 0, "url", value="http://a b"),
     "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
     "e.g. https://api.openai.com"),
    (put("routes", 1, "upstreams", 0, "url", value="https://u:p@host"),
     "routes[1].upstreams[0].url: must not hold credentials; use api_key_env or headers"),
    (put("routes", 1, "upstreams", 0, "url", value="https://host/v1?a=1"),
     "routes[1].upstreams[0].url: must not have a query or fragment (a path prefix is fine)"),
    (append("routes", 1, "upstreams", value={"url": "http://127.0.0.1:9100/other"}),
     "routes[1].upstreams[1].name: duplicate upstream name '127.0.0.1:9100'"),
    (put("routes", 1, "upstreams", value=[{"name": "a", "url": "http://x"},
                                          {"name": "a", "url": "http://y"}]),
     "routes[1].upstreams[1].name: duplicate upstream name 'a'"),
    (put("routes", 1, "upstreams", 0, "headers", value={"X-A": "1\r\nX-B: 2"}),
     "routes[1].upstreams[0].headers: header 'X-A': the value must not contain CR, LF or NUL"),
    (put("routes", 1, "upstreams", 0, "headers", value={"X A": "1"}),
     "routes[1].upstreams[0].headers: must be an HTTP header name "
     "(letters, digits and !#$%&'*+-.^_`|~)"),
    (put("routes", 1, "upstreams", 0, "headers", value={"Content-Length": "1"}),
     "routes[1].upstreams[0].headers: header 'Content-Length' is managed by the proxy "
     "and cannot be set"),
    (put("routes", 1, "upstreams", 0, "headers", value={"X-A": "1", "x-a": "2"}),
     "routes[1].upstreams[0].headers: header 'x-a' is given twice (names are case-insensitive)"),
    (put("routes", 1, "upstreams", 0, "api_key_env", value="MY-KEY"),
     "routes[1].upstreams[0].api_key_env: must be the name of an environment variable "
     "(letters, digits, '_')"),
    # the environment
    (put("routes", 1, "upstreams", 0, "api_key_env", value="ANTHROPIC_API_KEY"),
     "routes[1].upstreams[0].api_key_env: environment variable ANTHROPIC_API_KEY is not set"),
    (put("auth", "users", 1, "key_env", value="NOPE"),
     "auth.users[1].key_env: environment variable NOPE is not set"),
    # users and keys
    (put("auth", "users", 1, "name", value="alice"),
     "auth.users[1].name: duplicate user name 'alice'"),
    (put("auth", "users", value=[]), NO_USERS),
    (drop("auth"), NO_USERS),  # tests/test_config_hints.py reads the message
    (drop("auth", "users", 0, "key_sha256"),
     "auth.users[0]: auth mode 'keys' needs key_sha256 or key_env for every user"),
    (put("auth", "users", 0, "key_env", value="BOB_KEY"),
     "auth.users[0]: give either key_sha256 or key_env, not both"),
    (put("auth", "users", 0, "key_sha256", value=SHA_ALICE[:-1]),
     "auth.users[0].key_sha256: must be a sha256 digest: 64 hexadecimal characters"),
    (put("auth", "users", 0, "key_sha256", value="g" * 64),
     "auth.users[0].key_sha256: must be a sha256 digest: 64 hexadecimal characters"),
    (put("auth", "header", value="X User"),
     "auth.header: must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"),
]  # fmt: skip


ERROR_CASES += [
    (append("auth", "users", value={"name": "carol", "key_sha256": SHA_ALICE.upper()}),
     "auth.users[2].key_sha256: same key as user 'alice'"),
    (append("auth", "users", value={"name": "carol", "key_env": "BOB_COPY"}),
     "auth.users[2].key_env: same key as user 'bob'"),
    (append("routes", value=base()["routes"][0]), "routes[2].name: duplicate route name 'openai'"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "expected"), ERROR_CASES)
def test_each_invalid_value_is_named_by_its_key_path(edit: Edit, expected: str) -> None:
    assert errors(edit, {**ENV, "BOB_COPY": ENV["BOB_KEY"]}) == (expected,)


@pytest.mark.parametrize("value", ["", None])
def test_an_empty_or_missing_environment_variable_is_an_error(value: str | None) -> None:
    environ = {"BOB_KEY": "bob-key"} if value is None else {**ENV, "OPENAI_KEY": value}
    problem = "is not set" if value is None else "is empty"
    assert errors(environ=environ) == (
        f"routes[0].upstreams[0].api_key_env: environment variable OPENAI_KEY {problem}",
    )


PASTED_KEY = "sk_live_Mq7xYv2LpR9sT4wZ8nB3kD6fH1jK5aQe"  # a key, but spelled like a variable name
NOT_A_VARIABLE_NAME = (
    "the environment variable named there is not set; the value there does not look like a "
    "variable name (upper-case letters, digits, '_') and may be a key pasted by mistake, so it "
    "is not shown"
)


def test_a_key_pasted_as_a_variable_name_is_not_echoed() -> None:
    problems = errors(
        both(put("auth", "users", 1, "key_env", value=PASTED_KEY),
             put("routes", 0, "upstreams", 0, "api_key_env", value=PASTED_KEY))
    )  # fmt: skip
    assert problems == (
        f"auth.users[1].key_env: {NOT_A_VARIABLE_NAME}",
        f"routes[0].upstreams[0].api_key_env: {NOT_A_VARIABLE_NAME}",
    )
    assert errors(put("auth", "users", 1, "key_env", value="bob_key"), {**ENV, "bob_key": ""}) == (
        "auth.users[1].key_env: the environment variable named there is empty",
    )


def test_conventional_variable_names_are_still_named_in_errors() -> None:
    longest = "K" * 64
    assert errors(put("auth", "users", 1, "key_env", value=longest)) == (
        f"auth.users[1].key_env: environment variable {longest} is not set",
    )
    assert errors(put("auth", "users", 1, "key_env", value=longest + "K")) == (
        f"auth.users[1].key_env: {NOT_A_VARIABLE_NAME}",
    )


def test_header_mode_refuses_user_names_the_header_cannot_carry() -> None:
    names = ["ops", "alice smith", "x" * 129, "jos\u00e9", "x" * 128, "a.b@example.com", "a,b"]
    users = [{"name": name} for name in names]
    problem = ("auth mode 'header' only accepts user names of 1 to 128 printable ASCII "
               "characters without spaces or commas")  # fmt: skip
    assert errors(put("auth", value={"mode": "header", "users": users})) == (
        f"auth.users[1].name: {problem}",
        f"auth.users[2].name: {problem}",
        f"auth.users[3].name: {problem}",
        f"auth.users[6].name: {problem}",
    )
    # Names only the header has to carry: with keys, any name is fine.
    keyed = [{"name": name, "key_sha256": f"{index:064x}"} for index, name in enumerate(names)]
    assert len(parse(put("auth", value={"mode": "keys", "users": keyed})).auth.users) == len(names)


def test_port_0_means_any_free_port_and_is_accepted() -> None:
    assert parse(put("server", "port", value=0)).server.port == 0


def test_a_key_with_whitespace_in_the_environment_is_an_error() -> None:
    assert errors(environ={**ENV, "BOB_KEY": "bob-key\n"}) == (
        "auth.users[1].key_env: environment variable BOB_KEY holds whitespace or "
        "non-ASCII characters",
    )


def test_all_problems_are_reported_at_once() -> None:
    structural = errors(
        both(put("server", "port", value=-1), put("extra", value=1),
             put("routes", 1, "upstreams", 0, "url", value="nope"),
             put("routes", 0, "provider", value="x"))
    )  # fmt: skip
    assert structural == (
        "server.port: must be at least 0",
        "routes[0].provider: must be 'openai' or 'anthropic'",
        "routes[1].upstreams[0].url: must be an http:// or https:// URL with a host, "
        "e.g. https://api.openai.com",
        "extra: unknown key",
    )
    resolved = errors(put("routes", 1, "name", value="openai"), environ={})
    assert resolved == (
        "auth.users[1].key_env: environment variable BOB_KEY is not set",
        "routes[0].upstreams[0].api_key_env: environment variable OPENAI_KEY is not set",
        "routes[1].name: duplicate route name 'openai'",
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [(None, "<config>: is empty; expected a mapping with at least 'routes'"),
     ([1], "<config>: is a list; expected a mapping with at least 'routes'"),
     ("routes", "<config>: is a string; expected a mapping with at least 'routes'")],
)  # fmt: skip
def test_a_document_that_is_not_a_mapping_is_rejected(document: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, {})
    assert caught.value.errors == (expected,)


def test_config_error_survives_pickling() -> None:
    error = ConfigError(["a: one", "b: two"])
    again = pickle.loads(pickle.dumps(error))
    assert (again.errors, str(again)) == (("a: one", "b: two"), "a: one\nb: two")


# --- the YAML file ---


def load_text(tmp_path: Path, text: str | bytes) -> Config:
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return load_config(path, {})


def file_errors(tmp_path: Path, text: str | bytes) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    return tuple(
        line.replace(str(tmp_path / "config.yaml"), "<file>") for line in caught.value.errors
    )


MINIMAL = """\
auth: {mode: none}
routes:
  - name: local
    paths: [/v1/chat/completions]
    provider: openai
    upstreams:
      - url: http://127.0.0.1:9100
"""


def test_a_minimal_file_loads(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL)
    assert config.routes[0].upstreams[0].name == "127.0.0.1:9100"


def test_duplicate_keys_are_errors_naming_their_path(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    provider: openai\n", "    provider: openai\n    provider: anthropic\n"
    )
    text += "      - {url: 'http://a', url: 'http://b'}\nauth: {mode: keys}\n"
    assert file_errors(tmp_path, text) == (
        "routes[0].provider: duplicate key (first at line 5, again at line 6)",
        "routes[0].upstreams[1].url: duplicate key (line 9, columns 10 and 27)",
        "auth: duplicate key (first at line 1, again at line 10)",
    )


def test_keys_that_mean_the_same_value_are_duplicates(tmp_path: Path) -> None:
    text = MINIMAL + "server:\n  yes: 1\n  true: 2\n"
    assert file_errors(tmp_path, text) == (
        "server.true: duplicate key (first at line 9, again at line 10)",
    )


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "      - url: http://127.0.0.1:9100\n",
        "      - &up {url: 'http://127.0.0.1:9100', name: a}\n      - {<<: *up, name: b}\n",
    )
    names = [upstream.name for upstream in load_text(tmp_path, text).routes[0].upstreams]
    assert names == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("routes: [1\n", "<file>: not valid YAML: expected ',' or ']', but got '<stream end>' "
                      "(line 2, column 1)"),
     ("a: b: c\n",
      "<file>: not valid YAML: mapping values are not allowed here (line 1, column 5)"),
     ("x: !!python/object:os.system ls\n", "<file>: not valid YAML: could not determine a "
      "constructor for the tag 'tag:yaml.org,2002:python/object:os.system' (line 1, column 4)"),
     ("", "<file>: is empty; expected a mapping with at least 'routes'"),
     ("# only a comment\n", "<file>: is empty; expected a mapping with at least 'routes'"),
     ("- routes\n", "<file>: is a list; expected a mapping with at least 'routes'"),
     ("just text\n", "<file>: is a string; expected a mapping with at least 'routes'"),
     (b"routes: \xff\n", "<file>: not UTF-8 text")],
)  # fmt: skip
def test_files_that_are_not_a_yaml_mapping(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    assert file_errors(tmp_path, text) == (expected,)


def test_yaml_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    problems = file_errors(tmp_path, f"routes:\n  - key: {CANARY}\n   bad: [\n")
    assert len(problems) == 1 and CANARY not in problems[0]


def test_a_missing_file_or_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", {})
    assert caught.value.errors == (f"{tmp_path / 'absent.yaml'}: file not found",)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, {})
    assert caught.value.errors == (f"{tmp_path}: is a directory, not a file",)


def test_type_errors_from_a_file_name_the_yaml_type(tmp_path: Path) -> None:
    text = MINIMAL + "server: {port: '8080', host: 2024-01-01}\n"
    assert file_errors(tmp_path, text) == (
        "server.host: must be a string, not a date",
        "server.port: must be an integer, not a string",
    )
