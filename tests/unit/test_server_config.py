"""The server keys that guard client connections: `header_timeout_s` and `max_connections`
(None, the default, is derived from the file limit: tests/test_connection_limits.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from proxy.config.load import ConfigError, load_config, parse_config
from tests.support.running_proxy import ENVIRON, base_document

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ENV = {"OPENAI_API_KEY": "sk-openai", "ANTHROPIC_API_KEY": "sk-ant", "BOB_PROXY_KEY": "bk"}


def server_errors(**values: Any) -> tuple[str, ...]:
    document = copy.deepcopy(base_document("http://127.0.0.1:9"))
    document["server"].update(values)
    with pytest.raises(ConfigError) as caught:
        parse_config(document, ENVIRON)
    return caught.value.errors


def test_the_defaults_and_the_example_file_agree() -> None:
    example = load_config(REPO / "config" / "example.yaml", EXAMPLE_ENV).server
    document = copy.deepcopy(base_document("http://127.0.0.1:9"))
    default = parse_config(document, ENVIRON).server
    assert default.header_timeout_s == example.header_timeout_s == 10.0
    assert default.max_connections is None and example.max_connections is None  # derived


def test_header_timeout_takes_seconds() -> None:
    document = copy.deepcopy(base_document("http://127.0.0.1:9"))
    document["server"]["header_timeout_s"] = 2
    assert parse_config(document, ENVIRON).server.header_timeout_s == 2.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "server.header_timeout_s: must be greater than 0"),
        (-1, "server.header_timeout_s: must be greater than 0"),
        ("10", "server.header_timeout_s: must be a number, not a string"),
        (True, "server.header_timeout_s: must be a number, not a boolean"),
        (None, "server.header_timeout_s: must be a number, not null"),
    ],
)
def test_header_timeout_refuses_what_is_not_a_positive_number(value: Any, expected: str) -> None:
    assert server_errors(header_timeout_s=value) == (expected,)


def test_max_connections_takes_a_positive_count() -> None:
    document = copy.deepcopy(base_document("http://127.0.0.1:9"))
    document["server"]["max_connections"] = 2000
    assert parse_config(document, ENVIRON).server.max_connections == 2000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "server.max_connections: must be greater than 0"),
        (-5, "server.max_connections: must be greater than 0"),
        (10.5, "server.max_connections: must be an integer, not a number"),
        ("2000", "server.max_connections: must be an integer, not a string"),
        (True, "server.max_connections: must be an integer, not a boolean"),
    ],
)
def test_max_connections_refuses_what_is_not_a_positive_integer(value: Any, expected: str) -> None:
    assert server_errors(max_connections=value) == (expected,)
