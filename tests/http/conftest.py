"""Fixtures of the transport tests: a scriptable server on loopback, and a pool to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from distsys.http import ConnectionPool
from tests.http.server import TestServer


async def eventually(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds: synchronisation, not a timeout.

    Raises AssertionError if it never holds (a broken test fails instead of hanging).
    """
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  (polls state that no event signals)
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise AssertionError("the condition never became true") from None


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async with TestServer() as running:
        yield running


@pytest.fixture
async def pool(server: TestServer) -> AsyncIterator[ConnectionPool]:
    async with ConnectionPool("127.0.0.1", server.port) as opened:
        yield opened
