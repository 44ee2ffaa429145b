"""Request metrics kept in plain counters, exposed through a per-service CollectorRegistry.

Observing a request is two integer additions and a ``bisect`` on the event loop's
thread; prometheus-client's metric families are built only when ``/metrics`` is scraped.
Each service has its own ``CollectorRegistry`` (never the process-global one), which
handlers may also register their own metrics in.

Families (``route`` is the route template, never the raw path, so label cardinality is
bounded by the number of routes)::

    http_requests_total{method, route, status}                 counter
    http_request_duration_seconds{method, route, status}       histogram
    http_requests_in_flight                                    gauge
    distsys_service_info{service, version, instance}           gauge (always 1)
    distsys_service_state{state}                               gauge (1 for the current state)
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from distsys.errors import InvalidArgumentError
from distsys.service._lifecycle import State

__all__ = ["DEFAULT_BUCKETS", "UNMATCHED", "RouteSeries", "ServiceMetrics"]

DEFAULT_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Latency bucket bounds in seconds: finer than Prometheus's default at the low end."""

UNMATCHED: Final = "<unmatched>"
"""The ``route`` label of requests that matched no route (404, 405)."""

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class _Status:
    __slots__ = ("buckets", "count", "total")

    def __init__(self, size: int) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * size


class RouteSeries:
    """The counters of one (method, route) pair, one set per status.

    Safe within one event loop.
    """

    __slots__ = ("_bounds", "_size", "by_status", "method", "route")

    def __init__(self, method: str, route: str, bounds: tuple[float, ...]) -> None:
        self.method = method
        self.route = route
        self._bounds = bounds
        self._size = len(bounds) + 1
        self.by_status: dict[int, _Status] = {}

    def observe(self, status: int, seconds: float) -> None:
        """Count one request answered ``status`` after ``seconds``."""
        entry = self.by_status.get(status)
        if entry is None:
            entry = self.by_status[status] = _Status(self._size)
        entry.count += 1
        entry.total += seconds
        entry.buckets[bisect_left(self._bounds, seconds)] += 1


class ServiceMetrics(Collector):
    """A service's request metrics and the ``CollectorRegistry`` that exposes them.

    Attributes:
        registry: the per-service registry: ``/metrics`` renders it; register your own
            metrics in it (``Counter(..., registry=svc.metrics.registry)``).
        in_flight: requests being handled now.

    Safe within one event loop (scrapes are served on that loop too).
    """

    def __init__(
        self,
        *,
        service: str,
        version: str,
        instance: Callable[[], str],
        state: Callable[[], State],
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if (
            not bounds
            or list(bounds) != sorted(set(bounds))
            or not all(0 < b < math.inf for b in bounds)
        ):
            raise InvalidArgumentError(
                "buckets", buckets, "increasing, distinct, finite bounds in seconds, > 0"
            )
        self._bounds = bounds
        self._service = service
        self._version = version
        self._instance = instance
        self._state = state
        self._series: dict[tuple[str, str], RouteSeries] = {}
        self.in_flight = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def series(self, method: str, route: str) -> RouteSeries:
        """Return the counters of ``method`` on ``route`` (created on first use)."""
        if method not in _METHODS:
            method = "OTHER"
        key = (method, route)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = RouteSeries(method, route, self._bounds)
        return found

    def requests(self) -> int:
        """Return how many requests have been answered."""
        return sum(e.count for s in self._series.values() for e in s.by_status.values())

    def server_errors(self) -> int:
        """Return how many requests were answered 5xx."""
        return sum(
            e.count
            for s in self._series.values()
            for status, e in s.by_status.items()
            if status >= 500
        )

    def describe(self) -> Iterable[Metric]:
        """Return the families' descriptions (samples come from :meth:`collect`)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """Build the metric families from the counters (called at scrape time)."""
        return self._families()

    def _families(self) -> list[Metric]:
        labels = ["method", "route", "status"]
        total = CounterMetricFamily(
            "http_requests", "HTTP requests answered, by route template and status", labels=labels
        )
        latency = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time from request to response, by route template and status",
            labels=labels,
        )
        for series in list(self._series.values()):
            for status, entry in sorted(series.by_status.items()):
                values = [series.method, series.route, str(status)]
                total.add_metric(values, entry.count)
                cumulative: list[tuple[str, float]] = []
                running = 0
                for bound, count in zip(self._bounds, entry.buckets, strict=False):
                    running += count
                    cumulative.append((_le(bound), running))
                cumulative.append(("+Inf", entry.count))
                latency.add_metric(values, cumulative, entry.total)
        in_flight = GaugeMetricFamily(
            "http_requests_in_flight", "HTTP requests being handled now", value=self.in_flight
        )
        info = GaugeMetricFamily(
            "distsys_service_info",
            "The service's name, version and instance id",
            labels=["service", "version", "instance"],
        )
        info.add_metric([self._service, self._version, self._instance()], 1)
        state = GaugeMetricFamily(
            "distsys_service_state", "1 for the lifecycle state the service is in", labels=["state"]
        )
        current = self._state()
        for each in State:
            state.add_metric([each.value], 1 if each is current else 0)
        return [total, latency, in_flight, info, state]


def _le(bound: float) -> str:
    return repr(bound)
