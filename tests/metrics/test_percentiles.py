"""RollingPercentiles: quantiles of exactly the values in the window, within the bound."""

from __future__ import annotations

import math
import random
import sys
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics import LogSketch, RollingPercentiles
from distsys.testing import ManualClock


def sketch_of(values: list[float]) -> LogSketch:
    sketch = LogSketch()
    for value in values:
        sketch.add(value)
    return sketch


def test_quantiles_cover_the_window_and_forget_what_left_it() -> None:
    clock = ManualClock()
    window = RollingPercentiles(3, 1.0, clock=clock)
    for value in (100.0, 200.0):
        window.add(value)
    clock.advance(1.0)
    window.add(1.0)
    assert window.quantile(0) == 1.0
    assert window.quantile(1) == 200.0
    clock.advance(2.0)  # the bucket holding 100 and 200 leaves the window
    assert (window.quantile(0), window.quantile(1)) == (1.0, 1.0)
    clock.advance(3.0)
    assert window.quantile(0.5) is None
    assert window.statistics().count == 0


def test_ignore_current_reads_only_completed_buckets() -> None:
    clock = ManualClock()
    window = RollingPercentiles(3, 1.0, clock=clock, ignore_current=True)
    window.add(5.0)
    assert window.quantile(0.5) is None
    clock.advance(1.0)
    window.add(7.0)
    assert window.quantiles([0.0, 1.0]) == [5.0, 5.0]


def test_p99_over_a_full_window_is_within_one_percent() -> None:
    rng = random.Random(3)
    clock = ManualClock()
    window = RollingPercentiles(10, 1.0, clock=clock)
    everything: list[float] = []
    for _ in range(10):
        batch = [rng.lognormvariate(-3, 1.5) for _ in range(1000)]
        for value in batch:
            window.add(value)
        everything.extend(batch)
        clock.advance(1.0)
    live = everything[1000:]  # the first second has just left the window
    stats = window.statistics()
    ordered = sorted(live)
    for q, estimate in ((0.5, stats.p50), (0.9, stats.p90), (0.99, stats.p99)):
        true = ordered[math.floor(q * (len(live) - 1))]
        assert estimate is not None
        assert abs(estimate - true) <= 0.01 * true
    assert stats.count == len(live)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(2, 5),
    ignore_current=st.booleans(),
    ops=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e6),
            st.integers(0, 12),  # advance in quarters of a second
        ),
        max_size=50,
    ),
)
def test_the_window_answers_like_a_sketch_of_its_live_values(
    size: int, ignore_current: bool, ops: list[float | int]
) -> None:
    clock = ManualClock()
    window = RollingPercentiles(size, 1.0, clock=clock, ignore_current=ignore_current)
    events: list[tuple[float, float]] = []
    qs = [i / 20 for i in range(21)]
    for op in ops:
        if isinstance(op, int):
            clock.advance(op / 4)
        else:
            window.add(op)
            events.append((clock.now(), op))
        # read after every step: the cached merge of completed buckets must stay right
        current = math.floor(clock.now())
        live = range(max(current - size + 1, 0), current if ignore_current else current + 1)
        values = [v for t, v in events if math.floor(t) in live]
        assert window.quantiles(qs) == sketch_of(values).quantiles(qs)
        assert window.sketch().count == len(values)


@pytest.fixture
def eager_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_adds_from_threads_lose_nothing() -> None:
    clock = ManualClock()
    window = RollingPercentiles(100, 1.0, clock=clock)
    threads, adds = 6, 3_000
    start = threading.Barrier(threads + 1)

    def adder(value: float) -> None:
        start.wait()
        for _ in range(adds):
            window.add(value)

    def ticker() -> None:
        start.wait()
        for _ in range(50):
            clock.advance(1.0)
            window.quantile(0.5)

    workers = [threading.Thread(target=adder, args=(float(i + 1),)) for i in range(threads)]
    workers.append(threading.Thread(target=ticker))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats = window.statistics()
    assert stats.count == threads * adds
    assert (stats.min, stats.max) == (1.0, float(threads))


def test_bad_values_are_refused() -> None:
    window = RollingPercentiles(2, 1.0, clock=ManualClock())
    with pytest.raises(InvalidArgumentError, match="value=-1"):
        window.add(-1.0)
    with pytest.raises(InvalidArgumentError, match="value=nan"):
        window.add(math.nan)
    with pytest.raises(ArgumentTypeError, match="value="):
        window.add("1")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="q="):
        window.quantile(2)
    assert window.statistics().count == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"relative_accuracy": 0.0}, "relative_accuracy"),
        ({"relative_accuracy": 1.5}, "relative_accuracy"),
        ({"max_buckets": 0}, "max_buckets"),
        ({"size": 0}, "size"),
        ({"interval": 0}, "interval"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, float], field: str) -> None:
    arguments: dict[str, float] = {"size": 3, "interval": 1.0, **options}
    with pytest.raises(InvalidArgumentError) as info:
        RollingPercentiles(**arguments)  # type: ignore[arg-type]
    assert info.value.field == field


def test_properties() -> None:
    window = RollingPercentiles(4, 0.5, relative_accuracy=0.02, thread_safe=False)
    assert (window.relative_accuracy, window.span, window.thread_safe) == (0.02, 2.0, False)
    assert window.sketch().relative_accuracy == 0.02
