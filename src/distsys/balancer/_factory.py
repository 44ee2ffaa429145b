"""make_balancer: a balancer by name, with its options checked."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from distsys.balancer._base import Balancer
from distsys.balancer._hash import ConsistentHashBalancer
from distsys.balancer._least import LeastOutstandingBalancer
from distsys.balancer._p2c import P2CEWMABalancer
from distsys.balancer._random import RandomBalancer
from distsys.balancer._round_robin import RoundRobinBalancer
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.registry import Instance

__all__ = ["BALANCERS", "DEFAULT_BALANCER", "make_balancer"]

BALANCERS: Final[Mapping[str, type[Balancer]]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (
            RoundRobinBalancer,
            RandomBalancer,
            LeastOutstandingBalancer,
            P2CEWMABalancer,
            ConsistentHashBalancer,
        )
    }
)
"""The balancers by name (read-only)."""

DEFAULT_BALANCER: Final = P2CEWMABalancer.name


def make_balancer(
    name: str = DEFAULT_BALANCER, instances: Iterable[Instance] = (), **options: Any
) -> Balancer:
    """Return a new balancer of the algorithm ``name``.

    Args:
        name: ``"round_robin"``, ``"random"``, ``"least_outstanding"``,
            ``"p2c_ewma"`` (the default) or ``"consistent_hash"``.
        instances: the initial instances.
        options: the keyword arguments of that balancer's class (``service``,
            ``clock``, ``rng``, ``panic_threshold`` for all; ``decay`` ... for
            ``p2c_ewma``; ``factor``, ``vnodes`` for ``consistent_hash``;
            ``choices`` for ``least_outstanding``).

    Raises:
        InvalidArgumentError: ``name`` is not a known balancer (field ``balancer``; the
            message lists the known ones), or an option is not one of its options or
            has a bad value (the message names it).
    """
    known = sorted(BALANCERS)
    accepted = f"one of {', '.join(repr(n) for n in known)}"
    if not isinstance(name, str):
        raise ArgumentTypeError("balancer", name, accepted)
    cls = BALANCERS.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else ""
        raise InvalidArgumentError("balancer", name, accepted, detail=hint)
    parameters = inspect.signature(cls).parameters
    allowed = sorted(p for p, spec in parameters.items() if spec.kind is spec.KEYWORD_ONLY)
    for option, value in options.items():
        if option not in allowed:
            raise InvalidArgumentError(option, value, f"an option of {name}: {', '.join(allowed)}")
    return cls(instances, **options)
