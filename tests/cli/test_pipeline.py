"""The pipeline demo's engine, run without any UI.

Deadlines are driven by a ManualClock: stragglers wait on an event nobody sets, the test
advances the clock past the deadline once the other jobs are done, so every outcome is
deterministic and no test waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distsys.cli._pipeline import (
    Job,
    Latency,
    PipelineProgress,
    PipelineResult,
    count_primes,
    fetch_and_count,
    percentile,
    run_pipeline,
)
from distsys.context import background, with_cancel, with_timeout
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.testing import ManualClock

NO_STRAGGLERS = Latency(typical=0.001, straggler_rate=0.0)


def naive_count_primes(lo: int, hi: int) -> int:
    return sum(1 for n in range(max(lo, 2), hi) if all(n % d for d in range(2, math.isqrt(n) + 1)))


def assert_counts_add_up(result: PipelineResult) -> None:
    assert result.sent == result.completed + result.cancelled + result.skipped
    assert result.items == result.completed + result.cancelled + result.not_started
    assert sum(result.per_worker) == result.completed == len(result.latencies)


class Stragglers:
    """A work function whose chosen jobs block forever; the others count primes."""

    def __init__(self, indexes: set[int]) -> None:
        self.indexes = indexes
        self.blocked: set[int] = set()
        self.all_blocked = asyncio.Event()
        self._never = asyncio.Event()

    async def __call__(self, job: Job) -> int:
        if job.index in self.indexes:
            self.blocked.add(job.index)
            if self.blocked == self.indexes:
                self.all_blocked.set()
            await self._never.wait()
        return count_primes(job.lo, job.hi)


# ---------------------------------------------------------------------- count_primes


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(0, 0, 0), (0, 2, 0), (0, 3, 1), (0, 10, 4), (0, 100, 25), (10, 20, 4), (0, 10**5, 9592)],
)
def test_count_primes_known_values(lo: int, hi: int, expected: int) -> None:
    assert count_primes(lo, hi) == expected


@given(st.integers(0, 3000), st.integers(0, 3000))
def test_count_primes_matches_trial_division(lo: int, hi: int) -> None:
    assert count_primes(lo, hi) == naive_count_primes(lo, hi)


# ------------------------------------------------------------------------ percentile


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]  # unsorted on purpose
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0.1) == 1.0
    assert percentile([7.0], 50) == 7.0


@pytest.mark.parametrize(
    ("values", "q", "field"), [([], 50, "values"), ([1.0], 0, "q"), ([1.0], 101, "q")]
)
def test_percentile_rejects_bad_input(values: list[float], q: float, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        percentile(values, q)
    assert info.value.field == field


# --------------------------------------------------------------------------- Latency


def test_latency_draws_are_reproducible_and_positive() -> None:
    model = Latency()
    rng_a, rng_b = random.Random(3), random.Random(3)
    draws = [model.draw(rng_a) for _ in range(1000)]
    assert draws == [model.draw(rng_b) for _ in range(1000)]
    assert all(d > 0 for d in draws)


def test_latency_stragglers_are_at_least_the_minimum() -> None:
    rng = random.Random(1)
    always = Latency(straggler_rate=1.0, straggler_min=2.0)
    assert all(always.draw(rng) >= 2.0 for _ in range(200))
    never = Latency(straggler_rate=0.0, typical=0.01, spread=0.0)
    assert all(never.draw(rng) == pytest.approx(0.01) for _ in range(200))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("typical", 0.0),
        ("typical", math.inf),
        ("spread", -1.0),
        ("straggler_rate", 1.5),
        ("straggler_rate", math.nan),
        ("straggler_min", -1.0),
        ("tail", 0),
    ],
)
def test_latency_rejects_out_of_range_fields(field: str, value: float) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        Latency(**{field: value})
    assert info.value.field == field


def test_latency_rejects_non_numbers() -> None:
    with pytest.raises(ArgumentTypeError) as info:
        Latency(typical="fast")  # type: ignore[arg-type]
    assert info.value.field == "typical"


async def test_fetch_and_count_counts_the_jobs_range() -> None:
    assert await fetch_and_count(Job(index=0, lo=0, hi=1000, delay=0.0)) == 168


# ----------------------------------------------------------------------- run_pipeline


async def test_generous_deadline_completes_every_job() -> None:
    ctx, cancel = with_timeout(background(), 60.0)
    snapshots: list[PipelineProgress] = []
    result = await run_pipeline(
        ctx,
        items=30,
        workers=4,
        span=1000,
        latency=NO_STRAGGLERS,
        rng=random.Random(0),
        on_progress=snapshots.append,
    )
    cancel()
    assert result.completed == result.sent == result.items == 30
    assert result.cancelled == result.skipped == result.not_started == 0
    assert result.primes == naive_count_primes(0, 30_000) == 3245
    assert not result.deadline_exceeded
    assert result.budget is not None
    assert 0 < result.budget <= 60.0
    assert result.wall_time > 0
    assert result.latency(50) is not None
    assert_counts_add_up(result)
    assert [s.completed for s in snapshots] == list(range(1, 31))
    assert snapshots[-1].per_worker == result.per_worker


async def test_runs_without_a_deadline() -> None:
    result = await run_pipeline(background(), items=10, workers=3, span=100, latency=NO_STRAGGLERS)
    assert result.completed == 10
    assert result.primes == 168  # below 1000
    assert result.budget is None


async def test_no_items_is_an_empty_run() -> None:
    result = await run_pipeline(background(), items=0, workers=2)
    assert (result.sent, result.completed, result.per_worker, result.latencies) == (
        0,
        0,
        (0, 0),
        (),
    )
    assert result.latency(99) is None
    assert result.throughput >= 0


async def test_deadline_cancels_stragglers_and_the_rest_complete() -> None:
    clock = ManualClock()
    ctx, cancel = with_timeout(background(clock=clock), 5.0)
    work = Stragglers({3, 7})
    others_done = asyncio.Event()

    def on_progress(progress: PipelineProgress) -> None:
        if progress.completed == 18:
            others_done.set()

    run = asyncio.create_task(
        run_pipeline(ctx, items=20, workers=4, span=100, work=work, on_progress=on_progress)
    )
    await others_done.wait()
    await work.all_blocked.wait()
    assert not run.done()  # the stragglers hold the run open until the deadline
    clock.advance(5.0)
    result = await run
    cancel()

    assert result.deadline_exceeded
    assert (result.sent, result.completed, result.cancelled, result.skipped) == (20, 18, 2, 0)
    expected = sum(count_primes(i * 100, (i + 1) * 100) for i in range(20) if i not in {3, 7})
    assert result.primes == expected
    assert result.wall_time == 5.0  # measured on the context's clock
    assert result.cancelled_after == (5.0, 5.0)  # both blocked from time 0 to the deadline
    assert_counts_add_up(result)


async def test_deadline_before_every_job_is_sent() -> None:
    # Both workers block on their first job, so the producer stalls on a full channel.
    clock = ManualClock()
    ctx, cancel = with_timeout(background(clock=clock), 1.0)
    work = Stragglers({0, 1})
    run = asyncio.create_task(run_pipeline(ctx, items=50, workers=2, span=10, work=work))
    await work.all_blocked.wait()
    clock.advance(1.0)
    result = await run
    cancel()

    assert result.deadline_exceeded
    assert result.completed == 0
    assert result.cancelled == 2
    assert result.cancelled_after == (1.0, 1.0)
    assert 2 <= result.sent < 50
    assert result.unsent == 50 - result.sent
    assert_counts_add_up(result)


async def test_cancelling_the_parent_context_ends_the_run_like_a_deadline() -> None:
    ctx, cancel = with_cancel(background())
    work = Stragglers({0})
    run = asyncio.create_task(run_pipeline(ctx, items=5, workers=2, span=10, work=work))
    await work.all_blocked.wait()
    cancel()
    result = await run
    assert not result.deadline_exceeded
    assert result.cancelled == 1
    assert_counts_add_up(result)


async def test_a_failing_job_ends_the_run_and_is_raised() -> None:
    # No deadline: without failing fast, the job that blocks forever would hang the run.
    never = asyncio.Event()

    async def work(job: Job) -> int:
        if job.index == 1:
            raise ValueError("bad job")
        await never.wait()
        return 0

    with pytest.raises(ValueError, match="bad job"):
        await run_pipeline(background(), items=4, workers=2, work=work)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancelling_the_caller_leaves_nothing_running() -> None:
    work = Stragglers({0, 1, 2})
    run = asyncio.create_task(run_pipeline(background(), items=10, workers=3, work=work))
    await work.all_blocked.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.mark.parametrize(("field", "value"), [("items", -1), ("workers", 0), ("span", 0)])
async def test_run_pipeline_rejects_out_of_range_arguments(field: str, value: int) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        await run_pipeline(background(), **{field: value})  # type: ignore[arg-type]
    assert info.value.field == field
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_run_pipeline_rejects_non_int_arguments() -> None:
    with pytest.raises(ArgumentTypeError) as info:
        await run_pipeline(background(), workers=True)
    assert info.value.field == "workers"


def test_result_derived_numbers() -> None:
    result = PipelineResult(
        items=10,
        workers=2,
        budget=1.0,
        sent=8,
        completed=5,
        cancelled=1,
        skipped=2,
        per_worker=(3, 2),
        latencies=(0.1, 0.2, 0.3, 0.4, 0.5),
        cancelled_after=(1.0,),
        primes=0,
        span=10,
        wall_time=2.0,
        deadline_exceeded=True,
    )
    assert result.unsent == 2
    assert result.not_started == 4
    assert result.throughput == 2.5
    assert result.latency(50) == 0.3
    assert result.latency(100) == 0.5
