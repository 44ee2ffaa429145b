"""Every distsys error pickles: errors cross from worker processes and clusters."""

from __future__ import annotations

import operator
import pickle

import pytest

from distsys import errors

SAMPLES: list[errors.DistsysError] = [
    errors.InvalidArgumentError("partitioner", operator.add, "an int", detail="it returned 4"),
    errors.ArgumentTypeError("engine", 3, "an engine name"),
    errors.UnknownSchemeError("redsi://x", "redsi", ["redis", "sqlite"], "redis"),
    errors.MissingDependencyError("redis", "redis", "redis"),
    errors.BackendUnavailableError("redis://127.0.0.1:1", "connection refused"),
    errors.LeaseExpiredError(7),
    errors.NoInstancesError("orders", "all draining"),
    errors.BreakerOpenError("inventory", 1.5),
    errors.BulkheadFullError("db", 8),
    errors.RateLimitedError("api", 0.1),
    errors.BlockingCallInLoopError("Chan.send_blocking"),
    errors.WouldBlock(),
    errors.ChannelClosedError(index=2),
    errors.EmptyRingError(),
    errors.CanceledError(cause=KeyError("k")),
    errors.DeadlineExceededError(),
]


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_an_error_pickles_with_its_message_attributes_and_notes(
    error: errors.DistsysError,
) -> None:
    error.add_note("raised by task 1")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__notes__ == ["raised by task 1"]
    public = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    assert {k: v for k, v in vars(copy).items() if k in public}.keys() == public.keys()
    assert repr({k: getattr(copy, k) for k in public}) == repr(public)
