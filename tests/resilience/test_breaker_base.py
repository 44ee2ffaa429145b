"""The Breaker protocol and the base class: code that takes a Breaker runs with all three."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from distsys.errors import ArgumentTypeError, BreakerOpenError
from distsys.resilience import AdaptiveBreaker, Breaker, CircuitBreaker, NoopBreaker, Permit
from distsys.resilience._breaker_base import BreakerBase
from distsys.testing import ManualClock
from tests.resilience.breaker_helpers import Boom


def breakers() -> list[Breaker]:
    clock = ManualClock()
    return [
        CircuitBreaker("c", minimum_calls=1, clock=clock),
        AdaptiveBreaker("a", clock=clock, rng=random.Random(1)),
        NoopBreaker("n"),
    ]


def fetch_all(breaker: Breaker, keys: list[str]) -> list[str]:
    """Caller code: written once against the protocol, never asks what the breaker is."""
    out = []
    for key in keys:
        try:
            out.append(breaker.call(str.upper, key))
        except BreakerOpenError:
            out.append("-")
    return out


@pytest.mark.parametrize("breaker", breakers(), ids=lambda b: type(b).__name__)
def test_caller_code_runs_with_every_breaker(breaker: Breaker) -> None:
    assert isinstance(breaker, Breaker)
    assert fetch_all(breaker, ["a", "b"]) == ["A", "B"]
    with breaker.allow() as permit:
        assert isinstance(permit, Permit)


@pytest.mark.parametrize("breaker", breakers(), ids=lambda b: type(b).__name__)
async def test_async_caller_code_runs_with_every_breaker(breaker: Breaker) -> None:
    @breaker
    async def get(key: str) -> str:
        await asyncio.sleep(0)
        return key * 2

    assert await get("x") == "xx"
    async with breaker:
        pass


class Always(BreakerBase):
    """A minimal custom breaker: only allow() (and name); the rest comes from the base."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    @property
    def name(self) -> str:
        return "always"

    def allow(self) -> Permit:
        return _Recorder(self.outcomes)


class _Recorder:
    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.done = False
        self.started = 0.0

    def success(self) -> bool:
        self.outcomes.append("success")
        return True

    def failure(self, exc: BaseException | None = None) -> bool:
        self.outcomes.append(f"failure {type(exc).__name__}")
        return True

    def ignore(self) -> bool:
        return True

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.success()
        else:
            self.failure(exc)


async def test_the_base_class_derives_call_acall_and_the_forms_from_allow() -> None:
    breaker = Always()
    assert isinstance(breaker, Breaker)
    assert breaker.call(len, "abc") == 3
    with pytest.raises(Boom):
        breaker.call(_raise)
    assert await breaker.acall(asyncio.sleep, 0, 5) == 5

    @breaker
    def g() -> int:
        return 1

    assert g() == 1
    with breaker:
        pass
    assert breaker.outcomes == ["success", "failure Boom", "success", "success", "success"]


def _raise() -> None:
    raise Boom


def test_base_allow_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        BreakerBase().allow()


def test_generator_functions_are_refused_by_the_decorator() -> None:
    breaker = CircuitBreaker("c")

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    for fn in (numbers, anumbers):
        with pytest.raises(ArgumentTypeError) as caught:
            breaker(fn)
        assert caught.value.field == "fn"
