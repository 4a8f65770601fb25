"""Removing the operator's upstream keys from what an upstream sends back (pure).

Some providers echo the key they rejected, in an error body or a header. Everything an upstream
answers that reaches a client or a log passes through here first. Keys are given longest first
(`RouteConfig.revealed_keys`), so a key that begins another cannot leave the other's tail behind.
"""

from __future__ import annotations

REDACTED = "[redacted]"
_REDACTED_BYTES = REDACTED.encode()


def redact_text(value: str, keys: tuple[str, ...]) -> str:
    """`value` with every key replaced by `[redacted]`."""
    for key in keys:
        value = value.replace(key, REDACTED)
    return value


def redact_body(body: bytes, keys: tuple[str, ...]) -> bytes:
    """`body` with every key replaced by `[redacted]`."""
    for key in keys:
        body = body.replace(key.encode(), _REDACTED_BYTES)
    return body


def redact_cut_body(body: bytes, keys: tuple[str, ...]) -> bytes:
    """A body cut short (by time or size), redacted, also of a key cut off at its very end."""
    body = redact_body(body, keys)
    for key in keys:
        raw = key.encode()
        for size in range(min(len(raw) - 1, len(body)), 3, -1):
            if body.endswith(raw[:size]):
                return body[:-size] + _REDACTED_BYTES
    return body
