"""Which origins `server.cors_allow_origins` accepts: only what a browser sends as `Origin`."""

from __future__ import annotations

import copy

import pytest

from proxy.config.load import ConfigError, parse_config
from tests.support.config_edits import allow_origins
from tests.support.running_proxy import ENVIRON, base_document


@pytest.mark.parametrize(
    "origin",
    ["app.example.com", "https://app.example.com/", "https://*.example.com", "https://App.example.com",
     "https://app.example.com:443", "http://app.example.com:80"],
)  # fmt: skip
def test_an_origin_a_browser_would_never_send_is_a_config_error(origin: str) -> None:
    document = copy.deepcopy(base_document("http://127.0.0.1:9"))
    allow_origins(origin)(document)
    with pytest.raises(ConfigError) as refused:
        parse_config(document, ENVIRON)
    assert str(refused.value).startswith("server.cors_allow_origins[0]: must be '*' or an origin")
