"""A tiny script language for driving a breaker on a ManualClock, shared by the tests.

A script is words separated by spaces; ``word*n`` repeats a word n times:

=========  =================================================================
``ok``     a call that returns
``fail``   a call that raises ``Boom`` (a failure)
``slow``   a call that takes 2 s (the clock advances during it), then returns
``slowf``  a call that takes 2 s, then raises ``Boom``
``ign``    a call that raises ``Ignored`` (in ``ignore_exceptions``)
``other``  a call that raises ``LookupError`` (not in ``record_exceptions``)
``stop``   a call that raises ``Stop``, a ``BaseException`` (never counted)
``rej``    a call that must be rejected with ``BreakerOpenError``
``+5``     advance the clock 5 s
=========  =================================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from distsys.errors import BreakerOpenError
from distsys.resilience import CircuitBreaker
from distsys.testing import ManualClock


class Boom(Exception):
    """The dependency failed."""


class Ignored(Exception):
    """An error the breakers are told to ignore."""


class Stop(BaseException):
    """Stands for KeyboardInterrupt / cancellation: not an Exception."""


SLOW_CALL = 2.0  # seconds a "slow" call takes; the breakers under test use 1.0


EXPECTED: dict[str, type[BaseException]] = {
    "fail": Boom,
    "slowf": Boom,
    "ign": Ignored,
    "other": LookupError,
    "stop": Stop,
    "rej": BreakerOpenError,
}


def _body(clock: ManualClock, word: str) -> Callable[[], None]:
    def body() -> None:
        if word in ("slow", "slowf"):
            clock.advance(SLOW_CALL)
        if word in ("fail", "slowf"):
            raise Boom
        if word == "ign":
            raise Ignored
        if word == "other":
            raise LookupError
        if word == "stop":
            raise Stop

    return body


def _call(breaker: CircuitBreaker, clock: ManualClock, word: str) -> None:
    body = _body(clock, word)
    expected = EXPECTED.get(word)
    if expected is None:
        breaker.call(body)
    else:
        with pytest.raises(expected):
            breaker.call(body)


async def _acall(breaker: CircuitBreaker, clock: ManualClock, word: str) -> None:
    body = _body(clock, word)

    async def abody() -> None:
        await asyncio.sleep(0)
        body()

    expected = EXPECTED.get(word)
    if expected is None:
        await breaker.acall(abody)
    else:
        with pytest.raises(expected):
            await breaker.acall(abody)


STEPS = {"ok", "fail", "slow", "slowf", "ign", "other", "stop", "rej"}


def run(breaker: CircuitBreaker, clock: ManualClock, script: str) -> None:
    """Play ``script`` (see the module docstring) against ``breaker``."""
    for token in script.split():
        word, _, times = token.partition("*")
        for _ in range(int(times or 1)):
            if word.startswith("+"):
                clock.advance(float(word[1:]))
            elif word in STEPS:
                _call(breaker, clock, word)
            else:
                raise ValueError(f"unknown script word {word!r}")


async def arun(breaker: CircuitBreaker, clock: ManualClock, script: str) -> None:
    """Play ``script`` with ``acall`` and coroutine functions."""
    for token in script.split():
        word, _, times = token.partition("*")
        for _ in range(int(times or 1)):
            if word.startswith("+"):
                clock.advance(float(word[1:]))
            elif word in STEPS:
                await _acall(breaker, clock, word)
            else:
                raise ValueError(f"unknown script word {word!r}")
