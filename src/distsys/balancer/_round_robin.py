"""RoundRobinBalancer: nginx's smooth weighted round robin, O(1) per pick.

nginx's algorithm (``ngx_http_upstream_get_peer``): every pick, each candidate's
running weight grows by its weight; the largest (the first among equals) is chosen and
loses the total weight. Over ``W = sum(weights)`` picks each instance is chosen exactly
``weight`` times, interleaved as evenly as possible (weights 5, 1, 1 give
``a a b a c a a`` rather than ``a a a a a b c``), and the running weights are back
to zero: the sequence is periodic with period ``W``. So when the cycle is short (after
dividing the weights by their greatest common divisor) it is computed once per change
of the candidates and a pick is one list index; otherwise each pick runs the O(n) pass.

The algorithm is in ``_round_robin_core``, compiled by mypyc with the rest of the balancer's
per-request path; this module is its public face, with the argument types declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from random import Random

from distsys.balancer._round_robin_core import RoundRobinCore
from distsys.clock import Clock
from distsys.registry import Instance

__all__ = ["RoundRobinBalancer"]


class RoundRobinBalancer(RoundRobinCore):
    """Smooth weighted round robin (nginx): deterministic, honours ``Instance.weight``.

    Over any ``W`` consecutive picks without exclusions or changes (``W`` the sum of the
    eligible instances' weights divided by their greatest common divisor), each instance
    is picked exactly ``weight / gcd`` times, spread as evenly as the weights allow;
    equal weights give plain round robin in id order. A pick costs O(1) when the cycle
    is short enough to precompute (``instances x W <= 32768``), O(n) otherwise.

    The cycle starts at a position drawn from ``rng`` once, so a fleet of clients does
    not start on the same instance (as gRPC's round_robin does); with a seeded ``rng``
    the sequence is fully repeatable. When the candidates change (an update, an
    ejection) the cycle is recomputed and continues from the same position. A pick with
    ``exclude`` takes the next entry of the cycle not excluded.

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
