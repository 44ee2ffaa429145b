"""RandomBalancer: weighted random choice, O(log n) by bisecting cumulative weights.

The algorithm is in ``_random_core``, compiled by mypyc with the rest of the balancer's
per-request path; this module is its public face, with the argument types declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from random import Random

from distsys.balancer._random_core import RandomCore
from distsys.clock import Clock
from distsys.registry import Instance

__all__ = ["RandomBalancer"]


class RandomBalancer(RandomCore):
    """Weighted random: each pick is independent, instance ``i`` chosen with ``w_i / W``.

    Stateless between picks, so many uncoordinated clients together spread load evenly
    without any shared counter; but with few requests the spread is lumpier than round
    robin's. Equal weights take one ``rng.random()`` per pick; unequal ones add a bisect
    over the cumulative weights (O(log n)). A pick with ``exclude`` draws among the
    remaining instances with the same weights (O(n)).

    Thread-safe (see :class:`Balancer`).
    """

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            instances,
            service=service,
            clock=clock,
            rng=rng,
            panic_threshold=panic_threshold,
        )
