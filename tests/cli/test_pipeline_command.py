"""``distsys demo pipeline``: options, the summary, and the live view."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from distsys.cli import main
from distsys.cli._pipeline import PipelineProgress, PipelineResult
from distsys.cli._pipeline_command import _LiveView, explain, summary_table
from distsys.testing import ManualClock

# Pin rich's terminal detection: CI may set FORCE_COLOR or TTY_COMPATIBLE.
PIPED = {"FORCE_COLOR": None, "TTY_COMPATIBLE": "0", "TTY_INTERACTIVE": None, "COLUMNS": "100"}
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm", "COLUMNS": "100"}


def row(output: str, label: str) -> int:
    """Return the number in the summary row called ``label``."""
    match = re.search(rf"{re.escape(label)}\s*│\s*([\d,]+)", output)
    assert match is not None, f"no {label!r} row in:\n{output}"
    return int(match.group(1).replace(",", ""))


def make_result(**changes: object) -> PipelineResult:
    fields: dict[str, object] = {
        "items": 10,
        "workers": 2,
        "budget": 3.0,
        "sent": 10,
        "completed": 10,
        "cancelled": 0,
        "skipped": 0,
        "per_worker": (6, 4),
        "latencies": tuple(0.01 * i for i in range(1, 11)),
        "cancelled_after": (),
        "primes": 4,
        "span": 1,
        "wall_time": 0.5,
        "deadline_exceeded": False,
    }
    fields.update(changes)
    return PipelineResult(**fields)  # type: ignore[arg-type]


def render(renderable: object) -> str:
    console = Console(width=100, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    with console.file:
        console.print(renderable)
    return console.export_text()


def test_prints_a_summary_whose_counts_add_up() -> None:
    result = CliRunner().invoke(
        main,
        ["demo", "pipeline", "--items", "40", "--workers", "4", "--deadline", "0.5", "--seed", "1"],
        env=PIPED,
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "pipeline summary" in out
    assert "job latency p50 / p99 / max" in out or row(out, "completed") == 0
    assert "\x1b[" not in out  # no escape codes and no redraws when not on a terminal
    assert row(out, "jobs") == 40
    done, cancelled, never = (
        row(out, label) for label in ("completed", "cancelled by the deadline", "never started")
    )
    assert done + cancelled + never == 40
    assert ("All 40 jobs completed" in out) == (done == 40)


def test_live_view_on_a_terminal_ends_with_the_summary() -> None:
    args = ["demo", "pipeline", "--items", "20", "--workers", "2", "--deadline", "0.5"]
    result = CliRunner().invoke(main, args, env=TERMINAL)
    assert result.exit_code == 0, result.output
    assert "distsys demo pipeline" in result.output  # the live panel was drawn
    assert "pipeline summary" in result.output


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("--workers", "0", "1<=x<=1000"),
        ("--items", "0", "1<=x<=100000"),
        ("--deadline", "0", "0<x<=3600"),
        ("--deadline", "soon", "not a valid float"),
        ("--seed", "x", "not a valid integer"),
    ],
)
def test_refuses_invalid_options_naming_them(option: str, value: str, accepted: str) -> None:
    result = CliRunner().invoke(main, ["demo", "pipeline", option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output
    assert accepted in result.output


def test_summary_table_shows_every_number() -> None:
    text = render(summary_table(make_result(completed=8, cancelled=1, skipped=1, sent=10)))
    assert row(text, "completed") == 8
    assert row(text, "cancelled by the deadline") == 1
    assert row(text, "never started") == 1
    assert "50.0 ms / 100.0 ms / 100.0 ms" in text  # p50 / p99 / max of 10..100 ms
    assert "16 jobs/s" in text  # 8 completed in 0.5 s
    assert "(deadline 3.00 s)" in text


def test_summary_table_without_completed_jobs_has_no_latency_row() -> None:
    text = render(summary_table(make_result(completed=0, per_worker=(0, 0), latencies=())))
    assert "latency" not in text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "All 10 jobs completed in 500.0 ms: no straggler outlived the deadline."),
        (
            {"completed": 8, "cancelled": 2, "cancelled_after": (1.5, 2.25)},
            "The 3.00 s deadline cancelled 2 stragglers (running for 1.50 s to 2.25 s), "
            "while 8 completed.",
        ),
        (
            {"completed": 9, "cancelled": 1, "cancelled_after": (2.0,), "budget": None},
            "The deadline cancelled 1 straggler (running for 2.00 s), while 9 completed.",
        ),
        (  # the cancelled job had run no longer than p99 of the completed: not a straggler
            {"completed": 9, "cancelled": 1, "cancelled_after": (0.05,)},
            "cancelled 1 job (running for 50.0 ms), while 9 completed.",
        ),
        (
            {"completed": 7, "cancelled": 0, "sent": 7},
            "The 3.00 s deadline passed; 3 jobs never started, while 7 completed.",
        ),
    ],
)
def test_explain_says_what_happened(changes: dict[str, object], expected: str) -> None:
    assert expected in explain(make_result(**changes))


def test_live_view_renders_the_latest_snapshot() -> None:
    clock = ManualClock()
    view = _LiveView(400, 3, 2.0, clock=clock)
    view.update(PipelineProgress(400, 120, 1, 0, (50, 40, 30), 0.5))
    clock.advance(1.5)
    text = render(view())
    assert "120/400 completed · 1 cancelled · 240 jobs/s" in text
    assert "1.5 of 2 s" in text
    assert re.search(r"worker 2 .* 30", text)


def test_live_view_summarises_many_workers() -> None:
    view = _LiveView(100, 40, 1.0, clock=ManualClock())
    view.update(PipelineProgress(100, 50, 0, 0, (1,) * 39 + (11,), 0.5))
    text = render(view())
    assert "jobs each: min 1, max 11" in text
    assert "worker 0" not in text
