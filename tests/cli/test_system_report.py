"""The demo's arithmetic on admin API readings, and its tables."""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

from rich.console import Console

from distsys.cli._load_command import LoadReport
from distsys.cli._system_report import (
    Phase,
    ReplicaRow,
    phase_line,
    read_snapshot,
    replicas_table,
    summary_table,
)


def services(*instances: tuple[str, int, int, str | None, bool]) -> dict[str, Any]:
    return {
        "services": [
            {"service": "other", "instances": [{"id": "x", "requests": 99}]},
            {
                "service": "catalog",
                "instances": [
                    {
                        "id": i,
                        "requests": r,
                        "errors": e,
                        "breaker": b,
                        "ejected": j,
                        "eligible": not j,
                    }
                    for i, r, e, b, j in instances
                ],
            },
        ]
    }


def stats(**errors: int) -> dict[str, Any]:
    return {"routes": {"catalog": {"errors": errors}, "(unmatched)": {"errors": {"x": 5}}}}


def report(scheduled: int, statuses: dict[int, int], latencies: list[float]) -> LoadReport:
    done = LoadReport(scheduled=scheduled, statuses=Counter(statuses), latencies=latencies)
    done.completed = sum(statuses.values())
    return done


def render(table: Any) -> str:
    console = Console(width=120, file=io.StringIO())
    console.print(table)
    text: str = console.file.getvalue()  # type: ignore[attr-defined]
    return text


def test_a_snapshot_reads_the_service_and_route_asked_for() -> None:
    seen = read_snapshot(
        services(("a", 10, 0, "closed", False), ("b", 4, 3, "open", True)),
        stats(connect=3),
        service="catalog",
        route="catalog",
    )
    assert set(seen.instances) == {"a", "b"}
    assert seen.instances["b"].breaker == "open"
    assert seen.instances["b"].ejected
    assert not seen.instances["b"].eligible
    assert seen.upstream_errors == Counter(connect=3)
    empty = read_snapshot({}, {}, service="catalog", route="catalog")
    assert empty.instances == {}
    assert not empty.upstream_errors


def test_a_phase_is_the_difference_of_two_readings() -> None:
    before = read_snapshot(
        services(("a", 10, 0, "closed", False), ("b", 10, 0, "closed", False)),
        stats(connect=1),
        service="catalog",
        route="catalog",
    )
    after = read_snapshot(
        services(
            ("a", 30, 0, "closed", False), ("b", 15, 5, "open", True), ("c", 7, 0, None, False)
        ),
        stats(connect=5, lost=1),
        service="catalog",
        route="catalog",
    )
    phase = Phase(2, "kill", report(40, {200: 38, 503: 1}, [0.001] * 39), before, after)
    assert phase.ok == 38
    assert phase.failed == 2  # a 503 and one that got no answer
    assert phase.retried == Counter(connect=4, lost=1)
    assert phase.attempts("a") == (20, 0)
    assert phase.attempts("b") == (5, 5)
    assert phase.attempts("c") == (7, 0)  # new during the phase
    assert phase.attempts("gone") == (0, 0)
    line = phase_line(phase)
    assert "40 sent, 38 ok, [red]2 failed[/]" in line
    assert "gateway: 5 upstream errors (connect 4, lost 1), not all retried" in line


def test_the_tables_show_each_phase_and_replica() -> None:
    quiet = read_snapshot(
        services(("a", 0, 0, None, False)), stats(), service="catalog", route="catalog"
    )
    busy = read_snapshot(
        services(("a", 50, 0, "closed", False)), stats(), service="catalog", route="catalog"
    )
    phase = Phase(1, "steady", report(50, {200: 50}, [0.002] * 50), quiet, busy)
    assert "gateway:" not in phase_line(phase)
    summary = render(summary_table([phase]))
    assert "1 steady" in summary
    assert "2.0" in summary  # p50 in ms
    rows = [ReplicaRow("replica 1", "a", "served"), ReplicaRow("replica 2", "b", "killed")]
    replicas = render(replicas_table(rows, [phase]))
    assert "replica 1" in replicas
    assert "closed" in replicas
    assert "lease expired" in replicas  # b is not in the last reading
