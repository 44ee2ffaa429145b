"""Test helpers: a clock driven by hand, and contract suites that every backend passes."""

from distsys.testing._clock import ManualClock
from distsys.testing._kv_contract import KVContract, next_event

__all__ = ["KVContract", "ManualClock", "next_event"]
