"""Keep a service registered while it runs; say whether the registry is reachable.

Registration is not a reason to refuse traffic: if the registry cannot be reached when
the service starts, the service still starts, reports itself *degraded* and keeps trying
to register in the background (as Eureka clients do). Callers that know its address —
and resolvers serving their last known view — keep reaching it meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from distsys.clock import Clock, sleep
from distsys.errors import BackendUnavailableError
from distsys.registry import Instance, Registration, Registry, Status, open_registry

__all__ = ["RegistryHealth", "Registrar"]

log = logging.getLogger("distsys.service")

STALE_AFTER_BEATS: Final = 2.0
"""Heartbeat intervals without a successful beat after which the registry counts as down."""


@dataclass(frozen=True, slots=True)
class RegistryHealth:
    """How the service stands with its registry.

    Attributes:
        registered: whether the instance is registered (a lease was granted).
        reachable: whether the last registration or heartbeat went through in time.
        since_heartbeat: seconds since the last successful heartbeat, or None.
    """

    registered: bool
    reachable: bool
    since_heartbeat: float | None


class Registrar:
    """Registers one instance, retries while the registry is down, drains and deregisters.

    Safe within one event loop.
    """

    def __init__(
        self,
        registry: Registry | str,
        *,
        ttl: float,
        heartbeat: float | None,
        clock: Clock,
        timeout: float,
    ) -> None:
        self._owned = isinstance(registry, str)
        self.registry = (
            open_registry(registry, clock=clock) if isinstance(registry, str) else registry
        )
        self._ttl = ttl
        self._heartbeat = heartbeat if heartbeat is not None else ttl / 3
        self._clock = self.registry.clock  # heartbeat times are on the registry's clock
        self._timeout = timeout
        self.registration: Registration | None = None
        self._retry: asyncio.Task[None] | None = None
        self._instance: Instance | None = None

    async def start(self, instance: Instance) -> None:
        """Register ``instance``; if the registry is down, keep trying in the background."""
        self._instance = instance
        if not await self._attempt():
            self._retry = asyncio.create_task(self._retry_loop(), name=f"register {instance.id}")

    async def _attempt(self) -> bool:
        assert self._instance is not None
        try:
            async with asyncio.timeout(self._timeout):
                self.registration = await self.registry.register(
                    self._instance, ttl=self._ttl, heartbeat=self._heartbeat
                )
        except (BackendUnavailableError, TimeoutError, OSError) as exc:
            level = logging.DEBUG if self._retry is not None else logging.WARNING
            log.log(
                level,
                "%s: cannot register with %r (%s); serving unregistered, retrying every %.1fs",
                self._instance.id, self.registry, exc, self._heartbeat,
            )  # fmt: skip
            return False
        log.info("%s: registered at %s", self._instance.id, self._instance.address)
        return True

    async def _retry_loop(self) -> None:
        while not await self._attempt():
            await sleep(self._heartbeat, self._clock)

    def health(self) -> RegistryHealth:
        """Return whether the instance is registered and its registry reachable."""
        registration = self.registration
        if registration is None:
            return RegistryHealth(registered=False, reachable=False, since_heartbeat=None)
        stats = registration.statistics()
        since = self._clock.now() - stats.last_heartbeat
        # A beat runs every `heartbeat` seconds and may itself take up to `heartbeat`: two
        # intervals without success means at least one beat failed or hung.
        reachable = since <= STALE_AFTER_BEATS * registration.heartbeat
        return RegistryHealth(registered=True, reachable=reachable, since_heartbeat=since)

    async def drain(self) -> None:
        """Publish DRAINING, so balancers stop picking this instance (best effort)."""
        await self._stop_retrying()
        if self.registration is None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self.registration.set_status(Status.DRAINING)
        except (BackendUnavailableError, TimeoutError, OSError) as exc:
            log.warning("%s: could not mark DRAINING (%s)", self.registration.instance.id, exc)

    async def aclose(self) -> None:
        """Deregister (DOWN, then revoke the lease) and close an owned registry. Idempotent."""
        await self._stop_retrying()
        registration, self.registration = self.registration, None
        try:
            if registration is not None:
                async with asyncio.timeout(self._timeout):
                    await registration.aclose()
        except (BackendUnavailableError, TimeoutError, OSError) as exc:
            log.warning("could not deregister cleanly (%s); the lease will expire", exc)
        finally:
            if self._owned:
                self._owned = False
                try:
                    async with asyncio.timeout(self._timeout):
                        await self.registry.aclose()
                except (BackendUnavailableError, TimeoutError, OSError) as exc:
                    log.warning("could not close %r cleanly (%s)", self.registry, exc)

    async def _stop_retrying(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
