"""``distsys demo pipeline``: run the fan-out/fan-in pipeline and show what happened.

The engine is :func:`distsys.cli._pipeline.run_pipeline`; this module only turns its
progress snapshots into a live view (on a terminal) and its result into a summary.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import click
from rich.console import Console, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from distsys.cli._pipeline import PipelineProgress, PipelineResult, percentile, run_pipeline
from distsys.clock import Clock, MonotonicClock
from distsys.context import background, with_timeout

__all__ = ["pipeline"]

_MAX_WORKER_ROWS = 16  # beyond this, per-worker counts are summarised
_BAR = 40  # characters per progress bar


@click.command()
@click.option(
    "--items",
    type=click.IntRange(1, 100_000),
    default=400,
    show_default=True,
    help="Jobs to send; job i counts the primes in [i*10000, (i+1)*10000).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1_000),
    default=8,
    show_default=True,
    help="Workers receiving jobs concurrently.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(0, 3_600, min_open=True),
    default=3.0,
    show_default=True,
    help="Seconds the whole run may take; jobs still running then are cancelled.",
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Seed of the simulated I/O latencies (which jobs are stragglers).",
)
def pipeline(items: int, workers: int, deadline: float, seed: int) -> None:
    """Fan jobs out to workers and their results back in, under a deadline.

    A producer sends jobs into a buffered channel; the workers count the primes in each
    job's range after a simulated I/O wait drawn from a heavy-tailed distribution, so a
    few jobs are stragglers; a collector adds up the results. When the deadline passes,
    the stragglers still running are cancelled and the run ends on time.
    """
    console = Console()
    console.rule(Text.from_markup("[bold]pipeline[/]: fan-out / fan-in under a deadline"))
    # Redraw only on an interactive terminal; piped or captured output gets the summary.
    view = _LiveView(items, workers, deadline) if console.is_interactive else None
    run = _run(items, workers, deadline, seed, view.update if view is not None else None)
    if view is None:
        result = asyncio.run(run)
    else:
        with view.show(console):
            result = asyncio.run(run)
    console.print(summary_table(result))
    console.print(explain(result))


async def _run(
    items: int,
    workers: int,
    deadline: float,
    seed: int,
    on_progress: Callable[[PipelineProgress], object] | None,
) -> PipelineResult:
    ctx, cancel = with_timeout(background(), deadline)
    try:
        return await run_pipeline(
            ctx, items=items, workers=workers, rng=random.Random(seed), on_progress=on_progress
        )
    finally:
        cancel()


class _LiveView:
    """The live display: a renderable rebuilt from the latest snapshot at each refresh.

    ``update`` runs on the event loop's thread and ``__call__`` on rich's refresh thread;
    they share one reference to an immutable snapshot, so no lock is needed.
    """

    def __init__(self, items: int, workers: int, deadline: float, clock: Clock | None = None):
        self._deadline = deadline
        self._clock = clock if clock is not None else MonotonicClock()
        self._start = self._clock.now()
        self._progress = PipelineProgress(items, 0, 0, 0, (0,) * workers, 0.0)

    def update(self, progress: PipelineProgress) -> None:
        self._progress = progress

    def show(self, console: Console) -> Live:
        self._start = self._clock.now()
        return Live(console=console, get_renderable=self, refresh_per_second=12, transient=True)

    def __call__(self) -> RenderableType:
        p = self._progress
        elapsed = min(self._clock.now() - self._start, self._deadline)
        rate = p.completed / p.elapsed if p.elapsed > 0 else 0.0
        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="right", style="bold")
        grid.add_column()
        grid.add_column()
        grid.add_row(
            "jobs",
            ProgressBar(total=p.items, completed=p.completed + p.cancelled + p.skipped, width=_BAR),
            f"{p.completed}/{p.items} completed · {p.cancelled} cancelled · {rate:,.0f} jobs/s",
        )
        grid.add_row(
            "deadline",
            ProgressBar(total=self._deadline, completed=elapsed, width=_BAR),
            f"{elapsed:.1f} of {self._deadline:g} s",
        )
        counts = p.per_worker
        if len(counts) <= _MAX_WORKER_ROWS:
            most = max(max(counts), 1)
            for w, count in enumerate(counts):
                grid.add_row(
                    f"worker {w}", ProgressBar(total=most, completed=count, width=_BAR), str(count)
                )
        else:
            grid.add_row("workers", "", _spread(counts))
        return Panel(grid, title="distsys demo pipeline", expand=False)


def summary_table(result: PipelineResult) -> Table:
    """Return the summary of a run as a two-column table."""
    table = Table(title="pipeline summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("jobs", f"{result.items:,}")
    table.add_row("sent to workers", f"{result.sent:,}")
    table.add_row("completed", f"{result.completed:,}")
    table.add_row("cancelled by the deadline", f"{result.cancelled:,}")
    table.add_row("never started", f"{result.not_started:,}")
    table.add_row("workers", f"{result.workers} ({_spread(result.per_worker)})")
    budget = "" if result.budget is None else f" (deadline {result.budget:.2f} s)"
    table.add_row("wall time", f"{_duration(result.wall_time)}{budget}")
    table.add_row("throughput", f"{result.throughput:,.0f} jobs/s")
    if result.latencies:
        quantiles = (percentile(result.latencies, q) for q in (50, 99, 100))
        table.add_row("job latency p50 / p99 / max", " / ".join(map(_duration, quantiles)))
    upper = result.items * result.span
    table.add_row(
        "primes counted",
        f"{result.primes:,} in {result.completed:,} of {result.items:,} ranges below {upper:,}",
    )
    return table


def explain(result: PipelineResult) -> str:
    """Return a sentence or two saying what happened in the run."""
    if result.completed == result.items:
        return (
            f"All {result.items:,} jobs completed in {_duration(result.wall_time)}: "
            "no straggler outlived the deadline."
        )
    deadline = "The deadline" if result.budget is None else f"The {result.budget:.2f} s deadline"
    if result.cancelled:
        shortest, longest = min(result.cancelled_after), max(result.cancelled_after)
        ran = _duration(longest)
        if shortest < longest:
            ran = f"{_duration(shortest)} to {ran}"
        p99 = result.latency(99)
        # A straggler had already run longer than 99% of the completed jobs took.
        noun = "straggler" if p99 is not None and shortest > p99 else "job"
        what = f"{deadline} cancelled {_plural(result.cancelled, noun)} (running for {ran})"
    else:
        what = f"{deadline} passed"
    if result.not_started:
        what += f"; {_plural(result.not_started, 'job')} never started"
    return (
        f"{what}, while {result.completed:,} completed. The run ended on time: every "
        "channel was closed and every worker returned."
    )


def _spread(counts: tuple[int, ...]) -> str:
    if len(counts) <= _MAX_WORKER_ROWS:
        return "jobs each: " + " ".join(str(c) for c in counts)
    return f"jobs each: min {min(counts)}, max {max(counts)}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
