"""P2CEWMABalancer: the power of two choices over a time-decayed latency average.

The idea of go-zero's ``p2c_ewma`` picker (after Finagle's): draw two distinct
instances at random and send the request to the one with the lower *load*::

    load = (ewma + 1 µs) * (outstanding + 1) / weight

``ewma`` is the instance's moving average of response time in seconds, ``outstanding``
its requests in flight from this balancer; the microsecond keeps outstanding counts
meaningful when latencies are too small to measure. Two random choices, not the global
minimum, so that many clients with slightly stale views do not all stampede to the
same instance, while the load still concentrates on the fast ones (Mitzenmacher's power
of two choices).

The average decays with *time*, not with the number of samples: a response of latency
``x`` arriving ``dt`` seconds after the previous one gives
``ewma = ewma * w + x * (1 - w)`` with ``w = exp(-dt / decay)``. The estimate thus
reflects roughly the last ``decay`` seconds however fast requests come, and a response
after a long silence nearly replaces it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from math import exp
from random import Random
from typing import Final

from distsys.balancer._base import Balancer, Node
from distsys.balancer._checks import check_seconds
from distsys.balancer._pick import Pick
from distsys.clock import Clock
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["P2CEWMABalancer"]

FLOOR: Final = 1e-6
PAIRS_UP_TO: Final = 64  # precompute the pairs to draw from up to this many candidates


class P2CEWMABalancer(Balancer):
    """Power of two choices over latency EWMA and requests in flight (go-zero's p2c).

    A pick draws two distinct eligible instances at random (with two there is no draw;
    with one, it is chosen) and takes the one with the lower
    ``(ewma + 1e-6) * (outstanding + 1) / weight`` (see the module docs; the first
    drawn among equals). Finishing the pick with ``done()`` feeds its latency, measured
    on ``clock`` from the pick, into the instance's EWMA.

    - **Decay**: the EWMA's time constant is ``decay`` seconds (default 10, Finagle's
      and go-zero's).
    - **Errors**: ``done(error=True)`` feeds ``latency + error_penalty`` instead, so an
      instance that fails fast does not look fast and attract all traffic.
    - **A chance for the neglected**: if the worse of the two drawn has not been picked
      for ``force_after`` seconds (default 1, as go-zero), it is picked anyway, so a
      slow instance keeps being measured and is used again once it recovers.
    - **New instances** start *neutral*: until their first response they are scored
      with the mean EWMA of the instances that have one (neither flooded nor starved),
      and their first response sets their EWMA outright. ``initial_latency=x`` starts
      them at ``x`` seconds instead: high to ramp them up gently, 0 to try them at once.
    - ``abandon()`` (and cancellation) releases the outstanding count without a sample.

    Thread-safe (see :class:`Balancer`).

    Args:
        decay: the EWMA's time constant, seconds > 0.
        force_after: seconds after which an instance not picked is picked when drawn.
        error_penalty: seconds added to a failed request's latency, >= 0.
        initial_latency: None (neutral start), or the EWMA new instances start with.
    """

    name = "p2c_ewma"
    _timed = True

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        decay: float = 10.0,
        force_after: float = 1.0,
        error_penalty: float = 1.0,
        initial_latency: float | None = None,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        self._decay = check_seconds("decay", decay)
        self._force_after = check_seconds("force_after", force_after)
        self._error_penalty = check_seconds("error_penalty", error_penalty, zero=True)
        self._initial = (
            None
            if initial_latency is None
            else check_seconds("initial_latency", initial_latency, zero=True)
        )
        # The mean EWMA that unmeasured instances are scored with; recomputed after a
        # change of the candidates or an instance's first response (later samples shift
        # it little, and it only matters until every instance has answered once).
        self._neutral: float | None = None
        self._pairs: list[tuple[Node, Node]] = []
        super().__init__(
            instances, service=service, clock=clock, rng=rng, panic_threshold=panic_threshold
        )

    def _added(self, node: Node, now: float) -> None:
        node.last_pick = now  # a newcomer is not neglected yet
        node.stamp = now
        if self._initial is not None:
            node.ewma = self._initial

    def _rebuild(self) -> None:
        self._neutral = None
        nodes = self._candidates
        # Every ordered pair of distinct candidates, so that a pick draws once.
        self._pairs = (
            [(a, b) for a in nodes for b in nodes if a is not b]
            if 2 < len(nodes) <= PAIRS_UP_TO
            else []
        )

    def _neutral_latency(self) -> float:
        if self._neutral is None:
            known = [node.ewma for node in self._nodes.values() if node.ewma >= 0.0]
            self._neutral = sum(known) / len(known) if known else 0.0
        return self._neutral

    def _choose(self, key: Key | None, exclude: Collection[str], now: float) -> Node | None:
        pairs = self._pairs
        if pairs and not exclude:
            a, b = pairs[int(self._random() * len(pairs))]
        else:
            nodes = self._candidates
            if exclude:
                nodes = [node for node in nodes if node.id not in exclude]
            size = len(nodes)
            if size > 2:
                random = self._random
                i = int(random() * size)
                j = int(random() * (size - 1))
                a = nodes[i]
                b = nodes[j + 1 if j >= i else j]
            elif size == 2:
                a, b = nodes if self._random() < 0.5 else nodes[::-1]  # equals: either
            elif size:
                a = nodes[0]
                a.last_pick = now
                return a
            else:
                return None
        ea = a.ewma
        eb = b.ewma
        if ea < 0.0 or eb < 0.0:
            neutral = self._neutral_latency()
            ea = neutral if ea < 0.0 else ea
            eb = neutral if eb < 0.0 else eb
        # load(b) < load(a), multiplied out by both weights
        if (eb + FLOOR) * (b.outstanding + 1) * a.weight < (ea + FLOOR) * (a.outstanding + 1) * (
            b.weight
        ):
            a, b = b, a
        if now - b.last_pick > self._force_after:
            a = b
        a.last_pick = now
        return a

    def _settle(self, pick: Pick, error: bool | None) -> None:
        # Balancer._settle with the EWMA update inlined: a method call less on the path
        # of every finished request (about a tenth of a pick + done pair).
        now = self._now()
        lock = self._lock
        lock.acquire()
        try:
            if not pick._open:
                return
            pick._open = False
            node = pick._node
            node.outstanding -= 1
            if error is None:  # abandoned: no sample
                self._abandoned += 1
                return
            start = pick._start
            latency = now - start if now > start else 0.0
            if error:
                node.errors += 1
                self._failed += 1
                latency += self._error_penalty
            else:
                self._succeeded += 1
            if node.samples:
                elapsed = now - node.stamp
                weight = exp(-elapsed / self._decay) if elapsed > 0.0 else 1.0
                node.ewma = node.ewma * weight + latency * (1.0 - weight)
            else:  # the first response sets the estimate outright
                node.ewma = latency
                self._neutral = None
            if now > node.stamp:
                node.stamp = now
            node.samples += 1
        finally:
            lock.release()

    def _ewma_of(self, node: Node) -> float | None:
        return node.ewma if node.ewma >= 0.0 else None
