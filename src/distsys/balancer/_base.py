"""Balancer: the state and contract every picker shares; subclasses choose.

A subclass implements two hooks: ``_rebuild()``, called under the lock whenever the
candidates (``self._candidates``: the instances a pick may choose, sorted by id) or
their weights change, and ``_choose(key, exclude, now)``, which returns one candidate
not in ``exclude``, or None when there is none. It may also override ``_record`` to
learn from finished picks. Everything else (the instance list, ejection, panic, the
outstanding counts, the NoInstancesError reasons, statistics) lives here.
"""

from __future__ import annotations

import abc
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import ClassVar

from mypy_extensions import mypyc_attr

from distsys.balancer._checks import (
    check_clock,
    check_instances,
    check_rng,
    check_service,
    check_share,
    check_until,
)
from distsys.balancer._node import Node, explain
from distsys.balancer._pick import Pick
from distsys.balancer._statistics import BalancerStatistics, InstanceStatistics
from distsys.clock import MonotonicClock
from distsys.errors import ArgumentTypeError, NoInstancesError
from distsys.hashring import Key
from distsys.registry import Instance, Status

__all__ = ["Balancer", "Node"]  # Node re-exported for the pickers


@mypyc_attr(allow_interpreted_subclasses=True)  # the pickers that stay Python
class Balancer(abc.ABC):
    """Choose an instance of one service per request; learn from how requests went.

    Feed it the service's instances with :meth:`update` (``resolver.subscribe(
    balancer.update)`` keeps it current), call :meth:`pick` per request and finish the
    returned :class:`Pick`. A pick chooses among the *eligible* instances: status UP,
    not ejected (see :meth:`eject`) and not in ``exclude``. State kept per instance
    (counts, latency estimates, ejection) survives updates for instances that stay.

    **Panic.** With ``panic_threshold`` ``p > 0``, when fewer than ``p`` of the UP
    instances are not ejected, ejections are ignored and every UP instance is eligible
    (Envoy's panic threshold): better to spread load over suspect instances than to
    crush the few left. With ``p = 0`` (the default) ejections always hold and a pick
    with every instance ejected raises NoInstancesError.

    Thread-safe: every method takes one short internal lock and never waits for anything
    else while holding it, so threads and asyncio tasks may share a balancer.

    Args:
        instances: the initial instances (any status; only UP ones are picked).
        service: the service's name; by default taken from the first instance. Every
            instance given must belong to it.
        clock: the time source (default ``MonotonicClock()``), for ejection deadlines
            and latency measurements.
        rng: the source of random choices (default a ``random.Random()`` seeded by the
            OS); seed one for repeatable picks.
        panic_threshold: the share of UP instances that must be un-ejected for
            ejections to hold, in [0, 1] (default 0: never panic).

    Raises:
        InvalidArgumentError / ArgumentTypeError: an argument is invalid (the message
            names it).
    """

    name: ClassVar[str]
    """The algorithm's name, as ``make_balancer`` knows it."""

    _timed: ClassVar[bool] = False  # read the clock on every pick and finish

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
    ) -> None:
        # The arguments are typed ``object``, here and in the algorithms' compiled cores
        # (``_*_core.py``): mypyc converts typed arguments on the way in, so a bad value
        # would raise its TypeError instead of reaching the checks that name the field.
        # Each public class (``_p2c.py`` ...) is a Python subclass of its core that
        # declares the types. (The cores repeat these four arguments rather than pass
        # ``**options`` on: mypyc binds ``**`` to a compiled keyword-only signature wrongly.)
        self._service = check_service(service)
        self._clock = check_clock(clock)
        # time.monotonic itself when the clock is the real one: one call less per pick
        self._now = time.monotonic if type(self._clock) is MonotonicClock else self._clock.now
        self._rng = check_rng(rng)
        self._random = self._rng.random
        self._panic_threshold = check_share("panic_threshold", panic_threshold)
        self._lock = threading.Lock()
        self._nodes: dict[str, Node] = {}
        self._candidates: list[Node] = []
        self._shape: tuple[tuple[str, int], ...] | None = None
        self._panic = False
        self._expiry: float | None = None  # the earliest ejection deadline
        self._leaked: deque[tuple[Node, float]] = deque()  # appended by Pick.__del__
        self._gone_picks = 0  # picks of instances that have left
        self._succeeded = 0
        self._failed = 0
        self._abandoned = 0
        self._leaks = 0
        self._unavailable = 0
        self._ejections = 0
        self.update(instances)

    # ---------------------------------------------------------------- the hooks

    @abc.abstractmethod
    def _rebuild(self) -> None:
        """Recompute the picker's structures for ``self._candidates`` (under the lock)."""

    @abc.abstractmethod
    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        """Return an eligible node not in ``exclude``, or None (under the lock)."""

    def _record(  # noqa: B027  (optional hook)
        self, node: Node, start: float, now: float, error: bool | None
    ) -> None:
        """Learn from a finished pick (``error`` None: abandoned); under the lock."""

    def _added(self, node: Node, now: float) -> None:  # noqa: B027  (optional hook)
        """Initialise the state of an instance seen for the first time (under the lock)."""

    # --------------------------------------------------------------- the public API

    @property
    def service(self) -> str | None:
        """The service balanced (None until the first instance names it)."""
        return self._service

    @property
    def instances(self) -> tuple[Instance, ...]:
        """The instances given by the last :meth:`update`, any status, sorted by id."""
        return tuple(node.instance for node in self._nodes.values())  # kept sorted by id

    def update(self, instances: Iterable[Instance]) -> None:
        """Replace the list of instances (fit for ``resolver.subscribe(balancer.update)``).

        Instances of any status may be given; only UP ones are picked, and the others
        let NoInstancesError say "draining" rather than "none registered". Instances
        that stay keep their state (counts, latency estimate, ejection); ones that leave
        lose it, and their picks still in flight may be finished normally.

        Raises:
            ArgumentTypeError: ``instances`` is not an iterable of Instance.
            InvalidArgumentError: an instance belongs to another service.
        """
        by_id, service = check_instances(instances, self._service)
        lock = self._lock
        lock.acquire()
        try:
            if self._service is not None and service != self._service:  # a racing first update
                check_instances(by_id.values(), self._service)
            now = self._now()
            old = self._nodes
            nodes: dict[str, Node] = {}
            for key, instance in sorted(by_id.items()):
                node = old.get(key)
                if node is None:
                    node = Node(instance)
                    self._added(node, now)
                else:
                    node.instance = instance
                    node.weight = instance.weight
                nodes[key] = node
            self._gone_picks += sum(node.picks for key, node in old.items() if key not in nodes)
            if self._service is None:
                self._service = service
            self._nodes = nodes
            self._refresh()
        finally:
            lock.release()

    def pick(self, key: Key | None = None, *, exclude: Collection[str] = ()) -> Pick:
        """Choose an instance for one request; finish the returned Pick when it ends.

        Args:
            key: the request's key; only ``consistent_hash`` uses it (and requires it),
                the others ignore it.
            exclude: ids of instances not to choose, typically those a retry already
                tried.

        Raises:
            NoInstancesError: no instance is eligible; ``.reason`` says why (none
                registered, all draining, all ejected, all excluded, or a mix).
            InvalidArgumentError: ``key`` is missing or unusable for ``consistent_hash``,
                or ``exclude`` is a str rather than a collection of ids.
        """
        lock = self._lock
        lock.acquire()
        try:
            if self._leaked:
                self._reap()
            now = self._now() if self._timed else 0.0
            if self._expiry is not None:
                self._expire(now if self._timed else self._now())
            if exclude and isinstance(exclude, str):
                raise ArgumentTypeError("exclude", exclude, "a collection of instance ids")
            node = self._choose(key, exclude, now)
            if node is None:
                self._unavailable += 1
                reason = explain(self._nodes.values(), exclude, panic=self._panic)
                raise NoInstancesError(self._service or "<unnamed>", reason)
            node.outstanding += 1
            node.picks += 1
        finally:
            lock.release()
        return Pick(self, node, now)

    def eject(self, instance_id: str, *, until: float | None = None) -> bool:
        """Stop picking an instance (outlier ejection, decided by the caller's breakers).

        Ejecting an ejected instance replaces its deadline. Ejection is kept across
        updates while the instance stays, and forgotten when it leaves.

        Args:
            instance_id: the instance's id.
            until: the time on the balancer's clock when it becomes eligible again
                (``clock.now() + retry_after``); None: until :meth:`readmit`.

        Returns:
            True if the instance is known (and is now ejected), False if not.
        """
        deadline = check_until(until)
        lock = self._lock
        lock.acquire()
        try:
            node = self._nodes.get(instance_id) if isinstance(instance_id, str) else None
            if node is None:
                return False
            node.ejected = True
            node.ejected_until = deadline
            self._ejections += 1
            self._refresh()
            return True
        finally:
            lock.release()

    def readmit(self, instance_id: str) -> bool:
        """End an instance's ejection now.

        Returns:
            True if it was ejected, False if it was not (or is not known).
        """
        lock = self._lock
        lock.acquire()
        try:
            node = self._nodes.get(instance_id) if isinstance(instance_id, str) else None
            if node is None or not node.ejected:
                return False
            node.ejected = False
            node.ejected_until = None
            self._refresh()
            return True
        finally:
            lock.release()

    def statistics(self) -> BalancerStatistics:
        """Return a snapshot of the instances and counters."""
        lock = self._lock
        lock.acquire()
        try:
            if self._leaked:
                self._reap()
            if self._expiry is not None:
                self._expire(self._now())
            eligible = {node.id for node in self._candidates}
            instances = tuple(
                self._instance_statistics(node, node.id in eligible)
                for node in self._nodes.values()
            )
            picks = self._gone_picks + sum(node.picks for node in self._nodes.values())
            finished = self._succeeded + self._failed + self._abandoned + self._leaks
            return BalancerStatistics(
                balancer=self.name,
                service=self._service,
                instances=instances,
                eligible=len(eligible),
                panic=self._panic,
                picks=picks,
                outstanding=picks - finished,
                succeeded=self._succeeded,
                failed=self._failed,
                abandoned=self._abandoned,
                leaked=self._leaks,
                unavailable=self._unavailable,
                ejections=self._ejections,
            )
        finally:
            lock.release()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(service={self._service!r}, "
            f"instances={len(self._nodes)}, eligible={len(self._candidates)})"
        )

    # ---------------------------------------------------------------- internals

    def _instance_statistics(self, node: Node, eligible: bool) -> InstanceStatistics:
        return InstanceStatistics(
            id=node.id,
            address=node.instance.address,
            weight=node.weight,
            status=node.instance.status,
            eligible=eligible,
            ejected=node.ejected,
            ejected_until=node.ejected_until,
            picks=node.picks,
            outstanding=node.outstanding,
            errors=node.errors,
            ewma=self._ewma_of(node),
        )

    def _ewma_of(self, node: Node) -> float | None:
        return None

    def _settle(self, pick: Pick, error: bool | None) -> None:
        """Finish ``pick`` once: release its outstanding count and let the picker learn."""
        now = self._now() if self._timed else 0.0
        lock = self._lock
        lock.acquire()
        try:
            if not pick._open:
                return
            pick._open = False
            node = pick._node
            node.outstanding -= 1
            if error is None:
                self._abandoned += 1
            elif error:
                node.errors += 1
                self._failed += 1
            else:
                self._succeeded += 1
            self._record(node, pick._start, now, error)
        finally:
            lock.release()

    def _reap(self) -> None:
        """Release the picks collected unfinished (queued by Pick.__del__)."""
        leaked = self._leaked
        while leaked:
            node, start = leaked.popleft()
            node.outstanding -= 1
            self._leaks += 1
            self._record(node, start, 0.0, None)

    def _expire(self, now: float) -> None:
        """Readmit the instances whose ejection deadline has passed."""
        assert self._expiry is not None
        if now < self._expiry:
            return
        for node in self._nodes.values():
            if node.ejected and node.ejected_until is not None and node.ejected_until <= now:
                node.ejected = False
                node.ejected_until = None
        self._refresh()

    def _refresh(self) -> None:
        """Recompute the candidates, panic and the next deadline; rebuild on a change."""
        up = [node for node in self._nodes.values() if node.instance.status is Status.UP]
        healthy = [node for node in up if not node.ejected]
        panic = len(healthy) < self._panic_threshold * len(up)
        self._panic = panic
        self._expiry = min(
            (n.ejected_until for n in self._nodes.values() if n.ejected_until is not None),
            default=None,
        )
        candidates = up if panic else healthy
        shape = tuple((node.id, node.weight) for node in candidates)
        if shape != self._shape or any(
            a is not b for a, b in zip(candidates, self._candidates, strict=False)
        ):
            self._candidates = candidates
            self._shape = shape
            self._rebuild()
