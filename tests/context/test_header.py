"""The remaining budget travels as X-Request-Timeout-Ms (relative milliseconds)."""

from __future__ import annotations

import pytest

from distsys.context import (
    TIMEOUT_HEADER,
    background,
    decode_timeout,
    encode_timeout,
    with_cancel,
    with_timeout,
)
from distsys.errors import InvalidArgumentError
from distsys.testing import ManualClock


def test_header_name() -> None:
    assert TIMEOUT_HEADER == "X-Request-Timeout-Ms"


def test_a_context_without_deadline_sends_no_header() -> None:
    ctx, cancel = with_cancel(background())
    assert encode_timeout(ctx) is None
    cancel()


def test_remaining_budget_is_encoded_in_whole_milliseconds_rounded_up() -> None:
    clock = ManualClock()
    ctx, _ = with_timeout(background(clock=clock), 1.5)
    assert encode_timeout(ctx) == "1500"
    clock.advance(1.4996)
    assert encode_timeout(ctx) == "1"  # 0.4 ms left still reads as live
    clock.advance(1)
    assert encode_timeout(ctx) == "0"


def test_round_trip_across_processes_with_different_clocks() -> None:
    sender_clock = ManualClock(1_000_000.0)
    ctx, _ = with_timeout(background(clock=sender_clock), 2.0)
    sender_clock.advance(0.25)
    header = encode_timeout(ctx)
    assert header is not None
    receiver_clock = ManualClock(5.0)  # unrelated time base: only the budget matters
    remote, _ = with_timeout(background(clock=receiver_clock), decode_timeout(header))
    assert remote.deadline() == pytest.approx(6.75)


@pytest.mark.parametrize("value", ["250", b"250", " 250 "])
def test_decode_accepts_plain_digits(value: str | bytes) -> None:
    assert decode_timeout(value) == 0.25


@pytest.mark.parametrize(
    "value", ["", "-5", "1.5", "10s", "1e3", "12345678901", "٣", b"\xff", "+7", "1 0"]
)
def test_decode_refuses_anything_else_naming_the_header(value: str | bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="X-Request-Timeout-Ms") as info:
        decode_timeout(value)
    assert "milliseconds" in info.value.accepted
