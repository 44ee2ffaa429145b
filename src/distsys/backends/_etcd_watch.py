"""The pieces of an etcd watch: key ranges, one Watch stream, and reconnect backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any, Final

import grpc  # type: ignore[import-untyped]
from aetcd import rpc  # type: ignore[import-untyped]

__all__ = ["Backoff", "WatchBroken", "WatchStream", "prefix_range"]

RECONNECT_FIRST: Final = 0.1
"""Seconds before the first reconnect attempt of a broken watch (before jitter)."""
RECONNECT_MAX: Final = 2.0
"""The longest pause between two reconnect attempts."""


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """Return etcd's ``[key, range_end)`` for every key that starts with ``prefix``.

    An empty prefix is every key (``"\\0"`` to ``"\\0"``); otherwise the range ends at the
    prefix with its last byte below 0xff incremented (what ``clientv3.WithPrefix`` does).
    """
    end = bytearray(prefix)
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return (prefix or b"\0"), b"\0"
    end[-1] += 1
    return prefix, bytes(end)


class WatchBroken(Exception):
    """The watch stream ended; ``compacted``: etcd no longer has the revisions it needed."""

    def __init__(self, reason: str, *, compacted: bool = False) -> None:
        self.compacted = compacted
        super().__init__(reason)


class WatchStream:
    """One etcd ``Watch`` RPC (a bidirectional gRPC stream) over one key range.

    A stream per watch, rather than aetcd's shared one, so that every way it can end is
    seen (aetcd does not tell its watchers when the server ends the stream without an
    error), and so that a slow reader is held back by gRPC flow control (etcd keeps the
    events in its history) instead of filling an unbounded queue here.
    """

    __slots__ = ("_call",)

    def __init__(self, stub: Any, metadata: Any) -> None:
        self._call: Any = stub.Watch(metadata=metadata)

    async def create(self, start: bytes, end: bytes, revision: int) -> None:
        """Ask for events of ``[start, end)`` from ``revision`` on; wait until etcd agrees.

        Raises:
            WatchBroken: etcd refused or compacted ``revision``, or the stream ended.
        """
        request = rpc.WatchCreateRequest(key=start, range_end=end, start_revision=revision)
        try:
            await self._call.write(rpc.WatchRequest(create_request=request))
        except asyncio.InvalidStateError:
            await self._call  # the RPC already ended: raise its status
            raise WatchBroken("the server ended the watch stream") from None
        while not self._check(await self._next()).created:
            pass

    async def read(self) -> Sequence[Any]:
        """Return the next batch of events (``mvccpb.Event``; may be empty).

        Raises:
            WatchBroken: the stream ended, or etcd cancelled the watch.
        """
        return self._check(await self._next()).events  # type: ignore[no-any-return]

    def cancel(self) -> None:
        """End the RPC (etcd drops the watch); a no-op once it has ended."""
        self._call.cancel()

    async def _next(self) -> Any:
        response = await self._call.read()
        if response is grpc.aio.EOF:
            raise WatchBroken("the server ended the watch stream")
        return response

    @staticmethod
    def _check(response: Any) -> Any:
        if response.compact_revision:
            raise WatchBroken(
                f"etcd compacted the history below revision {response.compact_revision}",
                compacted=True,
            )
        if response.canceled:
            raise WatchBroken(f"etcd cancelled the watch: {response.cancel_reason or 'no reason'}")
        return response


class Backoff:
    """Exponential pauses between reconnects, from 0.1 s doubling to at most 2 s.

    Each pause is drawn from its upper half ("equal jitter") so that the clients of a
    restarted server do not all come back at the same instant. Not thread-safe (one per
    watch).
    """

    __slots__ = ("_rng", "attempts")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.attempts = 0

    def next_delay(self) -> float:
        """Count one failed attempt; return how long to wait before the next one."""
        ceiling = min(RECONNECT_MAX, RECONNECT_FIRST * 2.0 ** min(self.attempts, 16))
        self.attempts += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from the shortest pause (after a successful reconnect)."""
        self.attempts = 0
