"""Exchange: one request through the gateway, from its head to the end of its answer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from distsys.balancer import Pick
    from distsys.gateway._body import RequestBody
    from distsys.gateway._downstream import Downstream
    from distsys.gateway._fast import FastAnswer
    from distsys.gateway._routes import Route
    from distsys.http import Response
    from distsys.resilience import Permit
    from distsys.service._client_instance import Upstream

__all__ = ["Exchange"]


class Exchange:
    """The state of one request (internal). Safe within one event loop.

    The attributes are class-level defaults that a request overrides only where it
    differs (no ``__slots__``, no ``__init__``): a request sets a handful of them, and
    building the object is then nearly free.
    """

    method: bytes = b"GET"
    url: bytes = b"/"  # the target as sent: path and query
    path: bytes = b"/"
    fields: list[bytes]  # the client's headers to forward: [name, b": ", value, b"\r\n", ...]
    forward_head: bytes = b""  # those, then ours (request id, X-Forwarded-*, framing)
    host: bytes | None = None
    keep_alive: bool = True
    http11: bool = True
    has_body: bool = False
    content_length: int = 0  # 0 when not announced
    length: int | None = None  # the body's length to forward (None: chunked or no body)
    chunked: bool = False
    body: RequestBody | None = None
    request_id: bytes | None = None
    forwarded_for: bytes | None = None
    forwarded_proto: bytes | None = None
    budget: float | None = None  # the client's X-Request-Timeout-Ms, in seconds
    expect_continue: bool = False
    connection: bytes | None = None  # the Connection header's tokens
    started: float = 0.0  # time.monotonic() when the head was parsed
    received: bool = False  # the whole request (body included) has arrived
    queued: bool = False
    reject: tuple[int, str] | None = None  # answer this at once (400, 408, 431 ...)
    finished: bool = False  # answered, or expired (the deadline queue skips it)
    timed_out: bool = False
    head_sent: bool = False
    status: int = 0
    retried: bool = False
    conn: Downstream | None = None

    # Admitted to its route (counted in flight, deadline armed), by either path.
    route: Route | None = None
    deadline: float = 0.0  # 0: not armed yet
    timer: asyncio.TimerHandle | None = None
    request_line: bytes = b""  # request line + forwarded headers, without the budget line
    # The attempts so far, as the fast path hands them to the worker task (_fast.py).
    fast: FastAnswer | None = None  # the fast path's attempt in flight
    attempt: int = 0
    tried: list[str] | None = None
    last_error: Exception | None = None
    kept: tuple[Response, bytes] | None = None  # a 5xx answer, should retries run out
    retry_pending: bool = False  # the last attempt failed: decide its retry first
    pick: Pick | None = None  # an instance picked and admitted, not sent to yet
    permit: Permit | None = None
    upstream: Upstream | None = None
    attempt_start: float = 0.0
    response: Response | None = None  # its answer, whose body is to be streamed

    def expire(self) -> None:
        """The deadline passed: stop the exchange (answer 504, or abort)."""
        self.timed_out = True
        conn = self.conn
        if conn is None or conn.current is not self:
            return  # not started, or between the two paths: the worker checks timed_out
        fast = self.fast
        if fast is not None:
            fast.expire()
        elif conn.task is not None:
            conn.task.cancel()
