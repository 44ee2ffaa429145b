"""Group commit for the ``sqlite://`` broker: the writes of concurrent tasks in one transaction.

Every publish, ack and nack is queued; the first write queued in an idle moment lets the
event loop turn once before it flushes, so the writes that every task ready to run makes
meanwhile are applied together — one ``BEGIN IMMEDIATE`` ... ``COMMIT`` for all of them.
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
from typing import Any, Final, Generic, TypeVar

from distsys.backends._sqlite_executor import BUSY, INLINE_WEIGHT, Executor

__all__ = ["MAX_BATCH", "GroupCommit"]

Op = TypeVar("Op")

MAX_BATCH: Final = 1024
"""Operations written in one transaction at most (a bound on how long it holds the lock)."""


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
        self.transactions = 0
        """Transactions committed (or attempted) so far."""
        self.writes = 0
        """Operations written in them."""

    async def write(self, op: Op) -> Any:
        """Queue ``op`` for the next transaction; return its result once committed.

        The first write queued in an idle moment leads: it lets the loop turn once, so
        that every task ready to run queues its writes, then flushes them itself (its
        caller resumes without another turn of the loop).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((op, future))
        if self._scheduled or self._busy:
            return await future
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
