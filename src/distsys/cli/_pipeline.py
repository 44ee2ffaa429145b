"""The pipeline demo's engine: fan prime counting out to workers, fan results back in.

::

    producer ──jobs (Chan)──▶ worker 0 ┐
      │                       worker 1 ├──results (Chan)──▶ collector ──▶ PipelineResult
      │ select(send, done)    ...      ┘   (async for)
      ▼                       each job under ctx.scope(): the deadline cancels it
    closes jobs when done or when the deadline passes

Each job covers a range of integers. A worker waits out the job's simulated I/O latency
(drawn from a heavy-tailed :class:`Latency` model, so a few jobs are stragglers) and then
counts the primes in the range with a segmented sieve. Everything here is UI-free: the
command in ``_pipeline_command`` renders what :func:`run_pipeline` reports.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from distsys.concurrency import Chan, WaitGroup, go, select
from distsys.context import CancelFunc, Context, with_cancel
from distsys.errors import ArgumentTypeError, DeadlineExceededError, InvalidArgumentError

__all__ = [
    "Job",
    "Latency",
    "PipelineProgress",
    "PipelineResult",
    "Work",
    "count_primes",
    "fetch_and_count",
    "percentile",
    "run_pipeline",
]


def count_primes(lo: int, hi: int) -> int:
    """Count the primes ``p`` with ``lo <= p < hi`` (a segmented sieve of Eratosthenes)."""
    lo = max(lo, 2)
    if hi <= lo:
        return 0
    root = math.isqrt(hi - 1)
    small = bytearray([1]) * (root + 1)  # small[p] == 1 while p may be prime
    segment = bytearray([1]) * (hi - lo)  # segment[i] == 1 while lo + i may be prime
    for p in range(2, root + 1):
        if small[p]:
            small[p * p :: p] = bytes(len(range(p * p, root + 1, p)))
            first = max(p * p, -(-lo // p) * p) - lo  # the first multiple of p to strike
            segment[first::p] = bytes(len(range(first, hi - lo, p)))
    return segment.count(1)


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` by the nearest-rank method.

    Raises:
        InvalidArgumentError: ``values`` is empty, or ``q`` is not in (0, 100].
    """
    if not values:
        raise InvalidArgumentError("values", values, "at least one value")
    if not 0 < q <= 100:
        raise InvalidArgumentError("q", q, "a percentage in (0, 100]")
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1]


@dataclass(frozen=True, slots=True)
class Latency:
    """A heavy-tailed latency model: mostly quick, and now and then a straggler.

    A draw is a straggler with probability ``straggler_rate``: ``straggler_min`` seconds
    times a Pareto variate of index ``tail`` (the smaller the index, the heavier the tail;
    at 1 or below its mean is infinite). Otherwise it is log-normal with median
    ``typical`` seconds and shape ``spread``.

    Raises:
        InvalidArgumentError: a field is out of range (the message names it).
    """

    typical: float = 0.010
    spread: float = 0.6
    straggler_rate: float = 0.01
    straggler_min: float = 1.0
    tail: float = 1.0

    def __post_init__(self) -> None:
        checks: tuple[tuple[str, str, Callable[[float], bool]], ...] = (
            ("typical", "a finite number of seconds > 0", lambda v: 0 < v < math.inf),
            ("spread", "a finite number >= 0", lambda v: 0 <= v < math.inf),
            ("straggler_rate", "a probability in [0, 1]", lambda v: 0 <= v <= 1),
            ("straggler_min", "a finite number of seconds > 0", lambda v: 0 < v < math.inf),
            ("tail", "a finite number > 0", lambda v: 0 < v < math.inf),
        )
        for field, accepted, ok in checks:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ArgumentTypeError(field, value, accepted)
            if not ok(value):  # NaN fails every comparison
                raise InvalidArgumentError(field, value, accepted)

    def draw(self, rng: random.Random) -> float:
        """Return one latency in seconds."""
        if rng.random() < self.straggler_rate:
            return self.straggler_min * rng.paretovariate(self.tail)
        return rng.lognormvariate(math.log(self.typical), self.spread)


@dataclass(frozen=True, slots=True)
class Job:
    """One work item: count the primes in ``[lo, hi)`` after ``delay`` seconds of I/O."""

    index: int
    lo: int
    hi: int
    delay: float


Work = Callable[[Job], Awaitable[int]]
"""What a worker does with a job: return the number of primes in its range."""


async def fetch_and_count(job: Job) -> int:
    """Wait out the job's simulated I/O latency, then count the primes in its range."""
    await asyncio.sleep(job.delay)
    return count_primes(job.lo, job.hi)


class _Status(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # running when the context ended
    SKIPPED = "skipped"  # taken from the channel after the context had ended


@dataclass(frozen=True, slots=True)
class _Outcome:
    job: Job
    worker: int
    status: _Status
    primes: int = 0
    latency: float = 0.0  # seconds the job ran, whether it completed or was cancelled


@dataclass(frozen=True, slots=True)
class PipelineProgress:
    """A snapshot taken each time the collector receives a result.

    Attributes:
        items: jobs the run was asked to process.
        completed: jobs finished.
        cancelled: jobs cancelled in flight because the context ended.
        skipped: jobs handed out after the context had ended, so never started.
        per_worker: jobs completed by each worker.
        elapsed: seconds since the run started (on the context's clock).
    """

    items: int
    completed: int
    cancelled: int
    skipped: int
    per_worker: tuple[int, ...]
    elapsed: float


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What a pipeline run did.

    Every job the producer sent ends up in exactly one of ``completed``, ``cancelled`` and
    ``skipped``; the rest of the ``items`` were never sent because the context ended first.

    Attributes:
        items: jobs the run was asked to process.
        workers: how many workers ran.
        budget: seconds the context had left when the run started, or None (no deadline).
        sent: jobs the producer put on the jobs channel.
        completed: jobs finished.
        cancelled: jobs cancelled while running because the context ended (stragglers).
        skipped: jobs sent but not started because the context had ended.
        per_worker: jobs completed by each worker.
        latencies: seconds each completed job took in its worker, in completion order.
        cancelled_after: seconds each cancelled job had run when it was cancelled.
        primes: primes counted in the completed jobs' ranges.
        span: the integers in each job's range (job ``i`` covers ``[i*span, (i+1)*span)``).
        wall_time: seconds from start to the last result (on the context's clock).
        deadline_exceeded: whether the context's deadline had passed when the run ended.
    """

    items: int
    workers: int
    budget: float | None
    sent: int
    completed: int
    cancelled: int
    skipped: int
    per_worker: tuple[int, ...]
    latencies: tuple[float, ...]
    cancelled_after: tuple[float, ...]
    primes: int
    span: int
    wall_time: float
    deadline_exceeded: bool

    @property
    def unsent(self) -> int:
        """Jobs never sent because the context ended first."""
        return self.items - self.sent

    @property
    def not_started(self) -> int:
        """Jobs that never ran: skipped plus never sent."""
        return self.skipped + self.unsent

    @property
    def throughput(self) -> float:
        """Completed jobs per second of wall time (0 when no time passed)."""
        return self.completed / self.wall_time if self.wall_time > 0 else 0.0

    def latency(self, q: float) -> float | None:
        """Return the ``q``-th percentile of the completed jobs' latency, or None if none."""
        return percentile(self.latencies, q) if self.latencies else None


class _Tally:
    """The collector's running totals (owned by the collector alone)."""

    def __init__(self, items: int, workers: int) -> None:
        self.items = items
        self.counts = dict.fromkeys(_Status, 0)
        self.per_worker = [0] * workers
        self.latencies: list[float] = []
        self.cancelled_after: list[float] = []
        self.primes = 0

    def add(self, outcome: _Outcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.status is _Status.COMPLETED:
            self.per_worker[outcome.worker] += 1
            self.latencies.append(outcome.latency)
            self.primes += outcome.primes
        elif outcome.status is _Status.CANCELLED:
            self.cancelled_after.append(outcome.latency)

    def progress(self, elapsed: float) -> PipelineProgress:
        return PipelineProgress(
            items=self.items,
            completed=self.counts[_Status.COMPLETED],
            cancelled=self.counts[_Status.CANCELLED],
            skipped=self.counts[_Status.SKIPPED],
            per_worker=tuple(self.per_worker),
            elapsed=elapsed,
        )


async def run_pipeline(
    ctx: Context,
    *,
    items: int = 400,
    workers: int = 8,
    span: int = 10_000,
    latency: Latency | None = None,
    rng: random.Random | None = None,
    work: Work = fetch_and_count,
    on_progress: Callable[[PipelineProgress], object] | None = None,
) -> PipelineResult:
    """Count primes in ``items`` ranges with ``workers`` concurrent workers, under ``ctx``.

    A producer sends the jobs into a buffered channel, stopping early if ``ctx`` ends; the
    workers run each job under ``ctx.scope()``, so when ``ctx`` ends (its deadline, say)
    the jobs still running are cancelled and counted, never waited for. The caller
    collects every outcome from a results channel that is closed once the last worker is
    done. Nothing is left running when this returns.

    Args:
        ctx: bounds the run; its clock times it.
        items: how many jobs to send (>= 0).
        workers: how many workers to start (>= 1).
        span: how many integers each job covers (>= 1).
        latency: the simulated I/O latency model (default: ``Latency()``).
        rng: random source for the latencies (default: a new unseeded one).
        work: what a worker does with a job (default: :func:`fetch_and_count`).
        on_progress: called with a snapshot after each result; it must not block.

    Returns:
        The counts, latencies and totals of the run.

    Raises:
        InvalidArgumentError: an argument is out of range (the message names it).
        Exception: the first exception raised by ``work``; it ends the run at once.
    """
    for field, value, low in (("items", items, 0), ("workers", workers, 1), ("span", span, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ArgumentTypeError(field, value, f"an int >= {low}")
        if value < low:
            raise InvalidArgumentError(field, value, f"an int >= {low}")
    latency = latency if latency is not None else Latency()
    rng = rng if rng is not None else random.Random()
    clock = ctx.clock
    budget = ctx.remaining()
    run_ctx, stop = with_cancel(ctx)  # lets a failing worker stop everyone else
    jobs: Chan[Job] = Chan(workers)
    results: Chan[_Outcome] = Chan(workers)
    wg = WaitGroup()
    tally = _Tally(items, workers)
    start = clock.now()

    plan = (Job(i, i * span, (i + 1) * span, latency.draw(rng)) for i in range(items))
    producer = go(_produce, run_ctx, jobs, plan)
    crew = [wg.go(_work, run_ctx, stop, w, jobs, results, work) for w in range(workers)]
    closer = go(_close_when_done, wg, results)
    tasks: list[asyncio.Task[Any]] = [producer, *crew, closer]
    try:
        async for outcome in results:
            tally.add(outcome)
            if on_progress is not None:
                on_progress(tally.progress(clock.now() - start))
        wall_time = clock.now() - start
        deadline_exceeded = isinstance(ctx.err(), DeadlineExceededError)
        await asyncio.gather(*tasks)  # all done by now; re-raises a worker's error
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        stop()  # release run_ctx from its parent, as Go's `defer cancel()`

    return PipelineResult(
        items=items,
        workers=workers,
        budget=budget,
        sent=producer.result(),
        completed=tally.counts[_Status.COMPLETED],
        cancelled=tally.counts[_Status.CANCELLED],
        skipped=tally.counts[_Status.SKIPPED],
        per_worker=tuple(tally.per_worker),
        latencies=tuple(tally.latencies),
        cancelled_after=tuple(tally.cancelled_after),
        primes=tally.primes,
        span=span,
        wall_time=wall_time,
        deadline_exceeded=deadline_exceeded,
    )


async def _produce(ctx: Context, jobs: Chan[Job], plan: Iterator[Job]) -> int:
    """Send the planned jobs until done or until ``ctx`` ends; return how many were sent."""
    sent = 0
    try:
        for job in plan:
            index, _ = await select((jobs.send, job), ctx.done)
            if index == 1:
                break  # the context ended: send no more
            sent += 1
    finally:
        jobs.close()  # the only sender closes, which ends the workers' loops
    return sent


async def _work(
    ctx: Context,
    stop: CancelFunc,
    worker: int,
    jobs: Chan[Job],
    results: Chan[_Outcome],
    work: Work,
) -> None:
    """Run jobs until the channel is closed and drained; report each one's outcome."""
    clock = ctx.clock
    try:
        async for job in jobs:
            if ctx.err() is not None:
                # Work whose deadline has passed is not started. Draining the rest keeps
                # the counts whole: every job sent gets exactly one outcome.
                await results.send(_Outcome(job, worker, _Status.SKIPPED))
                continue
            started, primes = clock.now(), 0
            async with ctx.scope(raise_error=False) as scope:
                primes = await work(job)
            status = _Status.CANCELLED if scope.cancelled_caught else _Status.COMPLETED
            await results.send(_Outcome(job, worker, status, primes, clock.now() - started))
    except Exception as exc:
        stop(exc)  # fail fast: a broken worker ends the run instead of shrinking the pool
        raise


async def _close_when_done(wg: WaitGroup, results: Chan[_Outcome]) -> None:
    """Close ``results`` once every worker is done: the collector's loop then ends."""
    await wg.wait()
    results.close()
