"""Test helpers: a clock driven by hand, and (later) contract suites for backends."""

from distsys.testing._clock import ManualClock

__all__ = ["ManualClock"]
