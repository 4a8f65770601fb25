"""Who is asking: client keys (constant-time), a trusted header, or nobody in particular.

Keys are never stored: the config holds sha256 digests, a presented key is hashed and compared
against every user's digest with `hmac.compare_digest`, without stopping at the first match.
A key is hashed as the bytes the client sent, even when they are not UTF-8 (aiohttp hands such
header bytes over as lone surrogates); such a key simply matches no one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from multidict import MultiMapping

from proxy.config.fields import SANE_USER_NAME
from proxy.config.models import AuthConfig
from proxy.core.errors import Unauthorized

ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    max_concurrent_streams: int | None


def presented_key(headers: MultiMapping[str]) -> str | None:
    """The client's key from `Authorization: Bearer` or `x-api-key` (Anthropic SDK)."""
    authorization = headers.get("Authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


class Authenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.mode = config.mode
        self.header = config.header
        self._keyed = [(user.key_sha256, user) for user in config.users if user.key_sha256]
        self._by_name = {user.name: user for user in config.users}

    @property
    def identity_header(self) -> str | None:
        """The trusted header naming the user: not forwarded upstream."""
        return self.header if self.mode == "header" else None

    def caller(self, headers: MultiMapping[str]) -> Caller:
        if self.mode == "none":
            return self._named(ANONYMOUS)
        if self.mode == "header":
            return self._named(self._trusted_name(headers))
        return self._by_key(presented_key(headers))

    def _trusted_name(self, headers: MultiMapping[str]) -> str:
        """The user named by the trusted header. Given twice, a client may have sent one of
        them: a front proxy that appends rather than replaces would let it choose the user."""
        values = headers.getall(self.header, [])
        if len(values) > 1:
            raise Unauthorized(f"{self.header} must appear exactly once")
        name = values[0].strip() if values else ""
        if not SANE_USER_NAME.fullmatch(name):
            raise Unauthorized(f"missing or invalid {self.header} header")
        return name

    def _named(self, name: str) -> Caller:
        user = self._by_name.get(name)
        return Caller(name, user.max_concurrent_streams if user else None)

    def _by_key(self, key: str | None) -> Caller:
        if key is None:
            raise Unauthorized(
                "no API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
            )
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found = None
        for user_digest, user in self._keyed:
            if hmac.compare_digest(digest, user_digest):
                found = user
        if found is None:
            raise Unauthorized("invalid API key")
        return Caller(found.name, found.max_concurrent_streams)
