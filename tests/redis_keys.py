"""Keys of one test on the shared Redis: a namespace of its own, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.conftest import BACKENDS

HOST, PORT = BACKENDS["redis"]


def url_for(namespace: str, *, host: str = HOST, port: int = PORT, auth: str = "") -> str:
    """The ``redis://`` URL of ``namespace`` on the shared server (or ``host:port``)."""
    return f"redis://{auth}{host}:{port}/0?namespace={namespace}"


async def purge(namespace: str) -> None:
    """Delete every key of ``namespace`` on the shared server."""
    client = Redis(host=HOST, port=PORT, db=0)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{namespace}}}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def namespace() -> AsyncIterator[str]:
    """A fresh namespace, its keys deleted after the test."""
    name = f"test-{uuid.uuid4().hex}"
    yield name
    await purge(name)
