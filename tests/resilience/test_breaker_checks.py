"""Argument checks and the exception classifier of the breakers."""

from __future__ import annotations

import asyncio

import pytest

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.resilience._breaker_checks import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Classifier,
    check_callables,
    check_multiplier,
    check_rate,
    check_wait,
)


class Timeout(Exception):
    pass


class NotFound(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (Timeout(), FAILURE),
        (NotFound(), IGNORED),  # ignore wins over record
        (ValueError(), SUCCESS),  # the dependency answered with an error we expect
        (asyncio.CancelledError(), IGNORED),
        (KeyboardInterrupt(), IGNORED),
        (SystemExit(), IGNORED),
        (GeneratorExit(), IGNORED),
    ],
)
def test_classifier(exc: BaseException, expected: int) -> None:
    classify = Classifier((Timeout, NotFound), NotFound)
    assert classify(exc) == expected


def test_classifier_takes_predicates_and_empty_tuples() -> None:
    classify = Classifier(lambda exc: "503" in str(exc), ())
    assert classify(RuntimeError("HTTP 503")) == FAILURE
    assert classify(RuntimeError("HTTP 404")) == SUCCESS
    assert Classifier((), ())(RuntimeError()) == SUCCESS


@pytest.mark.parametrize("value", [0, 1.01, -1, float("nan"), float("inf")])
def test_check_rate_refuses(value: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\(0, 1\]"):
        check_rate("x", value)


def test_check_rate_and_friends_accept() -> None:
    assert check_rate("x", 1) == 1.0
    assert check_wait("x", 0) == 0.0
    assert check_multiplier("x", 1) == 1.0
    assert check_callables("x", [print]) == (print,)


def test_check_wait_and_multiplier_refuse() -> None:
    with pytest.raises(InvalidArgumentError):
        check_wait("x", -0.1)
    with pytest.raises(ArgumentTypeError):
        check_wait("x", None)
    with pytest.raises(InvalidArgumentError):
        check_multiplier("x", 0.99)
    with pytest.raises(ArgumentTypeError):
        check_callables("x", "print")
