"""P2CEWMACore: P2CEWMABalancer's algorithm (explained in ``_p2c.py``), compiled.

mypyc compiles this module with the rest of the balancer's per-request path (``_base``,
``_pick``, ``_node``): a pick and its ``done()`` cost a third of what they cost as
Python. The public class, with the argument types declared, is in ``_p2c.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from math import exp
from typing import Final

from mypy_extensions import mypyc_attr

from distsys.balancer._base import Balancer, Node
from distsys.balancer._checks import check_seconds
from distsys.balancer._pick import Pick
from distsys.hashring import Key
from distsys.registry import Instance

__all__ = ["P2CEWMACore"]

FLOOR: Final = 1e-6
PAIRS_UP_TO: Final = 64  # precompute the pairs to draw from up to this many candidates


@mypyc_attr(allow_interpreted_subclasses=True)  # P2CEWMABalancer, the public class
class P2CEWMACore(Balancer):
    """P2CEWMABalancer's algorithm, compiled by mypyc.

    Its arguments are typed ``object``: see ``Balancer.__init__``.
    """

    name = "p2c_ewma"
    _timed = True

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        decay: object = 10.0,
        force_after: object = 1.0,
        error_penalty: object = 1.0,
        initial_latency: object = None,
        service: object = None,
        clock: object = None,
        rng: object = None,
        panic_threshold: object = 0.0,
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
