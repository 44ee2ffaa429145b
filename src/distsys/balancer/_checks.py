"""Argument checks shared by the balancers: fail at construction, name the field."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

from distsys.clock import Clock, MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.registry import Instance

__all__ = [
    "check_clock",
    "check_instances",
    "check_rng",
    "check_seconds",
    "check_service",
    "check_share",
    "check_until",
]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_clock(clock: object) -> Clock:
    """Return ``clock``, or a MonotonicClock for None."""
    if clock is None:
        return MonotonicClock()
    if not isinstance(clock, Clock):
        raise ArgumentTypeError("clock", clock, "a distsys.clock.Clock (now() and call_later())")
    return clock


def check_rng(rng: object) -> random.Random:
    """Return ``rng``, or a fresh ``random.Random()`` (seeded by the OS) for None."""
    if rng is None:
        return random.Random()
    if not isinstance(rng, random.Random):
        raise ArgumentTypeError("rng", rng, "a random.Random (seed it for repeatable picks)")
    return rng


def check_share(field: str, value: object) -> float:
    """Return ``value`` as a float if it is a number in [0, 1]."""
    accepted = "a share in [0, 1]"
    if not _number(value):
        raise ArgumentTypeError(field, value, accepted)
    assert isinstance(value, int | float)
    if not 0 <= value <= 1:  # also rejects NaN
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


def check_seconds(field: str, value: object, *, zero: bool = False) -> float:
    """Return ``value`` as float seconds if it is finite and > 0 (>= 0 with ``zero``)."""
    accepted = f"a finite number of seconds {'>=' if zero else '>'} 0"
    if not _number(value):
        raise ArgumentTypeError(field, value, accepted)
    assert isinstance(value, int | float)
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise InvalidArgumentError(field, value, accepted)
    return float(value)


def check_service(service: object) -> str | None:
    """Return ``service`` if it is None or a valid service name (as Instance checks it)."""
    if service is None:
        return None
    if not isinstance(service, str):
        raise ArgumentTypeError("service", service, "a service name (a str)")
    Instance(service, "x", "localhost", 1)  # raises InvalidArgumentError naming "service"
    return service


def check_until(until: object) -> float | None:
    """Return ``until`` (a time on the balancer's clock) as a float, or None."""
    accepted = "None (until readmit()) or a finite time on the balancer's clock"
    if until is None:
        return None
    if not _number(until):
        raise ArgumentTypeError("until", until, accepted)
    assert isinstance(until, int | float)
    if not math.isfinite(until):
        raise InvalidArgumentError("until", until, accepted)
    return float(until)


def check_instances(
    instances: object, service: str | None
) -> tuple[dict[str, Instance], str | None]:
    """Return the instances by id (the last of a repeated id wins) and the service name.

    Raises:
        ArgumentTypeError: ``instances`` is not an iterable of Instance.
        InvalidArgumentError: the instances belong to more than one service, or to
            another service than the balancer's.
    """
    accepted = "an iterable of distsys.registry.Instance"
    if isinstance(instances, str | bytes) or not isinstance(instances, Iterable):
        raise ArgumentTypeError("instances", instances, accepted)
    by_id: dict[str, Instance] = {}
    for instance in instances:
        if not isinstance(instance, Instance):
            raise ArgumentTypeError("instances", instance, accepted)
        if service is None:
            service = instance.service
        elif instance.service != service:
            raise InvalidArgumentError(
                "instances",
                f"{instance.service}/{instance.id}",
                f"instances of one service, {service!r} (keep one balancer per service)",
            )
        by_id[instance.id] = instance
    return by_id, service
