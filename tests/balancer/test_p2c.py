"""P2C over EWMA: the estimate's arithmetic, penalties, forced picks, and a latency model."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distsys.balancer import P2CEWMABalancer, Pick
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.testing import ManualClock

from .support import make_instances, seeded


def ewma(balancer: P2CEWMABalancer, instance_id: str) -> float | None:
    return next(i.ewma for i in balancer.statistics().instances if i.id == instance_id)


def serve(balancer: P2CEWMABalancer, clock: ManualClock, seconds: float, **kw: bool) -> str:
    """Pick, let ``seconds`` pass on the clock, finish; return the instance id."""
    pick = balancer.pick()
    clock.advance(seconds)
    pick.done(**kw)
    return pick.instance.id


def only(balancer: P2CEWMABalancer, instance_id: str) -> list[str]:
    """The ids of every instance but one: ``exclude`` them to pick that one."""
    return [i.id for i in balancer.instances if i.id != instance_id]


def simulate(
    balancer: P2CEWMABalancer,
    clock: ManualClock,
    latency: Mapping[str, float],
    *,
    requests: int,
    interval: float,
) -> Counter[str]:
    """Send a request every ``interval`` seconds; each takes its instance's latency."""
    in_flight: list[tuple[float, int, Pick]] = []
    counts: Counter[str] = Counter()
    for n in range(requests):
        arrival = n * interval
        while in_flight and in_flight[0][0] <= arrival:
            finish, _, pick = heapq.heappop(in_flight)
            clock.advance(max(0.0, finish - clock.now()))
            pick.done()
        clock.advance(max(0.0, arrival - clock.now()))
        pick = balancer.pick()
        counts[pick.instance.id] += 1
        heapq.heappush(in_flight, (arrival + latency[pick.instance.id], n, pick))
    for _, _, pick in in_flight:
        pick.done()
    return counts


# ------------------------------------------------------------------- the estimate


def test_the_first_response_sets_the_ewma_and_later_ones_decay_with_time() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(1), clock=clock, rng=seeded())
    assert ewma(balancer, "i0") is None  # neutral until measured
    serve(balancer, clock, 0.2)
    assert ewma(balancer, "i0") == pytest.approx(0.2)
    clock.advance(4.8)  # the next response arrives 5.3 s after the first
    serve(balancer, clock, 0.5)
    w = math.exp(-5.3 / 10.0)
    assert ewma(balancer, "i0") == pytest.approx(0.2 * w + 0.5 * (1 - w))


def test_an_error_adds_the_penalty_to_the_sample() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(1), clock=clock, error_penalty=2.0)
    serve(balancer, clock, 0.01, error=True)
    assert ewma(balancer, "i0") == pytest.approx(2.01)
    stats = balancer.statistics()
    assert (stats.failed, stats.instances[0].errors) == (1, 1)


def test_an_abandoned_pick_gives_no_sample() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(1), clock=clock)
    pick = balancer.pick()
    clock.advance(30)
    pick.abandon()
    assert ewma(balancer, "i0") is None
    assert balancer.statistics().outstanding == 0


def test_the_decay_constant_is_configurable() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(1), clock=clock, decay=1.0)
    serve(balancer, clock, 1.0)
    serve(balancer, clock, 3.0)  # 3 s after the first response
    w = math.exp(-3.0)
    assert ewma(balancer, "i0") == pytest.approx(1.0 * w + 3.0 * (1 - w))


# ------------------------------------------------------------------ the choice


def test_the_lower_load_of_the_two_wins() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded())
    with balancer.pick(exclude=["i1"]):
        clock.advance(0.3)
    with balancer.pick(exclude=["i0"]):
        clock.advance(0.1)
    assert [serve(balancer, clock, 0.0) for _ in range(10)] == ["i1"] * 10


def test_outstanding_requests_multiply_the_latency() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded())
    for instance_id, seconds in (("i0", 0.1), ("i1", 0.25)):
        with balancer.pick(exclude=only(balancer, instance_id)):
            clock.advance(seconds)
    # i0: 0.1 * (n + 1) against i1: 0.25 * 1, so i0 takes two, and then i1 wins
    held = [balancer.pick() for _ in range(3)]
    assert [p.instance.id for p in held] == ["i0", "i0", "i1"]


def test_weights_divide_the_load() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2, weights=[4, 1]), clock=clock, rng=seeded())
    for instance_id in ("i0", "i1"):  # the same latency for both
        with balancer.pick(exclude=only(balancer, instance_id)):
            clock.advance(0.1)
    held = [balancer.pick() for _ in range(5)]
    # 0.1 * (n + 1) / 4 stays at or below 0.1 / 1 up to n = 3: i0 takes four first
    assert [p.instance.id for p in held].count("i0") == 4


def test_a_neglected_instance_is_forced_after_force_after_seconds() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded(), force_after=5.0)
    with balancer.pick(exclude=["i1"]):
        clock.advance(0.01)
    with balancer.pick(exclude=["i0"]):  # i1 last picked at 0.01
        clock.advance(1.0)  # and slow
    assert serve(balancer, clock, 0.0) == "i0"
    clock.advance(3.98)
    assert serve(balancer, clock, 0.0) == "i0"  # i1 unpicked for 4.99 s
    clock.advance(0.1)
    assert serve(balancer, clock, 0.0) == "i1"  # 5.09 s: its turn to be measured again
    assert serve(balancer, clock, 0.0) == "i0"


def test_a_new_instance_starts_neutral() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded())
    for instance_id, seconds in (("i0", 0.1), ("i1", 0.3)):
        with balancer.pick(exclude=only(balancer, instance_id)):
            clock.advance(seconds)
    balancer.update(make_instances(3))
    assert ewma(balancer, "i2") is None
    # scored at the mean, 0.2: better than i1 (0.3), worse than i0 (0.1)
    with balancer.pick(exclude=["i0"]) as pick:
        assert pick.instance.id == "i2"
        clock.advance(0.05)
    assert ewma(balancer, "i2") == pytest.approx(0.05)  # its first response, outright
    assert balancer.pick(exclude=["i2"]).instance.id == "i0"


def test_initial_latency_replaces_the_neutral_start() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded(), initial_latency=5.0)
    assert ewma(balancer, "i0") == 5.0
    with balancer.pick(exclude=["i1"]):
        clock.advance(0.1)
    assert ewma(balancer, "i0") == pytest.approx(0.1)  # the first response replaces it
    assert [serve(balancer, clock, 0.0) for _ in range(5)] == ["i0"] * 5


def test_update_keeps_the_estimates() -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(3), clock=clock, rng=seeded())
    with balancer.pick(exclude=["i1", "i2"]):
        clock.advance(0.4)
    balancer.update(make_instances(3)[:2])
    assert ewma(balancer, "i0") == pytest.approx(0.4)


def test_many_instances_use_the_same_rule() -> None:
    clock = ManualClock()
    count = 80  # more than the precomputed pairs cover
    balancer = P2CEWMABalancer(make_instances(count), clock=clock, rng=seeded())
    latency = {f"i{n:02d}": 0.01 for n in range(count)}
    latency["i00"] = 0.5
    counts = simulate(balancer, clock, latency, requests=8000, interval=0.001)
    assert len(counts) == count
    assert counts["i00"] < 8000 / count / 2


# ------------------------------------------------------------ a latency model


@settings(max_examples=30, deadline=None)
@given(
    fast=st.floats(0.001, 0.05),
    slowdown=st.floats(4.0, 50.0),
    seed=st.integers(0, 2**32),
)
def test_the_faster_instance_gets_most_requests(fast: float, slowdown: float, seed: int) -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(2), clock=clock, rng=seeded(seed))
    latency = {"i0": fast, "i1": fast * slowdown}
    counts = simulate(balancer, clock, latency, requests=2000, interval=fast)
    assert counts["i0"] > 3 * counts["i1"]


@settings(max_examples=15, deadline=None)
@given(slow=st.integers(0, 9), seed=st.integers(0, 2**32))
def test_one_slow_instance_among_ten_gets_less_than_its_share(slow: int, seed: int) -> None:
    clock = ManualClock()
    balancer = P2CEWMABalancer(make_instances(10), clock=clock, rng=seeded(seed))
    latency = {f"i{n}": 0.2 if n == slow else 0.02 for n in range(10)}
    counts = simulate(balancer, clock, latency, requests=5000, interval=0.004)
    assert counts[f"i{slow}"] < 5000 / 10 / 2
    assert len(counts) == 10


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("decay", 0, InvalidArgumentError),
        ("decay", math.inf, InvalidArgumentError),
        ("force_after", -1, InvalidArgumentError),
        ("error_penalty", -0.5, InvalidArgumentError),
        ("error_penalty", "1s", ArgumentTypeError),
        ("initial_latency", math.nan, InvalidArgumentError),
    ],
)
def test_bad_options(option: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        P2CEWMABalancer(**{option: value})  # type: ignore[arg-type]
    assert isinstance(raised.value, InvalidArgumentError)
    assert raised.value.field == option
