"""What the gateway counts per route, cheaply, and how it is shown.

A request adds to plain ints (by status code, by latency bucket) and nothing else: no
lock (one event loop), no label lookup, no rolling-window arithmetic. The rest is done
when someone looks: the Prometheus collector reads the ints at scrape time, and the
rolling rates of ``/stats`` come from a :class:`~distsys.metrics.RollingCounter` per route
that is fed once a second with the counts' growth since the last feed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from distsys.metrics import RollingCounter

if TYPE_CHECKING:
    from distsys.clock import Clock

__all__ = ["CLASSES", "LATENCY_BUCKETS", "GatewayCollector", "RouteStats"]

LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""The upper bounds (seconds) of the request latency histogram."""

CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
"""The status classes of the rolling rates."""


class RouteStats:
    """The counts of one route (by name; they outlive reloads). Safe within one loop.

    Attributes:
        name: the route's name.
        codes: requests answered, by status code.
        buckets: requests by latency bucket (see ``LATENCY_BUCKETS``; the last: +Inf).
        latency_sum: the seconds of every request, added.
        errors: upstream failures by kind (``connect``, ``lost``, ``protocol``,
            ``timeout``, ``breaker_open``, ``no_instances``, ``rate_limited`` ...).
        in_flight: requests being served now.
    """

    __slots__ = (
        "_folded",
        "buckets",
        "codes",
        "errors",
        "in_flight",
        "latency_sum",
        "name",
        "rolling",
    )

    def __init__(self, name: str, *, window: int = 10, clock: Clock | None = None) -> None:
        self.name = name
        self.codes: dict[int, int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.errors: dict[str, int] = {}
        self.in_flight = 0
        self.rolling = RollingCounter(window, 1.0, fields=CLASSES, clock=clock, thread_safe=False)
        self._folded = [0] * len(CLASSES)

    def record(self, status: int, seconds: float) -> None:
        """Count one answered request."""
        codes = self.codes
        codes[status] = codes.get(status, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def error(self, kind: str) -> None:
        """Count one upstream failure of ``kind``."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def by_class(self) -> list[int]:
        """Return the requests answered by status class (1xx .. 5xx), since the start."""
        totals = [0] * len(CLASSES)
        for code, count in self.codes.items():
            index = code // 100 - 1
            if 0 <= index < len(totals):
                totals[index] += count
        return totals

    def fold(self) -> None:
        """Feed the rolling window with what was counted since the last fold."""
        totals = self.by_class()
        growth = [now - before for now, before in zip(totals, self._folded, strict=True)]
        self._folded = totals
        self.rolling.add(*growth)

    def rates(self) -> dict[str, float]:
        """Return requests per second by status class over the rolling window."""
        stats = self.rolling.statistics()
        covered = max(stats.covered, 1.0)  # a window just started says little per second
        return {name: round(stats[name] / covered, 3) for name in CLASSES}

    @property
    def count(self) -> int:
        """Requests answered since the start."""
        return sum(self.codes.values())


class GatewayCollector(Collector):
    """Expose the gateway's counts to a prometheus-client ``CollectorRegistry``.

    Args:
        routes: returns the stats of every route known (current or past).
        gauges: returns extra gauges ``(name, help, labels, samples)`` at scrape time,
            ``samples`` being ``[(label values, value), ...]``.
    """

    def __init__(
        self,
        routes: Callable[[], list[RouteStats]],
        gauges: Callable[[], list[tuple[str, str, list[str], list[tuple[list[str], float]]]]],
    ) -> None:
        self._routes = routes
        self._gauges = gauges

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (called by the registry at scrape time)."""
        requests = CounterMetricFamily(
            "distsys_gateway_requests",
            "Requests answered by the gateway, by route and status code.",
            labels=["route", "code"],
        )
        latency = HistogramMetricFamily(
            "distsys_gateway_request_duration_seconds",
            "Time from a request's headers to the end of its response, by route.",
            labels=["route"],
        )
        errors = CounterMetricFamily(
            "distsys_gateway_upstream_errors",
            "Upstream failures by route and kind (connect, lost, protocol, timeout, "
            "breaker_open, no_instances, rate_limited).",
            labels=["route", "kind"],
        )
        in_flight = GaugeMetricFamily(
            "distsys_gateway_requests_in_flight", "Requests being served, by route.",
            labels=["route"],
        )  # fmt: skip
        for stats in self._routes():
            for code, count in sorted(stats.codes.items()):
                requests.add_metric([stats.name, str(code)], count)
            cumulative = []
            total = 0
            bounds = [*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"]
            for bound, count in zip(bounds, stats.buckets, strict=True):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([stats.name], cumulative, stats.latency_sum)
            for kind, count in sorted(stats.errors.items()):
                errors.add_metric([stats.name, kind], count)
            in_flight.add_metric([stats.name], stats.in_flight)
        yield requests
        yield latency
        yield errors
        yield in_flight
        for name, help_text, labels, samples in self._gauges():
            gauge = GaugeMetricFamily(name, help_text, labels=labels)
            for values, value in samples:
                gauge.add_metric(values, value)
            yield gauge
