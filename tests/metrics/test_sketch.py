"""LogSketch: the relative error bound against the true order statistic, exact merging."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics import LogSketch, SketchStatistics

# The rank definition the sketch promises and these tests check: the lower quantile,
# 0-based rank floor(q * (n - 1)) of the sorted data.


def true_quantile(data: list[float], q: float) -> float:
    return sorted(data)[math.floor(q * (len(data) - 1))]


def sketch_of(data: list[float], accuracy: float = 0.01, **options: Any) -> LogSketch:
    sketch = LogSketch(accuracy, **options)
    for value in data:
        sketch.add(value)
    return sketch


def within(estimate: float | None, true: float, accuracy: float) -> bool:
    assert estimate is not None
    return abs(estimate - true) <= accuracy * true


positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)
latency = st.floats(min_value=1e-6, max_value=1e3)
values = st.one_of(positive, latency, st.just(0.0))
quantiles = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=400, deadline=None)
@given(
    data=st.lists(values, min_size=1, max_size=200),
    q=quantiles,
    accuracy=st.sampled_from([0.01, 0.001, 0.05, 0.3]),
)
def test_every_quantile_is_within_the_relative_accuracy(
    data: list[float], q: float, accuracy: float
) -> None:
    # max_buckets large enough for 1e-300..1e300 at 0.1%: nothing collapses here
    sketch = sketch_of(data, accuracy, max_buckets=1_000_000)
    assert within(sketch.quantile(q), true_quantile(data, q), accuracy)


@settings(max_examples=100, deadline=None)
@given(data=st.lists(values, min_size=1, max_size=300))
def test_every_rank_is_within_one_percent(data: list[float]) -> None:
    sketch = sketch_of(data, max_buckets=100_000)
    n = len(data)
    qs = [rank / (n - 1) for rank in range(n)] if n > 1 else [0.0, 1.0]
    for q, estimate in zip(qs, sketch.quantiles(qs), strict=True):
        assert within(estimate, true_quantile(data, q), 0.01)


def test_the_bound_holds_at_bucket_boundaries() -> None:
    gamma = 1.01 / 0.99
    data = [gamma**k * factor for k in range(-300, 300) for factor in (1 - 1e-15, 1.0, 1 + 1e-15)]
    sketch = sketch_of(data)
    for q in [i / 1000 for i in range(1001)]:
        assert within(sketch.quantile(q), true_quantile(data, q), 0.01)


def test_min_and_max_are_exact_and_returned_at_q_0_and_1() -> None:
    data = [0.123456789, 7.0, 987.654321]
    sketch = sketch_of(data)
    assert (sketch.quantile(0), sketch.quantile(1)) == (0.123456789, 987.654321)
    assert (sketch.min, sketch.max, sketch.count, sketch.sum) == (
        0.123456789,
        987.654321,
        3,
        sum(data),
    )


def test_zeros_are_counted_exactly() -> None:
    sketch = sketch_of([0.0, 0, -0.0, 5.0])
    assert sketch.quantiles([0.0, 0.5, 0.66, 1.0]) == [0.0, 0.0, 0.0, 5.0]
    assert sketch.count == 4


def test_an_empty_sketch_has_no_quantiles() -> None:
    sketch = LogSketch()
    assert sketch.quantile(0.5) is None
    assert (sketch.min, sketch.max) == (None, None)
    assert sketch.statistics() == SketchStatistics(
        0, 0.0, None, None, None, None, None, None, 0, False
    )


def test_statistics_of_a_latency_distribution() -> None:
    rng = random.Random(7)
    data = [rng.lognormvariate(-4, 1) for _ in range(20_000)]
    stats = sketch_of(data).statistics()
    assert stats.count == 20_000
    assert stats.mean == pytest.approx(sum(data) / len(data))
    assert within(stats.p50, true_quantile(data, 0.5), 0.01)
    assert within(stats.p90, true_quantile(data, 0.9), 0.01)
    assert within(stats.p99, true_quantile(data, 0.99), 0.01)
    assert stats.buckets < 600
    assert not stats.collapsed


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.lists(values, max_size=50), min_size=1, max_size=5),
    max_buckets=st.sampled_from([1, 16, 2048]),
)
def test_merging_equals_sketching_the_concatenation(
    parts: list[list[float]], max_buckets: int
) -> None:
    first, *rest = (sketch_of(part, max_buckets=max_buckets) for part in parts)
    first.merge(*rest)
    everything = [value for part in parts for value in part]
    whole = sketch_of(everything, max_buckets=max_buckets)
    n = len(everything)
    qs = [rank / (n - 1) for rank in range(n)] if n > 1 else [0.5]
    assert first.quantiles(qs) == whole.quantiles(qs)
    assert (first.count, first.min, first.max) == (whole.count, whole.min, whole.max)
    assert first.sum == pytest.approx(whole.sum)
    assert first.statistics().buckets == whole.statistics().buckets


def test_merge_leaves_the_other_sketch_unchanged_and_copy_is_independent() -> None:
    a, b = sketch_of([1.0, 2.0]), sketch_of([3.0])
    a.merge(b)
    assert (a.count, b.count) == (3, 1)
    twin = a.copy()
    twin.add(100.0)
    assert (a.count, a.max, twin.count, twin.max) == (3, 3.0, 4, 100.0)


def test_merge_refuses_other_kinds_and_other_accuracies() -> None:
    sketch = LogSketch()
    with pytest.raises(ArgumentTypeError, match="other="):
        sketch.merge([1.0])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"relative_accuracy=0\.01"):
        sketch.merge(LogSketch(0.02))
    with pytest.raises(InvalidArgumentError, match="max_buckets=2048"):
        sketch.merge(LogSketch(max_buckets=10))


def test_an_adversarial_range_cannot_grow_memory_past_max_buckets() -> None:
    sketch = LogSketch(max_buckets=128)
    data = [10.0**e for e in range(-300, 301)] * 2
    for value in data:
        sketch.add(value)
    stats = sketch.statistics()
    assert stats.buckets <= 128
    assert stats.collapsed
    # the highest values keep the bound; the folded low ones read too high, never too low
    log_gamma = math.log(1.01 / 0.99)
    lowest_exact = math.exp((sketch._store.lo - 1) * log_gamma)
    n = len(data)
    for rank in range(n):
        true = true_quantile(data, rank / (n - 1))
        estimate = sketch.quantile(rank / (n - 1))
        assert estimate is not None
        if true > lowest_exact:
            assert within(estimate, true, 0.01)
        else:
            assert estimate >= true * 0.99


def test_clear_forgets_everything() -> None:
    sketch = sketch_of([1.0, 0.0, 3.0])
    sketch.clear()
    assert sketch.statistics() == LogSketch().statistics()
    sketch.add(2.0)
    assert sketch.quantile(0.5) == 2.0


@pytest.mark.parametrize("value", [-1.0, -1e-300, math.nan, math.inf, -math.inf])
def test_negative_and_non_finite_values_are_refused(value: float) -> None:
    sketch = sketch_of([1.0])
    with pytest.raises(InvalidArgumentError, match=r"value=.* a finite number >= 0"):
        sketch.add(value)
    assert sketch.count == 1


@pytest.mark.parametrize("value", ["1", None, True])
def test_non_numbers_are_refused(value: Any) -> None:
    with pytest.raises(ArgumentTypeError, match="value="):
        LogSketch().add(value)


@pytest.mark.parametrize("q", [-0.1, 1.5, math.nan])
def test_quantile_outside_the_unit_interval_is_refused(q: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"q=.* in \[0, 1\]"):
        sketch_of([1.0]).quantile(q)
    with pytest.raises(ArgumentTypeError):
        sketch_of([1.0]).quantile("0.5")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        ({"relative_accuracy": 0}, InvalidArgumentError, "relative_accuracy"),
        ({"relative_accuracy": 1}, InvalidArgumentError, "relative_accuracy"),
        ({"relative_accuracy": "1%"}, ArgumentTypeError, "relative_accuracy"),
        ({"max_buckets": 0}, InvalidArgumentError, "max_buckets"),
        ({"max_buckets": 10.0}, ArgumentTypeError, "max_buckets"),
    ],
)
def test_bad_configuration_names_the_field(
    options: dict[str, Any], error: type[InvalidArgumentError], field: str
) -> None:
    with pytest.raises(error) as info:
        LogSketch(**options)
    assert info.value.field == field


def test_repr_and_properties() -> None:
    sketch = sketch_of([1.0], 0.02, max_buckets=64)
    assert (sketch.relative_accuracy, sketch.max_buckets) == (0.02, 64)
    assert repr(sketch) == "LogSketch(relative_accuracy=0.02, max_buckets=64, count=1)"
