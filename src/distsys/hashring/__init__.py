"""Consistent hashing: a weighted hash ring, bounded loads, and jump hash.

``HashRing`` places keys on named nodes with virtual nodes and weights, and names
replicas with ``get_n``; ``BoundedLoadBalancer`` assigns requests on such a ring while
keeping every node within a factor of its fair share of the load in flight;
``jump_hash`` maps a key to one of a number of numbered buckets with no table at all.
Placement rests on ``hash_key`` (XXH3-64 over a documented encoding), so every process,
and a peer in another language, agrees on it.
"""

from distsys.hashring._bounded import BoundedLoadBalancer, BoundedLoadStatistics
from distsys.hashring._hashing import Key, hash_key
from distsys.hashring._jump import jump_hash
from distsys.hashring._ring import HashRing, HashRingStatistics

__all__ = [
    "HashRing",
    "HashRingStatistics",
    "BoundedLoadBalancer",
    "BoundedLoadStatistics",
    "jump_hash",
    "hash_key",
    "Key",
]
