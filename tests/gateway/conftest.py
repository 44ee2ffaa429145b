"""Fixtures of the gateway tests: upstreams on loopback, a memory registry, a gateway."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from distsys.gateway import Gateway
from distsys.registry import Instance, Registry, open_registry
from tests.gateway.upstream import Upstream


async def eventually(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Yield to the loop until ``predicate()`` holds (synchronisation, bounded)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  (polls state that no event signals)
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError("the condition never became true") from None


def config(*routes: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A configuration on free ports, with the given routes."""
    return {
        "registry": "memory://",
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "reload_interval": 0,
        **top,
        "routes": list(routes),
    }


@asynccontextmanager
async def running(cfg: Any, registry: Registry | None = None) -> AsyncIterator[Gateway]:
    gateway = Gateway(cfg, registry=registry)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop(drain_timeout=2)


def port_of(gateway: Gateway) -> int:
    assert gateway.address is not None
    return gateway.address[1]


def admin_port(gateway: Gateway) -> int:
    assert gateway.admin_address is not None
    return gateway.admin_address[1]


@pytest.fixture
async def upstreams() -> AsyncIterator[list[Upstream]]:
    started = [await Upstream(name=f"u{i}").start() for i in range(3)]
    yield started
    for up in started:
        await up.aclose()


@pytest.fixture
async def registry(upstreams: list[Upstream]) -> AsyncIterator[Registry]:
    """``echo`` has the three upstreams (u0, u1, u2); ``other`` has u0 only."""
    async with open_registry("memory://") as opened:
        for i, up in enumerate(upstreams):
            await opened.register(Instance("echo", f"u{i}", "127.0.0.1", up.port), ttl=60)
        await opened.register(Instance("other", "o0", "127.0.0.1", upstreams[0].port), ttl=60)
        yield opened
