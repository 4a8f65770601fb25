"""Edits of the proxy's config document (see `running_proxy.base_document`), applied before the
proxy starts: `start_proxy(edit=...)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Edit = Callable[[dict[str, Any]], None]


def compose(*edits: Edit) -> Edit:
    def edit(document: dict[str, Any]) -> None:
        for each in edits:
            each(document)

    return edit


def set_defaults(**values: Any) -> Edit:
    """Set `defaults.*`; `timeouts` is merged into the existing timeouts."""

    def edit(document: dict[str, Any]) -> None:
        defaults = document["defaults"]
        for key, value in values.items():
            if key == "timeouts":
                defaults["timeouts"].update(value)
            else:
                defaults[key] = value

    return edit


def set_server(**values: Any) -> Edit:
    """Set `server.*` (`shutdown_grace_s`, `max_body_bytes`, `max_pending_body_bytes`, ...)."""

    def edit(document: dict[str, Any]) -> None:
        document.setdefault("server", {}).update(values)

    return edit


def add_user(name: str, env: str, limit: int | None = None) -> Edit:
    """A user whose key is read from the environment variable `env`."""

    def edit(document: dict[str, Any]) -> None:
        user: dict[str, Any] = {"name": name, "key_env": env}
        if limit is not None:
            user["max_concurrent_streams"] = limit
        document["auth"]["users"].append(user)

    return edit


def allow_origins(*origins: str) -> Edit:
    """`server.cors_allow_origins`: the pages of these origins may read the proxy's answers."""

    def edit(document: dict[str, Any]) -> None:
        document.setdefault("server", {})["cors_allow_origins"] = list(origins)

    return edit
