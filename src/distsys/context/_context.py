"""Context: cancellation, deadlines and request-scoped values, after Go's ``context``."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from distsys.clock import Clock, MonotonicClock, TimerHandle
from distsys.errors import (
    ArgumentTypeError,
    CanceledError,
    ChannelClosedError,
    ContextError,
    DeadlineExceededError,
    InvalidArgumentError,
)

if TYPE_CHECKING:
    from distsys.concurrency._chan import Chan
    from distsys.context._scope import Scope

__all__ = [
    "CancelFunc",
    "Context",
    "Done",
    "background",
    "with_cancel",
    "with_deadline",
    "with_timeout",
    "with_value",
]


_NO_KEY: Any = object()  # marks a context that binds no value


class CancelFunc(Protocol):
    """Cancels its context (and every context derived from it); idempotent."""

    def __call__(self, cause: BaseException | None = None) -> None: ...


class _Node:
    """The cancellation state shared by a context and the value contexts below it.

    A node ends once, with an error (CanceledError or DeadlineExceededError); ending
    closes its done channel, ends its children with the same error, and runs the
    callbacks of scopes bound to it. Deadlines are checked lazily (whenever someone asks)
    and by timers armed only while someone waits, so an idle context costs nothing.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_chan",
        "_children",
        "_err",
        "_lock",
        "cancellable",
        "clock",
        "deadline",
        "parent",
    )

    def __init__(
        self, parent: _Node | None, deadline: float | None, clock: Clock, *, cancellable: bool
    ) -> None:
        self.parent = parent
        self.deadline = deadline
        self.clock = clock
        self.cancellable = cancellable
        self._err: ContextError | None = None
        self._chan: Chan[None] | None = None
        self._children: weakref.WeakSet[_Node] = weakref.WeakSet()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._lock = threading.Lock()

    def err(self) -> ContextError | None:
        err = self._err
        if err is None and self.deadline is not None and self.clock.now() >= self.deadline:
            self.end(DeadlineExceededError())
            err = self._err
        return err

    def end(self, err: ContextError) -> bool:
        with self._lock:
            if self._err is not None:
                return False
            self._err = err
            chan, self._chan = self._chan, None
            children = list(self._children)
            self._children.clear()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        if chan is not None:
            chan.close()
        for child in children:
            child.end(err)
        for callback in callbacks:
            callback()
        parent = self.parent
        if parent is not None and parent.cancellable:
            with parent._lock:
                parent._children.discard(self)
        return True

    def adopt(self, child: _Node) -> None:
        """Register ``child`` so that ending this node ends it too."""
        if not self.cancellable:
            return
        with self._lock:
            err = self._err
            if err is None:
                self._children.add(child)
        if err is not None:
            child.end(err)

    def chan(self) -> Chan[None]:
        """Return a channel that is (or will be) closed when this node ends."""
        from distsys.concurrency._chan import Chan

        self.err()  # settle a deadline that has passed
        with self._lock:
            if self._chan is None:
                self._chan = Chan(clock=self.clock)
                if self._err is not None:
                    self._chan.close()
            return self._chan

    def on_end(self, callback: Callable[[], object]) -> int | None:
        """Call ``callback`` when this node ends (now, if it has); a key to remove it."""
        self.err()
        with self._lock:
            if self._err is None:
                key = id(callback)
                self._callbacks[key] = callback
                return key
        callback()
        return None

    def remove_callback(self, key: int | None) -> None:
        if key is not None:
            with self._lock:
                self._callbacks.pop(key, None)

    def arm(self) -> TimerHandle | None:
        """Start a timer that ends this node at its deadline (for someone who waits)."""
        if self.deadline is None or self._err is not None:
            return None
        return self.clock.call_later(self.deadline - self.clock.now(), self._on_deadline)

    def _on_deadline(self) -> None:
        self.end(DeadlineExceededError())


class Done:
    """The "context has ended" signal: await it, wait on it from a thread, or select on it.

    ``await ctx.done`` returns once the context is cancelled or its deadline passes;
    ``ctx.done.wait_blocking(timeout)`` does the same for a thread;
    ``await select(ctx.done, jobs.recv)`` wakes on whichever comes first.
    Thread-safe.
    """

    __slots__ = ("_node",)

    def __init__(self, node: _Node) -> None:
        self._node = node

    def is_set(self) -> bool:
        """Return whether the context has ended."""
        return self._node.err() is not None

    async def wait(self) -> None:
        """Wait until the context ends."""
        node = self._node
        if node.err() is not None:
            return
        chan = node.chan()
        timer = node.arm()
        try:
            await chan.recv()
        except ChannelClosedError:
            return
        finally:
            if timer is not None:
                timer.cancel()

    def __await__(self) -> Any:
        return self.wait().__await__()

    def wait_blocking(self, timeout: float | None = None) -> bool:
        """Block the calling thread until the context ends or ``timeout`` seconds pass.

        Returns:
            True if the context has ended, False if the timeout came first.
        """
        from distsys.concurrency._chan import check_timeout

        check_timeout(timeout)
        node = self._node
        clock = node.clock
        give_up = None if timeout is None else clock.now() + timeout
        chan = node.chan()
        while node.err() is None:
            now = clock.now()
            waits = [t - now for t in (give_up, node.deadline) if t is not None]
            try:
                chan.recv_blocking(timeout=max(min(waits), 0.0) if waits else None)
            except ChannelClosedError:
                return True
            except DeadlineExceededError:
                if give_up is not None and clock.now() >= give_up:
                    return node.err() is not None
        return True

    def _select_channel(self) -> Chan[None]:
        return self._node.chan()

    def _select_arm(self) -> TimerHandle | None:
        return self._node.arm()

    def __repr__(self) -> str:
        return f"<Done set={self.is_set()}>"


class Context:
    """Go's ``context.Context``: a deadline, a cancellation signal, and request values.

    Contexts form a tree. Cancelling one cancels every context derived from it; a child's
    deadline is never later than its parent's. Contexts are immutable: derive a new one
    with :func:`with_cancel`, :func:`with_timeout`, :func:`with_deadline` or
    :func:`with_value`. A context is ended by its cancel function, by a parent, or when
    its deadline passes; ``err()`` then says why.

    Use ``async with ctx.scope():`` to run an asyncio block that is cancelled when the
    context ends; threads check ``ctx.err()`` or wait on ``ctx.done``.

    Thread-safe: share a context freely between tasks, loops and threads.
    """

    __slots__ = ("_key", "_node", "_parent", "_value")

    def __init__(
        self, node: _Node, parent: Context | None = None, key: Any = _NO_KEY, value: Any = None
    ) -> None:
        self._node = node
        self._parent = parent
        self._key = key
        self._value = value

    def err(self) -> ContextError | None:
        """Return None while the context is live, else why it ended.

        Returns:
            None, a :class:`CanceledError`, or a :class:`DeadlineExceededError`.
        """
        return self._node.err()

    def deadline(self) -> float | None:
        """Return the deadline on this context's clock, or None if there is none."""
        return self._node.deadline

    def remaining(self) -> float | None:
        """Return the seconds left until the deadline (<= 0 once passed), or None."""
        deadline = self._node.deadline
        return None if deadline is None else deadline - self._node.clock.now()

    @property
    def clock(self) -> Clock:
        """The clock deadlines are measured on (inherited from the root context)."""
        return self._node.clock

    @property
    def done(self) -> Done:
        """The signal that this context has ended (awaitable, thread-waitable, selectable)."""
        return Done(self._node)

    def value(self, key: Any, default: Any = None) -> Any:
        """Return the value bound to ``key`` here or in an ancestor, else ``default``."""
        ctx: Context | None = self
        while ctx is not None:
            if ctx._key is not _NO_KEY and ctx._key == key:
                return ctx._value
            ctx = ctx._parent
        return default

    def scope(self, *, raise_error: bool = True) -> Scope:
        """Return an async context manager that cancels its block when this context ends.

        Args:
            raise_error: when the block was cancelled because the context ended, raise
                :class:`DeadlineExceededError` (a ``TimeoutError``) or
                :class:`CanceledError` on leaving it (the default); if False, leave the
                block silently and record it in ``scope.cancelled_caught``.
        """
        from distsys.context._scope import Scope

        return Scope(self, raise_error=raise_error)

    def __repr__(self) -> str:
        err = self.err()
        state = "live" if err is None else type(err).__name__
        remaining = self.remaining()
        deadline = "" if remaining is None else f" remaining={remaining:.3f}s"
        return f"<Context {state}{deadline}>"


def background(*, clock: Clock | None = None) -> Context:
    """Return a new root context: never cancelled, no deadline, no values.

    Args:
        clock: the clock that this context and everything derived from it measure
            deadlines on (default: the monotonic clock).
    """
    clock = clock if clock is not None else MonotonicClock()
    return Context(_Node(None, None, clock, cancellable=False))


def _check_parent(parent: object) -> Context:
    if not isinstance(parent, Context):
        raise ArgumentTypeError("parent", parent, "a Context (start from background())")
    return parent


def _derive(parent: Context, deadline: float | None) -> tuple[Context, CancelFunc]:
    pnode = parent._node
    if pnode.deadline is not None and (deadline is None or pnode.deadline < deadline):
        deadline = pnode.deadline
    node = _Node(pnode, deadline, pnode.clock, cancellable=True)
    pnode.adopt(node)
    ctx = Context(node, parent)

    def cancel(cause: BaseException | None = None) -> None:
        node.end(CanceledError(cause=cause))

    return ctx, cancel


def with_cancel(parent: Context) -> tuple[Context, CancelFunc]:
    """Derive a context that ends when ``cancel()`` is called or the parent ends.

    Returns:
        ``(ctx, cancel)``. Call ``cancel`` when the work is finished, to release the
        child from its parent.
    """
    return _derive(_check_parent(parent), None)


def with_deadline(parent: Context, deadline: float) -> tuple[Context, CancelFunc]:
    """Derive a context that also ends at ``deadline`` (a time on the parent's clock).

    The child's deadline is the earlier of ``deadline`` and the parent's.
    """
    _check_parent(parent)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float):
        raise ArgumentTypeError("deadline", deadline, "a time on the context's clock (seconds)")
    return _derive(parent, float(deadline))


def with_timeout(parent: Context, timeout: float) -> tuple[Context, CancelFunc]:
    """Derive a context that also ends ``timeout`` seconds from now.

    Raises:
        InvalidArgumentError: ``timeout`` is negative or not a number.
    """
    _check_parent(parent)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ArgumentTypeError("timeout", timeout, "a number of seconds >= 0")
    if not timeout >= 0:
        raise InvalidArgumentError("timeout", timeout, "a number of seconds >= 0")
    return _derive(parent, parent._node.clock.now() + timeout)


def with_value(parent: Context, key: Any, value: Any) -> Context:
    """Derive a context that carries ``value`` under ``key``; cancellation is the parent's.

    Use a private object or class as the key (not a bare string) to avoid collisions
    between libraries, as Go recommends.
    """
    _check_parent(parent)
    return Context(parent._node, parent, key, value)
