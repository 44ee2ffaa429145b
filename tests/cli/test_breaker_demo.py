"""``distsys demo breaker``: the simulation, its summary, the live view and the line log."""

from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from distsys.cli import main
from distsys.cli._breaker_demo import (
    DemoResult,
    Snapshot,
    Tally,
    explain,
    failure_probability,
    simulate,
    summary_table,
)
from distsys.resilience import BreakerState

# Pin rich's terminal detection: CI may set FORCE_COLOR or TTY_COMPATIBLE.
PIPED = {"FORCE_COLOR": None, "TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": None, "COLUMNS": "100"}
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm", "COLUMNS": "100"}
SMALL = ["--seconds", "12", "--rate", "30", "--pace", "0", "--seed", "3"]


def row(output: str, label: str) -> int:
    """Return the first number in the summary row called ``label``."""
    match = re.search(rf"{re.escape(label)}\s*│\s*([\d,]+)", output)
    assert match is not None, f"no {label!r} row in:\n{output}"
    return int(match.group(1).replace(",", ""))


def test_prints_events_and_a_summary_whose_counts_add_up() -> None:
    result = CliRunner().invoke(main, ["demo", "breaker", *SMALL], env=PIPED)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\x1b[" not in out  # no escape codes and no redraws when not on a terminal
    assert "the service is failing" in out
    assert "closed → open" in out
    assert "breaker summary" in out
    attempted = row(out, "calls attempted")
    assert attempted == 12 * 30
    parts = ["succeeded", "failed with an error", "timed out", "rejected fast by the breaker"]
    assert sum(row(out, label) for label in parts) == attempted
    assert row(out, "rejected fast by the breaker") > 0
    assert row(out, "times opened") == out.count("→ open")
    assert "fail-fast latency (median, real)" in out


def test_live_view_on_a_terminal_ends_with_the_summary() -> None:
    result = CliRunner().invoke(main, ["demo", "breaker", *SMALL], env=TERMINAL)
    assert result.exit_code == 0, result.output
    assert "distsys demo breaker" in result.output  # the live panel was drawn
    assert "breaker summary" in result.output


def test_the_same_seed_plays_the_same_run() -> None:
    def counts(result: DemoResult) -> tuple[object, ...]:
        tally = dataclasses.replace(result.tally, reject_ns=[])  # real time: varies
        return tally, result.changes, result.strip

    first = simulate(seconds=10, rate=40, seed=11)
    assert counts(first) == counts(simulate(seconds=10, rate=40, seed=11))
    assert counts(first) != counts(simulate(seconds=10, rate=40, seed=12))


def test_the_story_healthy_failing_open_probe_recover() -> None:
    result = simulate(seconds=40, rate=50, seed=7)
    t = result.tally
    assert t.attempted == t.succeeded + t.errors + t.timed_out + t.rejected
    assert t.in_flight == 0
    assert len(t.reject_ns) == t.rejected
    states = [c.new for c in result.changes]
    assert states[0] is BreakerState.OPEN
    assert states[-1] is BreakerState.CLOSED  # recovered by the end
    assert BreakerState.HALF_OPEN in states
    first_open = result.changes[0].at
    assert 0.25 * 40 < first_open < 0.55 * 40  # it opened while the service was failing
    waits = [
        b.at - a.at
        for a, b in zip(result.changes, result.changes[1:], strict=False)
        if a.new is BreakerState.OPEN
    ]
    assert waits[:3] == pytest.approx([2.0, 4.0, 8.0])  # growing waits
    assert sum(result.time_in.values()) == pytest.approx(40, abs=1.5)
    assert set(result.strip) <= {"▁", "▄", "█"}
    assert len(result.strip) == 60


def test_frames_come_in_time_order_and_end_with_the_totals() -> None:
    frames: list[Snapshot] = []
    result = simulate(seconds=5, rate=20, seed=1, on_frame=frames.append)
    times = [f.now for f in frames]
    assert times == sorted(times)
    assert len(frames) >= 5 / 0.1
    assert frames[-1].tally.attempted == result.tally.attempted
    assert frames[-1].transitions == len(result.changes)


def test_pace_plays_the_run_back_in_real_time(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("distsys.cli._breaker_demo.time.sleep", slept.append)
    args = ["demo", "breaker", "--seconds", "2", "--rate", "10", "--pace", "0.5"]
    result = CliRunner().invoke(main, args, env=PIPED)
    assert result.exit_code == 0, result.output
    assert slept
    assert slept == [pytest.approx(0.05)] * len(slept)  # 0.5 s per simulated s, 0.1 s frames


def test_failure_probability_follows_the_phases() -> None:
    assert failure_probability(0, 40) == ("healthy", 0.02)
    assert failure_probability(15, 40) == ("failing", 0.95)
    phase, p = failure_probability(22, 40)
    assert (phase, p) == ("recovering", pytest.approx(0.62))
    assert failure_probability(39, 40) == ("recovering", pytest.approx(0.02))


def test_explain_a_run_that_never_opened() -> None:
    quiet = DemoResult(10, 5, 1, 0, Tally(attempted=50, succeeded=50), (), {}, "")
    assert "never opened" in explain(quiet)


def test_summary_without_rejections_has_no_latency_row() -> None:
    quiet = DemoResult(
        10, 5, 1, 0, Tally(attempted=50, succeeded=50), (), dict.fromkeys(BreakerState, 0.0), ""
    )
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    with console.file:
        console.print(summary_table(quiet))
    text = console.export_text()
    assert row(text, "calls attempted") == 50
    assert "fail-fast latency" not in text


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("--seconds", "0", "1<=x<=3600"),
        ("--rate", "0", "1<=x<=10000"),
        ("--timeout", "0", "0.01<=x<=60"),
        ("--pace", "-1", "0<=x<=10"),
        ("--seed", "x", "not a valid integer"),
    ],
)
def test_refuses_invalid_options_naming_them(option: str, value: str, accepted: str) -> None:
    result = CliRunner().invoke(main, ["demo", "breaker", option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    assert accepted in result.output
