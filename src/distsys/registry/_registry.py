"""Registry: register instances with a lease, list and watch them, on any KV backend."""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from distsys.backends import KV, KV_SCHEMES, EventType, KVEntry
from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.registry._instance import _NAME, _NAME_ACCEPTED, Instance, Status, decode_instance
from distsys.registry._registration import Registration

if TYPE_CHECKING:
    from distsys.registry._resolver import Resolver

__all__ = ["ChangeKind", "Registry", "ServiceChange", "open_registry"]

log = logging.getLogger("distsys.registry")

DEFAULT_PREFIX = "distsys/services/"
DEFAULT_TTL = 10.0


class ChangeKind(enum.Enum):
    """What a :class:`ServiceChange` reports."""

    RESET = "reset"
    """A full, fresh view of the service (first change, or after a resync)."""
    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class ServiceChange:
    """A change to one service's instances, with the whole view after it.

    Attributes:
        kind: RESET, ADDED, UPDATED or REMOVED.
        instance: the instance that changed (None for RESET).
        instances: every instance of the service after the change, sorted by id.
        expired: for REMOVED, True when the instance vanished without deregistering
            first (its lease ran out: a crash, or a network fault).
    """

    kind: ChangeKind
    instance: Instance | None
    instances: tuple[Instance, ...]
    expired: bool = False


def _check_service(service: object) -> str:
    if not isinstance(service, str):
        raise ArgumentTypeError("service", service, _NAME_ACCEPTED)
    if not _NAME.fullmatch(service):
        raise InvalidArgumentError("service", service, _NAME_ACCEPTED)
    return service


class Registry:
    """Service registration and discovery over a :class:`~distsys.backends.KV` store.

    An instance lives at ``<prefix><service>/<id>`` as JSON, attached to a lease that
    its :class:`Registration` keeps alive. When the instance stops heartbeating its lease
    expires and the backend deletes it. Entries that are not valid instance records
    (foreign keys, broken JSON) are skipped with a warning and never break discovery.

    Safe within one event loop; the backend decides what is shared across processes.

    Args:
        kv: the store (see :func:`open_registry` to open one by URL).
        prefix: the key prefix under which services live.
        clock: time source for heartbeats and resolvers (default: the monotonic clock).
        owns_kv: close ``kv`` when the registry is closed.
    """

    def __init__(
        self,
        kv: KV,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        owns_kv: bool = False,
    ) -> None:
        if not isinstance(prefix, str):
            raise ArgumentTypeError("prefix", prefix, "a str such as 'distsys/services/'")
        self.kv = kv
        self.prefix = prefix
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._owns_kv = owns_kv
        self._registrations: set[Registration] = set()
        self.skipped_entries = 0

    def key(self, service: str, instance_id: str) -> str:
        """Return the key an instance is stored under."""
        return f"{self.prefix}{service}/{instance_id}"

    async def register(
        self, instance: Instance, *, ttl: float = DEFAULT_TTL, heartbeat: float | None = None
    ) -> Registration:
        """Register ``instance`` under a lease of ``ttl`` seconds, kept alive in the background.

        Args:
            instance: what to register.
            ttl: seconds without a heartbeat after which the instance disappears (> 0).
            heartbeat: seconds between keep-alives (default ``ttl / 3``); must be shorter
                than ``ttl``.

        Returns:
            The registration: close it (or ``async with`` it) to deregister.

        Raises:
            InvalidArgumentError: ``ttl <= 0`` or ``heartbeat`` not shorter than ``ttl``.
            BackendUnavailableError: the backend cannot be reached.
        """
        if not isinstance(instance, Instance):
            raise ArgumentTypeError("instance", instance, "an Instance")
        registration = Registration(self, instance, ttl=ttl, heartbeat=heartbeat)
        await registration.start()
        self._registrations.add(registration)
        return registration

    def _forget(self, registration: Registration) -> None:
        self._registrations.discard(registration)

    def _decode(self, entry: KVEntry) -> Instance | None:
        try:
            instance = decode_instance(entry.value)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.skipped_entries += 1
            log.warning("skipping %r: not an instance record (%s)", entry.key, exc)
            return None
        if entry.key != self.key(instance.service, instance.id):
            self.skipped_entries += 1
            log.warning("skipping %r: it describes %s/%s", entry.key, instance.service, instance.id)
            return None
        return instance

    async def instances(self, service: str) -> list[Instance]:
        """Return the instances of ``service`` registered now (any status), sorted by id."""
        entries = await self.kv.list(f"{self.prefix}{_check_service(service)}/")
        return [i for i in map(self._decode, entries) if i is not None]

    async def services(self) -> list[str]:
        """Return the names of the services that have at least one instance."""
        names = set()
        for entry in await self.kv.list(self.prefix):
            instance = self._decode(entry)
            if instance is not None:
                names.add(instance.service)
        return sorted(names)

    async def watch(self, service: str) -> AsyncIterator[ServiceChange]:
        """Yield a RESET view of ``service``, then each change with the view after it."""
        prefix = f"{self.prefix}{_check_service(service)}/"
        current: dict[str, Instance] = {}
        async for event in self.kv.watch(prefix):
            if event.type is EventType.RESET:
                current = {}
                for entry in event.snapshot:
                    instance = self._decode(entry)
                    if instance is not None:
                        current[entry.key] = instance
                yield ServiceChange(ChangeKind.RESET, None, _view(current))
            elif event.type is EventType.PUT:
                assert event.entry is not None
                instance = self._decode(event.entry)
                if instance is None:
                    continue
                kind = ChangeKind.UPDATED if event.key in current else ChangeKind.ADDED
                current[event.key] = instance
                yield ServiceChange(kind, instance, _view(current))
            else:
                gone = current.pop(event.key, None)
                if gone is not None:
                    expired = gone.status is not Status.DOWN
                    yield ServiceChange(ChangeKind.REMOVED, gone, _view(current), expired)

    def resolver(self, service: str, **options: Any) -> Resolver:
        """Return a :class:`Resolver` for ``service`` (enter it with ``async with``)."""
        from distsys.registry._resolver import Resolver

        return Resolver(self, service, **options)

    async def aclose(self) -> None:
        """Deregister what this registry registered, and close the store if it owns it."""
        for registration in list(self._registrations):
            await registration.aclose()
        if self._owns_kv:
            await self.kv.aclose()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Registry {self.kv.url} prefix={self.prefix!r}>"


def _view(current: dict[str, Instance]) -> tuple[Instance, ...]:
    return tuple(sorted(current.values(), key=lambda i: i.id))


def open_registry(
    url: str, *, prefix: str = DEFAULT_PREFIX, clock: Clock | None = None, **options: Any
) -> Registry:
    """Open a registry on the backend at ``url``; close it with ``await registry.aclose()``.

    Args:
        url: ``sqlite:///.distsys/registry.db`` (one machine), ``redis://host:6379/0``,
            ``etcd://host:2379`` or ``memory://`` (one process).
        prefix: the key prefix under which services live.
        clock: time source for heartbeats and resolvers; also given to backends that keep
            leases themselves (memory, sqlite).
        **options: passed to the backend.
    """
    parsed, cls = KV_SCHEMES.resolve(url)
    if clock is not None and "clock" in inspect.signature(cls).parameters:
        options["clock"] = clock
    kv: KV = cls(parsed, **options)
    return Registry(kv, prefix=prefix, clock=clock, owns_kv=True)
