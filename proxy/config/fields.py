"""The configuration's field types and value checks, and its error type (pure: no YAML here).

Each check raises ValueError with a message that never quotes the value, so a key pasted into the
wrong place is never echoed. `ConfigError` carries one "key.path: what is wrong" line per problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, ConfigDict, Field

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What an env var is conventionally called; any other name may be a key pasted by mistake.
CONVENTIONAL_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# The user names `auth.mode: header` accepts from the trusted header (checked in proxy.core.auth).
SANE_USER_NAME = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,128}")  # printable ASCII but space and comma
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_FRAMING_HEADERS = frozenset(
    {"connection", "content-length", "keep-alive", "te", "trailer", "transfer-encoding",
     "upgrade", "proxy-connection"}
)  # fmt: skip


class ConfigError(Exception):
    """An invalid configuration; `errors` holds one "key.path: what is wrong" line per problem."""

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: tuple[str, ...] = tuple(errors)
        super().__init__("\n".join(self.errors))

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[str, ...]]]:
        return type(self), (self.errors,)


def key_path(parts: Iterable[str | int]) -> str:
    """Render a location like ("routes", 1, "url") as "routes[1].url"."""
    rendered = ""
    for part in parts:
        if isinstance(part, int):
            rendered += f"[{part}]"
        else:
            rendered += f".{part}" if rendered else part
    return rendered


# --- field checks (each raises ValueError with a message that never quotes the value) ---


def check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError("must start with '/'")
    if any(char in path for char in "?# \t\r\n"):
        raise ValueError("must be a plain path, without query, fragment or whitespace")
    return path


def check_url(url: str) -> str:
    problem = "must be an http:// or https:// URL with a host, e.g. https://api.openai.com"
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(problem)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and parts.port != 0  # .port raises ValueError for junk after the colon
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(problem)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not hold credentials; use api_key_env or headers")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment (a path prefix is fine)")
    return urlunsplit((parts.scheme, parts.netloc.rstrip(":"), parts.path.rstrip("/"), "", ""))


def check_token(name: str) -> str:
    if not _HTTP_TOKEN.fullmatch(name):
        raise ValueError("must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
    return name


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    seen: set[str] = set()
    for name, value in headers.items():
        check_token(name)
        if name.lower() in _FRAMING_HEADERS:
            raise ValueError(f"header {name!r} is managed by the proxy and cannot be set")
        if name.lower() in seen:
            raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
        if any(char in value for char in "\r\n\0"):
            raise ValueError(f"header {name!r}: the value must not contain CR, LF or NUL")
        seen.add(name.lower())
    return headers


def check_env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError("must be the name of an environment variable (letters, digits, '_')")
    return name


_ORIGIN = re.compile(r"\*|https?://[a-z0-9.\-]+(:[0-9]{1,5})?")


def check_origin(origin: str) -> str:
    """As a browser sends it: lower case, no path, no default port, no wildcard in the host."""
    default_port = ":443" if origin.startswith("https:") else ":80"
    if not _ORIGIN.fullmatch(origin) or origin.endswith(default_port):
        raise ValueError(
            "must be '*' or an origin as browsers send it: lower-case scheme and host, a port "
            "only if not the default, no path, e.g. https://app.example.com"
        )
    return origin


def check_sha256(digest: str) -> str:
    if not _SHA256_HEX.fullmatch(digest):
        raise ValueError("must be a sha256 digest: 64 hexadecimal characters")
    return digest


Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
EnvName = Annotated[str, AfterValidator(check_env_name)]
