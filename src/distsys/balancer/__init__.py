"""Load balancing: choose an instance of a service per request, and learn from the outcome.

Every balancer is a pure picker over the instances a
:class:`~distsys.registry.Resolver` provides: no I/O, time from ``clock=``, randomness
from ``rng=``. Keep one per service, feed it with ``resolver.subscribe(balancer.update)``,
and per request::

    with balancer.pick(key, exclude=tried) as chosen:
        ...  # send the request to chosen.instance

``make_balancer(name)`` builds one by name: ``"round_robin"`` (nginx's smooth weighted
round robin), ``"random"`` (weighted), ``"least_outstanding"``, ``"p2c_ewma"`` (the
default: power of two choices over latency, as go-zero) and ``"consistent_hash"``
(key affinity with bounded loads). See ``docs/balancer.md``.
"""

from distsys import _pure
from distsys.balancer import _base, _pick
from distsys.balancer._base import Balancer
from distsys.balancer._factory import BALANCERS, DEFAULT_BALANCER, make_balancer
from distsys.balancer._hash import ConsistentHashBalancer
from distsys.balancer._least import LeastOutstandingBalancer
from distsys.balancer._p2c import P2CEWMABalancer
from distsys.balancer._pick import Pick
from distsys.balancer._random import RandomBalancer
from distsys.balancer._round_robin import RoundRobinBalancer
from distsys.balancer._statistics import BalancerStatistics, InstanceStatistics

_pure.restore_docstrings(_base, _pick)  # compiled by mypyc, which drops docstrings

__all__ = [
    "Balancer",
    "Pick",
    "BalancerStatistics",
    "InstanceStatistics",
    "RoundRobinBalancer",
    "RandomBalancer",
    "LeastOutstandingBalancer",
    "P2CEWMABalancer",
    "ConsistentHashBalancer",
    "make_balancer",
    "BALANCERS",
    "DEFAULT_BALANCER",
]
