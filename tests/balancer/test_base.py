"""The contract every balancer keeps: eligibility, reasons, updates, ejection, panic."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest

from distsys.balancer import BALANCERS, Balancer, make_balancer
from distsys.errors import ArgumentTypeError, InvalidArgumentError, NoInstancesError
from distsys.registry import Instance, Status
from distsys.testing import ManualClock

from .support import make_instances, pick_ids, seeded

NAMES = sorted(BALANCERS)


@pytest.fixture(params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def build(name: str, instances: list[Instance], clock: ManualClock, **options: object) -> Balancer:
    return make_balancer(name, instances, clock=clock, rng=seeded(), **options)


def reason(balancer: Balancer, *, exclude: tuple[str, ...] = ()) -> str:
    with pytest.raises(NoInstancesError) as raised:
        balancer.pick("k", exclude=exclude)
    assert raised.value.service == "api"
    return raised.value.reason


# ----------------------------------------------------------------------- eligibility


def test_every_up_instance_is_picked(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(4), clock)
    assert set(pick_ids(balancer, 400)) == {"i0", "i1", "i2", "i3"}


def test_draining_and_down_instances_are_skipped(name: str, clock: ManualClock) -> None:
    instances = make_instances(4)
    instances[1] = instances[1].with_status(Status.DRAINING)
    instances[2] = instances[2].with_status(Status.DOWN)
    balancer = build(name, instances, clock)
    assert set(pick_ids(balancer, 200)) == {"i0", "i3"}


def test_excluded_instances_are_skipped(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(4), clock)
    for n in range(100):
        with balancer.pick(f"k{n}", exclude={"i0", "i2"}) as pick:
            assert pick.instance.id in {"i1", "i3"}
        with balancer.pick(f"k{n}", exclude=["i0", "i1", "i3"]) as pick:
            assert pick.instance.id == "i2"


def test_ejected_instances_are_skipped_until_readmitted(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3), clock)
    assert balancer.eject("i1") is True
    assert "i1" not in pick_ids(balancer, 200)
    assert balancer.readmit("i1") is True
    assert balancer.readmit("i1") is False
    assert "i1" in pick_ids(balancer, 200)


def test_an_ejection_with_a_deadline_ends_by_itself(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3), clock)
    balancer.eject("i2", until=clock.now() + 30)
    record = next(i for i in balancer.statistics().instances if i.id == "i2")
    assert (record.ejected, record.ejected_until, record.eligible) == (True, 30.0, False)
    clock.advance(29.9)
    assert "i2" not in pick_ids(balancer, 100)
    clock.advance(0.1)
    assert "i2" in pick_ids(balancer, 100)
    record = next(i for i in balancer.statistics().instances if i.id == "i2")
    assert (record.ejected, record.ejected_until, record.eligible) == (False, None, True)


def test_ejecting_an_unknown_instance_changes_nothing(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(2), clock)
    assert balancer.eject("nope") is False
    assert balancer.readmit("nope") is False
    assert balancer.statistics().ejections == 0


# --------------------------------------------------------------------------- reasons


def test_reason_none_registered(name: str, clock: ManualClock) -> None:
    balancer = make_balancer(name, service="api", clock=clock)
    assert reason(balancer) == "no instance is registered"
    assert balancer.statistics().unavailable == 1


def test_reason_all_draining(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3, status=Status.DRAINING), clock)
    assert reason(balancer) == "all 3 instances are draining"
    balancer.update(make_instances(1, status=Status.DRAINING))
    assert reason(balancer) == "its only instance is draining"


def test_reason_all_ejected(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3), clock)
    for instance_id in ("i0", "i1", "i2"):
        balancer.eject(instance_id)
    assert reason(balancer) == "all 3 instances are ejected"


def test_reason_all_excluded(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3), clock)
    assert reason(balancer, exclude=("i0", "i1", "i2")) == (
        "all 3 instances were excluded (already tried)"
    )


def test_reason_mixed(name: str, clock: ManualClock) -> None:
    instances = make_instances(4)
    instances[0] = instances[0].with_status(Status.DRAINING)
    instances[1] = instances[1].with_status(Status.DOWN)
    balancer = build(name, instances, clock)
    balancer.eject("i2")
    assert reason(balancer, exclude=("i3",)) == (
        "none of its 4 instances is eligible: "
        "1 draining, 1 down, 1 ejected, 1 excluded (already tried)"
    )


# --------------------------------------------------------------------------- panic


def test_panic_threshold_ignores_ejections_when_too_few_are_left(
    name: str, clock: ManualClock
) -> None:
    balancer = build(name, make_instances(4), clock, panic_threshold=0.5)
    balancer.eject("i0")
    balancer.eject("i1")  # 2 of 4 healthy: not below half
    assert not balancer.statistics().panic
    assert set(pick_ids(balancer, 200)) == {"i2", "i3"}
    balancer.eject("i2")  # 1 of 4: panic, every UP instance is eligible again
    stats = balancer.statistics()
    assert stats.panic
    assert stats.eligible == 4
    assert set(pick_ids(balancer, 400)) == {"i0", "i1", "i2", "i3"}
    balancer.readmit("i2")
    assert not balancer.statistics().panic


def test_without_panic_all_ejected_raises(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(2), clock)
    balancer.eject("i0")
    balancer.eject("i1")
    assert not balancer.statistics().panic
    with pytest.raises(NoInstancesError):
        balancer.pick("k")


# --------------------------------------------------------------------------- updates


def test_update_keeps_the_state_of_instances_that_stay(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(3), clock)
    held = [balancer.pick(f"k{n}") for n in range(6)]
    balancer.eject("i2")
    before = {i.id: i for i in balancer.statistics().instances}
    balancer.update(make_instances(4)[1:])  # i0 leaves, i3 joins
    after = {i.id: i for i in balancer.statistics().instances}
    assert sorted(after) == ["i1", "i2", "i3"]
    for instance_id in ("i1", "i2"):
        assert after[instance_id].picks == before[instance_id].picks
        assert after[instance_id].outstanding == before[instance_id].outstanding
    assert after["i2"].ejected
    assert (after["i3"].picks, after["i3"].outstanding) == (0, 0)
    for pick in held:  # picks of the instance that left finish normally
        pick.done()
    stats = balancer.statistics()
    assert (stats.picks, stats.outstanding, stats.succeeded) == (6, 0, 6)


def test_an_instance_that_leaves_forgets_its_ejection(name: str, clock: ManualClock) -> None:
    instances = make_instances(2)
    balancer = build(name, instances, clock)
    balancer.eject("i1")
    balancer.update(instances[:1])
    balancer.update(instances)
    assert not next(i for i in balancer.statistics().instances if i.id == "i1").ejected


def test_update_follows_status_changes(name: str, clock: ManualClock) -> None:
    instances = make_instances(2)
    balancer = build(name, instances, clock)
    balancer.update([instances[0].with_status(Status.DRAINING), instances[1]])
    assert set(pick_ids(balancer, 50)) == {"i1"}
    balancer.update(instances)
    assert set(pick_ids(balancer, 200)) == {"i0", "i1"}


def test_update_is_a_resolver_listener(name: str, clock: ManualClock) -> None:
    balancer = make_balancer(name, clock=clock, rng=seeded())
    assert balancer.service is None
    balancer.update(tuple(make_instances(2)))  # what Resolver.subscribe passes
    assert balancer.service == "api"
    assert [i.id for i in balancer.instances] == ["i0", "i1"]
    balancer.update(())
    assert balancer.service == "api"
    assert reason(balancer) == "no instance is registered"


def test_instances_of_another_service_are_refused(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(2), clock)
    with pytest.raises(InvalidArgumentError) as raised:
        balancer.update(make_instances(1, service="billing"))
    assert raised.value.field == "instances"
    assert [i.id for i in balancer.instances] == ["i0", "i1"]  # unchanged
    with pytest.raises(InvalidArgumentError, match="one service"):
        make_balancer(name, [*make_instances(1), *make_instances(1, service="db")])
    with pytest.raises(InvalidArgumentError):
        make_balancer(name, make_instances(1), service="db")


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("clock", "now", ArgumentTypeError),
        ("rng", 42, ArgumentTypeError),
        ("panic_threshold", 1.5, InvalidArgumentError),
        ("panic_threshold", math.nan, InvalidArgumentError),
        ("panic_threshold", True, ArgumentTypeError),
        ("service", "no spaces", InvalidArgumentError),
        ("service", 3, ArgumentTypeError),
    ],
)
def test_bad_options_name_the_field(
    name: str, option: str, value: object, error: type[Exception]
) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(error) as raised:
        make_balancer(name, **options)
    assert isinstance(raised.value, InvalidArgumentError)
    assert raised.value.field == option


def test_bad_arguments_name_the_field(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(2), clock)
    with pytest.raises(ArgumentTypeError) as raised:
        balancer.pick("k", exclude="i0")  # a str is a collection of letters: refused
    assert raised.value.field == "exclude"
    with pytest.raises(ArgumentTypeError) as raised:
        balancer.update(["i0"])  # type: ignore[list-item]
    assert raised.value.field == "instances"
    with pytest.raises(ArgumentTypeError):
        balancer.update(5)  # type: ignore[arg-type]
    for until in (math.nan, math.inf):
        with pytest.raises(InvalidArgumentError) as refused:
            balancer.eject("i0", until=until)
        assert refused.value.field == "until"
    assert balancer.statistics().outstanding == 0


# ----------------------------------------------------------------------- statistics


def test_statistics_is_a_frozen_snapshot(name: str, clock: ManualClock) -> None:
    balancer = build(name, make_instances(2), clock)
    with balancer.pick("a") as first:
        pass
    second = balancer.pick("b")
    second.done(error=True)
    balancer.pick("c").abandon()
    open_pick = balancer.pick("d")
    stats = balancer.statistics()
    assert stats.balancer == name
    assert stats.service == "api"
    assert (stats.picks, stats.outstanding) == (4, 1)
    assert (stats.succeeded, stats.failed, stats.abandoned, stats.leaked) == (1, 1, 1, 0)
    assert sum(i.picks for i in stats.instances) == 4
    assert sum(i.errors for i in stats.instances) == 1
    record = next(i for i in stats.instances if i.id == open_pick.instance.id)
    assert record.outstanding == 1
    assert record.address == open_pick.instance.address
    assert first.finished
    with pytest.raises(AttributeError):
        stats.picks = 0  # type: ignore[misc]
    open_pick.done()


def test_repr_names_the_service(name: str, clock: ManualClock) -> None:
    assert "service='api'" in repr(build(name, make_instances(2), clock))


# ---------------------------------------------------------------------- threads


def test_threads_share_a_balancer_without_losing_counts(name: str) -> None:
    balancer = make_balancer(name, make_instances(5), rng=seeded())
    per_thread = 3000
    start = threading.Barrier(4)

    def work(seed: int) -> None:
        start.wait()
        for n in range(per_thread):
            pick = balancer.pick(f"{seed}-{n}", exclude=("i4",) if n % 7 == 0 else ())
            pick.done(error=n % 5 == 0)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = balancer.statistics()
    assert stats.picks == 4 * per_thread
    assert stats.outstanding == 0
    assert all(i.outstanding == 0 for i in stats.instances)
    assert stats.failed == sum(i.errors for i in stats.instances) == 4 * 600
