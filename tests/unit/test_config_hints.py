"""Config errors that tell a new user what to do: a routes-only file in the default auth mode,
and "did you mean" for a mistyped key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config.load import parse_config
from proxy.config.models import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
UPSTREAM = {"url": "http://127.0.0.1:9100"}
ROUTE = {"name": "r", "paths": ["/v1/chat/completions"], "provider": "openai",
         "upstreams": [UPSTREAM]}  # fmt: skip


def problems(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, {})
    return caught.value.errors


# --- a config with only routes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth", [None, {"mode": "keys"}, {"users": []}], ids=["no-auth", "mode-keys", "no-users"]
)
def test_no_users_in_mode_keys_names_auth_mode_its_default_and_the_choices(
    auth: dict[str, Any] | None,
) -> None:
    document: dict[str, Any] = {"routes": [ROUTE]}
    if auth is not None:
        document["auth"] = auth

    (problem,) = problems(document)

    assert problem.startswith("auth.users: ")
    assert "auth.mode is keys (the default when it is not set)" in problem
    assert "keys (clients send a key; list them in auth.users)" in problem
    assert "header (a trusted front proxy names the user in auth.header)" in problem
    assert "none (no authentication; local use only)" in problem


@pytest.mark.parametrize("mode", ["none", "header"])
def test_routes_and_a_mode_without_keys_is_a_whole_config(mode: str) -> None:
    config = parse_config({"auth": {"mode": mode}, "routes": [ROUTE]}, {})
    assert config.auth.mode == mode
    assert config.auth.users == ()
    assert config.server.port == 8080


def test_the_example_says_what_the_error_says() -> None:
    """The example's opening promise ("only routes is required") names the one catch."""
    text = EXAMPLE.read_text(encoding="utf-8")
    opening = " ".join(line.lstrip("# ") for line in text.splitlines()[:12])
    assert "Only `routes` is required" in opening
    assert "auth.mode defaults to keys" in opening
    assert "auth.users" in opening
    assert "auth.mode: none" in opening and "header" in opening
    # and the example's routes alone, with mode none, do load
    routes = yaml.safe_load(text)["routes"]
    environ = {"OPENAI_API_KEY": "k1", "ANTHROPIC_API_KEY": "k2"}
    assert len(parse_config({"auth": {"mode": "none"}, "routes": routes}, environ).routes) == 3


# --- did you mean ---------------------------------------------------------------------------


def with_key(path: tuple[str | int, ...], key: str) -> dict[str, Any]:
    """A valid document (mode none, one route) with `key: 1` put in the mapping at `path`."""
    route = ROUTE | {"upstreams": [dict(UPSTREAM)]}
    document: dict[str, Any] = {"auth": {"mode": "none"}, "routes": [route]}
    here: Any = document
    for part in path:
        here = here.setdefault(part, {}) if isinstance(part, str) else here[part]
    here[key] = 1
    return document


@pytest.mark.parametrize(
    ("path", "typo", "expected"),
    [
        ((), "route", "route: unknown key; did you mean 'routes'?"),
        (("server",), "prot", "server.prot: unknown key; did you mean 'port'?"),
        (("server",), "Port", "server.Port: unknown key; did you mean 'port'?"),  # any case
        (("defaults",), "heartbeat",
         "defaults.heartbeat: unknown key; did you mean 'heartbeat_s'?"),
        (("defaults",), "max_concurrent_streams",
         "defaults.max_concurrent_streams: unknown key; "
         "did you mean 'max_concurrent_streams_per_user'?"),
        (("defaults", "timeouts"), "idle",
         "defaults.timeouts.idle: unknown key; did you mean 'idle_s'?"),
        (("auth",), "user", "auth.user: unknown key; did you mean 'users'?"),
        (("routes", 0), "provder", "routes[0].provder: unknown key; did you mean 'provider'?"),
        (("routes", 0), "timeout", "routes[0].timeout: unknown key; did you mean 'timeouts'?"),
        (("routes", 0, "upstreams", 0), "api_key",
         "routes[0].upstreams[0].api_key: unknown key; did you mean 'api_key_env'?"),
    ],
)  # fmt: skip
def test_a_mistyped_key_gets_the_one_close_known_key(
    path: tuple[str | int, ...], typo: str, expected: str
) -> None:
    assert problems(with_key(path, typo)) == (expected,)


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ((), "extra"),  # close to nothing
        (("server",), "shutdown_s"),  # as close to shutdown_grace_s as to shutdown_delay_s
        (("server",), "heartbeat_s"),  # a key of `defaults`: never suggested from elsewhere
        (("defaults", "timeouts"), "read_s"),
    ],
)
def test_no_hint_when_no_single_known_key_is_close(path: tuple[str | int, ...], key: str) -> None:
    (problem,) = problems(with_key(path, key))
    assert problem.endswith(f"{key}: unknown key")
