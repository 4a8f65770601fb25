"""The file side of the configuration: strict YAML, the document's shape, errors as key paths.

PyYAML's safe loader quietly keeps the last of two equal keys in a mapping, which turns a
pasted-twice block into a silent override; `StrictSafeLoader` refuses such documents and names
every duplicated key by its path (`routes[0].upstreams[1].url`). The pydantic models here are
the YAML sections that `proxy.config.load` transforms before use (users, upstreams, routes); the
rendering of validation errors lives here too. No message quotes a value from the file
(positions and key names only), so a key on a broken line is never echoed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from proxy.config.fields import (
    STRICT,
    ConfigError,
    Count,
    EnvName,
    Name,
    Seconds,
    check_headers,
    check_path,
    check_sha256,
    check_token,
    check_url,
    key_path,
)
from proxy.config.hints import unknown_key_hint

_MERGE_TAG = "tag:yaml.org,2002:merge"

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


def render_errors(exc: ValidationError, source: str, model: type[BaseModel]) -> list[str]:
    """One "key.path: problem" line per error of validating a document with `model`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if loc and loc[-1] == "[key]":  # a mapping key of the wrong type, e.g. `headers: {1: x}`
            loc = loc[:-1]
        problem = _problem(error)
        if error["type"] == "extra_forbidden":
            problem += unknown_key_hint(model, loc)
        lines.append(f"{key_path(loc) or source}: {problem}")
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
