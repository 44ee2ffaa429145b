"""Go channels for asyncio and threads.

How a channel stays correct without taking its lock on the fast path
----------------------------------------------------------------------
A buffered channel keeps its values in ``_buf`` and one token per free slot in
``_free``. ``deque.append`` / ``pop`` / ``popleft`` are atomic under the GIL, so a
sender that wins a token (``_free.pop()``) owns a slot and appends its value; a receiver
that pops a value gives the token back. Neither takes the lock. Everything else —
parking, waking, closing, ``select`` — happens under ``_lock``.

The only race left is between a lock-free party and one that is about to park. It is
closed the way Dekker's algorithm closes it: a sender appends its value *then* looks for
parked receivers; a receiver parks *then* looks at the buffer again (under the lock), so
at least one of the two sees the other. The same holds for a receiver freeing a slot and a
sender parking on a full buffer.

``_front`` holds values that must be received before the buffer: a value put back by a
receiver that was cancelled after taking it, or one a ``select`` took and could not keep.
Values there hold no token, so the capacity stays exact.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Generic, TypeVar

from distsys.clock import Clock, MonotonicClock
from distsys.concurrency._waiter import (
    ABANDONED,
    CLOSED,
    DONE,
    TIMEOUT,
    WAITING,
    AsyncWaiter,
    ThreadWaiter,
    Waiter,
)
from distsys.errors import (
    ArgumentTypeError,
    BlockingCallInLoopError,
    ChannelClosedError,
    DeadlineExceededError,
    InvalidArgumentError,
    WouldBlock,
)

__all__ = ["Chan", "ChanStatistics"]

T = TypeVar("T")

EMPTY: Final[Any] = object()  # "nothing to take": values may be None, so None can't say it
_CancelledError = asyncio.CancelledError
_TIMEOUT_ACCEPTED = "None or a number of seconds >= 0"


def check_timeout(timeout: float | None) -> None:
    """Reject a negative or non-numeric timeout."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ArgumentTypeError("timeout", timeout, _TIMEOUT_ACCEPTED)
    if not timeout >= 0:  # also rejects NaN
        raise InvalidArgumentError("timeout", timeout, _TIMEOUT_ACCEPTED)


def reject_blocking_in_loop(call: str) -> None:
    """Refuse to block the thread of a running event loop."""
    if asyncio._get_running_loop() is not None:
        raise BlockingCallInLoopError(call)


def defer_cancellation(exc: BaseException) -> None:
    """Re-arm a cancellation that arrived after this task's operation had completed.

    The operation's result stands (it already happened); the task is cancelled again so
    the CancelledError is delivered at its next suspension point, as trio does.
    """
    task = asyncio.current_task()
    if task is not None:
        task.cancel(exc.args[0] if exc.args else None)
        task.uncancel()


@dataclass(frozen=True, slots=True)
class ChanStatistics:
    """A snapshot of a channel.

    Attributes:
        capacity: buffer size (0 for an unbuffered channel).
        buffered: values waiting to be received.
        senders_waiting: senders parked because the buffer is full (or no receiver came).
        receivers_waiting: receivers parked because nothing was there to take.
        closed: whether ``close()`` was called.
    """

    capacity: int
    buffered: int
    senders_waiting: int
    receivers_waiting: int
    closed: bool


class Chan(Generic[T]):
    """A Go channel: a typed pipe between tasks and threads, buffered or not.

    ``Chan()`` is unbuffered: a send completes only once a receiver has taken the value.
    ``Chan(n)`` buffers up to ``n`` values and a send blocks only when the buffer is full.
    ``close()`` ends the stream: receivers drain what is buffered, then get
    :class:`ChannelClosedError` (``async for`` and ``for`` simply stop); sending on or
    closing a closed channel raises it. As in Go, only a sender should close, once every
    sender is done: a send racing with ``close`` from another thread may land in the
    buffer after the close.

    Each sender's values arrive in the order it sent them. Every operation has an
    ``await`` form, a blocking form for threads (``send_blocking``, ``recv_blocking``) and
    a non-blocking form (``send_nowait``, ``recv_nowait``) that raises
    :class:`WouldBlock`; all of them work on the same channel at once, from any number of
    event loops and threads.

    Cancellation is safe: a task cancelled while waiting either completed its operation
    before the cancellation reached it, or left no trace. A receive that had already been
    handed a value puts it back at the head of the channel and raises ``CancelledError``
    (no value is lost); a send whose value had already been taken returns normally and the
    cancellation is delivered at the task's next ``await`` (a send that raised delivered
    nothing).

    Thread-safe. A buffered send or receive that need not wait takes no lock; waiting,
    waking and closing take one lock per channel for a few bytecodes.

    Args:
        capacity: buffer size, an int >= 0 (0 means unbuffered).
        clock: time source for the ``timeout`` arguments (default: the monotonic clock).

    Raises:
        InvalidArgumentError: ``capacity`` is negative.
        ArgumentTypeError: ``capacity`` is not an int.
    """

    __slots__ = (
        "__weakref__",
        "_buf",
        "_cap",
        "_clock",
        "_closed",
        "_free",
        "_front",
        "_lock",
        "_recvq",
        "_sendq",
    )

    def __init__(self, capacity: int = 0, *, clock: Clock | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise ArgumentTypeError("capacity", capacity, "an int >= 0 (0 means unbuffered)")
        if capacity < 0:
            raise InvalidArgumentError("capacity", capacity, "an int >= 0 (0 means unbuffered)")
        self._cap = capacity
        self._buf: deque[T] = deque()
        self._free: deque[None] = deque(itertools.repeat(None, capacity))
        self._front: deque[T] = deque()
        self._recvq: deque[Waiter] = deque()
        self._sendq: deque[Waiter] = deque()
        self._closed = False
        self._lock = threading.Lock()
        self._clock: Clock = clock if clock is not None else MonotonicClock()

    # ------------------------------------------------------------------ inspection

    @property
    def capacity(self) -> int:
        """The buffer size given at construction (0 for unbuffered)."""
        return self._cap

    @property
    def closed(self) -> bool:
        """Whether the channel has been closed (it may still hold buffered values)."""
        return self._closed

    def __len__(self) -> int:
        """Return how many values wait to be received."""
        return len(self._buf) + len(self._front)

    def statistics(self) -> ChanStatistics:
        """Return a snapshot of the buffer and the wait queues."""
        with self._lock:
            return ChanStatistics(
                capacity=self._cap,
                buffered=len(self),
                senders_waiting=sum(1 for w in self._sendq if _live(w)),
                receivers_waiting=sum(1 for w in self._recvq if _live(w)),
                closed=self._closed,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Chan capacity={self._cap} buffered={len(self)} {state}>"

    # ------------------------------------------------------------ locked primitives

    def _deliver_locked(self, value: Any) -> bool:
        """Hand ``value`` to the first live parked receiver; False if there is none."""
        recvq = self._recvq
        while recvq:
            w = recvq.popleft()
            if w.sel is None:
                w.value = value
                w.state = DONE
                w.wake()
                return True
            if w.sel.commit(w.index, DONE, value):
                w.sel.wake()
                return True
        return False

    def _give_locked(self, value: Any) -> bool:
        """Hand ``value`` to a parked receiver, or buffer it; False if neither can."""
        if self._deliver_locked(value):
            return True
        free = self._free
        if free:
            try:
                free.pop()
            except IndexError:
                return False
            self._buf.append(value)
            return True
        return False

    def _pop_value_locked(self) -> Any:
        """Pop the next value waiting in the channel (``_front``, then ``_buf``), or EMPTY."""
        front = self._front
        if front:
            return front.popleft()
        buf = self._buf
        if buf:
            try:
                value = buf.popleft()
            except IndexError:  # a lock-free receiver took it first
                return EMPTY
            self._free.append(None)
            if self._sendq:
                self._refill_locked()
            return value
        return EMPTY

    def _take_locked(self) -> Any:
        """Take the next value: waiting values first, then a parked sender's; or EMPTY."""
        value = self._pop_value_locked()
        if value is not EMPTY:
            return value
        sendq = self._sendq
        while sendq:
            w = sendq.popleft()
            if w.sel is None:
                value = w.value
                w.value = None
                w.state = DONE
                w.wake()
                return value
            if w.sel.commit(w.index, DONE, None):
                w.sel.wake()
                return w.value
        return EMPTY

    def _refill_locked(self) -> None:
        """Move parked senders' values into free buffer slots, oldest first."""
        sendq, free, buf = self._sendq, self._free, self._buf
        while sendq and free:
            try:
                free.pop()
            except IndexError:
                return
            while sendq:
                w = sendq.popleft()
                if w.sel is None:
                    buf.append(w.value)
                    w.value = None
                    w.state = DONE
                    w.wake()
                    break
                if w.sel.commit(w.index, DONE, None):
                    buf.append(w.value)
                    w.sel.wake()
                    break
            else:
                free.append(None)  # every parked sender was stale: give the slot back

    def _feed_locked(self) -> None:
        """Pass waiting values to parked receivers (after a lock-free send)."""
        while self._recvq:
            value = self._pop_value_locked()
            if value is EMPTY:
                return
            if not self._deliver_locked(value):
                self._front.appendleft(value)
                return

    def _feed(self) -> None:
        with self._lock:
            self._feed_locked()

    def _refill(self) -> None:
        with self._lock:
            self._refill_locked()
            if self._recvq:
                self._feed_locked()

    def _rehome(self, value: Any) -> None:
        """Put back a value whose receiver was cancelled after taking it."""
        with self._lock:
            if not self._deliver_locked(value):
                self._front.appendleft(value)

    def _expire(self, w: AsyncWaiter | ThreadWaiter, queue: deque[Waiter]) -> None:
        """Timer callback: end a wait that is still pending with TIMEOUT."""
        with self._lock:
            if w.state != WAITING:
                return
            queue.remove(w)
            w.state = TIMEOUT
        w.wake()

    def _withdraw(self, w: AsyncWaiter | ThreadWaiter, queue: deque[Waiter]) -> bool:
        """Leave the queue if nothing was decided yet; True if withdrawn."""
        with self._lock:
            if w.state != WAITING:
                return False
            queue.remove(w)
            w.state = ABANDONED
            return True

    # --------------------------------------------------------- parking decisions

    def _park_sender(self, value: Any, timeout: float | None, make: Callable[[Any], Any]) -> Any:
        """Send under the lock if possible (None), else park and return the waiter."""
        with self._lock:
            while True:
                if self._closed:
                    raise ChannelClosedError("send on a closed channel")
                if self._give_locked(value):
                    return None
                if timeout == 0:
                    raise DeadlineExceededError("channel send timed out")
                w = make(value)
                self._sendq.append(w)
                if not self._free:
                    return w
                self._sendq.remove(w)  # a lock-free receiver freed a slot meanwhile

    def _park_receiver(self, timeout: float | None, make: Callable[[], Any]) -> Any:
        """Receive under the lock if possible (the value), else park; return the waiter."""
        with self._lock:
            while True:
                value = self._take_locked()
                if value is not EMPTY:
                    return value, None
                if self._closed:
                    raise ChannelClosedError("receive from a closed channel")
                if timeout == 0:
                    raise DeadlineExceededError("channel receive timed out")
                w = make()
                self._recvq.append(w)
                if not (self._buf or self._front):
                    return EMPTY, w
                self._recvq.remove(w)  # a lock-free sender buffered a value meanwhile

    # ----------------------------------------------------------------- waiting

    async def _wait(
        self, w: AsyncWaiter, queue: deque[Waiter], timeout: float | None
    ) -> BaseException | None:
        """Wait until ``w`` is decided; return a cancellation that came too late."""
        timer = None
        if timeout is not None:
            timer = self._clock.call_later(timeout, partial(self._expire, w, queue))
        try:
            await w.fut
        except _CancelledError as exc:
            if self._withdraw(w, queue):
                raise
            return exc
        finally:
            if timer is not None:
                timer.cancel()
        return None

    def _wait_blocking(
        self, w: ThreadWaiter, queue: deque[Waiter], timeout: float | None
    ) -> BaseException | None:
        """Block the thread until ``w`` is decided; return an interruption that came late."""
        try:
            if timeout is None:
                w.lock.acquire()
            elif type(self._clock) is MonotonicClock:
                if not w.lock.acquire(timeout=timeout):
                    self._expire(w, queue)
            else:
                timer = self._clock.call_later(timeout, partial(self._expire, w, queue))
                try:
                    w.lock.acquire()
                finally:
                    timer.cancel()
        except BaseException as exc:  # KeyboardInterrupt from a signal handler
            if self._withdraw(w, queue):
                raise
            return exc
        return None

    # -------------------------------------------------------------------- send

    async def send(self, value: T, *, timeout: float | None = None) -> None:
        """Send ``value``, waiting for buffer space or (unbuffered) for a receiver.

        Raises:
            ChannelClosedError: the channel is closed, or was closed while waiting (the
                value was not delivered).
            DeadlineExceededError: ``timeout`` seconds passed first (not delivered).
            InvalidArgumentError: ``timeout`` is negative.
        """
        if timeout is not None:
            check_timeout(timeout)
        if self._free and not self._closed and not self._sendq:
            try:
                self._free.pop()
            except IndexError:
                pass
            else:
                self._buf.append(value)
                if self._recvq:
                    self._feed()
                return
        w = self._park_sender(value, timeout, AsyncWaiter)
        if w is not None:
            late = await self._wait(w, self._sendq, timeout)
            self._finish_send(w.state, late)

    def send_blocking(self, value: T, *, timeout: float | None = None) -> None:
        """Send from a thread, blocking it; see :meth:`send`.

        Raises:
            BlockingCallInLoopError: called on a thread that runs an event loop and the
                send would have to wait.
        """
        if timeout is not None:
            check_timeout(timeout)
        if self._free and not self._closed and not self._sendq:
            try:
                self._free.pop()
            except IndexError:
                pass
            else:
                self._buf.append(value)
                if self._recvq:
                    self._feed()
                return
        w = self._park_sender(value, timeout, _thread_sender)
        if w is not None:
            late = self._wait_blocking(w, self._sendq, timeout)
            if late is not None and w.state == DONE:
                raise late  # a thread has no later checkpoint to defer it to
            self._finish_send(w.state, late)

    def send_nowait(self, value: T) -> None:
        """Send only if that needs no waiting.

        Raises:
            WouldBlock: the buffer is full, or (unbuffered) no receiver is waiting.
            ChannelClosedError: the channel is closed.
        """
        with self._lock:
            if self._closed:
                raise ChannelClosedError("send on a closed channel")
            if not self._give_locked(value):
                raise WouldBlock("channel send would block")

    @staticmethod
    def _finish_send(state: int, late: BaseException | None) -> None:
        if state == DONE:
            if late is not None:
                defer_cancellation(late)
            return
        if late is not None:
            raise late
        if state == CLOSED:
            raise ChannelClosedError("channel closed before the value was delivered")
        raise DeadlineExceededError("channel send timed out")

    # -------------------------------------------------------------------- recv

    async def recv(self, *, timeout: float | None = None) -> T:
        """Receive the next value, waiting for one.

        Raises:
            ChannelClosedError: the channel is closed and drained.
            DeadlineExceededError: ``timeout`` seconds passed first.
            InvalidArgumentError: ``timeout`` is negative.
        """
        if timeout is not None:
            check_timeout(timeout)
        buf = self._buf
        if buf and not self._front:
            try:
                value = buf.popleft()
            except IndexError:
                pass
            else:
                self._free.append(None)
                if self._sendq:
                    self._refill()
                return value
        value, w = self._park_receiver(timeout, AsyncWaiter)
        if w is None:
            return value
        late = await self._wait(w, self._recvq, timeout)
        return self._finish_recv(w, late)

    def recv_blocking(self, *, timeout: float | None = None) -> T:
        """Receive from a thread, blocking it; see :meth:`recv`.

        Raises:
            BlockingCallInLoopError: called on a thread that runs an event loop and the
                receive would have to wait.
        """
        if timeout is not None:
            check_timeout(timeout)
        buf = self._buf
        if buf and not self._front:
            try:
                value = buf.popleft()
            except IndexError:
                pass
            else:
                self._free.append(None)
                if self._sendq:
                    self._refill()
                return value
        value, w = self._park_receiver(timeout, _thread_receiver)
        if w is None:
            return value
        late = self._wait_blocking(w, self._recvq, timeout)
        return self._finish_recv(w, late)

    def recv_nowait(self) -> T:
        """Receive only if a value is there now.

        Raises:
            WouldBlock: nothing is buffered and no sender is waiting.
            ChannelClosedError: the channel is closed and drained.
        """
        with self._lock:
            value = self._take_locked()
            if value is not EMPTY:
                return value  # type: ignore[no-any-return]
            if self._closed:
                raise ChannelClosedError("receive from a closed channel")
            raise WouldBlock("channel receive would block")

    def _finish_recv(self, w: AsyncWaiter | ThreadWaiter, late: BaseException | None) -> T:
        state = w.state
        if state == DONE:
            if late is not None:
                self._rehome(w.value)
                raise late
            return w.value  # type: ignore[no-any-return]
        if late is not None:
            raise late
        if state == CLOSED:
            with self._lock:  # drain what a sender racing with close() left behind
                value = self._take_locked()
            if value is not EMPTY:
                return value  # type: ignore[no-any-return]
            raise ChannelClosedError("receive from a closed channel")
        raise DeadlineExceededError("channel receive timed out")

    # ------------------------------------------------------------------- close

    def close(self) -> None:
        """Close the channel and wake every parked sender and receiver.

        Buffered values stay receivable. Parked senders raise
        :class:`ChannelClosedError` (their values were not delivered).

        Raises:
            ChannelClosedError: the channel was already closed.
        """
        with self._lock:
            if self._closed:
                raise ChannelClosedError("close of a closed channel")
            self._closed = True
            parked = [*self._recvq, *self._sendq]
            self._recvq.clear()
            self._sendq.clear()
            for w in parked:
                if w.sel is None:
                    w.state = CLOSED
                    w.wake()
                elif w.sel.commit(w.index, CLOSED, None):
                    w.sel.wake()

    # --------------------------------------------------------------- iteration

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.recv()
        except ChannelClosedError:
            raise StopAsyncIteration from None

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.recv_blocking()
            except ChannelClosedError:
                return


def _live(w: Waiter) -> bool:
    return w.sel is None or w.sel.state == WAITING


def _thread_waiter_for(call: str) -> Callable[..., ThreadWaiter]:
    def make(value: Any = None) -> ThreadWaiter:
        reject_blocking_in_loop(call)
        return ThreadWaiter(value)

    return make


_thread_sender = _thread_waiter_for("Chan.send_blocking")
_thread_receiver = _thread_waiter_for("Chan.recv_blocking")
