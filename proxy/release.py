"""Ending an upstream response: back to the pool when its body was read to the end, closed
otherwise.

A body read to its end (a whole body, or a stream whose tail the relay read up to the body's end)
leaves its connection reusable, which saves the next request a TCP and TLS handshake. Anything
else (client gone, upstream failure, a tail that did not end in time) is closed at once, so a
provider whose client left stops generating.
"""

from __future__ import annotations

import aiohttp


def release_or_close(upstream: aiohttp.ClientResponse) -> None:
    if upstream.content.at_eof():
        upstream.release()
    else:
        upstream.close()
