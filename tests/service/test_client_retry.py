"""The pure retry rules of ServiceClient: what counts against an instance, what is retried."""

from __future__ import annotations

import asyncio

import pytest

from distsys.errors import CanceledError, DeadlineExceededError, InvalidArgumentError
from distsys.http import ConnectError, ConnectionLostError, ProtocolError, ResponseTooLargeError
from distsys.service._client_retry import Verdict, judge_error, judge_status


@pytest.mark.parametrize("repeatable", [True, False])
def test_nothing_sent_is_always_retryable(repeatable: bool) -> None:
    error = ConnectError("h:1", "connection refused")
    assert judge_error(error, repeatable=repeatable, call_ended=False) == Verdict(True, True)


@pytest.mark.parametrize("repeatable", [True, False])
def test_a_connection_lost_before_sending_is_always_retryable(repeatable: bool) -> None:
    error = ConnectionLostError("h:1", "closed at once", request_sent=False)
    assert judge_error(error, repeatable=repeatable, call_ended=False) == Verdict(True, True)


@pytest.mark.parametrize(
    "error",
    [ConnectionLostError("h:1", "gone"), ProtocolError("h:1", "garbage"), DeadlineExceededError()],
)
def test_maybe_processed_is_retryable_only_when_repeatable(error: Exception) -> None:
    assert judge_error(error, repeatable=True, call_ended=False) == Verdict(True, True)
    assert judge_error(error, repeatable=False, call_ended=False) == Verdict(True, False)


def test_the_callers_end_is_never_retried() -> None:
    deadline = judge_error(DeadlineExceededError(), repeatable=True, call_ended=True)
    assert deadline == Verdict(True, False)  # a slow instance still counts
    canceled = judge_error(CanceledError(), repeatable=True, call_ended=True)
    assert canceled == Verdict(False, False)
    refused = judge_error(ConnectError("h:1", "x"), repeatable=True, call_ended=True)
    assert refused == Verdict(True, False)


def test_errors_that_are_not_the_instances() -> None:
    too_big = ResponseTooLargeError("h:1", 10)
    assert judge_error(too_big, repeatable=True, call_ended=False) == Verdict(False, False)
    wrong = InvalidArgumentError("body", 1, "bytes")
    assert judge_error(wrong, repeatable=True, call_ended=False) is None
    assert judge_error(asyncio.CancelledError(), repeatable=True, call_ended=False) is None


def test_statuses() -> None:
    retried = frozenset({502, 503, 504})
    assert judge_status(200, retried, repeatable=True) == Verdict(False, False)
    assert judge_status(404, retried, repeatable=True) == Verdict(False, False)
    assert judge_status(500, retried, repeatable=True) == Verdict(True, False)
    assert judge_status(503, retried, repeatable=True) == Verdict(True, True)
    assert judge_status(503, retried, repeatable=False) == Verdict(True, False)
