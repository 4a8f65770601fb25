"""Ending an upstream response: back to the pool when it was read to its end, closed otherwise.

A stream is complete at the dialect's terminator, and the relay stops reading there. The HTTP
body's own end (the chunked terminator, a trailing blank line) often arrives a moment later. A
completed stream's connection is worth keeping, so its tail is read in the background, bounded
in time and bytes; the request does not wait for it. Anything that did not complete (client
gone, upstream failure) is closed at once, so a provider whose client left stops generating.
"""

from __future__ import annotations

import asyncio

import aiohttp

TAIL_WAIT_S = 1.0
TAIL_MAX_BYTES = 64 * 1024


class UpstreamReleaser:
    """Releases or closes upstream responses; owns the background reads of completed tails."""

    def __init__(self, tail_wait_s: float = TAIL_WAIT_S, tail_max_bytes: int = TAIL_MAX_BYTES):
        self.tail_wait_s = tail_wait_s
        self.tail_max_bytes = tail_max_bytes
        self._tails: set[asyncio.Task[None]] = set()

    def finish(self, upstream: aiohttp.ClientResponse, *, completed: bool) -> None:
        if upstream.content.at_eof():
            upstream.release()
        elif completed:
            task = asyncio.create_task(self._read_tail(upstream))
            self._tails.add(task)
            task.add_done_callback(self._tails.discard)
        else:
            upstream.close()

    @property
    def pending(self) -> int:
        return len(self._tails)

    async def _read_tail(self, upstream: aiohttp.ClientResponse) -> None:
        reusable = False
        try:
            async with asyncio.timeout(self.tail_wait_s):
                seen = 0
                while seen <= self.tail_max_bytes and not upstream.content.at_eof():
                    seen += len(await upstream.content.readany())
            reusable = upstream.content.at_eof()
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            if reusable:
                upstream.release()
            else:
                upstream.close()

    async def close(self) -> None:
        """Stop every tail read (their connections are closed); for shutdown."""
        for task in list(self._tails):
            task.cancel()
        await asyncio.gather(*self._tails, return_exceptions=True)
