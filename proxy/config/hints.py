"""Hints for unknown keys ("did you mean"): the known keys at the same place in the document.

The known keys come from the pydantic models themselves (walked along the error's location), so
a hint can never name a key that does not exist. Only key names are compared and shown, never a
value from the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

CLOSE = 0.7  # difflib's similarity ratio from which a known key counts as close to a typo


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of `X | None` (or any union), each without its `Annotated` wrapper."""
    members = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return tuple(_plain(member) for member in members or (annotation,))


def _plain(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _inside(annotation: Any, part: str | int) -> Any:
    """What the document holds at `part` of a value of this type (None: not a place we know)."""
    for member in _members(annotation):
        if isinstance(part, int) and get_origin(member) is list:
            return _plain(get_args(member)[0])
        if isinstance(part, str) and _is_model(member) and part in member.model_fields:
            return member.model_fields[part].annotation
    return None


def known_keys(model: type[BaseModel], where: Sequence[str | int]) -> list[str]:
    """The keys the mapping at `where` may hold, if it is one of the models' sections."""
    here: Any = model
    for part in where:
        here = _inside(here, part)
        if here is None:
            return []
    models = [member for member in _members(here) if _is_model(member)]
    return list(models[0].model_fields) if models else []


def did_you_mean(unknown: str, known: Iterable[str]) -> str:
    """`; did you mean 'port'?` when exactly one known key is close to `unknown`, else ""."""
    close = difflib.get_close_matches(unknown.lower(), list(known), n=2, cutoff=CLOSE)
    return f"; did you mean '{close[0]}'?" if len(close) == 1 else ""


def unknown_key_hint(model: type[BaseModel], loc: Sequence[str | int]) -> str:
    """The hint for the unknown key at `loc` (its last part) of a document checked by `model`."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    return did_you_mean(loc[-1], known_keys(model, loc[:-1]))
