"""The breaker's state machine: the pure core directly, and properties found by Hypothesis."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from distsys.errors import BreakerOpenError
from distsys.resilience import (
    BreakerState,
    CircuitBreaker,
    CountWindow,
    Permit,
    StateChange,
    TimeWindow,
)
from distsys.resilience._breaker_checks import FAILURE, SUCCESS
from distsys.resilience._breaker_machine import (
    CLOSED_CALL,
    REJECTED,
    TRIAL_CALL,
    BreakerMachine,
)
from distsys.resilience._breaker_settings import BreakerSettings
from distsys.resilience._breaker_window import make_counts
from distsys.testing import ManualClock
from tests.resilience.breaker_helpers import Boom, Ignored, run

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def machine(**changes: Any) -> BreakerMachine:
    fields: dict[str, Any] = {
        "window": CountWindow(4),
        "failure_rate_threshold": 0.5,
        "slow_call_rate_threshold": 1.0,
        "slow_call_duration": 1.0,
        "minimum_calls": 4,
        "wait_duration": 5.0,
        "wait_multiplier": 1.0,
        "max_wait_duration": 60.0,
        "half_open_max_calls": 1,
        "half_open_successes": 1,
        "automatic_half_open": False,
    }
    fields.update(changes)
    settings = BreakerSettings(**fields)
    counts = make_counts(settings.window, ManualClock())
    return BreakerMachine("m", settings, counts, fast=False, now=0.0, ok=0)


def test_the_pure_machine_takes_the_time_as_input() -> None:
    m = machine()
    for _ in range(4):
        kind, epoch, _ = m.admit(0.0, 0)
        assert kind == CLOSED_CALL
        m.finish(kind, epoch, 0.0, 0, FAILURE, False)
    assert m.state is OPEN
    assert m.admit(4.0, 0) == (REJECTED, m.epoch, 1.0)
    kind, epoch, _ = m.admit(5.0, 0)
    assert (kind, m.state) == (TRIAL_CALL, HALF_OPEN)
    assert m.admit(5.0, 0)[0] == REJECTED  # one trial at a time
    m.finish(kind, epoch, 6.5, 0, SUCCESS, True)  # slow: 100% of the trials >= 100%
    assert m.state is OPEN
    assert [(e.new, e.at) for e in m.events] == [(OPEN, 0.0), (HALF_OPEN, 5.0), (OPEN, 6.5)]


def test_an_automatic_machine_asks_for_a_timer_and_honours_only_its_own() -> None:
    m = machine(automatic_half_open=True, minimum_calls=1)
    kind, epoch, _ = m.admit(0.0, 0)
    m.finish(kind, epoch, 0.0, 0, FAILURE, False)
    timer_epoch, delay = m.timer or (None, None)
    assert (timer_epoch, delay) == (m.epoch, 5.0)
    m.wait_elapsed(object(), 5.0, 0)  # another open period's timer: ignored
    assert m.state is OPEN
    m.wait_elapsed(timer_epoch, 5.0, 0)
    assert m.state is HALF_OPEN


# ---------------------------------------------------------------------- properties

WORDS = ["ok", "fail", "slow", "+0.5", "+3", "+7"]
settings_strategy = st.fixed_dictionaries(
    {
        "window": st.one_of(
            st.builds(TimeWindow, st.sampled_from([1.0, 5.0, 10.0]), st.integers(1, 10)),
            st.builds(CountWindow, st.integers(1, 30)),
        ),
        "minimum_calls": st.integers(1, 30),
        "failure_rate_threshold": st.floats(0.01, 1.0),
        "slow_call_rate_threshold": st.floats(0.01, 1.0),
        "half_open_max_calls": st.integers(1, 4),
        "wait_multiplier": st.sampled_from([1.0, 2.0]),
        "slow_call_duration": st.sampled_from([None, 1.0]),
    }
)


@settings(max_examples=150, deadline=None)
@given(
    options=settings_strategy,
    script=st.lists(st.sampled_from(["ok", "ign", "other", "stop", "+0.3", "+4", "+20"])),
)
def test_a_breaker_fed_no_failure_never_opens(options: dict[str, Any], script: list[str]) -> None:
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = CircuitBreaker(
        "p",
        record_exceptions=Boom,
        ignore_exceptions=Ignored,
        listeners=[changes.append],
        clock=clock,
        **options,
    )
    run(breaker, clock, " ".join(script))
    s = breaker.statistics()
    assert (s.state, s.opened, s.failures, s.slow_calls, changes) == (CLOSED, 0, 0, 0, [])


def _play(script: list[str], options: dict[str, Any]) -> tuple[Any, ...]:
    """Play ``script``, a rejected call being skipped; return what the breaker did."""
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = CircuitBreaker(
        "p",
        record_exceptions=Boom,
        ignore_exceptions=Ignored,
        listeners=[changes.append],
        clock=clock,
        **options,
    )
    for word in script:
        with contextlib.suppress(BreakerOpenError):
            run(breaker, clock, word)
    s = breaker.statistics()
    # Not compared: `rejected` (an ignored call can be rejected too) and the times of
    # the transitions to half-open, which happen when the breaker is next looked at.
    return (
        s.state,
        s.calls,
        s.failures,
        s.slow_calls,
        s.opened,
        s.half_open_successes,
        [(c.old, c.new, c.reason) for c in changes],
    )


@settings(max_examples=150, deadline=None)
@given(
    options=settings_strategy,
    script=st.lists(st.sampled_from(WORDS), max_size=60),
    noise=st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["ign", "stop"]))),
)
def test_ignored_exceptions_change_nothing(
    options: dict[str, Any], script: list[str], noise: list[tuple[int, str]]
) -> None:
    noisy = list(script)
    for position, word in sorted(noise, reverse=True):
        noisy.insert(min(position, len(noisy)), word)
    assert _play(noisy, options) == _play(script, options)


@settings(max_examples=100, deadline=None)
@given(options=settings_strategy, script=st.lists(st.sampled_from(WORDS), max_size=80))
def test_listeners_hear_a_chain_of_transitions(options: dict[str, Any], script: list[str]) -> None:
    clock = ManualClock()
    changes: list[StateChange] = []
    breaker = CircuitBreaker("p", listeners=[changes.append], clock=clock, **options)
    for word in script:
        try:
            run(breaker, clock, word)
        except BaseException as exc:
            if not isinstance(exc, Boom | BreakerOpenError):
                raise
    state = breaker.state
    previous = CLOSED
    for change in changes:
        assert change.old is previous
        assert change.old is not change.new
        previous = change.new
    assert previous is state
    assert breaker.statistics().opened == sum(c.new is OPEN for c in changes)


# ---------------------------------------------------------------------- a model


class BreakerModel(RuleBasedStateMachine):
    """Random calls, permits held open, time and manual overrides, checked after each step.

    The model tracks the permits it holds and, through a listener, which of them were
    granted in the current half-open period: the breaker's ``half_open_in_flight`` must
    equal their number and never exceed the limit.
    """

    LIMIT = 2

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.breaker = CircuitBreaker(
            "model",
            window=TimeWindow(4.0, 4),
            minimum_calls=3,
            slow_call_duration=1.0,
            wait_duration=2.0,
            wait_multiplier=2.0,
            max_wait_duration=8.0,
            half_open_max_calls=self.LIMIT,
            half_open_successes=3,
            record_exceptions=Boom,
            listeners=[self.heard],
            clock=self.clock,
        )
        self.held: list[tuple[Permit, bool]] = []  # (permit, a trial of the current period)
        self.changes: list[StateChange] = []

    def heard(self, change: StateChange) -> None:
        self.changes.append(change)
        self.held = [(permit, False) for permit, _ in self.held]  # a new period began

    @rule(word=st.sampled_from(["ok", "fail", "slow", "ign", "stop"]))
    def call(self, word: str) -> None:
        try:
            run(self.breaker, self.clock, word)
        except BreakerOpenError:
            return
        s = self.breaker.statistics()
        if word in ("ok", "fail", "slow") and s.state is CLOSED and s.calls >= s.minimum_calls:
            # judged after every recorded call: still closed means under the thresholds
            assert s.failure_rate < 0.5
            assert s.slow_call_rate < 1.0

    @rule()
    def take_permit(self) -> None:
        state = self.breaker.state  # applies a due transition first
        try:
            permit = self.breaker.allow()
        except BreakerOpenError:
            return
        self.held.append((permit, state is HALF_OPEN))

    @precondition(lambda self: self.held)
    @rule(index=st.integers(0, 100), outcome=st.sampled_from(["success", "failure", "ignore"]))
    def finish_permit(self, index: int, outcome: str) -> None:
        permit, _ = self.held.pop(index % len(self.held))
        getattr(permit, outcome)()

    @rule(seconds=st.sampled_from([0.1, 1.0, 2.0, 5.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(["force_open", "disable", "reset"]))
    def override(self, action: str) -> None:
        getattr(self.breaker, action)()

    @invariant()
    def half_open_slots_match_the_permits_held(self) -> None:
        s = self.breaker.statistics()
        trials = sum(current for _, current in self.held)
        if s.state is HALF_OPEN:
            assert s.half_open_in_flight == trials
        assert 0 <= s.half_open_in_flight <= self.LIMIT

    @invariant()
    def transitions_form_a_chain(self) -> None:
        for before, after in zip(self.changes, self.changes[1:], strict=False):
            assert after.old is before.new


TestBreakerModel = BreakerModel.TestCase
TestBreakerModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
