"""Service: routes, lifecycle, registration, health, metrics and drain around an ASGI app."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from distsys.clock import Clock, MonotonicClock
from distsys.context import background
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.registry import Instance, Registration, Registry
from distsys.registry._instance import _NAME, _NAME_ACCEPTED
from distsys.service._app import RESERVED_PATHS, ServiceApp
from distsys.service._errors import LifecycleError
from distsys.service._handler import Endpoint, bind
from distsys.service._lifecycle import Lifecycle, State
from distsys.service._lifespan import ASGIApp, Hook
from distsys.service._metrics import DEFAULT_BUCKETS, RouteSeries, ServiceMetrics
from distsys.service._registrar import Registrar
from distsys.service._router import Router, parse_template
from distsys.service._serving import Run, serve

__all__ = ["Service", "ServiceStatistics"]

log = logging.getLogger("distsys.service")

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


@dataclass(frozen=True, slots=True)
class ServiceStatistics:
    """A snapshot of a service.

    Attributes:
        name: the service name.
        instance_id: this instance's id.
        state: its lifecycle state.
        address: the bound ``(host, port)``, or None before it binds.
        requests: requests answered.
        in_flight: requests being handled now.
        server_errors: requests answered with a 5xx status.
        registered: whether it is registered in a registry now.
        registry_reachable: whether its registry answered its last heartbeat in time
            (None when it registers nowhere).
    """

    name: str
    instance_id: str
    state: State
    address: tuple[str, int] | None
    requests: int
    in_flight: int
    server_errors: int
    registered: bool
    registry_reachable: bool | None


def _check_name(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ArgumentTypeError(field, value, _NAME_ACCEPTED)
    if not _NAME.fullmatch(value):
        raise InvalidArgumentError(field, value, _NAME_ACCEPTED)
    return value


def _check_seconds(field: str, value: object, *, positive: bool = False) -> float:
    accepted = f"a finite number of seconds {'> 0' if positive else '>= 0'}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, accepted)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


class Service(ServiceApp):
    """An HTTP service: async JSON handlers, or any ASGI app, inside the distsys envelope.

    The envelope gives every service ``/healthz``, ``/readyz`` and ``/metrics``, a request
    id (``X-Request-ID``) and a Context per request built from ``X-Request-Timeout-Ms``
    (work past the deadline is cancelled and answered 504), an explicit lifecycle
    (:class:`State`), registration with a lease while it runs, and a graceful drain on
    SIGTERM. The service is itself an ASGI app: ``await svc.serve()`` runs it on uvicorn
    (uvloop + httptools with ``svc.run()``), and any ASGI server or test client can call it.

    Args:
        name: the service name (1-128 of ``A-Z a-z 0-9 . _ -``), as registered.
        version: the service's version, in its metrics and registry metadata.
        app: an ASGI app (FastAPI, Starlette ...) to wrap instead of defining routes.
        instance_id: this instance's id (default: the name and 8 random hex digits).
        metadata: extra registry metadata (``version`` is added).
        zone: the instance's zone, for zone-aware callers.
        weight: its relative weight for weighted balancers.
        ttl: the registry lease in seconds.
        heartbeat: seconds between lease renewals (default ``ttl / 3``).
        max_body_size: the largest request body read, in bytes (413 beyond).
        buckets: latency histogram bounds in seconds.
        registry_timeout: seconds any one registry call may take before it counts as failed.
        clock: the clock of request deadlines and registry heartbeats.

    Raises:
        InvalidArgumentError: an argument is invalid (the message names it).

    Safe within one event loop; ``stop()`` may be called from any thread.
    """

    def __init__(
        self,
        name: str,
        version: str = "0.0.0",
        *,
        app: ASGIApp | None = None,
        instance_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        zone: str = "",
        weight: int = 1,
        ttl: float = 10.0,
        heartbeat: float | None = None,
        max_body_size: int = 1 << 20,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        registry_timeout: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.name = _check_name("name", name)
        if not isinstance(version, str) or not version:
            raise ArgumentTypeError("version", version, "a non-empty str such as '1.2.0'")
        self.version = version
        if app is not None and not callable(app):
            raise ArgumentTypeError("app", app, "an ASGI application (async callable)")
        self.instance_id = _check_name(
            "instance_id",
            instance_id if instance_id is not None else f"{name}-{secrets.token_hex(4)}",
        )
        if (
            isinstance(max_body_size, bool)
            or not isinstance(max_body_size, int)
            or max_body_size < 0
        ):
            raise InvalidArgumentError("max_body_size", max_body_size, "an int >= 0 (bytes)")
        self._metadata = {"version": version, **dict(metadata or {})}
        self._zone = zone
        self._weight = weight
        # Check zone, weight and metadata now (naming the field), not when registering.
        Instance(
            name,
            self.instance_id,
            "localhost",
            1,
            metadata=self._metadata,
            zone=zone,
            weight=weight,
        )
        self._ttl = _check_seconds("ttl", ttl, positive=True)
        self._heartbeat = (
            None if heartbeat is None else _check_seconds("heartbeat", heartbeat, positive=True)
        )
        self._registry_timeout = _check_seconds("registry_timeout", registry_timeout, positive=True)
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        # The envelope's state (see ServiceApp).
        self._app = app
        self._router = Router()
        self._lifecycle = Lifecycle(name)
        self._metrics = ServiceMetrics(
            service=name,
            version=version,
            instance=lambda: self.instance_id,
            state=lambda: self._lifecycle.state,
            buckets=buckets,
        )
        self._registrar: Registrar | None = None
        self._root = background(clock=self._clock)
        self._max_body = max_body_size
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._lifespan_drives_lifecycle = True
        self._unmatched: dict[str, RouteSeries] = {}
        # Serving.
        self._address: tuple[str, int] | None = None
        self._instance: Instance | None = None
        self._run: Run | None = None
        self._startup_failure: BaseException | None = None

    @classmethod
    def wrap(cls, app: ASGIApp, *, name: str, version: str = "0.0.0", **options: Any) -> Service:
        """Return a Service that serves the ASGI ``app`` (FastAPI, Starlette ...) in the envelope.

        The app keeps its routes, middleware and lifespan; the service adds ``/healthz``,
        ``/readyz``, ``/metrics`` (routes labelled by the app's route templates), request
        ids, per-request Contexts and deadlines, registration and drain. Inside the app,
        ``context_of(request)`` and ``request_id_of(request)`` give the Context and id.

        Args:
            app: the ASGI application.
            name: the service name.
            version: its version.
            **options: any other :class:`Service` option.
        """
        return cls(name, version, app=app, **options)

    # -- routes -------------------------------------------------------------------------------

    def route(
        self, path: str, *, methods: Iterable[str], status: int | None = None
    ) -> Callable[[F], F]:
        """Return a decorator that routes ``methods`` on ``path`` to an async handler.

        Args:
            path: a template such as ``/orders/{id:int}`` (see the module docs).
            methods: the HTTP methods (GET also answers HEAD).
            status: the status of a successful answer (default 200, or 204 when the
                handler returns None).

        Raises:
            InvalidArgumentError: the path, a method or the handler's signature is invalid,
                or the service wraps an app (which brings its own routes).
        """
        if self._app is not None:
            raise InvalidArgumentError(
                "app", self._app, "no wrapped app: a wrapped app brings its own routes"
            )
        template = parse_template(path)
        if template.text in RESERVED_PATHS:
            raise InvalidArgumentError(
                "path", path, f"a path other than {', '.join(sorted(RESERVED_PATHS))}",
                detail="the service answers it itself",
            )  # fmt: skip
        wanted = [m.upper() for m in methods] if not isinstance(methods, str) else [methods.upper()]
        for method in wanted:
            if method not in _METHODS:
                raise InvalidArgumentError("methods", method, f"one of {', '.join(_METHODS)}")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 399
        ):
            raise InvalidArgumentError("status", status, "a success status in 200..399")

        def decorate(handler: F) -> F:
            for method in wanted:
                series = self._metrics.series(method, template.text)
                endpoint: Endpoint = bind(handler, template, status, series)
                self._router.add(method, template, endpoint)
            return handler

        return decorate

    def get(self, path: str, *, status: int | None = None) -> Callable[[F], F]:
        """Route GET (and HEAD) on ``path``: ``@svc.get("/orders/{id:int}")``."""
        return self.route(path, methods=["GET"], status=status)

    def post(self, path: str, *, status: int | None = None) -> Callable[[F], F]:
        """Route POST on ``path``."""
        return self.route(path, methods=["POST"], status=status)

    def put(self, path: str, *, status: int | None = None) -> Callable[[F], F]:
        """Route PUT on ``path``."""
        return self.route(path, methods=["PUT"], status=status)

    def delete(self, path: str, *, status: int | None = None) -> Callable[[F], F]:
        """Route DELETE on ``path``."""
        return self.route(path, methods=["DELETE"], status=status)

    def patch(self, path: str, *, status: int | None = None) -> Callable[[F], F]:
        """Route PATCH on ``path``."""
        return self.route(path, methods=["PATCH"], status=status)

    def on_startup(self, hook: Hook) -> Hook:
        """Run ``await hook()`` at startup, before the service listens (decorator)."""
        if not callable(hook):
            raise ArgumentTypeError("hook", hook, "an async function without arguments")
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: Hook) -> Hook:
        """Run ``await hook()`` after the drain (decorator); hooks run in reverse order."""
        if not callable(hook):
            raise ArgumentTypeError("hook", hook, "an async function without arguments")
        self._shutdown.append(hook)
        return hook

    # -- state ----------------------------------------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """The service's state machine (add listeners, wait for a state)."""
        return self._lifecycle

    @property
    def state(self) -> State:
        """The current lifecycle state."""
        return self._lifecycle.state

    @property
    def metrics(self) -> ServiceMetrics:
        """The request metrics; ``metrics.registry`` is the per-service CollectorRegistry."""
        return self._metrics

    @property
    def address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` (the real port when asked for port 0), once bound."""
        return self._address

    @property
    def url(self) -> str | None:
        """``http://host:port`` of the bound socket, once bound."""
        if self._address is None:
            return None
        host, port = self._address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def instance(self) -> Instance | None:
        """The instance as registered (None when not registering)."""
        registrar = self._registrar
        if registrar is not None and registrar.registration is not None:
            return registrar.registration.instance
        return self._instance

    @property
    def registration(self) -> Registration | None:
        """The live registration, if the service is registered now."""
        return None if self._registrar is None else self._registrar.registration

    def statistics(self) -> ServiceStatistics:
        """Return a snapshot: state, address, request counts, registration."""
        health = None if self._registrar is None else self._registrar.health()
        return ServiceStatistics(
            name=self.name,
            instance_id=self.instance_id,
            state=self.state,
            address=self._address,
            requests=self._metrics.requests(),
            in_flight=self._metrics.in_flight,
            server_errors=self._metrics.server_errors(),
            registered=health is not None and health.registered,
            registry_reachable=None if health is None else health.reachable,
        )

    # -- running --------------------------------------------------------------------------------

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        registry: Registry | str | None = None,
        drain_timeout: float = 30.0,
        drain_delay: float = 0.0,
        advertise_host: str | None = None,
        handle_signals: bool = True,
    ) -> None:
        """Serve until stopped (``stop()``, SIGTERM or SIGINT), then drain and return.

        Starting: bind ``host:port`` (port 0 picks a free port), run the startup hooks
        and the wrapped app's lifespan, listen, register the real address. Running: serve.
        Stopping: mark the instance DRAINING, wait ``drain_delay`` (still serving, so
        callers' resolvers see it leave first), deregister, stop accepting connections,
        let in-flight requests finish for up to ``drain_timeout`` seconds (then cancel
        them), run the shutdown hooks. A second signal skips the rest of the drain.

        Args:
            host: the address to bind.
            port: the port to bind; 0 for a free one (``svc.address`` has the real one).
            registry: a :class:`Registry` or a registry URL to register in (None: none).
            drain_timeout: seconds in-flight requests get to finish once stopping.
            drain_delay: seconds to keep serving after publishing DRAINING.
            advertise_host: the host to register (default: the bound address; the
                machine's address for a wildcard bind).
            handle_signals: install SIGTERM / SIGINT handlers (main thread only).

        Raises:
            LifecycleError: the service is not NEW (a service runs once).
            InvalidArgumentError: an argument is invalid.
            OSError: the address cannot be bound.
        """
        if not isinstance(host, str) or not host:
            raise ArgumentTypeError("host", host, "a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidArgumentError("port", port, "an int in 0..65535 (0: any free port)")
        drain_timeout = _check_seconds("drain_timeout", drain_timeout)
        drain_delay = _check_seconds("drain_delay", drain_delay)
        if registry is not None and not isinstance(registry, Registry | str):
            raise ArgumentTypeError("registry", registry, "a Registry or a registry URL")
        if self._lifecycle.state is not State.NEW:
            raise LifecycleError(
                f"{self.name} is {self.state.name}: a service is served once",
                self.state,
                self._lifecycle.failure,
            )
        registrar = None
        if registry is not None:
            registrar = Registrar(
                registry,
                ttl=self._ttl,
                heartbeat=self._heartbeat,
                clock=self._clock,
                timeout=self._registry_timeout,
            )
        self._lifecycle.transition(State.STARTING)
        self._lifespan_drives_lifecycle = False
        run = self._run = Run(asyncio.get_running_loop())
        await serve(
            self,
            run,
            host=host,
            port=port,
            registrar=registrar,
            drain_timeout=drain_timeout,
            drain_delay=drain_delay,
            advertise_host=advertise_host,
            handle_signals=handle_signals,
        )

    def run(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        **options: Any,
    ) -> None:
        """Serve on a new uvloop event loop until stopped: ``serve()`` for scripts.

        Takes the same arguments as :meth:`serve`.
        """
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self.serve(host, port, **options))

    def stop(self, *, force: bool = False) -> None:
        """Begin a graceful stop of ``serve()``; idempotent, safe from any thread.

        Args:
            force: skip what is left of the drain — the drain delay, the wait for
                in-flight requests, the shutdown hooks — as a second SIGTERM does.

        A service that was never started goes straight to TERMINATED.
        """
        if self._run is None:
            if self._lifecycle.state is State.NEW:
                self._lifecycle.transition(State.TERMINATED)
            return
        self._run.request_stop(force=force)

    def _instance_at(self, host: str) -> Instance:
        """Return the instance to register for the bound port, reachable at ``host``."""
        assert self._address is not None
        self._instance = Instance(
            self.name,
            self.instance_id,
            host,
            self._address[1],
            metadata=self._metadata,
            zone=self._zone,
            weight=self._weight,
        )
        return self._instance

    # -- lifespan driving the lifecycle (when another server runs the app) ----------------------

    def _lifespan_starting(self) -> None:
        self._lifecycle.transition(State.STARTING)

    def _lifespan_running(self) -> None:
        self._lifecycle.transition(State.RUNNING)

    def _lifespan_stopping(self) -> None:
        if self._lifecycle.can_move(State.STOPPING):
            self._lifecycle.transition(State.STOPPING)

    def _lifespan_stopped(self, failure: BaseException | None) -> None:
        target = State.TERMINATED if failure is None else State.FAILED
        if self._lifecycle.can_move(target):
            self._lifecycle.transition(target, failure)

    def _lifespan_failed(self, failure: BaseException) -> None:
        self._startup_failure = failure
        if self._lifespan_drives_lifecycle and self._lifecycle.can_move(State.FAILED):
            self._lifecycle.transition(State.FAILED, failure)

    def __repr__(self) -> str:
        where = f" on {self.url}" if self._address else ""
        return f"<Service {self.name} {self.version} {self.state.name}{where}>"
