"""The file side of the configuration: strict YAML, the document's shape, errors as key paths.

PyYAML's safe loader quietly keeps the last of two equal keys in a mapping, which turns a
pasted-twice block into a silent override; `StrictSafeLoader` refuses such documents and names
every duplicated key by its path (`routes[0].upstreams[1].url`). The pydantic models here are
the YAML sections that `proxy.config` transforms before use (users, upstreams, routes); their
value checks and the rendering of validation errors live here too. No message quotes a value
from the file (positions and key names only), so a key on a broken line is never echoed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

_MERGE_TAG = "tag:yaml.org,2002:merge"
STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What an env var is conventionally called; any other name may be a key pasted by mistake.
CONVENTIONAL_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
# The user names `auth.mode: header` accepts from the trusted header (proxy.auth checks with it).
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


# --- sections of the document that proxy.config resolves into other objects ---


class UserDoc(BaseModel):
    model_config = STRICT
    name: Name
    key_sha256: Annotated[str, AfterValidator(check_sha256)] | None = None
    key_env: EnvName | None = None
    max_concurrent_streams: Count | None = None

    @model_validator(mode="after")
    def _at_most_one_key(self) -> Self:
        if self.key_sha256 is not None and self.key_env is not None:
            raise ValueError("give either key_sha256 or key_env, not both")
        return self


class AuthDoc(BaseModel):
    model_config = STRICT
    mode: Literal["keys", "header", "none"] = "keys"
    header: Annotated[str, AfterValidator(check_token)] = "X-User-Id"
    users: list[UserDoc] = []


class UpstreamDoc(BaseModel):
    model_config = STRICT
    name: Name | None = None
    url: Annotated[str, AfterValidator(check_url)]
    api_key_env: EnvName | None = None
    headers: Annotated[dict[str, str], AfterValidator(check_headers)] = {}


class TimeoutOverrides(BaseModel):
    model_config = STRICT
    connect_s: Seconds | None = None
    first_byte_s: Seconds | None = None
    idle_s: Seconds | None = None
    max_stream_s: Seconds | None = None
    client_stall_s: Seconds | None = None


class RouteDoc(BaseModel):
    model_config = STRICT
    name: Name
    paths: Annotated[list[Annotated[str, AfterValidator(check_path)]], Field(min_length=1)]
    models: Annotated[list[Name], Field(min_length=1)] | None = None
    provider: Literal["openai", "anthropic"]
    upstreams: Annotated[list[UpstreamDoc], Field(min_length=1)]
    heartbeat_s: Seconds | None = None
    timeouts: TimeoutOverrides | None = None
    max_event_bytes: Count | None = None


# --- validation errors as key paths ---

_KINDS: Mapping[type, str] = {
    type(None): "null", bool: "a boolean", int: "an integer", float: "a number",
    str: "a string", list: "a list", dict: "a mapping",
}  # fmt: skip
_TYPE_PROBLEMS = {
    "string_type": "must be a string", "int_type": "must be an integer",
    "float_type": "must be a number", "list_type": "must be a list",
    "dict_type": "must be a mapping", "model_type": "must be a mapping",
}  # fmt: skip
_CONSTRAINT_PROBLEMS = {  # the ctx values are limits from the schema, never the input
    "greater_than": "must be greater than {gt}", "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}", "literal_error": "must be {expected}",
    "finite_number": "must be a finite number",
}  # fmt: skip


def describe_kind(value: object) -> str:
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _plain(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _problem(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    if kind in _CONSTRAINT_PROBLEMS:
        limits = {name: _plain(value) for name, value in error.get("ctx", {}).items()}
        return _CONSTRAINT_PROBLEMS[kind].format(**limits)
    if kind in _TYPE_PROBLEMS:
        return f"{_TYPE_PROBLEMS[kind]}, not {describe_kind(error['input'])}"
    return error["msg"]


def render_errors(exc: ValidationError, source: str) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if loc and loc[-1] == "[key]":  # a mapping key of the wrong type, e.g. `headers: {1: x}`
            loc = loc[:-1]
        lines.append(f"{key_path(loc) or source}: {_problem(error)}")
    return lines


# --- reading the file ---


class StrictSafeLoader(yaml.SafeLoader):
    """A `yaml.SafeLoader` that rejects documents in which a mapping repeats a key."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        duplicates = list(self._duplicate_keys(node, (), set()))
        if duplicates:
            raise ConfigError(duplicates)
        return self.construct_document(node)

    def _duplicate_keys(
        self, node: yaml.Node, path: tuple[str | int, ...], seen: set[int]
    ) -> Iterator[str]:
        if id(node) in seen:  # an alias to a node already checked (or a recursive structure)
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield from self._duplicate_keys(item, (*path, index), seen)
        elif isinstance(node, yaml.MappingNode):
            yield from self._mapping_duplicates(node, path, seen)

    def _mapping_duplicates(
        self, node: yaml.MappingNode, path: tuple[str | int, ...], seen: set[int]
    ) -> Iterator[str]:
        first_seen: dict[object, yaml.Mark] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                key = self.construct_object(key_node)  # `yes` and `true` are the same key
                if key in first_seen:
                    where = _positions(first_seen[key], key_node.start_mark)
                    yield f"{key_path((*path, name))}: duplicate key ({where})"
                first_seen.setdefault(key, key_node.start_mark)
            yield from self._duplicate_keys(value_node, (*path, name), seen)


def _positions(first: yaml.Mark, again: yaml.Mark) -> str:
    if first.line == again.line:
        return f"line {first.line + 1}, columns {first.column + 1} and {again.column + 1}"
    return f"first at line {first.line + 1}, again at line {again.line + 1}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return "not valid YAML"
    problem = exc.problem or exc.context or "syntax error"
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"not valid YAML: {problem}{where}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a file"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"]
        ) from None


def read_yaml(path: str | os.PathLike[str]) -> object:
    """The YAML document in `path` as plain Python data; ConfigError if unreadable or invalid."""
    file = Path(path)
    text = _read_text(file)
    try:
        return yaml.load(text, Loader=StrictSafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{file}: {_yaml_problem(exc)}"]) from None
