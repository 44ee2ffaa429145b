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

The answer is relayed as it arrives: status and headers at once (hop-by-hop ones
dropped, the framing redone), the body chunk by chunk, waiting for the client's socket
to drain whenever its buffer is full — which stops the upstream connection from being
read. A response that has wholly arrived by the time its head is relayed (most small
ones) goes out in one write with a ``Content-Length``.

The request head is encoded here, once per attempt, from bytes the downstream parser
prepared (``Exchange.forward_head``) and sent with ``ConnectionPool.send``: the
transport's framing rules apply, without re-checking headers llhttp already checked.

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
from distsys.gateway._responses import HOP_BY_HOP, error_body, status_line
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
    from distsys.http import Response
    from distsys.resilience import Permit
    from distsys.service._client_instance import Upstream

__all__ = ["answer_error", "forward"]

_RETRY_STATUSES: Final = frozenset({502, 503, 504})
_NO_BODY: Final = frozenset({204, 304})
_KEEP_MAX: Final = 65536  # the largest 5xx body kept to be relayed after failed retries
_DEADLINE: Final = DeadlineExceededError("the gateway's deadline for the request passed")
_SKIP: Final = 0
_LENGTH: Final = 1
_ID: Final = 2
_CONNECTION: Final = 3
_RESPONSE: Final = {
    **{name: _SKIP for name in HOP_BY_HOP},
    b"content-length": _LENGTH,
    b"x-request-id": _ID,
    b"connection": _CONNECTION,
}
_monotonic = time.monotonic


async def forward(conn: Downstream, ex: Exchange, route: Route) -> bool:
    """Answer ``ex`` through ``route``; return whether the connection stays open."""
    stats = route.stats
    target = route.target
    stats.in_flight += 1
    target.in_flight += 1
    ex.conn = conn
    timer = None
    deadlines = None
    try:
        if route.limiter is not None:
            refused = await _rate_limit(conn, ex, route)
            if refused is not None:
                return refused
        timeout = route.timeout
        budget = ex.budget
        if budget is not None and budget < timeout:
            timeout = budget
        deadline = ex.started + timeout
        if deadline <= _monotonic():
            stats.error("timeout")
            return answer_error(conn, ex, stats, 504, "the request's deadline had passed")
        deadlines = route.deadlines
        timer = deadlines.add(deadline, ex)

        # ---- the attempts
        balancer = target.balancer
        discovery = target.discovery
        key: bytes | None = None
        if target.hashing:
            if route.hash_key is not None:
                key = route.hash_key(ex.fields, conn.client_ip)
            if key is None:
                key = conn.client_ip
        body = ex.body
        repeatable = body is None and ex.method in route.retry_methods
        attempts = route.attempts
        request_line = b"%s %s HTTP/1.1\r\n%s" % (
            ex.method,
            route.upstream_target(ex.url, ex.path),
            ex.forward_head,
        )
        tried: list[str] = []
        attempt = 0
        last_error: Exception | None = None
        kept: tuple[Response, bytes] | None = None  # a 5xx answer, should retries run out
        while True:
            try:
                pick = balancer.pick(key, exclude=tried)
            except NoInstancesError as exc:
                if kept is not None:
                    keep = _write_whole(conn, ex, kept[0], kept[1])
                    stats.record(kept[0].status, _monotonic() - ex.started)
                    return keep
                if last_error is not None:
                    return _give_up(conn, ex, stats, last_error)
                return _unavailable(conn, ex, stats, target, exc)
            instance = pick.instance
            upstream = discovery.upstream(instance)
            try:
                permit = upstream.breaker.allow()
            except BreakerOpenError as exc:
                pick.abandon()
                tried.append(instance.id)
                if last_error is None or isinstance(last_error, BreakerOpenError):
                    last_error = exc
                continue
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
                if response.complete or ex.method == b"HEAD" or status in _NO_BODY:
                    content: bytes | None = await response.read(None)
                else:
                    content = None
            except asyncio.CancelledError:
                _settle_cancelled(ex, permit, pick, upstream, start)
                raise
            except Exception as exc:
                verdict = judge_error(exc, repeatable=repeatable, call_ended=False)
                if verdict is None:  # the request's own fault (its body): not the instance's
                    permit.ignore()
                    pick.abandon()
                    return _body_failed(conn, ex, stats, exc)
                upstream.record(_monotonic() - start, verdict.counts)
                if verdict.counts:
                    permit.failure(exc)
                    pick.done(error=True)
                else:
                    permit.ignore()
                    pick.abandon()
                stats.error(_kind(exc))
                last_error = exc
                kept = None
                if verdict.retryable and await _may_retry(ex, target, attempt, attempts, deadline):
                    tried.append(instance.id)
                    continue
                return _give_up(conn, ex, stats, exc)
            if status in _RETRY_STATUSES and repeatable and attempt < attempts:
                upstream.record(_monotonic() - start, True)
                permit.failure()
                pick.done(error=True)
                stats.error(f"status_{status}")
                if content is None:
                    try:
                        content = await response.read(_KEEP_MAX)
                    except Exception as exc:
                        response.close()
                        return _give_up(conn, ex, stats, exc)
                kept = (response, content)
                if await _may_retry(ex, target, attempt, attempts, deadline):
                    tried.append(instance.id)
                    continue
                keep = _write_whole(conn, ex, response, content)
                stats.record(status, _monotonic() - ex.started)
                return keep
            if content is not None:
                keep = _write_whole(conn, ex, response, content)
            else:
                try:
                    keep = await _stream(conn, ex, response)
                except asyncio.CancelledError:
                    _settle_cancelled(ex, permit, pick, upstream, start)
                    raise
                except Exception as exc:  # the answer broke off, or the client left
                    response.close()
                    if isinstance(exc, UpstreamError):
                        upstream.record(_monotonic() - start, True)
                        permit.failure(exc)
                        pick.done(error=True)
                        stats.error(_kind(exc))
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
    except asyncio.CancelledError:
        if not ex.timed_out or conn.lost:
            raise
        task = conn.task
        if task is not None:
            task.uncancel()
        stats.error("timeout")
        if ex.head_sent:
            if conn.transport is not None:
                conn.transport.abort()  # too late for a status: cut the response short
            stats.record(ex.status, _monotonic() - ex.started)
            return False
        seconds = route.timeout if ex.budget is None else min(route.timeout, ex.budget)
        return answer_error(
            conn, ex, stats, 504, f"deadline exceeded: no answer within {seconds:g}s"
        )
    finally:
        if deadlines is not None:
            deadlines.finish(ex)
        else:
            ex.finished = True
        if timer is not None:
            timer.cancel()
        stats.in_flight -= 1
        target.in_flight -= 1
        if ex.retried:
            target.retrying -= 1


async def _rate_limit(conn: Downstream, ex: Exchange, route: Route) -> bool | None:
    """Take a token of the route's limit; answer (and return keep-alive) if refused."""
    limiter = route.limiter
    assert limiter is not None
    stats = route.stats
    key = route.limit_key(ex.fields, conn.client_ip) if route.limit_key is not None else None
    try:
        if limiter.remote:
            wait = await limiter.acheck(key or b"")
        else:
            wait = limiter.check(key or b"")
    except BackendUnavailableError as exc:
        stats.error("rate_limiter")
        return answer_error(conn, ex, stats, 503, f"the rate limiter is unavailable: {exc}")
    if wait:
        stats.error("rate_limited")
        return answer_error(
            conn, ex, stats, 429, f"rate limit of route {route.name!r} exceeded",
            retry_after=wait,
        )  # fmt: skip
    return None


# ------------------------------------------------------------------ relaying


def _head(
    conn: Downstream, ex: Exchange, response: Response
) -> tuple[list[bytes], bytes | None, bool]:
    """Start the answer's head: status line, the upstream's end-to-end headers.

    Returns:
        The parts, the upstream's Content-Length (None if it gave none), and whether
        the connection may stay open.
    """
    keep = ex.keep_alive and ex.received and not conn.closing and not conn.front.draining
    parts = [status_line(response.status)]
    length: bytes | None = None
    has_id = False
    listed: bytes | None = None
    for name, value in response.raw_headers:
        kind = _RESPONSE.get(name.lower())
        if kind is None:
            parts += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            length = value
        elif kind == _ID:
            has_id = True
            parts += (name, b": ", value, b"\r\n")
        elif kind == _CONNECTION:
            listed = value
    if listed is not None:
        parts = _drop_listed(parts, listed)
    if not has_id:
        parts += (b"X-Request-ID: ", ex.request_id or b"-", b"\r\n")
    return parts, length, keep


def _write_whole(conn: Downstream, ex: Exchange, response: Response, content: bytes) -> bool:
    """Write an answer whose body has wholly arrived, in one write."""
    transport = conn.transport
    parts, length, keep = _head(conn, ex, response)
    status = response.status
    if ex.method == b"HEAD" or status in _NO_BODY or status < 200:
        if length is not None:
            parts += (b"Content-Length: ", length, b"\r\n")
        content = b""
    else:
        parts += (b"Content-Length: ", b"%d" % len(content), b"\r\n")
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    ex.status = status
    ex.head_sent = True
    if transport is None or transport.is_closing():
        return False
    if len(content) < 65536:
        parts.append(content)
        transport.write(b"".join(parts))
    else:
        transport.writelines((b"".join(parts), content))
    return keep


async def _stream(conn: Downstream, ex: Exchange, response: Response) -> bool:
    """Write an answer whose body is still arriving, chunk by chunk, with backpressure.

    Raises:
        UpstreamError: the response broke off (the head was written).
        ClientGoneError: the client left.
    """
    transport = conn.transport
    assert transport is not None
    parts, length, keep = _head(conn, ex, response)
    chunked = False
    if length is not None:
        parts += (b"Content-Length: ", length, b"\r\n")
    elif ex.http11:
        parts.append(b"Transfer-Encoding: chunked\r\n")
        chunked = True
    else:
        keep = False  # an HTTP/1.0 client: the body ends when the connection does
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    ex.status = response.status
    ex.head_sent = True
    transport.write(b"".join(parts))
    async for chunk in response:
        if chunked:
            transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
        else:
            transport.write(chunk)
        if conn.write_paused:
            await conn.drain()
    if chunked:
        transport.write(b"0\r\n\r\n")
    if conn.write_paused:
        await conn.drain()
    return keep and (ex.body is None or ex.body.complete)


def answer_error(
    conn: Downstream,
    ex: Exchange,
    stats: RouteStats,
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    allow: str | None = None,
) -> bool:
    """Answer with the gateway's own JSON error; return whether the connection stays open."""
    request_id = ex.request_id or b"-"
    body = error_body(status, message, request_id)
    keep = (
        ex.keep_alive
        and ex.received
        and ex.reject is None
        and not conn.closing
        and not conn.front.draining
    )
    parts = [
        status_line(status),
        b"Content-Type: application/json\r\nContent-Length: %d\r\nX-Request-ID: %s\r\n"
        % (len(body), request_id),
    ]
    if retry_after is not None:
        parts.append(b"Retry-After: %d\r\n" % max(1, -int(-retry_after // 1)))
    if allow:
        parts.append(b"Allow: %s\r\n" % allow.encode("ascii"))
    if not keep:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if ex.method != b"HEAD":
        parts.append(body)
    transport = conn.transport
    if transport is not None and not transport.is_closing():
        transport.write(b"".join(parts))
    ex.status = status
    ex.head_sent = True
    stats.record(status, _monotonic() - ex.started)
    return keep


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


def _settle_cancelled(
    ex: Exchange, permit: Permit, pick: Pick, upstream: Upstream, start: float
) -> None:
    if ex.timed_out and not (ex.conn is not None and ex.conn.lost):
        upstream.record(_monotonic() - start, True)
        permit.failure(_DEADLINE)
        pick.done(error=True)
    else:
        permit.ignore()
        pick.abandon()


def _unavailable(
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


def _give_up(conn: Downstream, ex: Exchange, stats: RouteStats, error: BaseException) -> bool:
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


def _kind(error: BaseException) -> str:
    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, ConnectionLostError):
        return "lost"
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, DeadlineExceededError):
        return "timeout"
    return type(error).__name__


def _drop_listed(parts: list[bytes], connection: bytes) -> list[bytes]:
    """Drop the response headers a ``Connection`` header names."""
    listed = {token.strip().lower() for token in connection.split(b",")}
    listed -= {b"close", b"keep-alive", b""}
    if not listed:
        return parts
    kept = parts[:1]
    for i in range(1, len(parts), 4):
        if parts[i].lower() not in listed:
            kept += parts[i : i + 4]
    return kept
