"""Argument checks: each bad value fails with the field's name and what it accepts."""

from __future__ import annotations

import math

import pytest

from distsys.clock import MonotonicClock
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.metrics._checks import (
    check_accuracy,
    check_clock,
    check_count,
    check_quantile,
    check_real,
    check_seconds,
)
from distsys.testing import ManualClock


def test_count_accepts_ints_at_or_above_the_minimum() -> None:
    assert check_count("size", 3, 1) == 3


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, InvalidArgumentError),
        (-1, InvalidArgumentError),
        (1.0, ArgumentTypeError),
        (True, ArgumentTypeError),
        ("3", ArgumentTypeError),
        (None, ArgumentTypeError),
    ],
)
def test_count_rejects(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"size=.* expected an int >= 1") as info:
        check_count("size", value, 1)
    assert isinstance(info.value, InvalidArgumentError)
    assert info.value.field == "size"


def test_real_converts_ints_and_rejects_what_is_not_a_finite_number() -> None:
    assert check_real("v", 3, "x") == 3.0
    assert isinstance(check_real("v", 3, "x"), float)
    for bad in (math.nan, math.inf, -math.inf, 10**400):
        with pytest.raises(InvalidArgumentError):
            check_real("v", bad, "x")
    for bad in ("1", None, True, 1j):
        with pytest.raises(ArgumentTypeError):
            check_real("v", bad, "x")


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan])
def test_seconds_must_be_positive_and_finite(value: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"interval=.* seconds > 0"):
        check_seconds("interval", value)


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_must_be_in_the_unit_interval(q: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"q=.* in \[0, 1\]"):
        check_quantile(q)
    assert check_quantile(0) == 0.0
    assert check_quantile(1) == 1.0


@pytest.mark.parametrize("value", [0, 1, -0.5, 1.5, math.nan])
def test_accuracy_must_be_strictly_between_zero_and_one(value: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"relative_accuracy=.* in \(0, 1\)"):
        check_accuracy(value)
    with pytest.raises(ArgumentTypeError):
        check_accuracy("0.01")


def test_clock_defaults_to_the_monotonic_clock_and_refuses_other_things() -> None:
    assert isinstance(check_clock(None), MonotonicClock)
    manual = ManualClock()
    assert check_clock(manual) is manual
    with pytest.raises(ArgumentTypeError, match="clock="):
        check_clock(object())
