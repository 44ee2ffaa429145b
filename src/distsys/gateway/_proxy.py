"""The request path: rate limit, deadline, then attempts — pick, breaker, send, relay.

Per attempt, as ``ServiceClient`` does it (and with its rules, ``_client_retry``): the
route's balancer picks an instance not tried yet, its breaker admits the call (or the
next instance is tried), the request goes out on the instance's pooled connection with
the remaining budget in ``X-Request-Timeout-Ms``, and the outcome goes back to the
breaker and the balancer. A failure is retried on another instance when that is safe —
always if nothing was sent; if the request may have been processed, only for an
idempotent method without a body — within the route's ``retries`` (attempts), the
deadline, and the target's retry limit (at most 3 + 20% of its requests in flight may
be retries at once: Envoy's retry circuit breaker), after a jittered backoff. A
502/503/504 answer to a repeatable request is retried too (its body, at most 64 KiB,
is kept to be relayed if no other instance is left).

This is the general path, run by the client connection's worker task: requests with a
body, pipelined ones, routes with a Redis rate limit, and whatever the fast path
(``_fast.py``) hands over — it then takes the attempts up where they were, from the
state on the :class:`Exchange` (``route`` set: admitted and armed already). The steps
both paths share are here: :func:`admit`, :func:`arm` and :func:`end` around a
request, and the answers for the ways it can fail.

The answer is relayed as it arrives (``_relay.py``): status and headers at once, the
body chunk by chunk with backpressure; one that has wholly arrived by the time its head
is relayed goes out in one write.

The request head is encoded once per request (``Exchange.request_line``, from bytes the
downstream parser prepared) plus one line per attempt for the budget, and sent with
``ConnectionPool.send``: the transport's framing rules apply, without re-checking
headers llhttp already checked.

The deadline (``_deadlines.py``) cancels the connection's worker task; the cancellation
is caught here and answered with 504 (or, once the head was sent, the connection is
cut).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final

from distsys.errors import (
    BackendUnavailableError,
    BreakerOpenError,
    DeadlineExceededError,
    NoInstancesError,
)
from distsys.gateway._body import BodyTooLargeError, ClientGoneError
from distsys.gateway._relay import NO_BODY, answer_error, stream, write_whole
from distsys.http import (
    ConnectError,
    ConnectionLostError,
    Prepared,
    ProtocolError,
    UpstreamError,
)
from distsys.resilience import BreakerState
from distsys.service._client_errors import no_instances
from distsys.service._client_retry import judge_error

if TYPE_CHECKING:
    from distsys.balancer import Pick
    from distsys.gateway._downstream import Downstream
    from distsys.gateway._exchange import Exchange
    from distsys.gateway._routes import Route
    from distsys.gateway._stats import RouteStats
    from distsys.gateway._targets import Target
    from distsys.resilience import Permit
    from distsys.service._client_instance import Upstream

__all__ = [
    "DEADLINE_ERROR",
    "RETRY_STATUSES",
    "admit",
    "arm",
    "balance_key",
    "check_limit",
    "end",
    "error_kind",
    "forward",
    "give_up",
    "settle_cancelled",
    "unavailable",
]

RETRY_STATUSES: Final = frozenset({502, 503, 504})
_KEEP_MAX: Final = 65536  # the largest 5xx body kept to be relayed after failed retries
DEADLINE_ERROR: Final = DeadlineExceededError("the gateway's deadline for the request passed")
_monotonic = time.monotonic


def admit(conn: Downstream, ex: Exchange, route: Route) -> None:
    """Count ``ex`` in flight on ``route`` (undone by :func:`end`)."""
    route.stats.in_flight += 1
    route.target.in_flight += 1
    ex.conn = conn
    ex.route = route


def arm(conn: Downstream, ex: Exchange, route: Route) -> bool | None:
    """Give ``ex`` its deadline and encode its request line; answer 504 (and return
    keep-alive) if the deadline has passed already."""
    timeout = route.timeout
    budget = ex.budget
    if budget is not None and budget < timeout:
        timeout = budget
    deadline = ex.started + timeout
    if deadline <= _monotonic():
        route.stats.error("timeout")
        return answer_error(conn, ex, route.stats, 504, "the request's deadline had passed")
    ex.deadline = deadline
    timer = route.deadlines.add(deadline, ex)
    if timer is not None:  # rare: most share the route's timer
        ex.timer = timer
    ex.request_line = b"%s %s HTTP/1.1\r\n%s" % (
        ex.method,
        ex.url if route.replace is None else route.upstream_target(ex.url, ex.path),
        ex.forward_head,
    )
    return None


def end(ex: Exchange, route: Route) -> None:
    """``ex`` is over: disarm its deadline, uncount it (see :func:`admit`)."""
    if ex.deadline:
        route.deadlines.finish(ex)
    else:
        ex.finished = True
    timer = ex.timer
    if timer is not None:
        timer.cancel()
    route.stats.in_flight -= 1
    target = route.target
    target.in_flight -= 1
    if ex.retried:
        target.retrying -= 1


def balance_key(conn: Downstream, ex: Exchange, route: Route) -> bytes | None:
    """Return the key a hashing balancer places ``ex`` by (None for the others)."""
    if not route.target.hashing:
        return None
    key = route.hash_key(ex.fields, conn.client_ip) if route.hash_key is not None else None
    return conn.client_ip if key is None else key


async def forward(conn: Downstream, ex: Exchange, route: Route) -> bool:
    """Answer ``ex`` through ``route``, or go on with the attempts the fast path began
    (``ex.route`` set); return whether the connection stays open."""
    resumed = ex.route is not None
    if not resumed:
        admit(conn, ex, route)
    try:
        if not resumed:
            if route.limiter is not None:
                refused = await _rate_limit(conn, ex, route)
                if refused is not None:
                    return refused
            refused = arm(conn, ex, route)
            if refused is not None:
                return refused
        elif ex.timed_out:  # it expired while being handed over
            _settle_handed(ex)
            return _deadline_passed(conn, ex, route)
        return await _attempts(conn, ex, route)
    except asyncio.CancelledError:
        if not ex.timed_out or conn.lost:
            raise
        task = conn.task
        if task is not None:
            task.uncancel()
        return _deadline_passed(conn, ex, route)
    finally:
        end(ex, route)


async def _attempts(conn: Downstream, ex: Exchange, route: Route) -> bool:
    """Pick, admit, send, relay — and retry — until ``ex`` is answered."""
    stats = route.stats
    target = route.target
    deadline = ex.deadline
    balancer = target.balancer
    discovery = target.discovery
    key = balance_key(conn, ex, route)
    body = ex.body
    repeatable = body is None and ex.method in route.retry_methods
    attempts = route.attempts
    request_line = ex.request_line
    tried = ex.tried if ex.tried is not None else []
    attempt = ex.attempt
    last_error = ex.last_error
    kept = ex.kept  # a 5xx answer, should retries run out
    if ex.retry_pending:  # the fast path's attempt failed: its retry is decided here
        ex.retry_pending = False
        if not await _may_retry(ex, target, attempt, attempts, deadline):
            if kept is not None:
                keep = write_whole(conn, ex, kept[0], kept[1])
                stats.record(kept[0].status, _monotonic() - ex.started)
                return keep
            assert last_error is not None
            return give_up(conn, ex, stats, last_error)
    while True:
        pick = ex.pick
        if pick is not None:  # handed over by the fast path, admitted by the breaker
            permit = ex.permit
            upstream = ex.upstream
            assert permit is not None
            assert upstream is not None
            ex.pick = ex.permit = ex.upstream = None
        else:
            try:
                pick = balancer.pick(key, exclude=tried)
            except NoInstancesError as exc:
                if kept is not None:
                    keep = write_whole(conn, ex, kept[0], kept[1])
                    stats.record(kept[0].status, _monotonic() - ex.started)
                    return keep
                if last_error is not None:
                    return give_up(conn, ex, stats, last_error)
                return unavailable(conn, ex, stats, target, exc)
            upstream = discovery.upstream(pick.instance)
            try:
                permit = upstream.breaker.allow()
            except BreakerOpenError as exc:
                pick.abandon()
                tried.append(pick.instance.id)
                if last_error is None or isinstance(last_error, BreakerOpenError):
                    last_error = exc
                continue
        instance = pick.instance
        response = ex.response
        if response is not None:  # the fast path's answer, whose body is to be streamed
            ex.response = None
            start = ex.attempt_start
            status = response.status
            content: bytes | None = None
        else:
            attempt += 1
            start = _monotonic()
            pool = upstream.pool
            head = b"%sX-Request-Timeout-Ms: %d\r\n%s\r\n" % (
                request_line,
                max(int((deadline - start) * 1000), 1),
                b"" if ex.host is not None else b"Host: %s\r\n" % pool.authority,
            )
            try:
                response = await pool.send(
                    Prepared(ex.method, head, body, ex.length, ex.chunked, False)
                )
                status = response.status
                if response.complete or ex.method == b"HEAD" or status in NO_BODY:
                    content = await response.read(None)
                else:
                    content = None
            except asyncio.CancelledError:
                settle_cancelled(ex, permit, pick, upstream, start)
                raise
            except Exception as exc:
                verdict = judge_error(exc, repeatable=repeatable, call_ended=False)
                if verdict is None:  # the request's own fault (its body): not the instance's
                    permit.ignore()
                    pick.abandon()
                    return _body_failed(conn, ex, stats, exc)
                settle_failed(exc, verdict.counts, permit, pick, upstream, stats, start)
                last_error = exc
                kept = None
                if verdict.retryable and await _may_retry(ex, target, attempt, attempts, deadline):
                    tried.append(instance.id)
                    continue
                return give_up(conn, ex, stats, exc)
        if status in RETRY_STATUSES and repeatable and attempt < attempts:
            upstream.record(_monotonic() - start, True)
            permit.failure()
            pick.done(error=True)
            stats.error(f"status_{status}")
            if content is None:
                try:
                    content = await response.read(_KEEP_MAX)
                except Exception as exc:
                    response.close()
                    return give_up(conn, ex, stats, exc)
            kept = (response, content)
            if await _may_retry(ex, target, attempt, attempts, deadline):
                tried.append(instance.id)
                continue
            keep = write_whole(conn, ex, response, content)
            stats.record(status, _monotonic() - ex.started)
            return keep
        if content is not None:
            keep = write_whole(conn, ex, response, content)
        else:
            try:
                keep = await stream(conn, ex, response)
            except asyncio.CancelledError:
                settle_cancelled(ex, permit, pick, upstream, start)
                raise
            except Exception as exc:  # the answer broke off, or the client left
                response.close()
                if isinstance(exc, UpstreamError):
                    upstream.record(_monotonic() - start, True)
                    permit.failure(exc)
                    pick.done(error=True)
                    stats.error(error_kind(exc))
                else:
                    permit.ignore()
                    pick.abandon()
                if conn.transport is not None:
                    conn.transport.abort()
                stats.record(status, _monotonic() - ex.started)
                return False
        now = _monotonic()
        if status < 500:
            upstream.record(now - start, False)
            permit.success()
            pick.done()
        else:
            upstream.record(now - start, True)
            permit.failure()
            pick.done(error=True)
        stats.record(status, now - ex.started)
        return keep


def _deadline_passed(conn: Downstream, ex: Exchange, route: Route) -> bool:
    """Answer 504 for ``ex`` (or cut its answer short); return keep-alive."""
    stats = route.stats
    stats.error("timeout")
    if ex.head_sent:
        if conn.transport is not None:
            conn.transport.abort()  # too late for a status: cut the response short
        stats.record(ex.status, _monotonic() - ex.started)
        return False
    seconds = route.timeout if ex.budget is None else min(route.timeout, ex.budget)
    return answer_error(conn, ex, stats, 504, f"deadline exceeded: no answer within {seconds:g}s")


def _settle_handed(ex: Exchange) -> None:
    """Settle what the fast path handed over and nobody will use (it expired meanwhile)."""
    response = ex.response
    if response is not None:
        ex.response = None
        response.close()
    pick = ex.pick
    if pick is not None and ex.permit is not None and ex.upstream is not None:
        settle_cancelled(ex, ex.permit, pick, ex.upstream, ex.attempt_start)
    ex.pick = ex.permit = ex.upstream = None


async def _rate_limit(conn: Downstream, ex: Exchange, route: Route) -> bool | None:
    """Take a token of the route's limit; answer (and return keep-alive) if refused."""
    limiter = route.limiter
    assert limiter is not None
    if not limiter.remote:
        return check_limit(conn, ex, route)
    stats = route.stats
    key = route.limit_key(ex.fields, conn.client_ip) if route.limit_key is not None else None
    try:
        wait = await limiter.acheck(key or b"")
    except BackendUnavailableError as exc:
        stats.error("rate_limiter")
        return answer_error(conn, ex, stats, 503, f"the rate limiter is unavailable: {exc}")
    return _limited(conn, ex, route, wait)


def check_limit(conn: Downstream, ex: Exchange, route: Route) -> bool | None:
    """Take a token of the route's local limit; answer (and return keep-alive) if refused."""
    limiter = route.limiter
    assert limiter is not None
    key = route.limit_key(ex.fields, conn.client_ip) if route.limit_key is not None else None
    try:
        wait = limiter.check(key or b"")
    except BackendUnavailableError as exc:
        route.stats.error("rate_limiter")
        return answer_error(conn, ex, route.stats, 503, f"the rate limiter is unavailable: {exc}")
    return _limited(conn, ex, route, wait)


def _limited(conn: Downstream, ex: Exchange, route: Route, wait: float) -> bool | None:
    if not wait:
        return None
    route.stats.error("rate_limited")
    return answer_error(
        conn, ex, route.stats, 429, f"rate limit of route {route.name!r} exceeded",
        retry_after=wait,
    )  # fmt: skip


# ------------------------------------------------------------------ helpers


async def _may_retry(
    ex: Exchange, target: Target, attempt: int, attempts: int, deadline: float
) -> bool:
    """Decide a retry, and wait its backoff: attempts, the retry limit, the deadline."""
    if attempt >= attempts:
        return False
    delay = target.backoff.delay(attempt - 1)
    if _monotonic() + delay >= deadline:
        return False
    if not ex.retried:
        if not target.admit_retry():
            return False
        ex.retried = True
    if delay > 0:
        await asyncio.sleep(delay)
    return True


def settle_cancelled(
    ex: Exchange, permit: Permit, pick: Pick, upstream: Upstream, start: float
) -> None:
    if ex.timed_out and not (ex.conn is not None and ex.conn.lost):
        upstream.record(_monotonic() - start, True)
        permit.failure(DEADLINE_ERROR)
        pick.done(error=True)
    else:
        permit.ignore()
        pick.abandon()


def settle_failed(
    exc: BaseException,
    counts: bool,
    permit: Permit,
    pick: Pick,
    upstream: Upstream,
    stats: RouteStats,
    start: float,
) -> None:
    """Account a failed attempt begun at ``start``: the instance's latency, the breaker's
    and the balancer's outcome (a failure when ``counts``: the instance's fault; else
    neither) and the route's error count."""
    upstream.record(_monotonic() - start, counts)
    if counts:
        permit.failure(exc)
        pick.done(error=True)
    else:
        permit.ignore()
        pick.abandon()
    stats.error(error_kind(exc))


def unavailable(
    conn: Downstream, ex: Exchange, stats: RouteStats, target: Target, exc: NoInstancesError
) -> bool:
    """Answer 503 when no instance may be picked; say so if breakers are why."""
    waits = []
    names = []
    for upstream in target.discovery.upstreams.values():
        breaker = upstream.breaker
        if breaker.state in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
            names.append(breaker.name)
            retry_after = breaker.statistics().retry_after
            if retry_after is not None:
                waits.append(retry_after)
    if names and "ejected" in exc.reason:
        stats.error("breaker_open")
        hint = f"; retry after {min(waits):.1f}s" if waits else ""
        message = (
            f"no instance of {target.service!r} is available: circuit breaker open for "
            f"{', '.join(sorted(names))}{hint}"
        )
        return answer_error(
            conn, ex, stats, 503, message, retry_after=min(waits) if waits else None
        )
    stats.error("no_instances")
    return answer_error(conn, ex, stats, 503, str(no_instances(exc, target.discovery.resolver)))


def give_up(conn: Downstream, ex: Exchange, stats: RouteStats, error: BaseException) -> bool:
    """Answer for the last failure once no attempt is left."""
    if isinstance(error, BreakerOpenError):
        stats.error("breaker_open")
        return answer_error(
            conn, ex, stats, 503, f"every instance's circuit breaker is open ({error})",
            retry_after=error.retry_after,
        )  # fmt: skip
    if isinstance(error, ConnectError):
        return answer_error(conn, ex, stats, 503, f"no instance could be reached ({error})")
    if isinstance(error, ConnectionLostError) and not error.request_sent:
        return answer_error(conn, ex, stats, 503, f"no instance took the request ({error})")
    return answer_error(conn, ex, stats, 502, f"bad answer from upstream ({error})")


def _body_failed(conn: Downstream, ex: Exchange, stats: RouteStats, error: Exception) -> bool:
    """Answer for a request whose own body failed on the way."""
    if isinstance(error, BodyTooLargeError):
        return answer_error(conn, ex, stats, 413, str(error))
    if isinstance(error, ClientGoneError):
        conn.closing = True
        return answer_error(conn, ex, stats, 400, str(error))
    return answer_error(conn, ex, stats, 502, f"the request could not be forwarded ({error})")


def error_kind(error: BaseException) -> str:
    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, ConnectionLostError):
        return "lost"
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, DeadlineExceededError):
        return "timeout"
    return type(error).__name__
