"""NoopBreaker: the same API, never rejects, records nothing."""

from __future__ import annotations

import asyncio

import pytest

from distsys.errors import InvalidArgumentError
from distsys.resilience import Breaker, BreakerState, NoopBreaker, Permit
from tests.resilience.breaker_helpers import Boom


def test_calls_go_straight_through() -> None:
    breaker = NoopBreaker("off")
    assert breaker.call(divmod, 7, 2) == (3, 1)
    with pytest.raises(Boom):
        breaker.call(_raise)
    assert breaker.name == "off"
    assert repr(breaker) == "NoopBreaker('off')"


def _raise() -> None:
    raise Boom


async def test_acall_goes_straight_through() -> None:
    breaker = NoopBreaker()
    assert await breaker.acall(asyncio.sleep, 0, "x") == "x"


def test_the_decorator_returns_the_function_itself() -> None:
    breaker = NoopBreaker()

    def f() -> int:
        return 1

    async def af() -> int:
        return 1

    assert breaker(f) is f
    assert breaker(af) is af


def test_with_blocks_and_permits_record_nothing() -> None:
    breaker = NoopBreaker()
    with breaker as permit:
        assert isinstance(permit, Permit)
    with pytest.raises(Boom), breaker:
        raise Boom
    permit = breaker.allow()
    assert permit.started > 0
    assert permit.success() is True
    assert permit.failure(Boom()) is False
    assert permit.ignore() is False
    assert permit.done
    with breaker.allow() as permit:
        pass
    assert permit.done


async def test_async_with() -> None:
    async with NoopBreaker() as permit:
        assert not permit.done


def test_statistics_of_a_disabled_breaker() -> None:
    s = NoopBreaker("off").statistics()
    assert (s.name, s.state, s.calls, s.rejected, s.retry_after) == (
        "off",
        BreakerState.DISABLED,
        0,
        0,
        None,
    )


def test_satisfies_the_breaker_protocol() -> None:
    assert isinstance(NoopBreaker(), Breaker)


def test_a_name_is_a_non_empty_string() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        NoopBreaker("")
    assert caught.value.field == "name"
