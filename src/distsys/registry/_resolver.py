"""Resolver: a cached, push-updated view of one service that survives backend outages."""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from distsys.clock import sleep
from distsys.errors import ArgumentTypeError, BackendUnavailableError, InvalidArgumentError
from distsys.registry._instance import Instance, Status
from distsys.registry._registry import ChangeKind, ServiceChange, _check_service

if TYPE_CHECKING:
    from distsys.registry._registry import Registry

__all__ = ["Resolver", "ResolverStatistics"]

log = logging.getLogger("distsys.registry")

Listener = Callable[[tuple[Instance, ...]], object]


@dataclass(frozen=True, slots=True)
class ResolverStatistics:
    """A snapshot of a resolver.

    Attributes:
        service: the service it follows.
        instances: instances known (any status, preserved ones included).
        available: instances a balancer may pick (UP).
        stale: True while the backend is unreachable and the view may be out of date.
        stale_since: clock time the view became stale, or None.
        last_sync: clock time of the last full snapshot, or None.
        resyncs: full snapshots taken after the first one.
        errors: times the backend failed (watch broke, health check failed).
        self_preservation: True while expirations are being held back.
        preserved: instances kept although their lease expired.
    """

    service: str
    instances: int
    available: int
    stale: bool
    stale_since: float | None
    last_sync: float | None
    resyncs: int
    errors: int
    self_preservation: bool
    preserved: int


def _check_share(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError("self_preservation", value, "a share in [0, 1]")
    if not 0 <= value <= 1:
        raise InvalidArgumentError("self_preservation", value, "a share in [0, 1] (1 disables it)")
    return float(value)


def _check_seconds(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, value, "a number of seconds > 0")
    if not (value > 0 and math.isfinite(value)):
        raise InvalidArgumentError(field, value, "a finite number of seconds > 0")
    return float(value)


class Resolver:
    """Follow one service: a local list of its instances, updated as the registry changes.

    Reads (:meth:`instances`, :meth:`available`) are plain memory reads, so a balancer can
    call them on every request. A background task watches the registry; another checks the
    backend's health. When the backend is unreachable the resolver keeps serving the last
    known list — availability over freshness, as Eureka's clients do — and
    :meth:`statistics` says it is stale and since when; when the backend answers again it
    takes a fresh snapshot.

    **Self-preservation.** When more than ``self_preservation`` (default 15%) of the
    instances, and at least ``min_expired`` of them (default 2: one crash is just a
    crash), lose their leases within ``window`` seconds — or vanish while the backend
    was unreachable — a network fault is likelier than a mass crash, so the resolver
    keeps them (marked preserved) instead of dropping them all at once. They leave the
    preserved state when they register again, or after ``max_preservation`` seconds. The
    trade-off: during a real mass crash, callers keep trying dead instances until
    their breakers eject them.

    Safe within one event loop.

    Args:
        registry: where to read.
        service: the service to follow.
        self_preservation: the share of expirations that triggers it (1 disables it).
        window: seconds over which expirations are counted.
        max_preservation: seconds at most that expired instances are held.
        min_expired: expirations needed, besides the share, to start self-preservation.
        health_interval: seconds between backend health checks.
        max_backoff: seconds at most between reconnection attempts.
    """

    def __init__(
        self,
        registry: Registry,
        service: str,
        *,
        self_preservation: float = 0.15,
        window: float = 30.0,
        max_preservation: float = 300.0,
        min_expired: int = 2,
        health_interval: float = 1.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.service = _check_service(service)
        self._registry = registry
        self._clock = registry.clock
        self._threshold = _check_share(self_preservation)
        self._window = _check_seconds("window", window)
        self._max_preservation = _check_seconds("max_preservation", max_preservation)
        if isinstance(min_expired, bool) or not isinstance(min_expired, int):
            raise ArgumentTypeError("min_expired", min_expired, "an int >= 1")
        if min_expired < 1:
            raise InvalidArgumentError("min_expired", min_expired, "an int >= 1")
        self._min_expired = min_expired
        self._health_interval = _check_seconds("health_interval", health_interval)
        self._max_backoff = _check_seconds("max_backoff", max_backoff)
        self._instances: dict[str, Instance] = {}
        self._available: tuple[Instance, ...] = ()
        self._preserved: set[str] = set()
        self._preserving_since: float | None = None
        self._expired: deque[tuple[float, Instance]] = deque()
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._stale_since: float | None = None
        self._last_sync: float | None = None
        self._resyncs = 0
        self._errors = 0
        self._watch_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ reading

    def instances(self) -> tuple[Instance, ...]:
        """Every known instance, any status, sorted by id."""
        return tuple(sorted(self._instances.values(), key=lambda i: i.id))

    def available(self) -> tuple[Instance, ...]:
        """The instances a balancer may pick: status UP (preserved ones included)."""
        return self._available

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(available)`` now and after every change; returns an unsubscribe."""
        self._listeners.append(listener)
        listener(self._available)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(
        self, predicate: Callable[[Resolver], bool], *, timeout: float | None = None
    ) -> None:
        """Wait until ``predicate(self)`` holds (checked after every change).

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._changed.wait()

    def statistics(self) -> ResolverStatistics:
        """Return counts, staleness and self-preservation state."""
        return ResolverStatistics(
            service=self.service,
            instances=len(self._instances),
            available=len(self._available),
            stale=self._stale_since is not None,
            stale_since=self._stale_since,
            last_sync=self._last_sync,
            resyncs=self._resyncs,
            errors=self._errors,
            self_preservation=self._preserving_since is not None,
            preserved=len(self._preserved),
        )

    # ---------------------------------------------------------------- lifecycle

    async def start(self, *, timeout: float = 10.0) -> None:
        """Start following the service; return once the first snapshot arrived.

        Raises:
            BackendUnavailableError: no snapshot within ``timeout`` seconds.
        """
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(), name=f"resolve {self.service}")
            self._health_task = asyncio.create_task(self._health(), name=f"health {self.service}")
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            await self.aclose()
            raise BackendUnavailableError(
                str(self._registry.kv.url), f"no snapshot of {self.service!r} within {timeout}s"
            ) from None

    async def aclose(self) -> None:
        """Stop following the service. Idempotent."""
        tasks = [t for t in (self._watch_task, self._health_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Resolver:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ workers

    async def _watch(self) -> None:
        backoff = 0.05
        while True:
            try:
                async for change in self._registry.watch(self.service):
                    self._apply(change)
                    backoff = 0.05
            except BackendUnavailableError as exc:
                self._fail(exc)
            except Exception as exc:  # a backend bug must not kill discovery
                log.exception("watch of %s failed", self.service)
                self._fail(exc)
            await sleep(backoff, self._clock)
            backoff = min(backoff * 2, self._max_backoff)

    async def _health(self) -> None:
        kv = self._registry.kv
        while True:
            await sleep(self._health_interval, self._clock)
            if self._expire_preservation(self._clock.now()):
                self._publish()
            try:
                async with asyncio.timeout(self._health_interval * 2):
                    await kv.ping()
            except (BackendUnavailableError, TimeoutError) as exc:
                self._fail(exc)
                continue
            if self._stale_since is not None and self._watch_task is not None:
                # The backend is back but the watch has not resynchronised: restart it so
                # the view is fresh again, whatever the watch noticed of the outage.
                self._watch_task.cancel()
                await asyncio.gather(self._watch_task, return_exceptions=True)
                self._watch_task = asyncio.create_task(self._watch())

    def _fail(self, exc: BaseException) -> None:
        self._errors += 1
        if self._stale_since is None:
            self._stale_since = self._clock.now()
            self._notify()  # the view is unchanged, but wait_for() predicates may not be
            log.warning(
                "registry unreachable for %s; serving the last known view (%s)", self.service, exc
            )

    # ----------------------------------------------------------------- the view

    def _apply(self, change: ServiceChange) -> None:
        now = self._clock.now()
        while self._expired and now - self._expired[0][0] > self._window:
            self._expired.popleft()
        if change.kind is ChangeKind.RESET:
            self._reset(change.instances, now)
        elif change.kind is ChangeKind.REMOVED:
            assert change.instance is not None
            self._remove(change.instance, change.expired, now)
        else:
            assert change.instance is not None
            self._instances[change.instance.id] = change.instance
            self._preserved.discard(change.instance.id)
        self._expire_preservation(now)
        self._publish()

    def _expire_preservation(self, now: float) -> bool:
        """End self-preservation once nothing is held or it has lasted long enough."""
        if self._preserving_since is None or (
            self._preserved and now - self._preserving_since <= self._max_preservation
        ):
            return False
        self._end_preservation()
        return True

    def _reset(self, fresh: tuple[Instance, ...], now: float) -> None:
        if self._last_sync is not None:
            self._resyncs += 1
        old = self._instances
        new = {i.id: i for i in fresh}
        vanished = [i for key, i in old.items() if key not in new and i.status is not Status.DOWN]
        if vanished and (
            self._preserving_since is not None or len(vanished) / len(old) > self._threshold
        ):
            self._start_preservation(now)
            for instance in vanished:
                new[instance.id] = instance
                self._preserved.add(instance.id)
        self._preserved &= new.keys() - {i.id for i in fresh}
        self._instances = new
        self._last_sync = now
        self._stale_since = None
        self._synced.set()

    def _remove(self, instance: Instance, expired: bool, now: float) -> None:
        if not expired:
            self._instances.pop(instance.id, None)
            self._preserved.discard(instance.id)
            return
        self._expired.append((now, instance))
        recent = {i.id: i for _, i in self._expired}
        population = len(self._instances) + sum(1 for k in recent if k not in self._instances)
        if self._preserving_since is None and not self._mass_expiry(len(recent), population):
            self._instances.pop(instance.id, None)
            return
        self._start_preservation(now)
        for key, held in recent.items():  # hold this one and those that expired just before
            self._instances.setdefault(key, held)
            self._preserved.add(key)

    def _mass_expiry(self, expired: int, population: int) -> bool:
        return expired >= self._min_expired and expired / population > self._threshold

    def _start_preservation(self, now: float) -> None:
        if self._preserving_since is None:
            self._preserving_since = now
            log.warning("self-preservation on for %s: holding expired instances", self.service)

    def _end_preservation(self) -> None:
        for key in self._preserved:
            self._instances.pop(key, None)
        self._preserved.clear()
        self._preserving_since = None
        log.warning("self-preservation off for %s", self.service)

    def _publish(self) -> None:
        self._available = tuple(i for i in self.instances() if i.available)
        for listener in list(self._listeners):
            listener(self._available)
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def __repr__(self) -> str:
        stale = " stale" if self._stale_since is not None else ""
        return f"<Resolver {self.service} available={len(self._available)}{stale}>"
