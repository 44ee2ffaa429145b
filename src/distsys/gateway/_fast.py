"""The fast path: a request without a body, answered from the protocols' callbacks.

Most requests through a gateway are small: no body, a short answer of known length. For
them the whole exchange runs in callbacks, without a task or a future: on the request's
last byte the client connection schedules :func:`begin` (``Frontend.soon``), which matches
the route, takes the rate limit's token, arms the deadline, picks an instance, asks its
breaker, and writes the request on an idle pooled connection
(:meth:`~distsys.http.ConnectionPool.start_nowait`); on the answer's last byte the
upstream connection's parser completes the :class:`FastAnswer`, which (again from a
``Frontend.soon``) writes it to the client in one write and settles the breaker, the
balancer and the counts — exactly as the worker task would (``_proxy.py``). The
deferral lets the loop read all that a round brought before the round's writes go out
together (see ``_downstream.py``); the round's callbacks share one loop handle.

Nothing of a fast answer reaches the client before its last byte has arrived, so one
that breaks off (the upstream closes it, or sends garbage) is still retried, for a
repeatable request, or answered 502.

Whatever is not that common case goes to the connection's worker task, which takes up
the request where the fast path left it (``Exchange.route`` set, the attempt's state on
the exchange):

* before anything was sent — no idle connection to the instance (the task waits for one
  with the pick and the breaker's permit already taken), the instance's breaker open
  (the task tries the next instance);
* when the answer's head shows a body to stream — chunked, close-delimited, or longer
  than the pool's ``read_buffer`` (the task relays it with backpressure);
* after a failed attempt worth retrying — a lost connection, a protocol error, a
  502/503/504 to a repeatable request (the task decides the retry and waits its backoff).

A request with a body, one behind another on the same connection (pipelining), or one
on a route whose rate limit lives in Redis takes the worker task from the start.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from distsys.errors import BreakerOpenError, DistsysError, NoInstancesError
from distsys.gateway._proxy import (
    DEADLINE_ERROR,
    RETRY_STATUSES,
    admit,
    arm,
    balance_key,
    check_limit,
    end,
    give_up,
    settle_cancelled,
    settle_failed,
    unavailable,
)
from distsys.gateway._relay import NO_BODY, answer_error, write_whole
from distsys.http import IDEMPOTENT_METHODS, ConnectionLostError, Response
from distsys.service._client_retry import judge_error

if TYPE_CHECKING:
    from distsys.balancer import Pick
    from distsys.gateway._downstream import Downstream
    from distsys.gateway._exchange import Exchange
    from distsys.gateway._routes import Route
    from distsys.http._connection import Connection
    from distsys.resilience import Permit
    from distsys.service._client_instance import Upstream

__all__ = ["FastAnswer", "begin"]

log = logging.getLogger("distsys.gateway")

_monotonic = time.monotonic
_CONTENT_LENGTH: Final = b"content-length"
_TRANSFER_ENCODING: Final = b"transfer-encoding"


def begin(conn: Downstream, ex: Exchange, route: Route) -> bool:
    """Start answering ``ex`` (no body, the connection's only request) from callbacks.

    Returns:
        False if the request must take the worker task from the start (nothing was
        done); True otherwise — answered, in flight, or handed to the worker task.
    """
    limiter = route.limiter
    if limiter is not None and limiter.remote:
        return False
    admit(conn, ex, route)
    if limiter is not None:
        refused = check_limit(conn, ex, route)
        if refused is not None:
            end(ex, route)
            conn.answered(refused)
            return True
    refused = arm(conn, ex, route)
    if refused is not None:
        end(ex, route)
        conn.answered(refused)
        return True
    target = route.target
    try:
        pick = target.balancer.pick(balance_key(conn, ex, route) if target.hashing else None)
    except NoInstancesError as exc:
        keep = unavailable(conn, ex, route.stats, target, exc)
        end(ex, route)
        conn.answered(keep)
        return True
    instance = pick.instance
    upstream = target.discovery.upstream(instance)
    try:
        permit = upstream.breaker.allow()
    except BreakerOpenError as exc:
        pick.abandon()
        ex.tried = [instance.id]
        ex.last_error = exc
        _hand_over(conn, ex)
        return True
    if _send(conn, ex, route, pick, permit, upstream, replay=False) is None:
        # No idle connection: the worker task waits for one, with the pick and permit.
        ex.pick = pick
        ex.permit = permit
        ex.upstream = upstream
        _hand_over(conn, ex)
    return True


def _send(
    conn: Downstream,
    ex: Exchange,
    route: Route,
    pick: Pick,
    permit: Permit,
    upstream: Upstream,
    *,
    replay: bool,
) -> FastAnswer | None:
    """Write the request on an idle connection of ``upstream``; None if none is idle."""
    pool = upstream.pool
    start = _monotonic()
    head = b"%sX-Request-Timeout-Ms: %d\r\n%s\r\n" % (
        ex.request_line,
        max(int((ex.deadline - start) * 1000), 1),
        b"" if ex.host is not None else b"Host: %s\r\n" % pool.authority,
    )
    try:
        answer = pool.start_nowait(ex.method, head, FastAnswer, replay=replay)
    except DistsysError:  # the pool is closed (stopping): the worker task answers for it
        return None
    if answer is None:
        return None
    answer.conn = conn
    answer.ex = ex
    answer.route = route
    answer.pick = pick
    answer.permit = permit
    answer.upstream = upstream
    answer.start = start
    answer.head = head
    answer.replayed = replay
    ex.fast = answer
    if not replay:
        ex.attempt += 1
    return answer


def _hand_over(conn: Downstream, ex: Exchange) -> None:
    """Let the connection's worker task go on with ``ex`` from the state it carries."""
    ex.fast = None
    route = ex.route
    assert route is not None
    if conn.lost:  # nobody to answer: settle what is held
        response = ex.response
        if response is not None:
            ex.response = None
            response.close()
        if ex.pick is not None and ex.permit is not None:
            ex.permit.ignore()
            ex.pick.abandon()
        ex.pick = ex.permit = ex.upstream = None
        end(ex, route)
        return
    conn.resume_in_worker(ex)


class FastAnswer(Response):
    """An upstream response that answers its request itself, from the connection's
    callbacks (see the module docstring). Loop-bound; the fields are set by :func:`begin`.

    Once it has handed its request to the worker task (``ex`` None), it is a plain
    :class:`~distsys.http.Response`.
    """

    __slots__ = ("conn", "ex", "head", "permit", "pick", "replayed", "route", "start", "upstream")

    conn: Downstream
    ex: Exchange | None
    route: Route
    pick: Pick
    permit: Permit
    upstream: Upstream
    start: float
    head: bytes
    replayed: bool

    # ------------------------------------------------ fed by the connection

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.raw_headers = headers
        ex = self.ex
        if ex is None:
            self._wake()
            return
        if self.method == b"HEAD" or status in NO_BODY:
            return  # no body: the answer goes down in one write
        small = False
        for name, value in headers:  # a known length within the read buffer?
            size = len(name)
            if size == 14 and name.lower() == _CONTENT_LENGTH:
                try:
                    small = int(value) <= self._high
                except ValueError:
                    small = False
                    break
            elif size == 17 and name.lower() == _TRANSFER_ENCODING:
                small = False
                break
        if small:
            return  # wait for the last byte: the answer goes down in one write
        # A body to stream: the worker task relays it, with backpressure.
        self.ex = None
        ex.response = self
        ex.pick = self.pick
        ex.permit = self.permit
        ex.upstream = self.upstream
        ex.attempt_start = self.start
        _hand_over(self.conn, ex)

    def _feed(self, chunk: bytes) -> None:
        if self.ex is None:
            Response._feed(self, chunk)
        else:  # a known length within the read buffer: nobody waits, nothing to pause
            self._chunks.append(chunk)
            self._size += len(chunk)

    def _complete(self) -> None:
        ex = self.ex
        if ex is None:
            Response._complete(self)
            return
        self._done = True  # as Response._complete, without a guard or a waiter to wake
        self._conn = None
        # Relayed once the loop has read what this round brought: the writes of a
        # round go out together (see the module docstring).
        self.conn.front.soon(self._deliver)

    def _deliver(self) -> None:
        ex = self.ex
        if ex is None:
            return  # expired, or the client left, meanwhile
        self.ex = None
        try:
            self._answer(ex)
        except Exception:
            self._crash(ex)

    def _fail(self, exc: BaseException) -> None:
        upconn = self._conn
        Response._fail(self, exc)
        ex = self.ex
        if ex is not None:
            self.ex = None
            try:
                self._failed(ex, exc, upconn)
            except Exception:
                self._crash(ex)

    # ------------------------------------------------------------ outcomes

    def _answer(self, ex: Exchange) -> None:
        """The whole answer is here: relay it, settle the attempt."""
        ex.fast = None
        conn = self.conn
        route = self.route
        stats = route.stats
        status = self.status
        chunks = self._chunks
        if len(chunks) == 1:
            content = chunks.popleft()
        else:
            content = b"".join(chunks)
            chunks.clear()
        self._size = 0
        now = _monotonic()
        upstream = self.upstream
        permit = self.permit
        pick = self.pick
        if (
            status in RETRY_STATUSES
            and ex.method in route.retry_methods
            and ex.attempt < route.attempts
        ):
            upstream.record(now - self.start, True)
            permit.failure()
            pick.done(error=True)
            stats.error(f"status_{status}")
            ex.kept = (self, content)
            ex.tried = [pick.instance.id]
            ex.retry_pending = True
            _hand_over(conn, ex)
            return
        keep = write_whole(conn, ex, self, content)
        if status < 500:
            upstream.record(now - self.start, False)
            permit.success()
            pick.done()
        else:
            upstream.record(now - self.start, True)
            permit.failure()
            pick.done(error=True)
        stats.record(status, now - ex.started)
        end(ex, route)
        conn.answered(keep)

    def _failed(self, ex: Exchange, exc: BaseException, upconn: Connection | None) -> None:
        """The attempt failed before its answer's end (which was never relayed)."""
        ex.fast = None
        conn = self.conn
        route = self.route
        if (
            isinstance(exc, ConnectionLostError)
            and not self.replayed
            and upconn is not None
            and upconn.requests > 1
            and not upconn.received
            and ex.method in IDEMPOTENT_METHODS
        ):
            # A pooled connection the upstream had closed: once more on a fresh one, as
            # ConnectionPool.send does (not the instance's failure).
            if _send(conn, ex, route, self.pick, self.permit, self.upstream, replay=True):
                return
            ex.attempt -= 1  # the worker task counts it when it sends
            ex.pick = self.pick
            ex.permit = self.permit
            ex.upstream = self.upstream
            _hand_over(conn, ex)
            return
        stats = route.stats
        upstream = self.upstream
        permit = self.permit
        pick = self.pick
        repeatable = ex.method in route.retry_methods
        verdict = judge_error(exc, repeatable=repeatable, call_ended=False)
        counts = verdict is None or verdict.counts
        settle_failed(exc, counts, permit, pick, upstream, stats, self.start)
        ex.last_error = exc if isinstance(exc, Exception) else DEADLINE_ERROR
        ex.kept = None
        if verdict is not None and verdict.retryable and ex.attempt < route.attempts:
            ex.tried = [pick.instance.id]
            ex.retry_pending = True
            _hand_over(conn, ex)
            return
        keep = give_up(conn, ex, stats, exc)
        end(ex, route)
        conn.answered(keep)

    def expire(self) -> None:
        """The request's deadline passed: drop the upstream exchange, answer 504."""
        ex = self.ex
        if ex is None:
            return
        self.ex = None
        ex.fast = None
        self._abandon()  # its connection is closed, never reused
        route = self.route
        settle_cancelled(ex, self.permit, self.pick, self.upstream, self.start)
        stats = route.stats
        stats.error("timeout")
        seconds = route.timeout if ex.budget is None else min(route.timeout, ex.budget)
        keep = answer_error(
            self.conn, ex, stats, 504, f"deadline exceeded: no answer within {seconds:g}s"
        )
        end(ex, route)
        self.conn.answered(keep)

    def cancel(self) -> None:
        """The client left: drop the upstream exchange without an outcome."""
        ex = self.ex
        if ex is None:
            return
        self.ex = None
        ex.fast = None
        self._abandon()
        self.permit.ignore()
        self.pick.abandon()
        end(ex, self.route)

    def _crash(self, ex: Exchange) -> None:
        """A bug in the code above: log it, and drop the client's connection."""
        log.exception("the gateway failed to relay an answer (request %r)", ex.request_id)
        transport = self.conn.transport
        if transport is not None:
            transport.abort()
