"""Ports on 127.0.0.1 for tests that need one nothing is listening on."""

from __future__ import annotations

import socket


def unused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (its socket was just closed): a dead upstream,
    or where a proxy process is told to listen."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
