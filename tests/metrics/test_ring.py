"""The bucket ring: bucket boundaries, lazy clearing capped at size, covered time."""

from __future__ import annotations

import pytest

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._ring import BucketRing
from distsys.testing import ManualClock


class Ring(BucketRing[list[int]]):
    """A ring whose buckets are one-item lists; it counts the clears it does."""

    __slots__ = ("clears",)

    def __init__(self, size: int, interval: float, clock: ManualClock, **options: bool) -> None:
        self.clears = 0
        super().__init__(
            size,
            interval,
            clock=clock,
            ignore_current=options.get("ignore_current", False),
            thread_safe=options.get("thread_safe", True),
        )

    def _new_bucket(self) -> list[int]:
        return [0]

    def _clear_bucket(self, bucket: list[int]) -> None:
        self.clears += 1
        bucket[0] = 0

    def mark(self) -> None:
        self._sync()
        self._cur[0] += 1

    def live(self) -> list[tuple[float, int]]:
        self._sync()
        return [(start, b[0]) for start, b in self._live()]


@pytest.mark.parametrize(
    ("interval", "now", "epoch"),
    [
        (1.0, 0.0, 0),
        (1.0, 0.999, 0),
        (1.0, 1.0, 1),  # a boundary belongs to the bucket it starts
        (0.1, 0.35, 3),
        # 3 * 0.1 is 0.30000000000000004 > 0.3: by the boundaries as floats compute them,
        # 0.3 still lies in bucket 2 (and 0.7 in bucket 6); what matters is consistency
        (0.1, 0.3, 2),
        (0.1, 0.7, 6),
        (0.25, 12.5, 50),
        (3.0, 2.9999, 0),
    ],
)
def test_a_bucket_starts_at_start_plus_k_intervals(interval: float, now: float, epoch: int) -> None:
    clock = ManualClock()
    ring = Ring(4, interval, clock)
    clock.advance(now)
    ring.mark()
    assert ring._epoch == epoch
    assert ring._start + epoch * interval <= now < ring._start + (epoch + 1) * interval


def test_epoch_agrees_with_the_boundaries_it_defines_for_awkward_intervals() -> None:
    clock = ManualClock(1234.567)
    ring = Ring(3, 0.1, clock)
    for step in range(1, 2000):
        now = 1234.567 + step * 0.0137
        epoch = ring._epoch_at(now)
        assert ring._start + epoch * 0.1 <= now < ring._start + (epoch + 1) * 0.1


def test_crossing_into_the_next_bucket_clears_only_that_bucket() -> None:
    clock = ManualClock()
    ring = Ring(3, 1.0, clock)
    ring.clears = 0
    ring.mark()
    clock.advance(1.0)
    ring.mark()
    assert ring.clears == 1
    assert ring.live() == [(0.0, 1), (1.0, 1)]


@pytest.mark.parametrize("gap", [3.0, 10.0, 1e9])
def test_a_gap_longer_than_the_window_clears_everything_in_at_most_size_steps(gap: float) -> None:
    clock = ManualClock()
    ring = Ring(3, 1.0, clock)
    for _ in range(3):
        ring.mark()
        clock.advance(1.0)
    ring.clears = 0
    clock.advance(gap)
    assert [count for _, count in ring.live()] == [0, 0, 0]
    assert ring.clears == 3


def test_the_window_grows_from_the_start_then_slides() -> None:
    clock = ManualClock()
    ring = Ring(3, 1.0, clock)
    starts = []
    for _ in range(5):
        starts.append([start for start, _ in ring.live()])
        clock.advance(1.0)
    assert starts == [[0.0], [0.0, 1.0], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]]


def test_ignore_current_leaves_the_current_bucket_out() -> None:
    clock = ManualClock()
    ring = Ring(3, 1.0, clock, ignore_current=True)
    assert ring.live() == []
    ring.mark()
    clock.advance(1.5)
    assert ring.live() == [(0.0, 1)]
    clock.advance(5.0)
    assert [start for start, _ in ring.live()] == [4.0, 5.0]


@pytest.mark.parametrize(
    ("ignore_current", "now", "covered"),
    [
        (False, 0.0, 0.0),
        (False, 0.5, 0.5),  # young: only the time the window has seen
        (False, 2.5, 2.5),
        (False, 3.0, 3.0),  # full, at a boundary: the two completed buckets + 1 s
        (False, 3.25, 3.25),
        (False, 3.75, 3.75),
        (False, 4.0, 3.0),  # the oldest bucket just left the window
        (False, 100.5, 3.5),
        (True, 0.5, 0.0),
        (True, 1.5, 1.0),
        (True, 3.9, 3.0),
        (True, 100.5, 3.0),  # full: always exactly (size - 1) * interval
    ],
)
def test_covered_time(ignore_current: bool, now: float, covered: float) -> None:
    clock = ManualClock()
    ring = Ring(4, 1.0, clock, ignore_current=ignore_current)
    clock.advance(now)
    assert ring._covered(ring._sync()) == covered


def test_clear_restarts_the_window_now() -> None:
    clock = ManualClock()
    ring = Ring(3, 1.0, clock)
    ring.mark()
    clock.advance(7.25)
    ring.mark()
    ring.clear()
    assert ring.live() == [(7.25, 0)]
    assert ring._covered(ring._sync()) == 0.0


def test_properties_and_repr() -> None:
    ring = Ring(4, 0.5, ManualClock(), thread_safe=False)
    assert (ring.size, ring.interval, ring.span, ring.thread_safe) == (4, 0.5, 2.0, False)
    assert repr(ring) == "Ring(size=4, interval=0.5, ignore_current=False, thread_safe=False)"


@pytest.mark.parametrize(
    ("size", "interval", "error", "field"),
    [
        (0, 1.0, InvalidArgumentError, "size"),
        (2.0, 1.0, ArgumentTypeError, "size"),
        (3, 0, InvalidArgumentError, "interval"),
        (3, -1.0, InvalidArgumentError, "interval"),
        (3, float("nan"), InvalidArgumentError, "interval"),
        (3, "1", ArgumentTypeError, "interval"),
    ],
)
def test_bad_configuration_names_the_field(
    size: int, interval: float, error: type[InvalidArgumentError], field: str
) -> None:
    with pytest.raises(error) as info:
        Ring(size, interval, ManualClock())
    assert info.value.field == field


def test_ignore_current_needs_two_buckets() -> None:
    with pytest.raises(InvalidArgumentError, match=r"size=1 .*>= 2 when ignore_current"):
        Ring(1, 1.0, ManualClock(), ignore_current=True)
