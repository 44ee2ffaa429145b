"""What a ServiceClient does after an attempt fails: pure rules, no I/O.

An attempt's failure *counts* against the instance (its breaker and balancer learn it)
when the instance is to blame: it refused or dropped the connection, broke the protocol,
ran out of time, or answered 5xx. A failure is *retryable on another instance* when
repeating the request cannot do harm:

* nothing was sent (:class:`~distsys.http.ConnectError`, a ``ConnectionLostError``
  with ``request_sent=False``, or an open breaker): always;
* something may have been processed (the connection was lost after sending, the attempt
  timed out, a 502/503/504 answer): only when the request is idempotent (GET, HEAD, PUT,
  DELETE, OPTIONS, TRACE, or ``idempotent=True``) and its body can be sent again (not a
  stream);
* the caller's own Context ended, the request itself was wrong, or the answer is larger
  than the client accepts (``ResponseTooLargeError``, not the instance's fault): never.
"""

from __future__ import annotations

from typing import NamedTuple

from distsys.errors import DeadlineExceededError
from distsys.http import ConnectError, ConnectionLostError, ResponseTooLargeError, UpstreamError

__all__ = ["Verdict", "judge_error", "judge_status"]


class Verdict(NamedTuple):
    """What to make of a failed attempt."""

    counts: bool
    """Whether it counts against the instance (breaker failure, balancer error)."""
    retryable: bool
    """Whether the request may be sent again to another instance."""


def judge_error(error: BaseException, *, repeatable: bool, call_ended: bool) -> Verdict | None:
    """Judge an attempt that raised ``error``; None if the error is not the instance's.

    Args:
        error: what the attempt raised.
        repeatable: the request is idempotent and its body can be sent again.
        call_ended: the caller's Context has ended (no retry, whatever happened).
    """
    if isinstance(error, ResponseTooLargeError):
        return Verdict(False, False)  # every instance would answer the same
    if isinstance(error, DeadlineExceededError):
        return Verdict(True, repeatable and not call_ended)
    if call_ended:
        return Verdict(isinstance(error, UpstreamError), False)
    if isinstance(error, ConnectError) or (
        isinstance(error, ConnectionLostError) and not error.request_sent
    ):
        return Verdict(True, True)
    if isinstance(error, UpstreamError):
        return Verdict(True, repeatable)
    return None


def judge_status(status: int, retry_statuses: frozenset[int], *, repeatable: bool) -> Verdict:
    """Judge an attempt answered with ``status``."""
    return Verdict(status >= 500, repeatable and status in retry_statuses)
