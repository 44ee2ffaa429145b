"""LeastOutstandingBalancer: the fewest requests in flight per unit of weight.

The algorithm is in ``_least_core``, compiled by mypyc with the rest of the balancer's
per-request path; this module is its public face, with the argument types declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from random import Random

from distsys.balancer._least_core import LeastOutstandingCore
from distsys.clock import Clock
from distsys.registry import Instance

__all__ = ["LeastOutstandingBalancer"]


class LeastOutstandingBalancer(LeastOutstandingCore):
    """Send each request where the fewest are in flight, relative to weight.

    *Outstanding* is this balancer's own count of picks not finished yet. With
    ``choices=None`` (the default) the pick is **exact**: it never chooses an instance
    whose ``outstanding / weight`` is strictly greater than another eligible one's, and
    breaks ties by smooth weighted round robin, as nginx's ``least_conn`` does, so
    sequential traffic (everything idle) is spread by weight rather than piled on the
    first instance. That costs O(n) per pick, fine for the tens of instances of a
    typical service.

    With ``choices=k`` it samples ``k`` eligible instances at random (with replacement)
    and takes the one with the least ``outstanding / weight``, the first drawn among
    equals, as Envoy's ``least_request`` with ``choice_count`` (``k = 2`` is the power
    of two choices): O(k) per pick, for large fleets.

    Thread-safe (see :class:`Balancer`).

    Args:
        choices: None for the exact minimum, or how many instances to sample (>= 2).
    """

    def __init__(
        self,
        instances: Iterable[Instance] = (),
        *,
        choices: int | None = None,
        service: str | None = None,
        clock: Clock | None = None,
        rng: Random | None = None,
        panic_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            instances,
            choices=choices,
            service=service,
            clock=clock,
            rng=rng,
            panic_threshold=panic_threshold,
        )
