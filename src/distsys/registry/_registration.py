"""A registration: an instance's lease, kept alive by a background heartbeat."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from distsys.clock import sleep
from distsys.errors import (
    ArgumentTypeError,
    BackendUnavailableError,
    InvalidArgumentError,
    LeaseExpiredError,
)
from distsys.registry._instance import Instance, Status, encode_instance

if TYPE_CHECKING:
    from distsys.registry._registry import Registry

__all__ = ["Registration", "RegistrationStatistics"]

log = logging.getLogger("distsys.registry")


@dataclass(frozen=True, slots=True)
class RegistrationStatistics:
    """A snapshot of a registration's heartbeat.

    Attributes:
        lease: the current lease id.
        heartbeats: keep-alives that succeeded.
        failures: keep-alives that failed because the backend was unreachable.
        reregistrations: times the lease was found expired and the instance re-registered.
        last_heartbeat: clock time of the last successful keep-alive (or registration).
        closed: whether it has been deregistered.
    """

    lease: int
    heartbeats: int
    failures: int
    reregistrations: int
    last_heartbeat: float
    closed: bool


def _check_timing(ttl: object, heartbeat: object) -> tuple[float, float]:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ArgumentTypeError("ttl", ttl, "a number of seconds > 0")
    if not (ttl > 0 and math.isfinite(ttl)):
        raise InvalidArgumentError("ttl", ttl, "a finite number of seconds > 0")
    if heartbeat is None:
        return float(ttl), ttl / 3
    if isinstance(heartbeat, bool) or not isinstance(heartbeat, int | float):
        raise ArgumentTypeError("heartbeat", heartbeat, f"a number of seconds in (0, ttl={ttl})")
    if not 0 < heartbeat < ttl:
        raise InvalidArgumentError(
            "heartbeat", heartbeat, f"a number of seconds in (0, ttl={ttl}): shorter than the TTL"
        )
    return float(ttl), float(heartbeat)


class Registration:
    """An instance registered under a lease that a background task keeps alive.

    Every ``heartbeat`` seconds the lease is refreshed. If the backend is unreachable the
    failure is counted and retried at the next beat (the lease has ``ttl`` seconds of
    slack); if the lease turns out to have expired — the instance was cut off for longer
    than its TTL — the instance registers again under a new lease. Closing deregisters
    gracefully: the instance is first marked DOWN (so watchers can tell a shutdown from a
    crash), then its lease is revoked.

    Safe within one event loop. Create it with :meth:`Registry.register`.
    """

    def __init__(
        self, registry: Registry, instance: Instance, *, ttl: float, heartbeat: float | None
    ) -> None:
        self.ttl, self.heartbeat = _check_timing(ttl, heartbeat)
        self._registry = registry
        self._instance = instance
        self._key = registry.key(instance.service, instance.id)
        self._lease = 0
        self._heartbeats = 0
        self._failures = 0
        self._reregistrations = 0
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def instance(self) -> Instance:
        """The instance as currently registered."""
        return self._instance

    @property
    def lease(self) -> int:
        """The current lease id."""
        return self._lease

    async def start(self) -> None:
        """Grant the lease, write the instance, start heartbeating (called by register)."""
        await self._write_new_lease()
        self._task = asyncio.create_task(self._beat(), name=f"heartbeat {self._key}")

    async def _write_new_lease(self) -> None:
        kv = self._registry.kv
        self._lease = await kv.grant(self.ttl)
        await kv.put(self._key, encode_instance(self._instance), lease=self._lease)
        self._last = self._registry.clock.now()

    async def _beat(self) -> None:
        clock, kv = self._registry.clock, self._registry.kv
        while not self._closed:
            await sleep(self.heartbeat, clock)
            try:
                async with asyncio.timeout(self.heartbeat):
                    if await kv.keep_alive(self._lease):
                        self._heartbeats += 1
                        self._last = clock.now()
                        continue
                    log.warning("lease of %s expired; registering again", self._key)
                    await self._write_new_lease()
                    self._reregistrations += 1
            except (BackendUnavailableError, LeaseExpiredError, TimeoutError) as exc:
                self._failures += 1
                log.warning("heartbeat of %s failed (%s); retrying", self._key, exc)

    async def set_status(self, status: Status) -> None:
        """Publish a new status (for example DRAINING before a shutdown).

        If the lease had expired meanwhile, the instance registers again under a new one.
        """
        if not isinstance(status, Status):
            raise ArgumentTypeError("status", status, "a Status (UP, DRAINING, DOWN)")
        previous, self._instance = self._instance, self._instance.with_status(status)
        try:
            await self._registry.kv.put(
                self._key, encode_instance(self._instance), lease=self._lease
            )
        except LeaseExpiredError:
            await self._write_new_lease()
            self._reregistrations += 1
        except BaseException:
            self._instance = previous
            raise

    async def aclose(self) -> None:
        """Deregister: mark the instance DOWN, then revoke its lease. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._registry._forget(self)
        kv = self._registry.kv
        try:
            down = self._instance.with_status(Status.DOWN)
            await kv.put(self._key, encode_instance(down), lease=self._lease)
            self._instance = down
            await kv.revoke(self._lease)
        except LeaseExpiredError:
            pass  # the lease ran out already: the backend has removed the instance
        except BackendUnavailableError as exc:
            log.warning(
                "could not deregister %s cleanly (%s); its lease will expire", self._key, exc
            )

    def statistics(self) -> RegistrationStatistics:
        """Return the lease and heartbeat counters."""
        return RegistrationStatistics(
            lease=self._lease,
            heartbeats=self._heartbeats,
            failures=self._failures,
            reregistrations=self._reregistrations,
            last_heartbeat=self._last,
            closed=self._closed,
        )

    async def __aenter__(self) -> Registration:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Registration {self._key} lease={self._lease} status={self._instance.status.name}>"
