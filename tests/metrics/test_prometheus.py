"""render_prometheus: text exposition of each snapshot kind, labels escaped, names checked."""

from __future__ import annotations

import math

import pytest

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics import (
    CounterStatistics,
    SketchStatistics,
    WindowStatistics,
    render_prometheus,
)


def test_window_statistics_render_as_gauges() -> None:
    stats = WindowStatistics(3, 6.0, 2.0, 1.0, 3.0, 0.5, 12.0)
    assert render_prometheus("rpc_seconds", stats, help_text="RPC latency, last 12 s") == (
        "# HELP rpc_seconds_count RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_count gauge\n"
        "rpc_seconds_count 3\n"
        "# HELP rpc_seconds_sum RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_sum gauge\n"
        "rpc_seconds_sum 6.0\n"
        "# HELP rpc_seconds_mean RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_mean gauge\n"
        "rpc_seconds_mean 2.0\n"
        "# HELP rpc_seconds_min RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_min gauge\n"
        "rpc_seconds_min 1.0\n"
        "# HELP rpc_seconds_max RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_max gauge\n"
        "rpc_seconds_max 3.0\n"
        "# HELP rpc_seconds_rate RPC latency, last 12 s\n"
        "# TYPE rpc_seconds_rate gauge\n"
        "rpc_seconds_rate 0.5\n"
    )


def test_sketch_statistics_render_quantile_labels_and_nan_when_empty() -> None:
    stats = SketchStatistics(0, 0.0, None, None, None, None, None, None, 0, False)
    text = render_prometheus("lat", stats, labels={"route": "/a"})
    assert text.splitlines()[:4] == [
        "# TYPE lat gauge",
        'lat{route="/a",quantile="0.5"} NaN',
        'lat{route="/a",quantile="0.9"} NaN',
        'lat{route="/a",quantile="0.99"} NaN',
    ]
    assert 'lat_count{route="/a"} 0' in text


def test_counter_statistics_render_one_sample_per_field() -> None:
    stats = CounterStatistics(("calls", "failures"), (10, 2), 10.0)
    assert render_prometheus("breaker", stats) == (
        '# TYPE breaker gauge\nbreaker{field="calls"} 10\nbreaker{field="failures"} 2\n'
    )


def test_label_values_and_help_are_escaped() -> None:
    stats = CounterStatistics(("n",), (1,), 1.0)
    text = render_prometheus("x", stats, help_text="a\\b\nc", labels={"v": 'q"\\\n'})
    assert "# HELP x a\\\\b\\nc" in text
    assert 'x{v="q\\"\\\\\\n",field="n"} 1' in text


def test_infinities_render_as_prometheus_spells_them() -> None:
    stats = WindowStatistics(1, math.inf, None, None, -math.inf, 0.0, 1.0)
    text = render_prometheus("x", stats)
    assert "x_sum +Inf" in text
    assert "x_max -Inf" in text


@pytest.mark.parametrize("name", ["1x", "a-b", "", "a b"])
def test_bad_metric_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="name="):
        render_prometheus(name, CounterStatistics(("n",), (1,), 1.0))


@pytest.mark.parametrize("label", ["__reserved", "a-b", "1a"])
def test_bad_label_names_are_refused(label: str) -> None:
    with pytest.raises(InvalidArgumentError, match="labels="):
        render_prometheus("x", CounterStatistics(("n",), (1,), 1.0), labels={label: "v"})


def test_other_objects_are_refused() -> None:
    with pytest.raises(ArgumentTypeError, match="statistics="):
        render_prometheus("x", {"count": 1})  # type: ignore[arg-type]
