"""Liveness and readiness, decided from the lifecycle state and the registry's health.

* ``/healthz`` (liveness) is 200 for as long as the process answers at all: restarting a
  process that can still answer would not fix anything.
* ``/readyz`` (readiness) is 200 when the service is RUNNING and 503 otherwise (starting,
  draining, stopped). A RUNNING service whose registry is unreachable — or which could not
  register yet — stays 200 but says ``"status": "degraded"``: it can serve, and callers'
  resolvers keep routing to it from their last known view. Failing readiness there would
  take every instance out of rotation at once whenever the registry has an outage, turning
  a registry problem into a full outage.
"""

from __future__ import annotations

from typing import Any

from distsys.service._lifecycle import State
from distsys.service._registrar import RegistryHealth

__all__ = ["liveness", "readiness"]


def liveness(state: State) -> tuple[int, dict[str, Any]]:
    """Return the ``/healthz`` status and body: always 200 while the process answers."""
    return 200, {"status": "ok", "state": state.value}


def readiness(state: State, registry: RegistryHealth | None) -> tuple[int, dict[str, Any]]:
    """Return the ``/readyz`` status and body.

    Args:
        state: the service's lifecycle state.
        registry: its registry health, or None when it registers nowhere.
    """
    if state is not State.RUNNING:
        word = {
            State.NEW: "starting",
            State.STARTING: "starting",
            State.STOPPING: "draining",
        }.get(state, "stopped")
        return 503, {"status": word, "state": state.value}
    if registry is None:
        return 200, {"status": "ready", "state": state.value}
    if registry.registered and registry.reachable:
        return 200, {"status": "ready", "state": state.value, "registry": "ok"}
    body: dict[str, Any] = {
        "status": "degraded",
        "state": state.value,
        "registry": "unreachable" if registry.registered else "unregistered",
    }
    if registry.since_heartbeat is not None:
        body["since_heartbeat"] = round(registry.since_heartbeat, 3)
    return 200, body
