"""Pick: finished exactly once, whichever way the caller ends it."""

from __future__ import annotations

import asyncio
import gc

import pytest

from distsys.balancer import LeastOutstandingBalancer, Pick
from distsys.registry import Instance

from .support import make_instances, seeded


def balancer() -> LeastOutstandingBalancer:
    return LeastOutstandingBalancer(make_instances(2), rng=seeded())


def test_done_counts_once() -> None:
    b = balancer()
    pick = b.pick()
    assert isinstance(pick, Pick)
    assert isinstance(pick.instance, Instance)
    assert not pick.finished
    pick.done()
    pick.done(error=True)
    pick.abandon()
    assert pick.finished
    stats = b.statistics()
    assert (stats.succeeded, stats.failed, stats.abandoned, stats.outstanding) == (1, 0, 0, 0)


def test_a_with_block_reports_success() -> None:
    b = balancer()
    with b.pick() as pick:
        assert b.statistics().outstanding == 1
    assert pick.finished
    assert b.statistics().succeeded == 1


def test_a_with_block_that_raises_reports_an_error() -> None:
    b = balancer()
    with pytest.raises(ConnectionError), b.pick() as pick:
        raise ConnectionError("refused")
    stats = b.statistics()
    assert (stats.failed, stats.outstanding) == (1, 0)
    assert next(i for i in stats.instances if i.id == pick.instance.id).errors == 1


def test_a_with_block_left_by_cancellation_abandons() -> None:
    b = balancer()
    with pytest.raises(asyncio.CancelledError), b.pick():
        raise asyncio.CancelledError
    stats = b.statistics()
    assert (stats.abandoned, stats.failed, stats.outstanding) == (1, 0, 0)


def test_done_inside_the_block_takes_precedence() -> None:
    b = balancer()

    def handle() -> None:
        with b.pick() as pick:
            pick.done()  # the instance answered; the caller's own code failed afterwards
            raise ValueError("bad payload")

    with pytest.raises(ValueError, match="bad payload"):
        handle()
    stats = b.statistics()
    assert (stats.succeeded, stats.failed) == (1, 0)
    with b.pick() as pick:
        pick.done(error=True)
    assert b.statistics().failed == 1


def test_a_forgotten_pick_is_released_when_collected() -> None:
    b = balancer()
    chosen = b.pick().instance  # the Pick itself is dropped at once
    assert chosen.id in {"i0", "i1"}
    pick = b.pick()
    del pick
    gc.collect()
    stats = b.statistics()
    assert (stats.picks, stats.leaked, stats.outstanding) == (2, 2, 0)
    assert all(i.outstanding == 0 for i in stats.instances)


def test_a_finished_pick_is_not_leaked_when_collected() -> None:
    b = balancer()
    b.pick().done()
    gc.collect()
    assert b.statistics().leaked == 0


def test_repr() -> None:
    b = balancer()
    pick = b.pick()
    assert repr(pick) == f"<Pick api/{pick.instance.id} open>"
    pick.done()
    assert repr(pick).endswith("finished>")
