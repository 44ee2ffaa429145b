"""Run an asyncio block under a Context: cancel it when the context ends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from distsys.errors import CanceledError, DeadlineExceededError, DistsysError

if TYPE_CHECKING:
    from distsys.context._context import Context

__all__ = ["Scope"]

_NEW, _INSIDE, _LEFT = range(3)


class Scope:
    """A cancel scope bound to a :class:`Context` (create it with ``ctx.scope()``).

    While the block runs, the end of the context — its cancel function, a parent's, or its
    deadline — cancels the task that runs the block. On leaving, that cancellation is
    turned into :class:`DeadlineExceededError` or :class:`CanceledError` (or swallowed with
    ``raise_error=False``); a cancellation that came from elsewhere passes through untouched,
    as ``asyncio.timeout`` does.

    Attributes:
        cancelled_caught: True once the scope cancelled its block because the context ended.

    Belongs to the task that enters it; the context may be ended from any thread.
    """

    __slots__ = (
        "_callback_key",
        "_cancelling",
        "_ctx",
        "_loop",
        "_raise_error",
        "_requested",
        "_state",
        "_task",
        "_thread",
        "_timer",
        "cancelled_caught",
    )

    def __init__(self, ctx: Context, *, raise_error: bool = True) -> None:
        self._ctx = ctx
        self._raise_error = raise_error
        self._state = _NEW
        self._requested = False
        self.cancelled_caught = False

    async def __aenter__(self) -> Scope:
        if self._state != _NEW:
            raise DistsysError("a Scope can be entered only once; call ctx.scope() again")
        task = asyncio.current_task()
        if task is None:
            raise DistsysError("Context.scope() must be entered from inside an asyncio task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._cancelling = task.cancelling()
        self._state = _INSIDE
        node = self._ctx._node
        self._timer = node.arm()
        self._callback_key = node.on_end(self._on_context_end)
        return self

    def _on_context_end(self) -> None:
        # Runs on whichever thread ended the context.
        if threading.get_ident() == self._thread:
            self._cancel_block()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has nothing to cancel
                self._loop.call_soon_threadsafe(self._cancel_block)

    def _cancel_block(self) -> None:
        if self._state == _INSIDE and not self._requested:
            self._requested = True
            self._task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._state = _LEFT
        node = self._ctx._node
        node.remove_callback(self._callback_key)
        if self._timer is not None:
            self._timer.cancel()
        if not self._requested:
            return False
        if self._task.uncancel() > self._cancelling:
            return False  # someone else cancelled the task too: that cancellation wins
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.cancelled_caught = True
            if not self._raise_error:
                return True
            err = node.err()
            if isinstance(err, DeadlineExceededError):
                raise DeadlineExceededError() from exc
            cause = err.cause if isinstance(err, CanceledError) else None
            raise CanceledError(cause=cause) from exc
        if exc_type is None:
            # The block ended before our cancellation reached it: absorb the pending one
            # so it cannot hit the code after the block.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if self._task.cancelling() > self._cancelling:
                    raise  # a new cancellation from elsewhere arrived meanwhile
        return False
