"""Gateway: serve the routes, reload them live, answer the admin API, stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from distsys.clock import Clock
from distsys.errors import DistsysError
from distsys.gateway._admin import AdminServer, Reply, json_reply
from distsys.gateway._config import GatewayConfig
from distsys.gateway._config_load import check_config, load_config, parse_config, split_address
from distsys.gateway._deadlines import DeadlineQueue
from distsys.gateway._downstream import Downstream
from distsys.gateway._errors import GatewayConfigError
from distsys.gateway._frontend import Frontend
from distsys.gateway._limits import Limiter, make_limiter
from distsys.gateway._routes import Route, RouteTable
from distsys.gateway._stats import GatewayCollector, RouteStats
from distsys.gateway._targets import Services, Target, TargetKey, target_key
from distsys.gateway._views import routes_view, services_view, stats_view
from distsys.http import HTTPClient
from distsys.registry import Registry, open_registry

__all__ = ["Gateway", "GatewayStatistics"]

log = logging.getLogger("distsys.gateway")

_WINDOW: Final = 10  # seconds of the rolling rates
_FIXED: Final = ("listen", "admin", "registry", "upstream")  # a reload cannot change them


@dataclass(frozen=True, slots=True)
class GatewayStatistics:
    """A snapshot of a :class:`Gateway`.

    Attributes:
        state: ``new``, ``starting``, ``running``, ``stopping`` or ``stopped``.
        address: the ``(host, port)`` served, or None before :meth:`Gateway.start`.
        admin_address: the admin API's ``(host, port)``, or None.
        routes: routes in force.
        connections: client connections open.
        in_flight: requests being answered.
        requests: requests answered since the start (every route, and unmatched ones).
        reloads: configurations applied after the first.
        reload_errors: reloads refused (the configuration in force was kept).
        last_reload_error: why the last reload was refused, or None if it succeeded.
        stale_services: services whose view is stale (the registry is unreachable).
    """

    state: str
    address: tuple[str, int] | None
    admin_address: tuple[str, int] | None
    routes: int
    connections: int
    in_flight: int
    requests: int
    reloads: int
    reload_errors: int
    last_reload_error: str | None
    stale_services: tuple[str, ...]


class Gateway:
    """An HTTP API gateway: routes by path prefix to services found in a registry.

    ``await gateway.serve()`` serves until :meth:`stop` (SIGHUP reloads the file);
    ``async with Gateway(config):`` starts and stops it around a block. Requests are
    proxied on asyncio Protocols (httptools) over pooled keep-alive upstream connections,
    streamed both ways; see ``docs/gateway.md`` for the request path, the limits and the
    statuses. :meth:`reload` (or SIGHUP, or a change of the file's modification time)
    swaps the routes in without dropping a request: requests in flight finish on the
    routes they matched; a configuration that does not check out is refused, logged, and
    reported by the admin API, and the one in force stays.

    Safe within one event loop: start, reload and stop it from the loop it serves on.

    Args:
        config: a :class:`GatewayConfig`, a mapping (parsed TOML), or the path of a TOML
            file (then watched for changes every ``reload_interval``).
        registry: the registry to use instead of opening ``config.registry`` (for
            ``memory://`` registries shared with the services of the same process).

    Raises:
        GatewayConfigError: the configuration is invalid (the message names the key).
        OSError: the file cannot be read.
    """

    def __init__(
        self,
        config: GatewayConfig | Mapping[str, Any] | str | os.PathLike[str],
        *,
        registry: Registry | None = None,
    ) -> None:
        self._path: str | None = None
        self._stamp: tuple[int, int, int] | None = None
        if isinstance(config, GatewayConfig):
            check_config(config)
        elif isinstance(config, Mapping):
            config = parse_config(config)
        else:
            self._path = os.fspath(config)
            self._stamp = _stamp(self._path)
            config = load_config(self._path)
        self._config: GatewayConfig = config
        self._registry_arg = registry
        self._registry: Registry | None = None
        self._front: Frontend | None = None
        self._http: HTTPClient | None = None
        self._services: Services | None = None
        self._server: asyncio.Server | None = None
        self._admin = AdminServer(self._admin_request)
        self._targets: dict[TargetKey, Target] = {}
        self._limiters: dict[str, Limiter] = {}
        self._retired: list[Limiter] = []
        self._stats: dict[str, RouteStats] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()
        self._stopped = asyncio.Event()
        self._state = "new"
        self._address: tuple[str, int] | None = None
        self._reloads = 0
        self._reload_errors = 0
        self._last_reload_error: str | None = None
        self.metrics = CollectorRegistry(auto_describe=True)
        """The gateway's own Prometheus registry (what ``/metrics`` serves)."""
        self.metrics.register(GatewayCollector(self._all_stats, self._gauges))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the registry, follow the services, listen, serve the admin API.

        Raises:
            BackendUnavailableError: the registry gave no instance list in time.
            OSError: an address cannot be bound.
            DistsysError: the gateway was started before.
        """
        if self._state != "new":
            raise DistsysError(f"the gateway was started before (it is {self._state})")
        self._state = "starting"
        loop = asyncio.get_running_loop()
        config = self._config
        try:
            self._front = Frontend(loop, config.limits)
            if self._registry_arg is not None:
                self._registry = self._registry_arg
            else:
                self._registry = open_registry(config.registry)
            upstream = config.upstream
            self._http = HTTPClient(
                max_connections=upstream.max_connections,
                connect_timeout=float(upstream.connect_timeout),
                idle_timeout=float(upstream.idle_timeout),
            )
            self._services = Services(self._registry)
            await self._install(config)
            front = self._front
            host, port = split_address("listen", config.listen)
            self._server = await loop.create_server(
                lambda: Downstream(front), host, port, backlog=2048, reuse_address=True
            )
            sockname = self._server.sockets[0].getsockname()
            self._address = (str(sockname[0]), int(sockname[1]))
            admin_host, admin_port = split_address("admin", config.admin)
            await self._admin.start(admin_host, admin_port)
        except BaseException:
            await self._release()
            self._state = "stopped"
            self._stopped.set()
            raise
        self._spawn(self._keep_house())
        self._state = "running"
        log.info(
            "gateway serving on %s:%d (admin %s:%d), %d routes",
            *self._address, *(self._admin.address or ("-", 0)), len(config.routes),
        )  # fmt: skip

    async def serve(self) -> None:
        """Start (unless started) and serve until :meth:`stop`; SIGHUP reloads the file."""
        if self._state == "new":
            await self.start()
        loop = asyncio.get_running_loop()
        hooked = False
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
            hooked = True
        try:
            await self._stopped.wait()
        finally:
            if hooked:
                loop.remove_signal_handler(signal.SIGHUP)

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        """Stop: refuse new connections, let requests in flight finish, close everything.

        Idle keep-alive connections close at once; the others after their answer (which
        says ``Connection: close``). After ``drain_timeout`` seconds (default: the
        configuration's) what is left is cut. Idempotent.
        """
        if self._state in ("stopping", "stopped", "new"):
            if self._state == "new":
                self._state = "stopped"
                self._stopped.set()
            await self._stopped.wait()
            return
        self._state = "stopping"
        limit = float(self._config.drain_timeout) if drain_timeout is None else drain_timeout
        front = self._front
        assert front is not None
        front.draining = True
        if self._server is not None:
            self._server.close()
        give_up = time.monotonic() + limit
        while True:
            for conn in list(front.connections):
                conn.close_idle()
            if not front.connections or time.monotonic() >= give_up:
                break
            await asyncio.sleep(0.01)
        for conn in list(front.connections):
            if conn.transport is not None:
                conn.transport.abort()
        await self._release()
        self._state = "stopped"
        self._stopped.set()
        log.info("gateway stopped")

    async def _release(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._admin.aclose()
        if self._server is not None:
            self._server.close()
            self._server = None
        for route in self._front.table.routes if self._front is not None else ():
            route.deadlines.close()
        for target in self._targets.values():
            await target.aclose()
        self._targets.clear()
        for limiter in [*self._limiters.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await limiter.aclose()
        self._limiters.clear()
        self._retired.clear()
        if self._services is not None:
            await self._services.aclose()
        if self._http is not None:
            await self._http.aclose()
        if self._registry is not None and self._registry_arg is None:
            await self._registry.aclose()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -------------------------------------------------------------------- reload

    async def reload(self, config: GatewayConfig | Mapping[str, Any] | None = None) -> bool:
        """Apply a new configuration (default: read the file again) without dropping requests.

        Requests in flight finish on the routes they matched; the next ones use the new
        routes. Targets (balancer, breakers) whose service and settings did not change
        are kept. ``listen``, ``admin``, ``registry`` and ``[upstream]`` need a restart.

        Returns:
            True if applied; False if refused (the configuration in force stays; the
            error is logged and reported by :meth:`statistics` and ``/routes``).
        """
        async with self._reload_lock:
            try:
                if config is None:
                    if self._path is None:
                        raise GatewayConfigError(
                            "(document)", None, "a file", message="no file to reload from"
                        )
                    self._stamp = _stamp(self._path)
                    new = load_config(self._path)
                elif isinstance(config, GatewayConfig):
                    check_config(config)
                    new = config
                else:
                    new = parse_config(config)
                for key in _FIXED:
                    if getattr(new, key) != getattr(self._config, key):
                        raise GatewayConfigError(
                            key, getattr(new, key), f"{getattr(self._config, key)!r} (as started)",
                            detail="changing it needs a restart",
                        )  # fmt: skip
                if self._state != "running":
                    raise DistsysError(f"the gateway is {self._state}")
                await self._install(new)
            except (DistsysError, OSError) as exc:
                self._reload_errors += 1
                self._last_reload_error = str(exc)
                log.error("reload refused, keeping the configuration in force: %s", exc)
                return False
            self._config = new
            self._reloads += 1
            self._last_reload_error = None
            log.info("configuration reloaded: %d routes", len(new.routes))
            return True

    async def _install(self, config: GatewayConfig) -> None:
        """Build the routes of ``config`` and swap them in (raises, changing nothing)."""
        front, services, http = self._front, self._services, self._http
        assert front is not None
        assert services is not None
        assert http is not None
        loop = front.loop
        await services.ensure(route.service for route in config.routes)
        targets: dict[TargetKey, Target] = {}
        limiters: dict[str, Limiter] = {}
        made: list[Target | Limiter] = []
        try:
            routes = []
            for index, route_config in enumerate(config.routes):
                route = Route(index, route_config)
                key = target_key(route_config)
                target = targets.get(key) or self._targets.get(key)
                if target is None:
                    resolver = services.resolvers[route_config.service]
                    target = Target(key, resolver, http, self._registry_clock())
                    made.append(target)
                    await target.start()
                targets[key] = target
                route.target = target
                route.stats = self._stats.get(route.name) or RouteStats(route.name)
                route.deadlines = DeadlineQueue(loop)
                limit = route_config.rate_limit
                if limit is not None:
                    limiter = self._limiters.get(route.name)
                    if limiter is None or not limiter.same(limit):
                        limiter = make_limiter(limit, route.name)
                        made.append(limiter)
                    limiters[route.name] = route.limiter = limiter
                routes.append(route)
            table = RouteTable(routes)
        except BaseException:
            for thing in made:
                await thing.aclose()
            raise
        # The swap: nothing below awaits until the new table is in force.
        old_targets, self._targets = self._targets, targets
        old_limiters, self._limiters = self._limiters, limiters
        for route in routes:
            self._stats.setdefault(route.name, route.stats)
        front.table = table
        front.set_limits(config.limits)
        for key, target in old_targets.items():
            if key not in targets:
                await target.aclose()
        await services.retain(route.service for route in config.routes)
        retired = [lim for name, lim in old_limiters.items() if limiters.get(name) is not lim]
        if retired:
            self._retired.extend(retired)
            self._spawn(self._close_later(retired, float(config.drain_timeout)))

    async def _close_later(self, limiters: list[Limiter], delay: float) -> None:
        """Close limiters a reload retired, once the requests using them are likely done."""
        await asyncio.sleep(min(delay, 5.0))
        for limiter in limiters:
            self._retired.remove(limiter)
            with contextlib.suppress(Exception):
                await limiter.aclose()

    def _registry_clock(self) -> Clock:
        assert self._registry is not None
        return self._registry.clock

    # --------------------------------------------------------------- housekeeping

    async def _keep_house(self) -> None:
        """Sweep timeouts a few times a second, feed the rolling rates, watch the file."""
        front = self._front
        assert front is not None
        last_fold = last_poll = time.monotonic()
        while True:
            await asyncio.sleep(min(0.25, front.header_timeout / 4))
            now = time.monotonic()
            try:
                for conn in list(front.connections):
                    conn.sweep(now, front.header_timeout, front.idle_timeout)
                if now - last_fold >= 1.0:
                    last_fold = now
                    for stats in self._all_stats():
                        stats.fold()
                interval = float(self._config.reload_interval)
                if self._path is not None and interval > 0 and now - last_poll >= interval:
                    last_poll = now
                    if _stamp(self._path) != self._stamp and not self._reload_lock.locked():
                        self._spawn(self.reload())
            except Exception:  # housekeeping must go on
                log.exception("gateway housekeeping failed")

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ reporting

    @property
    def address(self) -> tuple[str, int] | None:
        """The ``(host, port)`` served (the real port when configured as 0)."""
        return self._address

    @property
    def admin_address(self) -> tuple[str, int] | None:
        """The admin API's ``(host, port)``."""
        return self._admin.address

    @property
    def config(self) -> GatewayConfig:
        """The configuration in force."""
        return self._config

    def statistics(self) -> GatewayStatistics:
        """Return a snapshot of the gateway's state and counts."""
        front = self._front
        return GatewayStatistics(
            state=self._state,
            address=self._address,
            admin_address=self._admin.address,
            routes=0 if front is None else len(front.table.routes),
            connections=0 if front is None else len(front.connections),
            in_flight=0 if front is None else front.in_flight,
            requests=sum(stats.count for stats in self._all_stats()),
            reloads=self._reloads,
            reload_errors=self._reload_errors,
            last_reload_error=self._last_reload_error,
            stale_services=tuple(self._services.stale if self._services is not None else ()),
        )

    def _all_stats(self) -> list[RouteStats]:
        found = list(self._stats.values())
        if self._front is not None:
            found.append(self._front.unmatched)
        return found

    def _gauges(self) -> list[tuple[str, str, list[str], list[tuple[list[str], float]]]]:
        front = self._front
        connections = 0 if front is None else len(front.connections)
        breakers: list[tuple[list[str], float]] = []
        for target in self._targets.values():
            for upstream in target.discovery.upstreams.values():
                state = upstream.breaker.state.value
                breakers.append(([target.service, upstream.instance.id, state], 1.0))
        stale = set(self._services.stale if self._services is not None else ())
        services = sorted(self._services.resolvers if self._services is not None else ())
        return [
            ("distsys_gateway_connections", "Client connections open.", [], [([], connections)]),
            (
                "distsys_gateway_breaker_state",
                "1 for the state each instance's circuit breaker is in.",
                ["service", "instance", "state"],
                breakers,
            ),
            (
                "distsys_gateway_registry_stale",
                "1 while a service's view is stale (the registry is unreachable).",
                ["service"],
                [([s], 1.0 if s in stale else 0.0) for s in services],
            ),
            (
                "distsys_gateway_reloads",
                "Configuration reloads, by result.",
                ["result"],
                [(["ok"], self._reloads), (["refused"], self._reload_errors)],
            ),
        ]

    async def _admin_request(self, method: str, path: str) -> Reply:
        front = self._front
        if method == "POST" and path == "/reload":
            applied = await self.reload()
            return json_reply(200 if applied else 422, self._reload_document())
        if method not in ("GET", "HEAD"):
            return json_reply(405, {"error": "the admin API takes GET (and POST /reload)"})
        if path == "/healthz":
            return json_reply(200, {"status": "ok"})
        if path == "/readyz":
            stale = self._services.stale if self._services is not None else []
            if self._state != "running":
                status = "starting" if self._state in ("new", "starting") else "stopping"
                return json_reply(503, {"status": status})
            if stale:
                return json_reply(
                    200,
                    {
                        "status": "degraded",
                        "reason": "the registry is unreachable: routing on the last "
                        "known instances",
                        "stale_services": stale,
                    },
                )
            return json_reply(200, {"status": "ready"})
        if path == "/routes":
            routes = [] if front is None else routes_view(front.table.routes)
            return json_reply(200, {**self._reload_document(), "routes": routes})
        if path == "/services":
            stale = self._services.stale if self._services is not None else []
            return json_reply(200, {"services": services_view(self._targets.values(), stale)})
        if path == "/stats":
            assert front is not None
            document = stats_view(self._stats, front.unmatched, _WINDOW)
            document["connections"] = len(front.connections)
            document["in_flight"] = front.in_flight
            return json_reply(200, document)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST.encode(), generate_latest(self.metrics)
        return json_reply(404, {"error": f"no admin endpoint {path}", "status": 404})

    def _reload_document(self) -> dict[str, Any]:
        return {
            "config_file": self._path,
            "reloads": self._reloads,
            "reload_errors": self._reload_errors,
            "last_reload_error": self._last_reload_error,
        }

    def __repr__(self) -> str:
        where = "" if self._address is None else f" on {self._address[0]}:{self._address[1]}"
        return f"<Gateway {self._state}{where} routes={len(self._config.routes)}>"


def _stamp(path: str) -> tuple[int, int, int]:
    """What tells that a file changed: modification time, size, inode."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)
