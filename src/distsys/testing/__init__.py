"""Test helpers: a clock driven by hand, and contract suites that every backend passes.

``KVContract`` and ``BrokerContract`` import the concepts they test; importing them does
not import any optional client library.
"""

from distsys.testing._clock import ManualClock
from distsys.testing._kv_contract import KVContract, next_event
from distsys.testing._mq_contract import BrokerContract

__all__ = ["BrokerContract", "KVContract", "ManualClock", "next_event"]
