"""BulkheadSlot: a bulkhead's slot held for a ``with`` or ``async with`` block."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from distsys.context import Context
from distsys.resilience._retry_checks import check_context, check_timeout

if TYPE_CHECKING:
    from distsys.resilience._bulkhead import Bulkhead

__all__ = ["BulkheadSlot"]


class BulkheadSlot:
    """A slot of a :class:`Bulkhead` held for a ``with`` or ``async with`` block.

    Made by :meth:`Bulkhead.slot`; enter it once.
    """

    __slots__ = ("_bulkhead", "_ctx", "_timeout")

    def __init__(self, bulkhead: Bulkhead, ctx: Context | None, timeout: float | None) -> None:
        self._bulkhead = bulkhead
        self._ctx = check_context(ctx)
        self._timeout = None if timeout is None else check_timeout(timeout)

    def __enter__(self) -> Bulkhead:
        self._bulkhead.acquire(ctx=self._ctx, timeout=self._timeout)
        return self._bulkhead

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bulkhead.release()

    async def __aenter__(self) -> Bulkhead:
        await self._bulkhead.aacquire(ctx=self._ctx, timeout=self._timeout)
        return self._bulkhead

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bulkhead.release()
