"""The pure core: SSE framing, dialects, per-request stats, routing, auth and errors.

Nothing here imports aiohttp, asyncio, yaml or redis (tests/unit/test_architecture.py checks it
by reading imports): these modules are tested synchronously, without sockets or an event loop.
"""
