"""What every breaker offers: the ``Breaker`` and ``Permit`` protocols, and a base class.

:class:`Breaker` is what callers depend on — :class:`~distsys.resilience.CircuitBreaker`,
:class:`~distsys.resilience.AdaptiveBreaker` and :class:`~distsys.resilience.NoopBreaker`
all satisfy it, so code that takes ``breaker: Breaker`` never asks whether one is
enabled. :class:`BreakerBase` derives the decorator and the ``with`` forms from a
subclass's ``allow()``, ``call()`` and ``acall()``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from types import TracebackType
from typing import Any, ParamSpec, Protocol, Self, TypeVar, overload, runtime_checkable

from distsys.errors import ArgumentTypeError

__all__ = ["Breaker", "BreakerBase", "Permit"]

P = ParamSpec("P")
R = TypeVar("R")


@runtime_checkable
class Permit(Protocol):
    """Leave to make one call, returned by ``allow()``; finish it with its outcome.

    Exactly one of :meth:`success`, :meth:`failure` or :meth:`ignore` records the
    outcome; later calls do nothing and return False, so finishing in a ``finally`` after
    an explicit outcome is safe. As a context manager it finishes itself on exit: success
    without an exception, ``failure(exc)`` with one (the breaker's exception filters
    decide what that means). A permit belongs to one caller: it is not thread-safe.
    """

    @property
    def started(self) -> float:
        """The breaker's clock time when the permit was granted: the call's start."""
        ...

    @property
    def done(self) -> bool:
        """Whether the outcome has been recorded."""
        ...

    def success(self) -> bool:
        """Record that the call succeeded; return False if already finished."""
        ...

    def failure(self, exc: BaseException | None = None) -> bool:
        """Record that the call failed (with ``exc``, filtered); False if already finished."""
        ...

    def ignore(self) -> bool:
        """Give the permit back with no outcome; return False if already finished."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Breaker(Protocol):
    """What a caller needs from a breaker; every breaker in distsys satisfies it.

    ``allow()`` returns a :class:`Permit` or raises
    :class:`~distsys.errors.BreakerOpenError`; ``call`` / ``acall`` run a function through
    the breaker; ``@breaker`` decorates sync and async functions; ``with breaker:`` and
    ``async with breaker:`` guard a block (the permit is the ``as`` target).
    """

    @property
    def name(self) -> str:
        """The breaker's name (in errors, statistics and metrics)."""
        ...

    def allow(self) -> Permit:
        """Return a permit for one call, or raise BreakerOpenError."""
        ...

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``fn(*args, **kwargs)`` run through the breaker."""
        ...

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``await fn(*args, **kwargs)`` run through the breaker."""
        ...

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __enter__(self) -> Permit: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def __aenter__(self) -> Permit: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# The permits of the `with breaker:` blocks open in this context, innermost last, as
# (breaker, permit) pairs. A tuple, replaced on every change, so a task started inside a
# block (which copies the context) cannot disturb its parent's stack. One module-level
# variable for all breakers: ContextVars must not be created per object.
_OPEN_BLOCKS: ContextVar[tuple[tuple[object, Permit], ...]] = ContextVar(
    "distsys_breaker_blocks", default=()
)


class BreakerBase:
    """The decorator and the ``with`` forms, built on a subclass's ``allow``/``call``/``acall``.

    Subclasses define ``allow``, ``call`` and ``acall``. ``with breaker:`` keeps the
    permit in a context variable, so one breaker may guard blocks in many threads and
    tasks at once; ``with breaker.allow() as permit:`` is the same without it.
    """

    __slots__ = ()

    def allow(self) -> Permit:
        """Return a permit for one call, or raise BreakerOpenError."""
        raise NotImplementedError

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``fn(*args, **kwargs)`` run through the breaker."""
        with self.allow():
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Return ``await fn(*args, **kwargs)`` run through the breaker."""
        with self.allow():
            return await fn(*args, **kwargs)

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn`` (sync or async) so every call goes through the breaker.

        Raises:
            ArgumentTypeError: ``fn`` is a generator function (sync or async): calling
                one only creates the generator, so the breaker would judge nothing.
        """
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise ArgumentTypeError(
                "fn", fn, "a function or a coroutine function, not a generator function"
            )
        if inspect.iscoroutinefunction(fn):
            acall = self.acall

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await acall(fn, *args, **kwargs)

            return guarded_async
        call = self.call

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return call(fn, *args, **kwargs)

        return guarded

    def __enter__(self) -> Permit:
        permit = self.allow()
        _OPEN_BLOCKS.set((*_OPEN_BLOCKS.get(), (self, permit)))
        return permit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        blocks = _OPEN_BLOCKS.get()
        for i in range(len(blocks) - 1, -1, -1):
            if blocks[i][0] is self:
                _OPEN_BLOCKS.set(blocks[:i] + blocks[i + 1 :])
                blocks[i][1].__exit__(exc_type, exc, tb)
                return
        raise RuntimeError(
            f"{self!r}: leaving a `with` block this context never entered "
            "(use `with breaker.allow() as permit:` across contexts)"
        )

    async def __aenter__(self) -> Permit:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
