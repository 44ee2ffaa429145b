"""What a balancer reports: a frozen snapshot of its instances and counters."""

from __future__ import annotations

from dataclasses import dataclass

from distsys.registry import Status

__all__ = ["BalancerStatistics", "InstanceStatistics"]


@dataclass(frozen=True, slots=True)
class InstanceStatistics:
    """One instance as a balancer sees it.

    Attributes:
        id: the instance id.
        address: its ``host:port``.
        weight: its weight, as registered.
        status: UP, DRAINING or DOWN, as last given to ``update``.
        eligible: whether a pick may choose it now (UP, and not ejected unless in panic).
        ejected: whether it is ejected.
        ejected_until: the clock time its ejection ends, or None (until ``readmit``).
        picks: times it was picked.
        outstanding: its picks not finished yet (``done``, ``abandon`` or collected).
        errors: its picks finished with ``done(error=True)``.
        ewma: the latency estimate in seconds (``p2c_ewma`` only; None elsewhere, and
            before its first response when it starts neutral).
    """

    id: str
    address: str
    weight: int
    status: Status
    eligible: bool
    ejected: bool
    ejected_until: float | None
    picks: int
    outstanding: int
    errors: int
    ewma: float | None


@dataclass(frozen=True, slots=True)
class BalancerStatistics:
    """A snapshot of a balancer.

    The per-instance numbers cover the instances known now; the totals cover the
    balancer's whole life, instances that have left included.

    Attributes:
        balancer: the algorithm's name (``"round_robin"``, ``"p2c_ewma"`` ...).
        service: the service balanced, or None before any instance was seen.
        instances: one record per known instance, sorted by id.
        eligible: how many instances a pick may choose now.
        panic: True while ejections are ignored (too few instances left; see
            ``panic_threshold``).
        picks: picks made.
        outstanding: picks not finished yet.
        succeeded: picks finished with ``done()``.
        failed: picks finished with ``done(error=True)``.
        abandoned: picks given up with ``abandon()`` (or a ``with`` block left by
            cancellation): no outcome recorded.
        leaked: picks garbage-collected without being finished (a caller bug; their
            outstanding count was released).
        unavailable: picks refused with NoInstancesError.
        ejections: calls to ``eject`` that ejected a known instance.
    """

    balancer: str
    service: str | None
    instances: tuple[InstanceStatistics, ...]
    eligible: int
    panic: bool
    picks: int
    outstanding: int
    succeeded: int
    failed: int
    abandoned: int
    leaked: int
    unavailable: int
    ejections: int
