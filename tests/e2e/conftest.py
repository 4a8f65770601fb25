"""Fixtures of the end-to-end tests: the scripted fake upstream and the real proxy in front of it,
both on real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.config_edits import Edit
from tests.support.fake_upstream import FakeUpstream, Gate
from tests.support.running_proxy import ProxyFactory, RunningProxy, start_running_proxy


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def start_proxy(upstream: FakeUpstream) -> AsyncIterator[ProxyFactory]:
    """Start the proxy; `edit(document)` may change the config document first."""
    started: list[RunningProxy] = []

    async def start(
        edit: Edit | None = None, environ: dict[str, str] | None = None
    ) -> RunningProxy:
        started.append(await start_running_proxy(upstream.url, edit, environ))
        return started[-1]

    yield start
    for proxy in started:
        await proxy.close()


@pytest.fixture
async def proxy(start_proxy: ProxyFactory) -> RunningProxy:
    return await start_proxy()


@pytest.fixture
async def gate(start_proxy: ProxyFactory) -> AsyncIterator[Gate]:
    """Makes `Hold` events; all are released at teardown so no upstream handler lingers."""
    made: list[asyncio.Event] = []

    def make() -> asyncio.Event:
        made.append(asyncio.Event())
        return made[-1]

    yield make
    for held in made:
        held.set()
