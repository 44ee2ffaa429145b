"""The shared argument checks: each names the field and says what is accepted."""

from __future__ import annotations

import math

import pytest

from distsys.cache._validate import (
    check_callable,
    check_clock,
    check_hashable,
    check_jitter,
    check_maxsize,
    check_ttl,
)
from distsys.clock import MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.testing import ManualClock


def test_maxsize() -> None:
    assert check_maxsize(1) == 1
    with pytest.raises(
        InvalidArgumentError, match=r"^maxsize=0 is not accepted: expected an int >= 1"
    ):
        check_maxsize(0)
    with pytest.raises(ArgumentTypeError):
        check_maxsize(1.0)


def test_ttl() -> None:
    assert check_ttl("ttl", None) is None
    assert check_ttl("ttl", 1) == 1.0
    assert check_ttl("ttl", math.inf) == math.inf
    with pytest.raises(InvalidArgumentError, match=r"^ttl=0 is not accepted: expected None"):
        check_ttl("ttl", 0)
    with pytest.raises(ArgumentTypeError):
        check_ttl("ttl", True)


def test_jitter() -> None:
    assert check_jitter(0) == 0.0
    assert check_jitter(0.999) == 0.999
    for bad in (1, -0.01, math.nan, math.inf):
        with pytest.raises(InvalidArgumentError, match=r"expected a number in \[0, 1\)"):
            check_jitter(bad)


def test_callable_clock_and_hashable() -> None:
    check_callable("f", None, "a function")
    check_callable("f", len, "a function")
    with pytest.raises(ArgumentTypeError, match=r"^f=1 is not accepted: expected a function"):
        check_callable("f", 1, "a function")
    assert isinstance(check_clock(None), MonotonicClock)
    clock = ManualClock()
    assert check_clock(clock) is clock
    with pytest.raises(ArgumentTypeError):
        check_clock("now")
    check_hashable((1, 2))
    with pytest.raises(ArgumentTypeError, match=r"^key=\{\} is not accepted: expected a hashable"):
        check_hashable({})
