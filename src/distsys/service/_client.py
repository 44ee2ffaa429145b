"""ServiceClient: call a service by name — discovery, balancing, breakers, retries, deadlines.

The request path, per call::

    Resolver (live instance list) ─▶ Balancer.pick(exclude=tried) ─▶ instance's
    CircuitBreaker.allow() ─▶ transport (pooled keep-alive connection) ─▶ outcome to
    breaker and balancer ─▶ on a retryable failure: RetryBudget.try_retry(), backoff
    (never past the deadline), another instance

Every attempt carries the call's remaining budget (``X-Request-Timeout-Ms``) and its
request id (``X-Request-ID``: the caller's header, the Context's id, or a new one; the
same for every attempt). See ``docs/service-client.md``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Final

from distsys.balancer import Balancer, make_balancer
from distsys.clock import Clock, MonotonicClock
from distsys.context import TIMEOUT_HEADER, Context, background, encode_timeout, with_timeout
from distsys.errors import (
    ArgumentTypeError,
    BreakerOpenError,
    DistsysError,
    InvalidArgumentError,
    NoInstancesError,
)
from distsys.hashring import Key
from distsys.http import (
    DEFAULT_READ_LIMIT,
    HTTPClient,
    is_idempotent,
)
from distsys.registry import Registry, Resolver
from distsys.resilience import Backoff, CircuitBreaker, RetryBudget
from distsys.resilience._retry_wait import sleep_async
from distsys.service._client_discovery import BreakerFactory, Discovery
from distsys.service._client_errors import annotate, call_ended, no_instances
from distsys.service._client_instance import Upstream
from distsys.service._client_request import UNSET, Call, build_call
from distsys.service._client_response import ServiceResponse
from distsys.service._client_retry import judge_error, judge_status
from distsys.service._client_settings import ClientSettings, check_seconds
from distsys.service._client_statistics import ServiceClientStatistics, instance_records

__all__ = ["ServiceClient"]

_TIMEOUT_NAME: Final = TIMEOUT_HEADER.encode()


class ServiceClient:
    """Call the instances of one service, found in a registry, and survive their failures.

    ``async with ServiceClient("orders", registry="sqlite:///...") as orders:`` then
    ``await orders.get("/orders/7")``. Each call picks an instance with the balancer
    (P2C-EWMA by default) among those the resolver reports UP and not ejected, goes
    through that instance's circuit breaker, and is sent on a pooled keep-alive
    connection. A breaker that opens ejects its instance from the balancer until it may
    be tried again. A failed attempt is retried on another instance when that is safe
    (see ``_client_retry``: always if nothing was sent, else only idempotent requests),
    at most ``attempts`` attempts in all, each retry granted by the retry budget, after a
    jittered backoff that never runs past the deadline.

    Errors say which service, which instance and why: :class:`NoInstancesError`
    (``.reason``), :class:`BreakerOpenError`, :class:`DeadlineExceededError`, and the
    transport's :class:`~distsys.http.UpstreamError` subclasses with ``.service`` and
    ``.instance`` set. An error status is returned, not raised:
    ``response.raise_for_status()`` raises :class:`UpstreamStatusError`.

    Safe within one event loop: use one client per loop (its connections belong to it).

    Args:
        service: the service to call.
        registry: a :class:`Registry`, or a registry URL (opened and closed by the
            client). Give this or ``resolver``.
        resolver: a resolver of ``service`` to share (started if it is not; never
            closed by the client).
        http: the transport to share (default: a new :class:`~distsys.http.HTTPClient`,
            closed with the client).
        balancer: a balancer name for :func:`~distsys.balancer.make_balancer`
            (default ``"p2c_ewma"``) or a :class:`Balancer` of this service.
        breaker: a factory ``name -> CircuitBreaker`` for the per-instance breakers
            (default: ``CircuitBreaker(name, clock=clock)`` with its defaults: 50% of at
            least 20 calls in 10 s opens it for 5 s).
        retry_budget: the budget retries draw from (default ``RetryBudget(clock=clock)``:
            20% of requests, at least 3 per 10 s).
        attempts: the most attempts per call, the first included (>= 1; default 3).
        backoff: the delay before each retry (default ``Backoff(0.025, 0.25)``, full
            jitter, as Envoy's defaults).
        retry_statuses: answers retried on another instance for repeatable requests
            (default 502, 503, 504).
        timeout: seconds a call may take in all when its Context has no earlier
            deadline (default 10; None: no limit of the client's own).
        attempt_timeout: seconds one attempt may take before it is abandoned and
            retried (default None: only the call's deadline).
        max_body: the largest response body accepted (default 16 MiB).
        headers: headers sent with every request.
        clock: the time source of deadlines, breakers, the balancer and the budget.
        rng: the source of random choices (balancer, backoff jitter).

    Raises:
        InvalidArgumentError / ArgumentTypeError: a setting is invalid (the message names
            it).
    """

    def __init__(
        self,
        service: str,
        registry: Registry | str | None = None,
        *,
        resolver: Resolver | None = None,
        http: HTTPClient | None = None,
        balancer: str | Balancer = "p2c_ewma",
        breaker: BreakerFactory | None = None,
        retry_budget: RetryBudget | None = None,
        attempts: int = 3,
        backoff: Backoff | None = None,
        retry_statuses: Collection[int] = (502, 503, 504),
        timeout: float | None = 10.0,
        attempt_timeout: float | None = None,
        max_body: int = DEFAULT_READ_LIMIT,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(service, str) or not service:
            raise ArgumentTypeError("service", service, "a service name")
        self.service = service
        if (registry is None) == (resolver is None):
            raise InvalidArgumentError(
                "registry", registry, "a Registry or a registry URL, or else resolver= (one)"
            )
        if registry is not None and not isinstance(registry, Registry | str):
            raise ArgumentTypeError("registry", registry, "a Registry or a registry URL")
        if resolver is not None and not isinstance(resolver, Resolver):
            raise ArgumentTypeError("resolver", resolver, "a Resolver")
        if resolver is not None and resolver.service != service:
            raise InvalidArgumentError("resolver", resolver, f"a resolver of {service!r}")
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._rng = rng if rng is not None else random.Random()
        if isinstance(balancer, Balancer):
            self._balancer = balancer
        else:
            self._balancer = make_balancer(
                balancer, service=service, clock=self._clock, rng=self._rng
            )
        if breaker is not None and not callable(breaker):
            raise ArgumentTypeError("breaker", breaker, "a callable name -> CircuitBreaker")
        if retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ArgumentTypeError("retry_budget", retry_budget, "a RetryBudget")
        self._budget = retry_budget if retry_budget is not None else RetryBudget(clock=self._clock)
        self._settings = ClientSettings(
            attempts=attempts,
            backoff=backoff if backoff is not None else Backoff(0.025, 0.25, rng=self._rng),
            retry_statuses=retry_statuses,
            timeout=timeout,
            attempt_timeout=attempt_timeout,
            max_body=max_body,
            headers=headers,
        )
        if http is not None and not isinstance(http, HTTPClient):
            raise ArgumentTypeError("http", http, "an HTTPClient")
        self._http = http if http is not None else HTTPClient()
        self._owns_http = http is None
        self._discovery = Discovery(
            service, registry, resolver, self._balancer, self._http, breaker, self._clock
        )
        self._root = background(clock=self._clock)
        self._starting: asyncio.Future[None] | None = None
        self._closed = False
        self._requests = 0
        self._succeeded = 0
        self._failed = 0
        self._attempted = 0
        self._retries = 0
        self._retries_denied = 0
        self._rejected = 0
        self._unavailable = 0

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start following the service (the first call does it too); idempotent.

        Raises:
            BackendUnavailableError: the registry gave no list of instances in time.
        """
        if self._closed:
            raise DistsysError(f"the ServiceClient of {self.service!r} is closed")
        starting = self._starting
        if starting is not None:
            await asyncio.shield(starting)
            return
        starting = self._starting = asyncio.get_running_loop().create_future()
        try:
            await self._discovery.start()
        except BaseException as exc:
            self._starting = None
            if isinstance(exc, Exception):
                starting.set_exception(exc)
                starting.exception()  # retrieved: a later start() tries again
            else:
                starting.cancel()
            raise
        starting.set_result(None)

    async def aclose(self) -> None:
        """Stop following the service and close what the client opened. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._discovery.aclose()
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ServiceClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------- calls

    async def get(self, path: str, **options: Any) -> ServiceResponse:
        """``request("GET", path, ...)``."""
        return await self.request("GET", path, **options)

    async def post(self, path: str, **options: Any) -> ServiceResponse:
        """``request("POST", path, ...)`` (not retried once sent, unless ``idempotent=True``)."""
        return await self.request("POST", path, **options)

    async def put(self, path: str, **options: Any) -> ServiceResponse:
        """``request("PUT", path, ...)``."""
        return await self.request("PUT", path, **options)

    async def delete(self, path: str, **options: Any) -> ServiceResponse:
        """``request("DELETE", path, ...)``."""
        return await self.request("DELETE", path, **options)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        json: Any = UNSET,
        content: bytes | AsyncIterable[bytes] | None = None,
        ctx: Context | None = None,
        timeout: float | None = UNSET,
        idempotent: bool | None = None,
        key: Key | None = None,
    ) -> ServiceResponse:
        """Call the service: pick an instance, send, retry elsewhere if safe and allowed.

        Args:
            method: ``"GET"``, ``"POST"`` ...
            path: the path, starting with ``/`` (a query may follow).
            params: query parameters to append.
            headers: extra headers for this call.
            json: a value to send as JSON (msgspec); sets ``Content-Type``.
            content: the body as bytes, or an async iterable of chunks (never retried
                once sent: it cannot be replayed).
            ctx: the caller's Context: its deadline bounds the call and is forwarded,
                its request id is forwarded.
            timeout: this call's limit in seconds (default: the client's ``timeout``).
            idempotent: whether the request may be repeated (default: by its method).
            key: the request's key, for the ``consistent_hash`` balancer.

        Returns:
            The response, its body read whole (any status: see ``raise_for_status``).

        Raises:
            NoInstancesError: no instance is eligible (``.reason`` says why).
            BreakerOpenError: every eligible instance's breaker refused the call.
            DeadlineExceededError / CanceledError: the Context (or ``timeout``) ended.
            UpstreamError: the last attempt failed (``ConnectError``,
                ``ConnectionLostError``, ``ProtocolError``, ``ResponseTooLargeError``),
                with ``.service`` and ``.instance``.
            InvalidArgumentError: the request is not acceptable.
        """
        if self._starting is None or not self._starting.done():
            await self.start()
        if self._closed:
            raise DistsysError(f"the ServiceClient of {self.service!r} is closed")
        call = build_call(self._settings, method, path, params, headers, json, content, ctx)
        if idempotent is None:
            idempotent = is_idempotent(method)
        repeatable = idempotent and call.replayable
        limit = self._settings.timeout if timeout is UNSET else check_seconds("timeout", timeout)
        base = ctx if ctx is not None else self._root
        if limit is not None:
            # Not cancelled afterwards: its timer is armed only while a request waits, and
            # the parent holds it weakly, so dropping it releases everything (and saves
            # the cost of ending it on every call).
            base, _ = with_timeout(base, limit)
        self._requests += 1
        return await self._call(call, base, repeatable, key)

    async def _call(
        self, call: Call, ctx: Context, repeatable: bool, key: Key | None
    ) -> ServiceResponse:
        tried: list[str] = []
        attempt = 0
        last_error: BaseException | None = None
        last_response: ServiceResponse | None = None
        self._budget.record_request()
        clock = self._clock
        while True:
            if ctx.err() is not None:
                self._failed += 1
                raise call_ended(self.service, ctx, last_error)
            try:
                pick = self._balancer.pick(key, exclude=tried)
            except NoInstancesError as exc:
                if last_response is not None:
                    return self._finish(last_response)
                self._failed += 1
                if last_error is not None:
                    raise last_error from None
                self._unavailable += 1
                raise no_instances(exc, self._discovery.resolver) from None
            instance = pick.instance
            upstream = self._discovery.upstream(instance)
            try:
                permit = upstream.breaker.allow()
            except BreakerOpenError as exc:
                pick.abandon()
                self._rejected += 1
                tried.append(instance.id)
                if last_error is None or isinstance(last_error, BreakerOpenError):
                    last_error = exc
                continue
            attempt += 1
            self._attempted += 1
            start = clock.now()
            try:
                response = await self._attempt(upstream, call, ctx)
            except BaseException as exc:
                verdict = (
                    judge_error(exc, repeatable=repeatable, call_ended=ctx.err() is not None)
                    if isinstance(exc, Exception)
                    else None
                )
                if verdict is None:  # cancellation, or a request the caller got wrong
                    permit.ignore()
                    pick.abandon()
                    raise
                upstream.record(clock.now() - start, verdict.counts)
                if verdict.counts:
                    permit.failure(exc)
                    pick.done(error=True)
                else:
                    permit.ignore()
                    pick.abandon()
                last_error = annotate(exc, self.service, upstream.instance, ctx, attempt)
                last_response = None
                if not verdict.retryable or not await self._may_retry(attempt, ctx):
                    self._failed += 1
                    if last_error is exc:
                        raise
                    raise last_error from exc
                tried.append(instance.id)
                continue
            response.attempts = attempt
            status = response.status
            if status < 500 and status not in self._settings.retry_statuses:  # the common case
                upstream.record(clock.now() - start, False)
                permit.success()
                pick.done()
                self._succeeded += 1
                return response
            verdict = judge_status(status, self._settings.retry_statuses, repeatable=repeatable)
            upstream.record(clock.now() - start, verdict.counts)
            if verdict.counts:
                permit.failure()
                pick.done(error=True)
            else:
                permit.success()
                pick.done()
            if verdict.retryable and await self._may_retry(attempt, ctx):
                last_response = response
                last_error = None
                tried.append(instance.id)
                continue
            return self._finish(response)

    async def _attempt(self, upstream: Upstream, call: Call, ctx: Context) -> ServiceResponse:
        cancel = None
        if self._settings.attempt_timeout is not None:
            ctx, cancel = with_timeout(ctx, self._settings.attempt_timeout)
        try:
            budget = encode_timeout(ctx)
            headers = call.headers
            if budget is not None:
                headers = [*headers, (_TIMEOUT_NAME, budget.encode())]
            response = await upstream.pool.request(
                call.method, call.target, headers, call.body, ctx=ctx
            )
            content = await response.read(self._settings.max_body)
        finally:
            if cancel is not None:
                cancel()
        return ServiceResponse(
            response.status,
            response.headers,
            content,
            service=self.service,
            instance=upstream.instance,
            method=call.method,
            path=call.target,
        )

    async def _may_retry(self, attempt: int, ctx: Context) -> bool:
        """Decide (and wait for) a retry: attempts left, budget, and time before the deadline."""
        if attempt >= self._settings.attempts:
            return False
        delay = self._settings.backoff.delay(attempt - 1)
        remaining = ctx.remaining()
        if remaining is not None and delay >= remaining:
            return False
        if not self._budget.try_retry():
            self._retries_denied += 1
            return False
        self._retries += 1
        return delay <= 0 or await sleep_async(delay, self._clock, ctx)

    def _finish(self, response: ServiceResponse) -> ServiceResponse:
        if response.status >= 500:
            self._failed += 1
        else:
            self._succeeded += 1
        return response

    # --------------------------------------------------------------- reporting

    def statistics(self) -> ServiceClientStatistics:
        """Return the call counts, one record per instance, and the retry budget."""
        return ServiceClientStatistics(
            service=self.service,
            requests=self._requests,
            succeeded=self._succeeded,
            failed=self._failed,
            attempts=self._attempted,
            retries=self._retries,
            retries_denied=self._retries_denied,
            rejected=self._rejected,
            unavailable=self._unavailable,
            instances=instance_records(self._discovery.upstreams, self._balancer),
            budget=self._budget.statistics(),
            stale=self._discovery.stale,
        )

    @property
    def balancer(self) -> Balancer:
        """The balancer (for its statistics, or to eject an instance by hand)."""
        return self._balancer

    def breaker(self, instance_id: str) -> CircuitBreaker | None:
        """Return the breaker of an instance called at least once, else None."""
        upstream = self._discovery.upstreams.get(instance_id)
        return None if upstream is None else upstream.breaker

    def __repr__(self) -> str:
        return f"<ServiceClient {self.service} instances={len(self._balancer.instances)}>"
