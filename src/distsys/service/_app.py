"""The per-request path: the envelope every request goes through, native or wrapped.

For each HTTP request: serve ``/healthz``, ``/readyz`` and ``/metrics`` directly; take
the request id from ``X-Request-ID`` (or make one) and the budget from
``X-Request-Timeout-Ms``; route it (or hand it to the wrapped app) under the request's
Context; answer, echoing the request id; count it. Everything that can be decided once
(routes, argument binders, metric series) was decided when the route was added, so the
path here is a header scan, a dict lookup, the handler, and one JSON encode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Final

import msgspec
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from distsys.context import TIMEOUT_HEADER, Context, decode_timeout, with_timeout
from distsys.errors import DeadlineExceededError, InvalidArgumentError
from distsys.http import new_request_id, with_request_id
from distsys.service._errors import HTTPError
from distsys.service._handler import Endpoint
from distsys.service._health import liveness, readiness
from distsys.service._lifespan import ASGIApp, Hook, InnerLifespan, Receive, Send
from distsys.service._metrics import UNMATCHED, RouteSeries, ServiceMetrics
from distsys.service._request import (
    CONTEXT_SCOPE_KEY,
    REQUEST_ID_SCOPE_KEY,
    ClientDisconnected,
    Request,
)
from distsys.service._response import JSON_TYPE, Response, error_body
from distsys.service._router import MethodNotAllowed, Router

if TYPE_CHECKING:
    from distsys.service._lifecycle import Lifecycle
    from distsys.service._registrar import Registrar

__all__ = ["HEALTH_PATH", "METRICS_PATH", "READY_PATH", "RESERVED_PATHS", "ServiceApp"]

HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"
METRICS_PATH: Final = "/metrics"
RESERVED_PATHS: Final = frozenset({HEALTH_PATH, READY_PATH, METRICS_PATH})
"""Paths every service answers itself (ahead of its routes or its wrapped app)."""

access_log = logging.getLogger("distsys.service.access")
log = logging.getLogger("distsys.service")

_ID_HEADER: Final = b"x-request-id"
_BUDGET_HEADER: Final = TIMEOUT_HEADER.lower().encode()
_MAX_ID: Final = 128
_CLIENT_GONE: Final = 499  # nginx's status for "the client closed the connection first"
_DEBUG: Final = logging.DEBUG
_encode = msgspec.json.Encoder().encode
_now = time.perf_counter


def _request_id(raw: bytes | None) -> tuple[str, bytes, bool]:
    """Return (id, id as bytes, generated): the caller's id if it is sane, else a new one."""
    if raw is not None and 0 < len(raw) <= _MAX_ID and raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable():
            return text, raw, False
    text = new_request_id()
    return text, text.encode("ascii"), True


class ServiceApp:
    """The ASGI application behind a :class:`~distsys.service.Service`.

    Safe within one event loop.
    """

    # Set by Service.__init__.
    _app: ASGIApp | None
    _router: Router[Endpoint]
    _metrics: ServiceMetrics
    _lifecycle: Lifecycle
    _registrar: Registrar | None
    _root: Context
    _max_body: int
    _startup: list[Hook]
    _shutdown: list[Hook]
    _lifespan_drives_lifecycle: bool
    _unmatched: dict[str, RouteSeries]

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (http, lifespan, or a wrapped app's websocket)."""
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self._app is not None:
            await self._app(scope, receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    # -- HTTP -------------------------------------------------------------------------------

    async def _http(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path in RESERVED_PATHS:
            await self._ops(path, scope, send)
            return
        raw_id = budget = None
        for name, value in scope["headers"]:
            if name == _ID_HEADER:
                raw_id = value
            elif name == _BUDGET_HEADER:
                budget = value
        rid, rid_bytes, generated = _request_id(raw_id)
        metrics = self._metrics
        metrics.in_flight += 1
        started = _now()
        status = 500
        series: RouteSeries | None = None
        try:
            if self._app is None:
                status, series = await self._native(scope, receive, send, rid, rid_bytes, budget)
            else:
                status, series = await self._wrapped(
                    scope, receive, send, rid, rid_bytes, generated, budget
                )
        finally:
            metrics.in_flight -= 1
            elapsed = _now() - started
            if series is None:
                method = scope["method"]
                series = self._unmatched.get(method) or self._unmatched_series(method)
            series.observe(status, elapsed)
            if access_log.isEnabledFor(_DEBUG):
                access_log.debug(
                    "%s %s %s %d %.2fms", rid, scope["method"], path, status, elapsed * 1000
                )

    def _unmatched_series(self, method: str) -> RouteSeries:
        series = self._unmatched[method] = self._metrics.series(method, UNMATCHED)
        return series

    async def _native(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        rid: str,
        rid_bytes: bytes,
        budget: bytes | None,
    ) -> tuple[int, RouteSeries | None]:
        method: str = scope["method"]
        try:
            found = self._router.match("GET" if method == "HEAD" else method, scope["path"])
        except MethodNotAllowed as exc:
            allowed = sorted(exc.allowed | ({"HEAD"} if "GET" in exc.allowed else set()))
            body = error_body(405, f"method {method} not allowed", rid, allowed=allowed)
            await _send(send, 405, body, rid_bytes, [(b"allow", ", ".join(allowed).encode())])
            return 405, None
        if found is None:
            await _send(send, 404, error_body(404, f"no route for {scope['path']}", rid), rid_bytes)
            return 404, None
        endpoint, params = found
        series = endpoint.series
        ctx: Context | None = None
        cancel = None
        if budget is not None:
            refused = _check_budget(budget, rid)
            if isinstance(refused, tuple):
                await _send(send, refused[0], refused[1], rid_bytes)
                return refused[0], series
            ctx, cancel = with_timeout(with_request_id(self._root, rid), refused)
        try:
            if ctx is None:
                if endpoint.simple:
                    result = await endpoint.handler(**params)
                else:
                    ctx = with_request_id(self._root, rid)
                    request = Request(
                        scope, receive, path_params=params, request_id=rid, ctx=ctx,
                        max_body=self._max_body,
                    )  # fmt: skip
                    result = await endpoint.call(request)
            else:
                async with ctx.scope():
                    request = Request(
                        scope, receive, path_params=params, request_id=rid, ctx=ctx,
                        max_body=self._max_body,
                    )  # fmt: skip
                    result = await endpoint.call(request)
            if isinstance(result, Response):
                status = result.status
                headers = [*result.raw_headers]
                body = result.body
            elif result is None:
                status = endpoint.status or 204
                headers = []
                body = b""
            else:
                status = endpoint.status or 200
                headers = [(b"content-type", JSON_TYPE)]
                body = _encode(result)
        except HTTPError as exc:
            status = exc.status
            await _send_error(send, exc, rid, rid_bytes)
            return status, series
        except DeadlineExceededError:
            await _send(send, 504, error_body(504, "deadline exceeded", rid), rid_bytes)
            return 504, series
        except ClientDisconnected:
            return _CLIENT_GONE, series
        except Exception:
            log.exception("%s %s %s failed", rid, method, scope["path"])
            await _send(send, 500, error_body(500, "internal server error", rid), rid_bytes)
            return 500, series
        finally:
            if cancel is not None:
                cancel()
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((_ID_HEADER, rid_bytes))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status, series

    async def _wrapped(
        self,
        scope: MutableMapping[str, Any],
        receive: Receive,
        send: Send,
        rid: str,
        rid_bytes: bytes,
        generated: bool,
        budget: bytes | None,
    ) -> tuple[int, RouteSeries | None]:
        app = self._app
        assert app is not None
        method: str = scope["method"]
        ctx = with_request_id(self._root, rid)
        cancel = None
        if budget is not None:
            refused = _check_budget(budget, rid)
            if isinstance(refused, tuple):
                await _send(send, refused[0], refused[1], rid_bytes)
                return refused[0], None
            ctx, cancel = with_timeout(ctx, refused)
        scope[CONTEXT_SCOPE_KEY] = ctx
        scope[REQUEST_ID_SCOPE_KEY] = rid
        if generated:  # let the app read it like any other header
            scope["headers"] = [*scope["headers"], (_ID_HEADER, rid_bytes)]
        status = 0

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(name.lower() == _ID_HEADER for name, _ in headers):
                    headers.append((_ID_HEADER, rid_bytes))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if cancel is None:
                await app(scope, receive, send_with_id)
            else:
                async with ctx.scope():
                    await app(scope, receive, send_with_id)
        except DeadlineExceededError:
            if status:
                raise  # the response has started: all we can do is cut it short
            status = 504
            await _send(send, 504, error_body(504, "deadline exceeded", rid), rid_bytes)
        except HTTPError as exc:
            if status:
                raise
            status = exc.status
            await _send_error(send, exc, rid, rid_bytes)
        except Exception:
            if status:
                raise  # the app answered (Starlette sends its 500, then re-raises): server logs
            log.exception("%s %s %s failed", rid, method, scope["path"])
            status = 500
            await _send(send, 500, error_body(500, "internal server error", rid), rid_bytes)
        finally:
            if cancel is not None:
                cancel()
        route = getattr(scope.get("route"), "path", None)
        template = route if isinstance(route, str) else UNMATCHED
        return status, self._metrics.series(method, template)

    # -- /healthz, /readyz, /metrics ----------------------------------------------------------

    async def _ops(self, path: str, scope: MutableMapping[str, Any], send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            body = _encode({"error": f"method {scope['method']} not allowed", "status": 405})
            await _send(send, 405, body, None, [(b"allow", b"GET, HEAD")])
            return
        state = self._lifecycle.state
        if path == METRICS_PATH:
            data = generate_latest(self._metrics.registry)
            await _send(send, 200, data, None, content_type=CONTENT_TYPE_LATEST.encode())
            return
        if path == HEALTH_PATH:
            status, report = liveness(state)
        else:
            health = None if self._registrar is None else self._registrar.health()
            status, report = readiness(state, health)
        await _send(send, status, _encode(report), None, [(b"cache-control", b"no-store")])

    # -- lifespan -----------------------------------------------------------------------------

    async def _lifespan(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Send
    ) -> None:
        inner = None if self._app is None else InnerLifespan(self._app, scope)
        await receive()  # lifespan.startup
        try:
            if self._lifespan_drives_lifecycle:
                self._lifespan_starting()
            if inner is not None:
                await inner.startup()
            for hook in self._startup:
                await hook()
        except Exception as exc:
            log.exception("startup failed")
            self._lifespan_failed(exc)
            await send({"type": "lifespan.startup.failed", "message": f"{exc!r}"})
            return
        if self._lifespan_drives_lifecycle:
            self._lifespan_running()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        if self._lifespan_drives_lifecycle:
            self._lifespan_stopping()
        failure: BaseException | None = None
        for hook in reversed(self._shutdown):
            try:
                await hook()
            except Exception as exc:
                log.exception("shutdown hook %r failed", hook)
                failure = failure or exc
        if inner is not None:
            try:
                await inner.shutdown()
            except Exception as exc:
                log.exception("the wrapped app failed to stop")
                failure = failure or exc
        if self._lifespan_drives_lifecycle:
            self._lifespan_stopped(failure)
        if failure is not None:
            await send({"type": "lifespan.shutdown.failed", "message": f"{failure!r}"})
        else:
            await send({"type": "lifespan.shutdown.complete"})

    # Lifecycle moves when an outside ASGI server (plain uvicorn, hypercorn) runs the app
    # and serve() is not in charge; the Service implements them.

    def _lifespan_starting(self) -> None:
        raise NotImplementedError

    def _lifespan_running(self) -> None:
        raise NotImplementedError

    def _lifespan_stopping(self) -> None:
        raise NotImplementedError

    def _lifespan_stopped(self, failure: BaseException | None) -> None:
        raise NotImplementedError

    def _lifespan_failed(self, failure: BaseException) -> None:
        raise NotImplementedError


def _check_budget(budget: bytes, rid: str) -> float | tuple[int, bytes]:
    """Return the budget in seconds, or the (status, body) that refuses the request."""
    try:
        seconds = decode_timeout(budget)
    except InvalidArgumentError as exc:
        return 400, error_body(400, str(exc), rid, field=TIMEOUT_HEADER)
    if seconds <= 0:
        # A budget already spent: the work is not started.
        return 504, error_body(504, "deadline exceeded before the request started", rid)
    return seconds


async def _send(
    send: Send,
    status: int,
    body: bytes,
    rid_bytes: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = JSON_TYPE,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if rid_bytes is not None:
        headers.append((_ID_HEADER, rid_bytes))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, exc: HTTPError, rid: str, rid_bytes: bytes) -> None:
    field = getattr(exc, "field", None)
    body = error_body(exc.status, exc.detail, rid, **({"field": field} if field else {}))
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await _send(send, exc.status, body, rid_bytes, extra)
