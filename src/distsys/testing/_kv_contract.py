"""The contract every KV backend passes, as a reusable test class."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from distsys.backends import KV, EventType, KVEvent
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    InvalidArgumentError,
    LeaseExpiredError,
)

__all__ = ["KVContract", "next_event"]

EVENT_TIMEOUT = 15.0  # a safety net for a broken backend; events normally arrive at once


async def _raises(error: type[BaseException], operation: Awaitable[Any]) -> BaseException:
    try:
        await operation
    except error as exc:
        return exc
    raise AssertionError(f"expected {error.__name__}")


async def next_event(events: AsyncIterator[KVEvent], timeout: float = EVENT_TIMEOUT) -> KVEvent:
    """Return the next event of a watch, failing (not hanging) if none comes."""
    async with asyncio.timeout(timeout):
        return await anext(events)


class KVContract:
    """The semantics of :class:`distsys.backends.KV`, checked against one backend.

    Subclass it in a test module as ``class TestMyKV(KVContract)`` and implement
    :meth:`open_kv` and :meth:`elapse`. Every test works under a fresh random key prefix,
    so the suite can run against a shared server.

    Attributes:
        lease_ttl: the TTL the lease tests use (servers may enforce a minimum).
    """

    lease_ttl: float = 2.0

    async def open_kv(self) -> KV:
        """Return an open store of the backend under test."""
        raise NotImplementedError

    async def elapse(self, kv: KV, seconds: float) -> None:
        """Make ``seconds`` pass for ``kv``'s leases (advance a ManualClock, or wait)."""
        raise NotImplementedError

    @asynccontextmanager
    async def store(self) -> AsyncIterator[tuple[KV, str]]:
        kv = await self.open_kv()
        ns = f"contract/{uuid.uuid4().hex}/"
        try:
            yield kv, ns
            for entry in await kv.list(ns):  # leave a shared server as it was
                await kv.delete(entry.key)
        finally:
            await kv.aclose()

    # ------------------------------------------------------------------ basics

    async def test_put_get_and_versions(self) -> None:
        async with self.store() as (kv, ns):
            assert await kv.get(ns + "a") is None
            first = await kv.put(ns + "a", b"1")
            assert (first.key, first.value, first.version, first.lease) == (ns + "a", b"1", 1, None)
            second = await kv.put(ns + "a", b"2")
            assert second.version == 2
            got = await kv.get(ns + "a")
            assert got is not None
            assert (got.value, got.version) == (b"2", 2)

    async def test_values_are_arbitrary_bytes_and_keys_unicode(self) -> None:
        async with self.store() as (kv, ns):
            blob = bytes(range(256)) * 4
            await kv.put(ns + "bläh/ключ", blob)
            got = await kv.get(ns + "bläh/ключ")
            assert got is not None
            assert got.value == blob
            await kv.put(ns + "empty", b"")
            empty = await kv.get(ns + "empty")
            assert empty is not None
            assert empty.value == b""

    async def test_list_by_prefix_is_sorted(self) -> None:
        async with self.store() as (kv, ns):
            for name in ("svc/b", "svc/a", "svc/c/1", "other/x", "svcx"):
                await kv.put(ns + name, name.encode())
            listed = await kv.list(ns + "svc/")
            assert [e.key for e in listed] == [ns + "svc/a", ns + "svc/b", ns + "svc/c/1"]
            assert [e.value for e in listed] == [b"svc/a", b"svc/b", b"svc/c/1"]
            assert await kv.list(ns + "nothing/") == []

    async def test_delete(self) -> None:
        async with self.store() as (kv, ns):
            await kv.put(ns + "k", b"v")
            assert await kv.delete(ns + "k") is True
            assert await kv.delete(ns + "k") is False
            assert await kv.get(ns + "k") is None
            again = await kv.put(ns + "k", b"v2")
            assert again.version == 1  # versions restart after a delete

    # ------------------------------------------------------------ compare and set

    async def test_compare_and_set(self) -> None:
        async with self.store() as (kv, ns):
            created = await kv.compare_and_set(ns + "k", b"a", version=0)
            assert created is not None
            assert created.version == 1
            assert await kv.compare_and_set(ns + "k", b"b", version=0) is None
            assert await kv.compare_and_set(ns + "k", b"b", version=7) is None
            updated = await kv.compare_and_set(ns + "k", b"b", version=1)
            assert updated is not None
            assert (updated.value, updated.version) == (b"b", 2)
            got = await kv.get(ns + "k")
            assert got is not None
            assert got.value == b"b"

    async def test_compare_and_set_is_atomic_under_contention(self) -> None:
        async with self.store() as (kv, ns):
            await kv.put(ns + "counter", b"0")

            async def increment() -> None:
                while True:
                    entry = await kv.get(ns + "counter")
                    assert entry is not None
                    new = str(int(entry.value) + 1).encode()
                    if await kv.compare_and_set(ns + "counter", new, version=entry.version):
                        return

            await asyncio.gather(*(increment() for _ in range(20)))
            final = await kv.get(ns + "counter")
            assert final is not None
            assert final.value == b"20"

    # ------------------------------------------------------------------- leases

    async def test_revoke_deletes_the_lease_keys(self) -> None:
        async with self.store() as (kv, ns):
            lease = await kv.grant(self.lease_ttl * 10)
            await kv.put(ns + "a", b"1", lease=lease)
            await kv.put(ns + "b", b"2", lease=lease)
            await kv.put(ns + "c", b"3")
            entry = await kv.get(ns + "a")
            assert entry is not None
            assert entry.lease == lease
            assert await kv.keep_alive(lease) is True
            assert await kv.revoke(lease) is True
            assert [e.key for e in await kv.list(ns)] == [ns + "c"]
            assert await kv.keep_alive(lease) is False
            assert await kv.revoke(lease) is False
            await _raises(LeaseExpiredError, kv.put(ns + "d", b"4", lease=lease))
            assert await kv.get(ns + "d") is None

    async def test_an_expired_lease_deletes_its_keys_and_watchers_hear_it(self) -> None:
        async with self.store() as (kv, ns):
            events = kv.watch(ns)
            assert (await next_event(events)).type is EventType.RESET
            lease = await kv.grant(self.lease_ttl)
            await kv.put(ns + "inst", b"up", lease=lease)
            put = await next_event(events)
            assert (put.type, put.key) == (EventType.PUT, ns + "inst")
            await self.elapse(kv, self.lease_ttl + 0.5)
            gone = await next_event(events, timeout=self.lease_ttl * 4 + EVENT_TIMEOUT)
            assert (gone.type, gone.key) == (EventType.DELETE, ns + "inst")
            assert await kv.get(ns + "inst") is None
            assert await kv.keep_alive(lease) is False
            await events.aclose()

    async def test_revoke_is_seen_by_watchers(self) -> None:
        async with self.store() as (kv, ns):
            lease = await kv.grant(self.lease_ttl * 10)
            await kv.put(ns + "a", b"1", lease=lease)
            events = kv.watch(ns)
            reset = await next_event(events)
            assert [e.key for e in reset.snapshot] == [ns + "a"]
            await kv.revoke(lease)
            gone = await next_event(events)
            assert (gone.type, gone.key) == (EventType.DELETE, ns + "a")
            await events.aclose()

    async def test_writing_under_a_lease_that_expired_by_itself_is_refused(self) -> None:
        async with self.store() as (kv, ns):
            events = kv.watch(ns)
            await next_event(events)
            lease = await kv.grant(self.lease_ttl)
            await kv.put(ns + "a", b"1", lease=lease)
            await next_event(events)
            await self.elapse(kv, self.lease_ttl + 0.5)
            await next_event(events, timeout=self.lease_ttl * 4 + EVENT_TIMEOUT)  # the DELETE
            await _raises(LeaseExpiredError, kv.put(ns + "b", b"2", lease=lease))
            assert await kv.get(ns + "b") is None
            await events.aclose()

    async def test_keep_alive_extends_a_lease(self) -> None:
        async with self.store() as (kv, ns):
            lease = await kv.grant(self.lease_ttl)
            await kv.put(ns + "inst", b"up", lease=lease)
            for _ in range(3):
                await self.elapse(kv, self.lease_ttl * 0.5)
                assert await kv.keep_alive(lease) is True
            assert await kv.get(ns + "inst") is not None
            await kv.revoke(lease)

    async def test_putting_a_key_without_its_lease_detaches_it(self) -> None:
        async with self.store() as (kv, ns):
            lease = await kv.grant(self.lease_ttl * 10)
            await kv.put(ns + "k", b"leased", lease=lease)
            await kv.put(ns + "k", b"free")
            await kv.revoke(lease)
            got = await kv.get(ns + "k")
            assert got is not None
            assert (got.value, got.lease) == (b"free", None)

    # -------------------------------------------------------------------- watch

    async def test_watch_starts_with_a_snapshot_then_reports_changes_in_order(self) -> None:
        async with self.store() as (kv, ns):
            await kv.put(ns + "w/a", b"1")
            await kv.put(ns + "elsewhere", b"x")
            events = kv.watch(ns + "w/")
            reset = await next_event(events)
            assert reset.type is EventType.RESET
            assert [(e.key, e.value) for e in reset.snapshot] == [(ns + "w/a", b"1")]
            await kv.put(ns + "w/b", b"2")
            await kv.put(ns + "elsewhere", b"y")  # outside the prefix: not reported
            await kv.put(ns + "w/a", b"3")
            await kv.delete(ns + "w/b")
            seen = [await next_event(events) for _ in range(3)]
            assert [(e.type, e.key) for e in seen] == [
                (EventType.PUT, ns + "w/b"),
                (EventType.PUT, ns + "w/a"),
                (EventType.DELETE, ns + "w/b"),
            ]
            assert seen[1].entry is not None
            assert (seen[1].entry.value, seen[1].entry.version) == (b"3", 2)
            await events.aclose()

    async def test_two_watchers_see_the_same_changes(self) -> None:
        async with self.store() as (kv, ns):
            first, second = kv.watch(ns), kv.watch(ns)
            for events in (first, second):
                assert (await next_event(events)).type is EventType.RESET
            await kv.put(ns + "k", b"v")
            for events in (first, second):
                event = await next_event(events)
                assert (event.type, event.key) == (EventType.PUT, ns + "k")
                await events.aclose()

    # ---------------------------------------------------------------- bad input

    async def test_bad_input_is_refused_naming_the_argument(self) -> None:
        async with self.store() as (kv, ns):
            for operation, error, field in [
                (kv.get(""), InvalidArgumentError, "key"),
                (kv.put(ns + "k", "text"), ArgumentTypeError, "value"),  # type: ignore[arg-type]
                (kv.put(42, b"v"), ArgumentTypeError, "key"),  # type: ignore[arg-type]
                (kv.grant(0), InvalidArgumentError, "ttl"),
                (kv.grant(-1), InvalidArgumentError, "ttl"),
                (kv.compare_and_set(ns + "k", b"v", version=-1), InvalidArgumentError, "version"),
                (kv.put(ns + "k", b"v", lease="x"), ArgumentTypeError, "lease"),  # type: ignore[arg-type]
            ]:
                exc = await _raises(error, operation)
                assert getattr(exc, "field", None) == field, exc
            assert await kv.get(ns + "k") is None  # nothing was written

    async def test_closing_the_store_ends_a_waiting_watch(self) -> None:
        kv = await self.open_kv()
        events = kv.watch(f"contract/{uuid.uuid4().hex}/")
        assert (await next_event(events)).type is EventType.RESET
        waiting = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        await kv.aclose()
        try:
            async with asyncio.timeout(EVENT_TIMEOUT):
                await waiting
        except StopAsyncIteration:
            pass
        except BackendUnavailableError:
            pass  # ending with "closed" is fine too; hanging is not

    async def test_a_closed_store_refuses_work(self) -> None:
        kv = await self.open_kv()
        await kv.aclose()
        await kv.aclose()  # idempotent
        await _raises(BackendUnavailableError, kv.get("anything"))
