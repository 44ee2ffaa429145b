"""ConnectionPool: keep-alive HTTP/1.1 connections to one upstream, and the request path.

Idle connections are reused last-in first-out (the warmest first; the coldest age out),
at most ``max_idle`` are kept, and one idle longer than ``idle_timeout`` is closed by a
sweep armed only while something is idle. At most ``max_connections`` are open; further
requests queue, first come first served, until one is released or a slot frees, bounded
by their Context. A connection the server closed while it sat idle leaves the pool when
the close is noticed; a request that finds it closed just before writing moves to another
connection, and a request written to a reused connection that closes without one byte of
response is sent once more on a fresh connection — if it is idempotent and its body is
not a consumed stream (the server may have processed a non-idempotent one).

``start_nowait`` is the callback-driven twin of ``send`` for a proxy's common case — a
request without a body and an idle connection ready: it writes the request and returns
at once; the connection's callbacks then drive a :class:`Response` subclass directly,
with no task woken and no future per response.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from distsys.clock import MonotonicClock, TimerHandle
from distsys.errors import ArgumentTypeError, DistsysError, InvalidArgumentError
from distsys.http._connect import open_connection
from distsys.http._connection import Connection
from distsys.http._errors import ConnectionLostError
from distsys.http._guard import Guard, context_error
from distsys.http._options import PoolOptions
from distsys.http._request import Body, Prepared, prepare
from distsys.http._response import Response
from distsys.http._statistics import PoolStatistics

if TYPE_CHECKING:
    from distsys.context import Context
    from distsys.http._headers import HeaderInput

__all__ = ["ConnectionPool"]

R = TypeVar("R", bound=Response)


def _authority(host: str, port: int) -> tuple[str, bytes]:
    shown = f"[{host}]" if ":" in host else host
    address = f"{shown}:{port}"
    name = shown.encode("ascii") if shown.isascii() else shown.encode("idna")
    return address, name if port == 80 else b"%s:%d" % (name, port)


class ConnectionPool:
    """Pooled keep-alive HTTP/1.1 connections to one ``(host, port)``; see the module doc.

    ``await pool.request("GET", "/path", headers, body, ctx=ctx)`` returns a
    :class:`Response` once its status and headers have arrived. The request's Context
    bounds everything — queueing for a connection, connecting, sending, waiting for the
    response and reading its body: when it ends the request fails with
    :class:`~distsys.errors.DeadlineExceededError` (or ``CanceledError``) and its
    connection is closed, never reused.

    Safe within one event loop (it binds to the loop of its first request); not
    thread-safe. Close it with ``await pool.aclose()``.

    Args:
        host: the upstream's host name or address.
        port: its port.
        max_connections: the most connections open at once (>= 1; default 100).
        max_idle: the most idle connections kept (>= 0; default ``max_connections``).
        idle_timeout: seconds an idle connection is kept (default 4, under uvicorn's
            5 s keep-alive, so the pool closes it before the server does).
        connect_timeout: seconds a connection may take to open (default 5).
        max_header_bytes: the largest response header section accepted (default 64 KiB).
        max_headers: the most response headers accepted (default 100).
        read_buffer: the bytes of unread body held per response before the connection
            stops reading its socket (default 64 KiB).
        clock: the time source of the idle sweep and connect timeout (default
            ``MonotonicClock()``); its timers must fire on the loop's thread.
        options: the limits validated once, instead of the keywords (used by
            ``HTTPClient``).

    Raises:
        InvalidArgumentError / ArgumentTypeError: a setting is invalid.
    """

    __slots__ = (
        "_authority",
        "_clock",
        "_closed",
        "_connect_errors",
        "_idle",
        "_loop",
        "_max_connections",
        "_max_header_bytes",
        "_max_headers",
        "_max_idle",
        "_n_closed",
        "_n_evicted",
        "_now",
        "_open",
        "_opened",
        "_options",
        "_read_buffer",
        "_requests",
        "_reused",
        "_spare",
        "_stale_retries",
        "_sweeper",
        "_waiters",
        "address",
        "host",
        "port",
    )

    def __init__(
        self, host: str, port: int, *, options: PoolOptions | None = None, **limits: Any
    ) -> None:
        if not isinstance(host, str) or not host:
            raise ArgumentTypeError("host", host, "a non-empty host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidArgumentError("port", port, "an int in 1..65535")
        if options is None:
            options = PoolOptions(**limits)
        elif limits:
            raise InvalidArgumentError("options", options, "either options= or the limits")
        self.host = host.strip("[]")
        self.port = port
        self.address, self._authority = _authority(self.host, port)
        self._options = options
        self._clock = options.clock
        # time.monotonic itself when the clock is the real one: a method call less on
        # every connection given back
        self._now: Callable[[], float] = (
            time.monotonic if type(self._clock) is MonotonicClock else self._clock.now
        )
        self._max_connections = options.max_connections
        self._max_idle = options.max_idle
        self._max_header_bytes = options.max_header_bytes
        self._max_headers = options.max_headers
        self._read_buffer = options.read_buffer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: deque[Connection] = deque()
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
        self._open = 0
        self._sweeper: TimerHandle | None = None
        self._spare: asyncio.Task[None] | None = None  # a connection being opened ahead
        self._closed = False
        self._requests = 0
        self._reused = 0
        self._opened = 0
        self._n_closed = 0
        self._n_evicted = 0
        self._connect_errors = 0
        self._stale_retries = 0

    # ------------------------------------------------------------- requests

    async def request(
        self,
        method: str | bytes,
        target: str | bytes,
        headers: HeaderInput = None,
        body: Body = None,
        *,
        ctx: Context | None = None,
    ) -> Response:
        """Send one request; return the response once its status and headers arrived.

        Args:
            method: ``"GET"``, ``b"POST"`` ...
            target: the path with its query, starting with ``/``.
            headers: a mapping, or ``(name, value)`` pairs of str or bytes; ``Host`` is
                added unless given; framing headers are the transport's (see
                :func:`~distsys.http.prepare`'s rules in the docs).
            body: bytes, an async iterable of bytes chunks (sent chunked, or as the
                ``Content-Length`` given in ``headers``), or None.
            ctx: the Context that bounds the whole exchange, body included.

        Raises:
            ConnectError: no connection could be opened.
            ConnectionLostError: the connection failed before the response's head.
            ProtocolError: the response is not valid HTTP/1.1 or breaks the limits.
            DeadlineExceededError / CanceledError: ``ctx`` ended first.
            InvalidArgumentError: the request is not acceptable.
        """
        return await self.send(prepare(method, target, self._authority, headers, body), ctx)

    async def send(self, request: Prepared, ctx: Context | None = None) -> Response:
        """Send a request encoded with :func:`~distsys.http.prepare` (see :meth:`request`)."""
        loop = self._loop
        if loop is None:
            loop = self._bind()
        elif loop is not asyncio.get_running_loop():
            raise DistsysError(
                f"the connection pool of {self.address} belongs to another event loop "
                "(use one client per loop)"
            )
        if self._closed:
            raise DistsysError(f"the connection pool of {self.address} is closed")
        guard: Guard | None = None
        if ctx is not None:
            node = ctx._node
            if node.deadline is not None or node.cancellable:
                if node.err() is not None:
                    raise context_error(ctx, self.address)
                guard = Guard(ctx, loop, self.address)
        self._requests += 1
        # The exchange runs here, not in one more coroutine: a layer costs on every request.
        try:
            retried = False
            body = request.body
            data = body if type(body) is bytes else None
            while True:
                if guard is not None and guard.fired:
                    raise guard.error()
                idle = self._idle
                conn = idle.pop() if idle else await self._acquire(guard)
                transport = conn.transport
                if conn.closed or transport is None or transport.is_closing():
                    conn.abort()  # nothing was sent on it
                    if not conn.requests:  # a new one: the server closes what it accepts
                        raise ConnectionLostError(
                            self.address,
                            "the server closed the connection as soon as it was opened",
                            request_sent=False,
                        )
                    continue  # closed while idle, or while handed over: take another
                conn.idle_since = 0.0
                reused = conn.requests > 0
                if reused:
                    self._reused += 1
                response = Response(request.method, self.address, conn, guard, self._read_buffer)
                if guard is not None:
                    guard.conn = conn
                try:
                    conn.start(response, request.head, data, request.close)
                    if data is None and body is not None:
                        assert not isinstance(body, bytes | bytearray | memoryview)
                        if ctx is not None and guard is not None:
                            async with ctx.scope():  # the body's iterator may block: cancel it
                                await conn.send_stream(body, request.length)
                        else:
                            await conn.send_stream(body, request.length)
                    while not response.status:  # awaited here, not in a coroutine of its own
                        if response._error is not None:
                            raise response._error
                        waiter = response._waiter = loop.create_future()
                        try:
                            await waiter
                        finally:
                            response._waiter = None
                    response._handed = True
                    if response._done:
                        response._release_guard()
                except ConnectionLostError:
                    if (
                        not retried
                        and reused
                        and not conn.received
                        and request.idempotent
                        and request.replayable
                    ):
                        retried = True
                        self._stale_retries += 1
                        continue
                    raise
                except BaseException:
                    response._abandon()
                    raise
                return response
        except BaseException:
            if guard is not None:
                guard.close()
            raise

    def start_nowait(
        self, method: bytes, head: bytes, response: type[R], *, replay: bool = False
    ) -> R | None:
        """Start a request without a body on an idle connection, without waiting.

        The caller learns the outcome from the response's connection-fed hooks (see
        :class:`Response`): nothing awaits it, no Context bounds it — the caller owns
        its deadline and ends it with ``response.close()``. Call it on the pool's loop
        (the pool binds to the loop of its first :meth:`send`).

        Args:
            method: the method, as in the head.
            head: the encoded head (request line, headers, blank line).
            response: the :class:`Response` subclass to make.
            replay: the request is sent again because the pooled connection it went out
                on turned out closed: count it in ``stale_retries`` (also when None is
                returned: the caller then sends it with :meth:`send`).

        Returns:
            The response (its head has not arrived), or None when no connection is idle
            (nothing was sent; use :meth:`send`). A miss starts opening one more
            connection in the background, within ``max_connections``, so that a pool
            serving requests this way grows to their concurrency.

        Raises:
            DistsysError: the pool is closed.
        """
        if self._closed:
            raise DistsysError(f"the connection pool of {self.address} is closed")
        if replay:
            self._stale_retries += 1
        idle = self._idle
        while idle:
            conn = idle.pop()
            transport = conn.transport
            if conn.closed or transport is None or transport.is_closing():
                conn.abort()  # closed while idle: nothing was sent on it
                continue
            conn.idle_since = 0.0
            self._requests += 1
            self._reused += 1
            made = response(method, self.address, conn, None, self._read_buffer)
            conn.start(made, head, None, False)
            return made
        if self._spare is None and self._open < self._max_connections and self._loop is not None:
            # Open one more connection for the next requests: without it, requests that
            # find none idle would wait for a busy one and the pool would never grow to
            # the concurrency it serves.
            self._open += 1
            self._spare = self._loop.create_task(self._open_spare())
        return None

    async def _open_spare(self) -> None:
        """Open a connection in a slot already counted in ``_open``; pool it as idle."""
        try:
            conn = await self._connect(None)
        except (Exception, asyncio.CancelledError):
            return  # counted by _connect (connect_errors); the next request retries
        finally:
            self._spare = None
        self._release(conn)

    # ---------------------------------------------------------- connections

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = self._loop = asyncio.get_running_loop()
        return loop

    async def _acquire(self, guard: Guard | None) -> Connection:
        """Return a connection: a new one if there is room, else the next one released."""
        if self._open < self._max_connections:
            self._open += 1
            return await self._connect(guard)
        assert self._loop is not None
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        if guard is not None:
            guard.waiter = waiter
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed over just as we gave up
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        finally:
            if guard is not None:
                guard.waiter = None
        if conn is None:  # a slot freed and was reserved for us
            return await self._connect(guard)
        return conn

    def _give_back(self, conn: Connection | None) -> None:
        if conn is None:
            self._open -= 1
            self._wake_one()
        else:
            self._release(conn)

    async def _connect(self, guard: Guard | None) -> Connection:
        """Open a connection in a slot already counted in ``_open``."""
        assert self._loop is not None
        conn = Connection(self)
        try:
            await open_connection(
                self._loop, conn, self._options.connect_timeout, self._clock, guard
            )
        except BaseException as exc:
            conn.closed = True  # never counted as open: its close must not be discarded
            self._open -= 1
            if isinstance(exc, OSError):  # ConnectError too; not a deadline or cancellation
                self._connect_errors += 1
            self._wake_one()
            raise
        self._opened += 1
        if self._closed:
            conn.abort()
            raise DistsysError(f"the connection pool of {self.address} is closed")
        return conn

    def _release(self, conn: Connection) -> None:
        """Take back a connection whose response is complete (called by the connection)."""
        if self._closed:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if len(self._idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = self._now()
        self._idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._clock.call_later(self._options.idle_timeout, self._sweep)

    def _discard(self, conn: Connection) -> None:
        """Forget a connection that closed (called once per connection, by itself)."""
        self._open -= 1
        self._n_closed += 1
        if conn.idle_since:
            conn.idle_since = 0.0
            with contextlib.suppress(ValueError):
                self._idle.remove(conn)
        self._wake_one()

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters and self._open < self._max_connections:
            waiter = waiters.popleft()
            if not waiter.done():
                self._open += 1  # the slot is reserved for that waiter
                waiter.set_result(None)
                return

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock.now()
        timeout = self._options.idle_timeout
        idle = self._idle
        while idle and idle[0].idle_since + timeout <= now:
            conn = idle.popleft()
            conn.idle_since = 0.0
            self._n_evicted += 1
            conn.close()
        if idle and not self._closed:
            delay = idle[0].idle_since + timeout - now
            self._sweeper = self._clock.call_later(delay, self._sweep)

    # ------------------------------------------------------------- the rest

    def statistics(self) -> PoolStatistics:
        """Return the connections now and the counts since creation."""
        idle = len(self._idle)
        waiting = sum(1 for w in self._waiters if not w.done())
        return PoolStatistics(
            address=self.address,
            connections=self._open,
            idle=idle,
            busy=self._open - idle,
            waiting=waiting,
            requests=self._requests,
            reused=self._reused,
            opened=self._opened,
            closed=self._n_closed,
            evicted=self._n_evicted,
            connect_errors=self._connect_errors,
            stale_retries=self._stale_retries,
        )

    async def aclose(self) -> None:
        """Close the pool: idle connections now, busy ones once their response has arrived.

        Requests queued for a connection fail; later requests are refused. Idempotent.
        """
        self.close()

    def close(self) -> None:
        """The synchronous :meth:`aclose`: nothing to wait for."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._spare is not None:
            self._spare.cancel()
        while self._idle:
            conn = self._idle.pop()
            conn.idle_since = 0.0
            conn.close()
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_exception(DistsysError(f"the connection pool of {self.address} closed"))

    @property
    def authority(self) -> bytes:
        """The ``Host`` header value for this upstream (for :func:`~distsys.http.prepare`)."""
        return self._authority

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._closed

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ConnectionPool {self.address} open={self._open} idle={len(self._idle)}>"
