"""Helpers shared by the balancer tests: instance lists and a pick loop."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from distsys.balancer import Balancer
from distsys.registry import Instance, Status


def make_instances(
    count: int = 3,
    *,
    weights: Sequence[int] | None = None,
    service: str = "api",
    status: Status = Status.UP,
) -> list[Instance]:
    """Return ``count`` instances ``i0``, ``i1`` ... (ids sort like their numbers up to 10)."""
    weights = weights if weights is not None else [1] * count
    return [
        Instance(
            service,
            f"i{n:02d}" if count > 10 else f"i{n}",
            "10.0.0.1",
            8000 + n,
            weight=w,
            status=status,
        )
        for n, w in enumerate(weights)
    ]


def seeded(seed: int = 7) -> random.Random:
    return random.Random(seed)


def pick_ids(balancer: Balancer, count: int, *, key: str | None = "k") -> list[str]:
    """Pick ``count`` times (keys ``k0``, ``k1`` ...), finishing each at once; return the ids."""
    chosen = []
    for n in range(count):
        with balancer.pick(None if key is None else f"{key}{n}") as pick:
            chosen.append(pick.instance.id)
    return chosen


def histogram(balancer: Balancer, count: int) -> Counter[str]:
    return Counter(pick_ids(balancer, count))
