"""Rolling-window statistics: counts, rates, and percentiles within a relative error.

``RollingWindow`` (count, sum, mean, min, max, rate of the last N buckets),
``RollingCounter`` (several named event counts, O(1) reads: what a circuit breaker
needs), ``LogSketch`` (a mergeable DDSketch-style quantile sketch with a relative error
bound), ``RollingPercentiles`` (p50/p90/p99 of the last N buckets), and
``render_prometheus`` to expose any of their snapshots. The rolling classes take
``clock=``, advance lazily (no timer thread), and are thread-safe unless built with
``thread_safe=False``; a bare ``LogSketch`` is not thread-safe. See docs/metrics.md.
"""

from distsys.metrics._counter import CounterBucket, CounterStatistics, RollingCounter
from distsys.metrics._percentiles import RollingPercentiles
from distsys.metrics._prometheus import render_prometheus
from distsys.metrics._sketch import LogSketch, SketchStatistics
from distsys.metrics._window import RollingWindow, WindowBucket, WindowStatistics

__all__ = [
    "RollingWindow",
    "WindowStatistics",
    "WindowBucket",
    "RollingCounter",
    "CounterStatistics",
    "CounterBucket",
    "LogSketch",
    "RollingPercentiles",
    "SketchStatistics",
    "render_prometheus",
]
