"""Downstream: one client connection, an asyncio Protocol with the httptools request parser.

Parsing happens in ``data_received``; the parser's callbacks build an :class:`Exchange`
per request — the method, target, the headers to forward (hop-by-hop ones dropped as
they arrive), the few the gateway reads itself. A request without a body that is the
connection's only one is answered outside any task (``_fast.py``), started from its
last byte's callback through ``Frontend.soon`` — once the loop has read everything the
round brought, with the rest of the round, under one loop handle — so that the round's
writes go out together: the processes at the other ends
(clients, services) are then woken once per round, not once per request — a write that
wakes a sleeping process costs the writer several times one that does not. The others
(a body, pipelining) are queued for the connection's one worker task, which answers
them in order and waits on a future between them (waking a task costs far less than
creating one per request); the fast path hands it what it does not finish itself.

Limits: the request line and headers are counted as they arrive (431 past
``max_header_bytes`` or ``max_headers``), the body as it streams (413 past
``max_body_bytes``, at once when ``Content-Length`` says so). A sweep of every
connection, a few times per ``header_timeout``, answers 408 to a client still sending
its headers after ``header_timeout`` (slowloris) and closes keep-alive connections idle
past ``idle_timeout``: no timer per request.

Closing: a connection the gateway ends (a refused request, ``Connection: close``) is
half-closed, not closed: its answer goes out followed by a FIN, and what the client
still sends (the rest of a refused body, a slowloris' next header) is read and dropped
until the client closes its end or ``LINGER`` seconds pass. Closing a socket with unread
data makes the kernel send a reset, which can destroy the answer before the client has
read it (nginx's ``lingering_close`` exists for the same reason).

Flow control: the socket stops being read while a body waits for its upstream (see
``_body.py``) or a pipelined request waits its turn, and the worker waits for the
transport to drain whenever its write buffer is full (``pause_writing``), which in turn
stops the upstream response from being read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_to_bytes

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from distsys.gateway._body import ClientGoneError, RequestBody
from distsys.gateway._exchange import Exchange
from distsys.gateway._fast import begin
from distsys.gateway._proxy import forward
from distsys.gateway._relay import answer_error
from distsys.gateway._responses import HOP_BY_HOP
from distsys.http import new_request_id

if TYPE_CHECKING:
    from distsys.gateway._frontend import Frontend
    from distsys.gateway._routes import Route

__all__ = ["Downstream"]

log = logging.getLogger("distsys.gateway")

_PAUSE_BODY: Final = 1
_PAUSE_QUEUE: Final = 2
LINGER: Final = 2.0
"""Seconds a closing connection keeps reading (and dropping) what the client still sends."""

# What on_header does with a header, by lower-cased name (absent: forward it as is).
_DROP: Final = 0
_HOST: Final = 1
_CONNECTION: Final = 2
_LENGTH: Final = 3
_CHUNKED: Final = 4
_REQUEST_ID: Final = 5
_FORWARDED_FOR: Final = 6
_FORWARDED_PROTO: Final = 7
_BUDGET: Final = 8
_EXPECT: Final = 9
_SPECIAL: Final = {
    **{name: _DROP for name in HOP_BY_HOP},
    b"host": _HOST,
    b"connection": _CONNECTION,
    b"content-length": _LENGTH,
    b"transfer-encoding": _CHUNKED,
    b"x-request-id": _REQUEST_ID,
    b"x-forwarded-for": _FORWARDED_FOR,
    b"x-forwarded-proto": _FORWARDED_PROTO,
    b"x-request-timeout-ms": _BUDGET,
    b"expect": _EXPECT,
}
_ID_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:"


class _Reject(Exception):
    """Raised from a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Downstream(asyncio.Protocol):
    """One client connection (internal; the gateway's server makes them). Loop-bound."""

    __slots__ = (
        "_drain",
        "_eof",
        "_fields",
        "_head_bytes",
        "_head_since",
        "_linger",
        "_parser",
        "_paused",
        "_pending",
        "_queue",
        "_raw_head",
        "_url",
        "_waiter",
        "client_ip",
        "closing",
        "current",
        "front",
        "idle_since",
        "lost",
        "task",
        "transport",
        "write_paused",
    )

    def __init__(self, front: Frontend) -> None:
        self.front = front
        self._parser = HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client_ip = b""
        self._queue: deque[Exchange] = deque()
        self._pending: Exchange | None = None  # the request being parsed
        self.current: Exchange | None = None  # the request being answered
        self._url = b""
        self._fields: list[bytes] = []
        self._head_bytes = 0
        self._raw_head = 0
        self._head_since = 0.0
        self.idle_since = 0.0
        self.task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = 0
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self.closing = False  # answer what is queued, then close
        self.lost = False
        self._linger: asyncio.TimerHandle | None = None  # set once half-closed
        self._eof = False  # the client half-closed

    # ------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0]).encode("ascii", "replace")
        self._head_since = time.monotonic()  # the first request's headers are due
        self._raw_head = 0
        self.front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # a request was refused: nothing more is read
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self.closing = True  # the next bytes speak another protocol: answer, close
            self._pause(_PAUSE_QUEUE)
            pending = self._pending
            if pending is not None and not pending.queued:
                self._enqueue(pending)  # a request without a body waits for its end
            return
        except HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self.reject(cause.status, cause.message)
            else:
                self.reject(400, f"malformed request: {exc}")
            return
        if self._head_since:
            # Still in a head: httptools holds its unfinished line. Count what came since
            # the head began (the read it began in counts whole: an overestimate by what
            # ended the previous request in that read, if anything).
            self._raw_head += len(data)
            if self._raw_head > self.front.max_header_bytes:
                self.reject(431, "the request headers are too large")

    def eof_received(self) -> bool | None:
        if self._linger is not None:
            return None  # half-closed already: the client is done too, close
        pending = self._pending
        if pending is not None and pending.body is not None:
            pending.body.fail(ClientGoneError("the client closed before the end of the body"))
        self.closing = True
        self._eof = True
        if self.current is None and not self._queue:
            return None  # nothing to answer: close
        return True  # keep the transport open to answer what was asked (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.closing = True
        if self._linger is not None:
            self._linger.cancel()
        self.front.connections.discard(self)
        gone = ClientGoneError("the client closed its connection")
        pending = self._pending
        if pending is not None and pending.body is not None:
            pending.body.fail(gone)
        for queued in self._queue:
            if queued.body is not None:
                queued.body.fail(gone)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(gone)
        current = self.current
        if current is not None:  # the answer has nowhere to go: stop the upstream exchange
            if current.fast is not None:
                current.fast.cancel()
            elif self.task is not None:
                self.task.cancel()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's write buffer is under its high-water mark.

        Raises:
            ClientGoneError: the connection was lost meanwhile.
        """
        if self.lost:
            raise ClientGoneError("the client closed its connection")
        drain = self._drain
        if drain is None:
            drain = self._drain = self.front.loop.create_future()
        await drain

    # ------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._fields = []
        self._head_bytes = 0
        self._raw_head = 0
        self._head_since = time.monotonic()
        self._pending = Exchange()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        kind = _SPECIAL.get(name.lower())
        if kind is None:
            self._fields += (name, b": ", value, b"\r\n")
            return
        ex = self._pending
        assert ex is not None
        if kind == _HOST:
            ex.host = value
            self._fields += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            try:
                ex.content_length = int(value)
            except ValueError:
                raise _Reject(400, "malformed Content-Length") from None
            ex.has_body = ex.content_length > 0
            ex.length = ex.content_length
        elif kind == _CHUNKED:
            ex.has_body = True
            ex.chunked = True
        elif kind == _REQUEST_ID:
            if 0 < len(value) <= 128 and not value.translate(None, _ID_CHARS):
                ex.request_id = value
        elif kind == _FORWARDED_FOR:
            before = ex.forwarded_for
            ex.forwarded_for = value if before is None else b"%s, %s" % (before, value)
        elif kind == _FORWARDED_PROTO:
            ex.forwarded_proto = value
        elif kind == _BUDGET:
            text = value.strip()
            if 0 < len(text) <= 10 and text.isdigit():
                ex.budget = int(text) / 1000.0
        elif kind == _EXPECT:
            ex.expect_continue = value.lower() == b"100-continue"
        elif kind == _CONNECTION:
            ex.connection = value if ex.connection is None else ex.connection + b"," + value

    def on_headers_complete(self) -> None:
        front = self.front
        ex = self._pending
        assert ex is not None
        self._head_since = 0.0
        if self._head_bytes > front.max_header_bytes:
            raise _Reject(431, "the request headers are too large")
        fields = self._fields
        if len(fields) > 4 * front.max_headers:
            raise _Reject(431, f"more than {front.max_headers} request headers")
        parser = self._parser
        ex.method = parser.get_method()
        ex.keep_alive = parser.should_keep_alive()
        ex.http11 = parser.get_http_version() == "1.1"
        url = self._url
        if url[:1] != b"/":
            url = _origin_form(url)
        ex.url = url
        mark = url.find(b"?")
        path = url if mark < 0 else url[:mark]
        # find(), not "in": a bytes "in" first tries the operand as an int, and formats
        # (then drops) a TypeError doing so, which costs more than the search.
        if path.find(b"/.") >= 0 or path.find(b"%") >= 0:
            _check_path(path)
        ex.path = path
        ex.started = time.monotonic()
        if ex.connection is not None:
            fields = _drop_listed(fields, ex.connection)
        ex.fields = fields
        request_id = ex.request_id
        if request_id is None:
            request_id = ex.request_id = new_request_id().encode()
        ip = self.client_ip
        xff = ex.forwarded_for
        if ex.chunked:
            ex.length = None
            framing = b"Transfer-Encoding: chunked\r\n"
        elif ex.length is not None:
            framing = b"Content-Length: %d\r\n" % ex.length
        else:
            framing = b""
        ex.forward_head = (
            b"%sX-Request-ID: %s\r\nX-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n%s"
            % (
                b"".join(fields),
                request_id,
                ip if xff is None else xff + b", " + ip,
                ex.forwarded_proto or b"http",
                framing,
            )
        )
        if ex.has_body:
            ex.body = RequestBody(self, front.max_body_bytes)
            self._enqueue(ex)  # the body streams to the worker task as it arrives
        # else on_message_complete, which follows, takes it

    def on_body(self, body: bytes) -> None:
        ex = self._pending
        if ex is not None and ex.body is not None:
            ex.body.feed(body)

    def on_message_complete(self) -> None:
        ex = self._pending
        self._pending = None
        if ex is None:
            return
        ex.received = True
        if ex.body is not None:
            ex.body.end()
        if ex.queued:
            return
        if self.current is None and not self._queue:
            # Taken now (a pipelined request behind it queues), answered once the loop
            # has read what this round brought: the writes of a round go out together.
            self.current = ex
            self.front.soon(self._answer_current)
        else:
            self._enqueue(ex)

    # --------------------------------------------------------------- the queue

    def _enqueue(self, ex: Exchange) -> None:
        ex.queued = True
        self._queue.append(ex)
        if self.current is not None:
            # Pipelined: read no more until it is answered; whoever answers the current
            # request (the worker task, or answered() after the fast path) goes on.
            self._pause(_PAUSE_QUEUE)
            return
        self._wake_worker()

    def _wake_worker(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self.task is None:
            self.task = self.front.loop.create_task(self._serve())

    def _answer_current(self) -> None:
        """Answer the request taken by on_message_complete outside the worker task."""
        ex = self.current
        if ex is None:
            return
        if self.lost:
            self.current = None
            return
        try:
            route = self._route(ex)
            if isinstance(route, bool):
                self.answered(route)
            elif not begin(self, ex, route):
                self.current = None
                self._enqueue(ex)
        except Exception:
            # A bug: an error here would read as a malformed request. Drop the client.
            log.exception("the gateway failed to start a request (request %r)", ex.request_id)
            self.current = None
            if self.transport is not None:
                self.transport.abort()

    def answered(self, keep: bool) -> None:
        """The request answered outside the worker task is over: go on with the next."""
        self.current = None
        transport = self.transport
        if self.lost or transport is None:
            return
        if keep and self._queue:
            self._wake_worker()
        elif keep and not self.closing:
            self.idle_since = time.monotonic()
        elif not transport.is_closing():
            self._half_close(transport)

    def resume_in_worker(self, ex: Exchange) -> None:
        """Hand ``ex``, begun by the fast path, to the worker task (it goes first)."""
        self.current = None
        ex.queued = True
        self._queue.appendleft(ex)
        self._wake_worker()

    def reject(self, status: int, message: str) -> None:
        """Refuse the request being parsed with ``status``; close once it is answered."""
        if self.closing:
            return
        self.closing = True
        ex = self._pending
        self._pending = None
        if ex is not None and ex.queued:
            # Its head was accepted and it is (being) answered: its body broke.
            if ex.body is not None:
                ex.body.fail(ClientGoneError(message))
            self._pause(_PAUSE_QUEUE)
            return
        ex = ex if ex is not None else Exchange()
        self._head_since = 0.0
        ex.reject = (status, message)
        ex.keep_alive = False
        if ex.request_id is None:
            ex.request_id = new_request_id().encode()
        ex.started = time.monotonic()
        self._pause(_PAUSE_QUEUE)
        self._enqueue(ex)

    async def _serve(self) -> None:
        queue = self._queue
        loop = self.front.loop
        keep = True
        try:
            while keep and not self.lost:
                if not queue:
                    if self.closing:
                        break
                    self.idle_since = time.monotonic()
                    waiter = self._waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        self._waiter = None
                    continue
                ex = queue.popleft()
                if not queue and self._paused & _PAUSE_QUEUE and not self.closing:
                    self._resume(_PAUSE_QUEUE)
                self.current = ex
                try:
                    route = ex.route if ex.route is not None else self._route(ex)
                    if route.__class__ is bool:
                        keep = route  # answered already
                    else:
                        if log.isEnabledFor(logging.DEBUG):
                            log.debug(
                                "the worker task answers %s (request %s)",
                                ex.path.decode("latin-1"), (ex.request_id or b"-").decode(),
                                extra={"path": ex.path},
                            )  # fmt: skip
                        keep = await forward(self, ex, route)  # type: ignore[arg-type]
                finally:
                    self.current = None
        except asyncio.CancelledError:
            if not self.lost:
                raise
        finally:
            self.task = None
            transport = self.transport
            if not self.lost and transport is not None and not transport.is_closing():
                self._half_close(transport)

    def _half_close(self, transport: asyncio.Transport) -> None:
        """Send what is buffered and a FIN, then drop what the client still sends until
        it closes its end too, or ``LINGER`` seconds pass (see the module docstring)."""
        self.closing = True
        if self._linger is not None:
            return
        try:
            if self._eof or not transport.can_write_eof():
                transport.close()
                return
            transport.write_eof()
        except (OSError, RuntimeError):
            transport.abort()
            return
        self._linger = self.front.loop.call_later(LINGER, transport.close)
        self._paused = 0
        transport.resume_reading()  # data_received drops it: self.closing

    def _route(self, ex: Exchange) -> Route | bool:
        """Return the route of ``ex``, or answer it (404, 405, 413 ...) and return keep-alive."""
        front = self.front
        if ex.reject is not None:
            status, message = ex.reject
            return answer_error(self, ex, front.unmatched, status, message)
        table = front.table
        route = table.match(ex.method, ex.path, _host(ex.host) if table.uses_hosts else None)
        if route is None:
            host = _host(ex.host)
            allowed = table.allowed(ex.path, host if table.uses_hosts else None)
            if allowed:
                return answer_error(
                    self, ex, front.unmatched, 405, f"method {ex.method.decode()} not allowed",
                    allow=", ".join(allowed),
                )  # fmt: skip
            return answer_error(self, ex, front.unmatched, 404, "no route matches the path")
        if ex.content_length > front.max_body_bytes:
            return answer_error(
                self, ex, route.stats, 413,
                f"the request body is larger than {front.max_body_bytes} bytes",
            )  # fmt: skip
        if ex.expect_continue and not ex.received and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return route

    # ------------------------------------------------------------ flow control

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None and not self.lost:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        was = self._paused
        self._paused = was & ~reason
        if was and not self._paused and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    def pause_for_body(self) -> None:
        """Stop reading: a body waits for its upstream (see ``_body.py``)."""
        if not self._paused & _PAUSE_BODY:
            self._pause(_PAUSE_BODY)

    def resume_for_body(self) -> None:
        """Read again: the body waiting for its upstream has shrunk."""
        if self._paused & _PAUSE_BODY:
            self._resume(_PAUSE_BODY)

    # ------------------------------------------------------------ timeouts

    def sweep(self, now: float, header_timeout: float, idle_timeout: float) -> None:
        """Enforce the header and idle timeouts (called a few times a second)."""
        if self.lost or self.transport is None:
            return
        since = self._head_since
        if since and now - since > header_timeout:
            if self._raw_head == 0 and self._pending is None:
                self.transport.close()  # not a byte of a request: just close
            else:
                self.reject(408, "the request headers took too long")
        elif (
            not since
            and self.current is None
            and not self._queue
            and self._pending is None
            and self.idle_since
            and now - self.idle_since > idle_timeout
        ):
            self.transport.close()

    def close_idle(self) -> None:
        """Close the connection if no request is in progress (the gateway is stopping)."""
        transport = self.transport
        if transport is None:
            return
        if self._linger is not None or (
            self.current is None and not self._queue and self._pending is None
        ):
            transport.close()


def _host(host: bytes | None) -> bytes | None:
    if host is None:
        return None
    host = host.lower()
    if host[:1] == b"[":
        return host[: host.find(b"]") + 1]
    colon = host.find(b":")
    return host if colon < 0 else host[:colon]


def _origin_form(url: bytes) -> bytes:
    """Turn an absolute-form target (``http://host/path``) into its path and query."""
    lower = url[:8].lower()
    if lower.startswith((b"http://", b"https://")):
        start = url.find(b"/", url.find(b"//") + 2)
        return b"/" if start < 0 else url[start:]
    raise _Reject(400, "the request target must be a path")


def _check_path(path: bytes) -> None:
    decoded = unquote_to_bytes(path) if b"%" in path else path
    if b"\x00" in decoded or any(part in (b".", b"..") for part in decoded.split(b"/")):
        raise _Reject(400, "the path must not contain '.' or '..' segments")


def _drop_listed(fields: list[bytes], connection: bytes) -> list[bytes]:
    """Drop the headers a ``Connection`` header names (they are hop-by-hop too)."""
    listed = {token.strip().lower() for token in connection.split(b",")}
    listed -= {b"close", b"keep-alive", b""}
    if not listed:
        return fields
    kept: list[bytes] = []
    for i in range(0, len(fields), 4):
        if fields[i].lower() not in listed:
            kept += fields[i : i + 4]
    return kept
