"""A fault injector around a real KV store: switch the backend "off" and on again.

Not a mock: every call goes to the real store (memory:// here) unless the switch is off,
in which case it fails the way an unreachable server does, and open watches break.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from distsys.backends import KV, KVEntry, KVEvent
from distsys.errors import BackendUnavailableError


class SwitchableKV:
    def __init__(self, inner: KV) -> None:
        self.inner = inner
        self.url = inner.url
        self.up = True
        self._broken = asyncio.Event()

    def down(self) -> None:
        self.up = False
        self._broken.set()

    def restore(self) -> None:
        self.up = True
        self._broken = asyncio.Event()

    def _check(self) -> None:
        if not self.up:
            raise BackendUnavailableError(str(self.url), "switched off by the test")

    async def ping(self) -> None:
        self._check()

    async def get(self, key: str) -> KVEntry | None:
        self._check()
        return await self.inner.get(key)

    async def list(self, prefix: str) -> list[KVEntry]:
        self._check()
        return await self.inner.list(prefix)

    async def put(self, key: str, value: bytes, *, lease: int | None = None) -> KVEntry:
        self._check()
        return await self.inner.put(key, value, lease=lease)

    async def compare_and_set(self, key: str, value: bytes, **kw: Any) -> KVEntry | None:
        self._check()
        return await self.inner.compare_and_set(key, value, **kw)

    async def delete(self, key: str) -> bool:
        self._check()
        return await self.inner.delete(key)

    async def grant(self, ttl: float) -> int:
        self._check()
        return await self.inner.grant(ttl)

    async def keep_alive(self, lease: int) -> bool:
        self._check()
        return await self.inner.keep_alive(lease)

    async def revoke(self, lease: int) -> bool:
        self._check()
        return await self.inner.revoke(lease)

    async def watch(self, prefix: str) -> AsyncIterator[KVEvent]:
        self._check()
        events = self.inner.watch(prefix)
        broken = asyncio.ensure_future(self._broken.wait())
        following: asyncio.Future[KVEvent] | None = None
        try:
            while True:
                following = asyncio.ensure_future(anext(events))
                await asyncio.wait({following, broken}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    raise BackendUnavailableError(str(self.url), "switched off by the test")
                try:
                    event = following.result()
                except StopAsyncIteration:
                    return
                following = None
                yield event
        finally:
            broken.cancel()
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            await events.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        await self.inner.aclose()
