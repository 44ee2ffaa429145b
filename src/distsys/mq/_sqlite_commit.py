"""Group commit for the ``sqlite://`` broker: the writes of concurrent tasks in one transaction.

Every publish, ack and nack is queued; the first write queued in an idle moment lets the
event loop turn once before it flushes, so the writes that every task ready to run makes
meanwhile are applied together — one ``BEGIN IMMEDIATE`` ... ``COMMIT`` for all of them.
That turn is skipped when no other callback is ready to run (nobody could add a write to
the batch, so the write would go alone anyway): a lone publisher pays for its transaction,
not for a turn of the loop too. Asyncio's own loop keeps its ready callbacks in a queue
that can be looked at; on a loop without one the turn is always taken. So that such a
writer still lets the loop look at its timers and sockets, at most
:data:`MAX_SKIPPED_TURNS` writes in a row skip it.
The flush runs inline on the loop (see :mod:`distsys.backends._sqlite_executor`) when the
write lock is free and the batch is small; otherwise it goes to the worker thread, and
what is queued while the worker writes (or waits for another process's lock) goes in the
next transaction. Either way a write is committed before its caller hears of it, batches
are applied in the order their writes were queued, and a failed transaction fails every
write in it (nothing of it was written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar, cast

from distsys.backends._sqlite_executor import BUSY, INLINE_WEIGHT, Executor

__all__ = ["MAX_BATCH", "MAX_SKIPPED_TURNS", "GroupCommit"]

Op = TypeVar("Op")

MAX_BATCH: Final = 1024
"""Operations written in one transaction at most (a bound on how long it holds the lock)."""
MAX_SKIPPED_TURNS: Final = 16
"""Writes in a row that may skip the loop's turn before one takes it (see the module docs)."""


def _alone(loop: asyncio.AbstractEventLoop) -> bool:
    """Tell whether no other callback is ready to run on ``loop`` (False when unknown)."""
    ready = getattr(loop, "_ready", None)  # asyncio's BaseEventLoop: a deque of handles
    return ready is not None and not ready


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller was cancelled; the operation may still have taken effect
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class GroupCommit(Generic[Op]):
    """Write operations in batches, one transaction per batch.

    Safe within one event loop.

    Args:
        executor: runs ``apply`` inline or on the worker thread.
        apply: ``apply(store, ops)`` writes a batch in one transaction and returns one
            result per operation.
        committed: called on the loop with each batch once it is committed.
        weigh: an operation's weight (rows written), against :data:`INLINE_WEIGHT`.
    """

    def __init__(
        self,
        executor: Executor[Any],
        apply: Callable[[Any, Sequence[Op]], list[Any]],
        committed: Callable[[Sequence[Op]], object],
        weigh: Callable[[Op], int],
    ) -> None:
        self._executor = executor
        self._apply = apply
        self._committed = committed
        self._weigh = weigh
        self._queue: list[tuple[Op, asyncio.Future[Any]]] = []
        self._scheduled = False  # a flush is due on the loop's next turn
        self._busy = False  # a batch is on the worker thread
        self._skipped = 0  # writes in a row that flushed without a turn of the loop
        self.transactions = 0
        """Transactions committed (or attempted) so far."""
        self.writes = 0
        """Operations written in them."""

    async def write(self, op: Op) -> Any:
        """Queue ``op`` for the next transaction; return its result once committed.

        The first write queued in an idle moment leads: it lets the loop turn once, so
        that every task ready to run queues its writes, then flushes them itself (its
        caller resumes without another turn of the loop). When no other callback is ready
        to run, it flushes at once.
        """
        loop = asyncio.get_running_loop()
        idle = not (self._scheduled or self._busy)  # then nothing is queued either
        if idle and self._skipped < MAX_SKIPPED_TURNS and _alone(loop):
            # Nobody could join this transaction: write it now, alone.
            self._skipped += 1
            ops = [op]
            self.transactions += 1
            self.writes += 1
            results = self._executor.try_inline(self._apply, (ops,), self._weigh(op))
            if results is not BUSY:
                self._committed(ops)
                return cast(list[Any], results)[0]
            return await self._to_worker(op, loop)
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future))
        if not idle:
            return await future
        self._skipped = 0
        self._scheduled = True
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            loop.call_soon(self._flush)  # the others' writes still go
            raise
        self._flush()
        if future.done():
            return future.result()
        return await future  # it went to the worker, or did not fit this batch

    async def _to_worker(self, op: Op, loop: asyncio.AbstractEventLoop) -> Any:
        """Write ``op`` alone on the worker (the lock was held elsewhere); return its result."""
        future: asyncio.Future[Any] = loop.create_future()
        batch = [(op, future)]
        try:
            self._executor.submit(
                self._apply, ([op],), lambda result, error: self._finished(batch, result, error)
            )
        except Exception as exc:
            self._finished(batch, None, exc)
        else:
            self._busy = True
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if self._busy or not self._queue:
            return
        # As many operations as one inline transaction may take; a heavy one goes alone.
        count = weight = 0
        for op, _ in self._queue:
            more = self._weigh(op)
            if count and (count == MAX_BATCH or weight + more > INLINE_WEIGHT):
                break
            count += 1
            weight += more
        batch, self._queue = self._queue[:count], self._queue[count:]
        ops = [op for op, _ in batch]
        self.transactions += 1
        self.writes += count
        try:
            results = self._executor.try_inline(self._apply, (ops,), weight)
            if results is BUSY:
                self._executor.submit(
                    self._apply, (ops,), lambda result, error: self._finished(batch, result, error)
                )
                self._busy = True
                return
        except Exception as exc:
            self._finished(batch, None, exc)
            return
        self._finished(batch, results, None)

    def _finished(
        self,
        batch: list[tuple[Op, asyncio.Future[Any]]],
        results: Any,
        error: BaseException | None,
    ) -> None:
        self._busy = False
        if error is None:
            self._committed([op for op, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                _resolve(future, result, None)
        else:
            for _, future in batch:
                _resolve(future, None, error)
        if self._queue and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
