"""Render metrics snapshots as Prometheus text exposition lines (no client library needed).

Everything a rolling window reports can go down as well as up, so every family is a
``gauge``: rendering a windowed count as a Prometheus counter or summary would make
``rate()`` over it wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._counter import CounterStatistics
from distsys.metrics._sketch import SketchStatistics
from distsys.metrics._window import WindowStatistics

__all__ = ["render_prometheus"]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_STATISTICS = "a WindowStatistics, CounterStatistics or SketchStatistics"

Sample = tuple[str, dict[str, str], float | None]


def render_prometheus(
    name: str,
    statistics: WindowStatistics | CounterStatistics | SketchStatistics,
    *,
    help_text: str = "",
    labels: Mapping[str, str] | None = None,
) -> str:
    """Return ``statistics`` as Prometheus text exposition lines, one gauge family per field.

    A :class:`WindowStatistics` gives ``<name>_count``, ``_sum``, ``_mean``, ``_min``,
    ``_max`` and ``_rate``; a :class:`SketchStatistics` gives ``<name>{quantile="0.5"}``
    (also 0.9 and 0.99) and ``_count``, ``_sum``, ``_min``, ``_max``; a
    :class:`CounterStatistics` gives ``<name>{field="..."}`` per field. A value that is
    None (an empty window) renders as ``NaN``.

    Args:
        name: the metric name prefix, e.g. ``"gateway_latency_seconds"``.
        statistics: the snapshot to render.
        help_text: the ``# HELP`` text of every family.
        labels: labels added to every sample, e.g. ``{"route": "/users"}``.

    Raises:
        InvalidArgumentError: ``name`` or a label name is not a valid Prometheus name.
        ArgumentTypeError: ``statistics`` is not one of the snapshots above.
    """
    if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
        raise InvalidArgumentError(
            "name", name, "a Prometheus metric name [a-zA-Z_:][a-zA-Z0-9_:]*"
        )
    common = dict(labels or {})
    for label in common:
        if not isinstance(label, str) or not _LABEL_NAME.fullmatch(label) or label[:2] == "__":
            raise InvalidArgumentError(
                "labels", label, "label names [a-zA-Z_][a-zA-Z0-9_]* not starting with __"
            )
    families: dict[str, list[Sample]] = {}
    for metric, extra, value in _samples(name, statistics):
        families.setdefault(metric, []).append((metric, extra, value))
    help_line = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines: list[str] = []
    for metric, samples in families.items():
        if help_line:
            lines.append(f"# HELP {metric} {help_line}")
        lines.append(f"# TYPE {metric} gauge")
        for _, extra, value in samples:
            lines.append(f"{metric}{_labels({**common, **extra})} {_number(value)}")
    return "\n".join(lines) + "\n"


def _samples(
    name: str, statistics: WindowStatistics | CounterStatistics | SketchStatistics
) -> list[Sample]:
    if isinstance(statistics, WindowStatistics):
        s = statistics
        return [
            (f"{name}_{field}", {}, value)
            for field, value in (
                ("count", s.count),
                ("sum", s.sum),
                ("mean", s.mean),
                ("min", s.min),
                ("max", s.max),
                ("rate", s.rate),
            )
        ]
    if isinstance(statistics, SketchStatistics):
        k = statistics
        return [
            (name, {"quantile": "0.5"}, k.p50),
            (name, {"quantile": "0.9"}, k.p90),
            (name, {"quantile": "0.99"}, k.p99),
            (f"{name}_count", {}, k.count),
            (f"{name}_sum", {}, k.sum),
            (f"{name}_min", {}, k.min),
            (f"{name}_max", {}, k.max),
        ]
    if isinstance(statistics, CounterStatistics):
        c = statistics
        return [(name, {"field": f}, t) for f, t in zip(c.fields, c.totals, strict=True)]
    raise ArgumentTypeError("statistics", statistics, _STATISTICS)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{key}="{_escape(str(value))}"' for key, value in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
