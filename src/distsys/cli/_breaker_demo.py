"""``distsys demo breaker``: a flaky dependency behind a CircuitBreaker, as it happens.

A fake service answers calls that arrive at a steady rate. It is healthy, then fails
(most calls hang until the caller's timeout), then recovers. Every call goes through one
:class:`~distsys.resilience.CircuitBreaker`: watch it open, fail calls fast, probe the
service with half-open trial calls, and close once the service is back.

The run is a discrete-event simulation on a :class:`~distsys.testing.ManualClock`, so the
breaker sees exactly the simulated times and a seed fixes every outcome; only the
fail-fast latency is real (``perf_counter`` around the rejected ``allow()``). ``--pace``
plays it back in real time: a live view on a terminal, a line per event otherwise.
"""

from __future__ import annotations

import heapq
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from distsys.errors import BreakerOpenError
from distsys.resilience import BreakerState, CircuitBreaker, Permit, StateChange, TimeWindow
from distsys.testing import ManualClock

__all__ = ["breaker", "simulate"]

_STYLE = {
    BreakerState.CLOSED: "green",
    BreakerState.OPEN: "red",
    BreakerState.HALF_OPEN: "yellow",
}
_MARK = {BreakerState.CLOSED: "▁", BreakerState.HALF_OPEN: "▄", BreakerState.OPEN: "█"}
_STRIP = 60  # characters of the state timeline
_FRAME = 0.1  # simulated seconds between two looks at the run


def failure_probability(t: float, seconds: float) -> tuple[str, float]:
    """Return the service's phase and chance of failing a call at simulated time ``t``."""
    if t < 0.25 * seconds:
        return "healthy", 0.02
    if t < 0.55 * seconds:
        return "failing", 0.95
    healed = min((t - 0.55 * seconds) / (0.25 * seconds), 1.0)
    return "recovering", 0.02 + 0.6 * (1.0 - healed)


@dataclass
class Tally:
    """Counts of a run so far."""

    attempted: int = 0
    succeeded: int = 0
    errors: int = 0  # failed fast with an error from the service
    timed_out: int = 0  # hung until the caller's timeout
    rejected: int = 0  # failed fast by the breaker
    in_flight: int = 0
    trials: int = 0  # admitted while half-open
    trials_ok: int = 0
    would_time_out: int = 0  # rejected calls the failing service would have hung
    reject_ns: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """What the run looks like at one simulated instant."""

    now: float
    seconds: float
    phase: str
    p_fail: float
    state: BreakerState
    tally: Tally
    window_calls: int
    window_failure_rate: float
    retry_after: float | None
    strip: str
    changes: tuple[StateChange, ...]  # the last few
    transitions: int  # how many so far


@dataclass(frozen=True)
class DemoResult:
    """The outcome of a run."""

    seconds: float
    rate: float
    timeout: float
    seed: int
    tally: Tally
    changes: tuple[StateChange, ...]
    time_in: dict[BreakerState, float]
    strip: str


def simulate(
    *,
    seconds: float = 40.0,
    rate: float = 50.0,
    timeout: float = 1.0,
    seed: int = 7,
    on_frame: Callable[[Snapshot], object] | None = None,
) -> DemoResult:
    """Run the scenario; call ``on_frame`` every 0.1 simulated seconds."""
    rng = random.Random(seed)
    clock = ManualClock()
    changes: list[StateChange] = []
    state = [BreakerState.CLOSED]

    def heard(change: StateChange) -> None:
        changes.append(change)
        state[0] = change.new

    breaker = CircuitBreaker(
        "inventory",
        window=TimeWindow(5.0, 10),
        minimum_calls=20,
        wait_duration=2.0,
        wait_multiplier=2.0,
        max_wait_duration=8.0,
        half_open_max_calls=3,
        automatic_half_open=True,
        listeners=[heard],
        clock=clock,
    )
    tally = Tally()
    marks: list[BreakerState] = []  # the worst state of each frame
    events: list[tuple[float, int, Permit | None, Exception | None, bool]] = []
    seq = 0
    for i in range(int(seconds * rate)):  # arrivals, evenly spaced
        events.append((i / rate, seq, None, None, False))
        seq += 1
    heapq.heapify(events)
    next_frame = 0.0

    def snapshot(now: float) -> Snapshot:
        phase, p_fail = failure_probability(now, seconds)
        stats = breaker.statistics()
        return Snapshot(
            now,
            seconds,
            phase,
            p_fail,
            state[0],
            replace(tally, reject_ns=[]),
            stats.calls,
            stats.failure_rate,
            stats.retry_after,
            _strip(marks, seconds),
            tuple(changes[-6:]),
            len(changes),
        )

    while events:
        at, _, permit, error, trial = heapq.heappop(events)
        while next_frame <= at:  # frames due before this event
            clock.advance(max(next_frame - clock.now(), 0.0))
            marks.append(_worst(changes, next_frame - _FRAME, state[0]))
            if on_frame is not None:
                on_frame(snapshot(next_frame))
            next_frame += _FRAME
        clock.advance(max(at - clock.now(), 0.0))
        if permit is not None:  # a call completes
            tally.in_flight -= 1
            if error is None:
                permit.success()
                tally.succeeded += 1
                tally.trials_ok += trial
            else:
                permit.failure(error)
                if isinstance(error, TimeoutError):
                    tally.timed_out += 1
                else:
                    tally.errors += 1
            continue
        tally.attempted += 1  # a call arrives; the service's answer is drawn either way
        _, p_fail = failure_probability(at, seconds)
        fails = rng.random() < p_fail
        hangs = fails and rng.random() < 0.85
        latency = timeout if hangs else rng.lognormvariate(-4.0, 0.5)  # ~20 ms
        trial = state[0] is BreakerState.HALF_OPEN
        started = time.perf_counter_ns()
        try:
            permit = breaker.allow()
        except BreakerOpenError:
            tally.reject_ns.append(time.perf_counter_ns() - started)
            tally.rejected += 1
            tally.would_time_out += hangs
            continue
        tally.in_flight += 1
        tally.trials += trial
        if hangs:
            error = TimeoutError(f"no answer within {timeout:g} s")
        elif fails:
            error = ConnectionError("503 Service Unavailable")
        heapq.heappush(events, (at + min(latency, timeout), seq, permit, error, trial))
        seq += 1
    marks.append(_worst(changes, next_frame - _FRAME, state[0]))
    if on_frame is not None:
        on_frame(snapshot(clock.now()))
    return DemoResult(
        seconds,
        rate,
        timeout,
        seed,
        tally,
        tuple(changes),
        _time_in(tuple(changes), clock.now()),
        _strip(marks, seconds),
    )


def _worst(changes: list[StateChange], since: float, now: BreakerState) -> BreakerState:
    """The most severe state the breaker was in since ``since``: open > half-open > closed."""
    seen = {now}
    for change in reversed(changes):
        if change.at < since:
            break
        seen.update((change.old, change.new))
    return _most(seen)


def _most(states: set[BreakerState] | list[BreakerState]) -> BreakerState:
    for candidate in (BreakerState.OPEN, BreakerState.HALF_OPEN):
        if candidate in states:
            return candidate
    return BreakerState.CLOSED


def _strip(marks: list[BreakerState], seconds: float) -> str:
    """The timeline so far: ``_STRIP`` characters for the whole run, each the worst state
    of its slice of frames."""
    total = round(seconds / _FRAME) + 1
    out = []
    for slot in range(_STRIP):
        lo = slot * total // _STRIP
        hi = max((slot + 1) * total // _STRIP, lo + 1)
        if lo >= len(marks):
            break
        out.append(_MARK[_most(marks[lo:hi])])
    return "".join(out)


def _time_in(changes: tuple[StateChange, ...], end: float) -> dict[BreakerState, float]:
    spent = dict.fromkeys(_STYLE, 0.0)
    state, since = BreakerState.CLOSED, 0.0
    for change in changes:
        spent[state] = spent.get(state, 0.0) + change.at - since
        state, since = change.new, change.at
    spent[state] = spent.get(state, 0.0) + end - since
    return spent


# ----------------------------------------------------------------------------- display


def _styled_strip(strip: str) -> Text:
    text = Text()
    colours = {mark: _STYLE[state] for state, mark in _MARK.items()}
    for mark in strip:
        text.append(mark, style=colours[mark])
    return text


def _transition_line(change: StateChange) -> Text:
    return Text.assemble(
        (f"t={change.at:6.2f}s  ", "dim"),
        (str(change.old), _STYLE.get(change.old, "")),
        " → ",
        (str(change.new), f"bold {_STYLE.get(change.new, '')}"),
        f"  {change.reason}",
    )


def _view(snap: Snapshot) -> RenderableType:
    t = snap.tally
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    grid.add_row("time", f"{snap.now:5.1f} / {snap.seconds:g} s (simulated)")
    grid.add_row("service", f"{snap.phase}: fails {snap.p_fail:.0%} of calls")
    wait = "" if snap.retry_after is None else f" (half-open in {snap.retry_after:.1f} s)"
    grid.add_row("breaker", Text.assemble((str(snap.state), f"bold {_STYLE[snap.state]}"), wait))
    grid.add_row("window", f"{snap.window_calls} calls, {snap.window_failure_rate:.0%} failed")
    grid.add_row(
        "calls",
        f"{t.attempted:,} attempted · {t.succeeded:,} ok · {t.errors:,} errors · "
        f"{t.timed_out:,} timed out · {t.rejected:,} rejected fast · {t.in_flight} running",
    )
    grid.add_row("trials", f"{t.trials} while half-open, {t.trials_ok} succeeded")
    grid.add_row("timeline", _styled_strip(snap.strip))
    lines = [_transition_line(c) for c in snap.changes] or [Text("no transition yet", "dim")]
    return Panel(Group(grid, Text(), *lines), title="distsys demo breaker", expand=False)


class _Player:
    """Shows each frame (live view or printed lines) at ``pace`` real s per simulated s."""

    def __init__(self, console: Console, pace: float, live: Live | None) -> None:
        self._console = console
        self._pace = pace
        self._live = live
        self._printed = 0  # transitions printed so far
        self._phase = ""

    def __call__(self, snap: Snapshot) -> None:
        if self._live is not None:
            self._live.update(_view(snap))
        else:
            if snap.phase != self._phase:
                self._phase = snap.phase
                self._console.print(
                    f"t={snap.now:6.2f}s  the service is {snap.phase}: "
                    f"it fails {snap.p_fail:.0%} of calls"
                )
            fresh = min(snap.transitions - self._printed, len(snap.changes))
            for change in snap.changes[len(snap.changes) - fresh :]:
                self._console.print(_transition_line(change))
            self._printed = snap.transitions
        if self._pace > 0:
            time.sleep(self._pace * _FRAME)


def summary_table(result: DemoResult) -> Table:
    """Return the summary of a run as a two-column table."""
    t = result.tally
    table = Table(title="breaker summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row(
        "simulated",
        f"{result.seconds:g} s at {result.rate:g} calls/s, timeout {result.timeout:g} s "
        f"(seed {result.seed})",
    )
    table.add_row("calls attempted", f"{t.attempted:,}")
    table.add_row("  succeeded", f"{t.succeeded:,}")
    table.add_row("  failed with an error", f"{t.errors:,}")
    table.add_row("  timed out", f"{t.timed_out:,}")
    table.add_row("  rejected fast by the breaker", f"{t.rejected:,}")
    table.add_row("trial calls while half-open", f"{t.trials:,} ({t.trials_ok:,} succeeded)")
    opened = sum(c.new is BreakerState.OPEN for c in result.changes)
    table.add_row("times opened", f"{opened:,}")
    spent = result.time_in
    table.add_row(
        "time closed / open / half-open",
        " / ".join(f"{spent[s]:.1f} s" for s in _STYLE),
    )
    if t.reject_ns:
        median = statistics.median(t.reject_ns) / 1000
        table.add_row(
            "fail-fast latency (median, real)",
            f"{median:,.1f} µs vs a {result.timeout * 1000:,.0f} ms timeout",
        )
        table.add_row(
            "waiting avoided",
            f"{t.would_time_out * result.timeout:,.1f} s "
            f"({t.would_time_out:,} rejected calls would have timed out)",
        )
    return table


def explain(result: DemoResult) -> str:
    """Return a sentence or two saying what happened."""
    t = result.tally
    opened = sum(c.new is BreakerState.OPEN for c in result.changes)
    if not opened:
        return "The breaker never opened: the service never failed often enough."
    last = result.changes[-1]
    ending = (
        f"it closed for good at t={last.at:.1f} s after its trial calls succeeded"
        if last.new is BreakerState.CLOSED
        else f"it ended {last.new}"
    )
    return (
        f"The breaker opened {opened} time{'s' if opened > 1 else ''} while the service was "
        f"failing, and failed {t.rejected:,} calls fast instead of letting them hang for "
        f"{result.timeout:g} s; {ending}."
    )


@click.command()
@click.option(
    "--seconds",
    type=click.FloatRange(1, 3_600),
    default=40.0,
    show_default=True,
    help="Simulated seconds of traffic (healthy, then failing, then recovering).",
)
@click.option(
    "--rate",
    type=click.FloatRange(1, 10_000),
    default=50.0,
    show_default=True,
    help="Calls per simulated second.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.01, 60),
    default=1.0,
    show_default=True,
    help="Seconds a call to the failing service hangs before it times out.",
)
@click.option(
    "--pace",
    type=click.FloatRange(0, 10),
    default=0.1,
    show_default=True,
    help="Real seconds per simulated second (0: as fast as possible).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the outcomes.")
def breaker(seconds: float, rate: float, timeout: float, pace: float, seed: int) -> None:
    """Call a flaky service through a circuit breaker and watch it open and recover.

    The service is healthy for the first quarter of the run, then fails 95% of calls
    (most of them hang until the timeout), then recovers. The breaker opens, rejects
    calls in microseconds instead of letting them hang, lets three trial calls through
    after each wait (2 s, then 4 s, then 8 s), and closes once they succeed.
    """
    console = Console()
    console.rule(Text.from_markup("[bold]breaker[/]: a flaky dependency behind a circuit breaker"))
    # A live view on an interactive terminal; piped or captured output gets lines.
    if console.is_interactive:
        with Live(console=console, refresh_per_second=12, transient=True) as live:
            player = _Player(console, pace, live)
            result = simulate(
                seconds=seconds, rate=rate, timeout=timeout, seed=seed, on_frame=player
            )
    else:
        player = _Player(console, pace, None)
        result = simulate(seconds=seconds, rate=rate, timeout=timeout, seed=seed, on_frame=player)
    console.print(Text.assemble("timeline  ", _styled_strip(result.strip)))
    console.print(summary_table(result))
    console.print(explain(result))
