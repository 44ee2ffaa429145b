"""Retry: run a call again when it fails, with backoff, a budget, and the caller's deadline.

The decision is :class:`~distsys.resilience._retry_policy.RetryPolicy`'s (pure); this
module is the loop around it, once for threads (:meth:`Retry.call`) and once for asyncio
(:meth:`Retry.acall`), sharing everything but the call and the sleep.

What is raised when retrying stops: always the last error the call raised, unchanged
(like Go code returning the last ``err``), so ``except ConnectionError`` means the same
with or without a retry around the call. A note added with ``add_note`` says how many
attempts ran and why retrying stopped: the attempts were exhausted, the next attempt
would start after the context's deadline, the context ended, or the retry budget is
spent. Errors that are not retryable pass through at the attempt that raised them.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from distsys.clock import Clock
from distsys.concurrency._chan import reject_blocking_in_loop
from distsys.context import Context
from distsys.errors import ArgumentTypeError
from distsys.resilience._retry_checks import check_clock, check_context, check_name
from distsys.resilience._retry_policy import (
    EXHAUSTED,
    NEVER_RETRIED,
    NOT_RETRYABLE,
    Backoff,
    ExceptionTypes,
    Random,
    RetryPolicy,
)
from distsys.resilience._retry_wait import sleep_async, sleep_blocking

__all__ = ["Retry", "RetryStatistics"]

P = ParamSpec("P")
T = TypeVar("T")


class Budget(Protocol):
    """What a :class:`Retry` needs from a retry budget (``RetryBudget``, ``NoopRetryBudget``)."""

    def record_request(self) -> None:
        """Count one call."""
        ...

    def try_retry(self) -> bool:
        """Grant and count one retry, or refuse it."""
        ...


@dataclass(frozen=True, slots=True)
class RetryStatistics:
    """What a :class:`Retry` has done since it was created.

    ``calls == successes + not_retried + gave_up`` once no call is in flight.

    Attributes:
        name: the retry's name.
        calls: calls started (a call whose context had already ended is not started).
        attempts: times the function ran.
        retries: attempts after the first of their call.
        successes: calls that returned.
        not_retried: calls that raised an error that is not retryable.
        exhausted: calls that ran every attempt and raised the last error.
        deadline: calls stopped because the next attempt would start after the
            context's deadline, or the context ended.
        budget: calls stopped because the retry budget was spent.
    """

    name: str
    calls: int
    attempts: int
    retries: int
    successes: int
    not_retried: int
    exhausted: int
    deadline: int
    budget: int

    @property
    def gave_up(self) -> int:
        """Calls that raised a retryable error because retrying stopped, for any reason."""
        return self.exhausted + self.deadline + self.budget


def _context_of(kwargs: dict[str, Any]) -> Context | None:
    ctx = kwargs.get("ctx")
    return ctx if isinstance(ctx, Context) else None


class Retry:
    """Retry a failing call with exponential backoff and full jitter, within a deadline.

    ``retry.call(fn, *args, **kwargs)`` runs ``fn`` in the calling thread;
    ``await retry.acall(fn, *args, **kwargs)`` awaits a coroutine function; ``@retry``
    decorates either kind. Between attempts the driver sleeps the policy's backoff delay.

    With ``ctx=`` (a :class:`~distsys.context.Context`), time is the context's: a call
    whose context has ended is not started (its ``ctx.err()`` is raised), and the driver
    never sleeps past the deadline: when the next attempt could only start at or after
    it, it stops and raises the last error. A context cancelled during a backoff sleep
    wakes the sleeper, which stops the same way. ``call``/``acall`` take ``ctx`` for
    themselves; a function decorated with ``@retry`` and called with a Context as its
    ``ctx=`` keyword gets it, and the retry loop honours it too.

    With ``budget=``, each call is recorded and each retry must be granted by the budget
    (shared by every Retry in front of one dependency); when it is spent the driver raises
    the last error.

    Exhaustion raises the last error, with a note (see the module docstring).

    Thread-safe: one Retry may serve any number of threads and tasks at once.

    Args:
        attempts: the most times a call runs, the first included (>= 1).
        base: the ceiling of the first backoff delay, in seconds (> 0).
        cap: the largest backoff delay, in seconds (>= base).
        multiplier: how much the delay ceiling grows per retry (>= 1).
        jitter: full jitter (True) or the bare exponential ceiling (False).
        retry_on: the exception class(es) to retry (default ``Exception``).
        retry_if: a further test an error must pass to be retried, or None.
        budget: a shared retry budget, or None for no budget.
        name: a name for notes, ``repr`` and statistics.
        clock: the clock to sleep on when no context is given.
        rng: the source of the jitter (e.g. ``random.Random(7)`` in tests).

    Raises:
        InvalidArgumentError: a value is out of range (naming the field).
        ArgumentTypeError: a value is of the wrong kind.
    """

    __slots__ = (
        "_attempts",
        "_budget",
        "_budget_stops",
        "_calls",
        "_clock",
        "_deadline_stops",
        "_exhausted",
        "_lock",
        "_not_retried",
        "_retries",
        "_successes",
        "name",
        "policy",
    )

    def __init__(
        self,
        attempts: int = 3,
        *,
        base: float = 0.1,
        cap: float = 10.0,
        multiplier: float = 2.0,
        jitter: bool = True,
        retry_on: ExceptionTypes = Exception,
        retry_if: Callable[[BaseException], bool] | None = None,
        budget: Budget | None = None,
        name: str = "retry",
        clock: Clock | None = None,
        rng: Random | None = None,
    ) -> None:
        self.name = check_name(name)
        backoff = Backoff(base, cap, multiplier=multiplier, jitter=jitter, rng=rng)
        self.policy = RetryPolicy(attempts, backoff=backoff, retry_on=retry_on, retry_if=retry_if)
        if budget is not None and not (
            callable(getattr(budget, "record_request", None))
            and callable(getattr(budget, "try_retry", None))
        ):
            raise ArgumentTypeError("budget", budget, "None or a RetryBudget")
        self._budget = budget
        self._clock = check_clock(clock)
        self._lock = threading.Lock()
        self._calls = self._attempts = self._retries = self._successes = 0
        self._not_retried = self._exhausted = self._deadline_stops = self._budget_stops = 0

    # ------------------------------------------------------------ shared logic

    def _start(self, ctx: Context | None) -> Clock:
        """Refuse a call whose context has ended; count the call; return the clock."""
        if ctx is not None:
            err = ctx.err()
            if err is not None:
                raise err
        with self._lock:
            self._calls += 1
        if self._budget is not None:
            self._budget.record_request()
        return ctx.clock if ctx is not None else self._clock

    def _attempt(self, attempt: int) -> None:
        with self._lock:
            self._attempts += 1
            if attempt > 1:
                self._retries += 1

    def _succeeded(self) -> None:
        with self._lock:
            self._successes += 1

    def _next_delay(self, error: BaseException, attempt: int, ctx: Context | None) -> float | None:
        """Return the delay before the next attempt, or None to stop (noting why)."""
        remaining = None if ctx is None else ctx.remaining()
        decision = self.policy.decide(attempt, error, remaining)
        if decision.reason == NOT_RETRYABLE:
            with self._lock:
                self._not_retried += 1
            if attempt > 1 and not isinstance(error, NEVER_RETRIED):
                error.add_note(
                    f"{self.name}: attempt {attempt} raised an error that is not retried"
                )
        elif ctx is not None and ctx.err() is not None:
            self._stop(error, attempt, "deadline", f"the context ended ({ctx.err()})")
        elif decision.retry:
            if self._budget is None or self._budget.try_retry():
                return decision.delay
            self._stop(error, attempt, "budget", "the retry budget is spent")
        elif decision.reason == EXHAUSTED:
            self._stop(error, attempt, "exhausted", "no attempts left")
        else:
            why = (
                f"the next attempt, {decision.delay:.3f}s away, would start after the "
                f"context's deadline ({max(remaining or 0.0, 0.0):.3f}s left)"
            )
            self._stop(error, attempt, "deadline", why)
        return None

    def _stop(self, error: BaseException, attempt: int, counter: str, why: str) -> None:
        with self._lock:
            if counter == "exhausted":
                self._exhausted += 1
            elif counter == "deadline":
                self._deadline_stops += 1
            else:
                self._budget_stops += 1
        plural = "attempt" if attempt == 1 else "attempts"
        error.add_note(f"{self.name}: gave up after {attempt} {plural}: {why}")

    def _ended_while_sleeping(
        self, error: BaseException, attempt: int, ctx: Context | None
    ) -> None:
        err = None if ctx is None else ctx.err()
        self._stop(error, attempt, "deadline", f"the context ended during the backoff ({err})")

    # ------------------------------------------------------------ the drivers

    def _run(
        self,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: Context | None,
    ) -> T:
        clock = self._start(ctx)
        attempt = 0
        while True:
            attempt += 1
            self._attempt(attempt)
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                delay = self._next_delay(error, attempt, ctx)
                if delay is None:
                    raise
                if delay > 0:
                    reject_blocking_in_loop(f"Retry.call (retrying {error!r})")
                if not sleep_blocking(delay, clock, ctx):
                    self._ended_while_sleeping(error, attempt, ctx)
                    raise
            else:
                self._succeeded()
                return result

    async def _arun(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: Context | None,
    ) -> T:
        clock = self._start(ctx)
        attempt = 0
        while True:
            attempt += 1
            self._attempt(attempt)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as error:
                delay = self._next_delay(error, attempt, ctx)
                if delay is None:
                    raise
                if not await sleep_async(delay, clock, ctx):
                    self._ended_while_sleeping(error, attempt, ctx)
                    raise
            else:
                self._succeeded()
                return result

    def call(
        self, fn: Callable[..., T], /, *args: Any, ctx: Context | None = None, **kwargs: Any
    ) -> T:
        """Call ``fn(*args, **kwargs)`` in this thread, retrying it as the policy says.

        Args:
            fn: the function to call.
            ctx: the caller's context: its deadline bounds the retrying (not passed to
                ``fn``; pass it yourself if ``fn`` takes one).

        Returns:
            What ``fn`` returned.

        Raises:
            BaseException: the last error ``fn`` raised, with a note, once retrying stops.
            ContextError: ``ctx`` had already ended (``fn`` was not called).
            BlockingCallInLoopError: called on an event loop's thread and a backoff sleep
                was needed (use :meth:`acall` there).
        """
        return self._run(fn, args, kwargs, check_context(ctx))

    async def acall(
        self,
        fn: Callable[..., Awaitable[T]],
        /,
        *args: Any,
        ctx: Context | None = None,
        **kwargs: Any,
    ) -> T:
        """Await ``fn(*args, **kwargs)``, retrying it as the policy says; see :meth:`call`.

        Cancelling the awaiting task cancels the attempt or the backoff sleep in progress;
        ``asyncio.CancelledError`` is never retried.
        """
        return await self._arun(fn, args, kwargs, check_context(ctx))

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a function or a coroutine function so that every call is retried.

        A Context passed to the decorated function as its ``ctx=`` keyword bounds the
        retrying too (and is passed on to the function).
        """
        if not callable(fn):
            raise ArgumentTypeError("fn", fn, "a function or a coroutine function")
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def retried_async(*args: Any, **kwargs: Any) -> Any:
                return await self._arun(afn, args, kwargs, _context_of(kwargs))

            return cast(Callable[P, T], retried_async)

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> T:
            return self._run(fn, args, kwargs, _context_of(kwargs))

        return retried

    def statistics(self) -> RetryStatistics:
        """Return the counts since creation."""
        with self._lock:
            return RetryStatistics(
                name=self.name,
                calls=self._calls,
                attempts=self._attempts,
                retries=self._retries,
                successes=self._successes,
                not_retried=self._not_retried,
                exhausted=self._exhausted,
                deadline=self._deadline_stops,
                budget=self._budget_stops,
            )

    def __repr__(self) -> str:
        return f"Retry({self.name!r}, {self.policy!r}, budget={self._budget!r})"
