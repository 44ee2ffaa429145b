"""What ``distsys demo system`` measures, and the tables it prints.

A phase is one run of the load generator of ``distsys load`` through the gateway. Around
each, the demo reads the gateway's admin API: ``/services`` (per instance: attempts sent,
errors, breaker state, ejection) and ``/stats`` (per route: upstream errors by kind, each
of which the gateway retried on another instance or answered with an error). The
difference of two readings is what the phase did.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.table import Table

from distsys.cli._load_command import LoadReport, percentile

__all__ = [
    "InstanceView",
    "Phase",
    "ReplicaRow",
    "Snapshot",
    "phase_line",
    "read_snapshot",
    "replicas_table",
    "summary_table",
]


@dataclass(frozen=True)
class InstanceView:
    """One instance as the gateway sees it."""

    id: str
    requests: int
    errors: int
    breaker: str | None
    ejected: bool
    eligible: bool


@dataclass(frozen=True)
class Snapshot:
    """One reading of the gateway's admin API."""

    instances: dict[str, InstanceView]
    upstream_errors: Counter[str]


def read_snapshot(services: Any, stats: Any, *, service: str, route: str) -> Snapshot:
    """Return the snapshot in the ``/services`` and ``/stats`` documents."""
    instances: dict[str, InstanceView] = {}
    for entry in services.get("services", []):
        if entry.get("service") != service:
            continue
        for item in entry.get("instances", []):
            instances[item["id"]] = InstanceView(
                id=item["id"],
                requests=int(item.get("requests") or 0),
                errors=int(item.get("errors") or 0),
                breaker=item.get("breaker"),
                ejected=bool(item.get("ejected")),
                eligible=bool(item.get("eligible")),
            )
    errors = stats.get("routes", {}).get(route, {}).get("errors", {})
    return Snapshot(instances, Counter({kind: int(n) for kind, n in errors.items()}))


@dataclass
class Phase:
    """One phase of the demo: its load report and what the gateway did meanwhile."""

    number: int
    title: str
    report: LoadReport
    before: Snapshot
    after: Snapshot
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Requests answered 2xx."""
        return sum(n for status, n in self.report.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        """Requests the client saw fail: a non-2xx answer, or no answer."""
        return self.report.scheduled - self.ok

    @property
    def retried(self) -> Counter[str]:
        """Upstream errors by kind during the phase (retried unless the client saw them)."""
        return self.after.upstream_errors - self.before.upstream_errors

    def attempts(self, instance_id: str) -> tuple[int, int]:
        """Return the attempts sent to an instance during the phase, and how many failed."""
        now = self.after.instances.get(instance_id)
        if now is None:
            return 0, 0
        then = self.before.instances.get(instance_id)
        if then is None or then.requests > now.requests:  # new, or forgotten and made again
            return now.requests, now.errors
        return now.requests - then.requests, now.errors - then.errors


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def phase_line(phase: Phase) -> str:
    """Return the result of a phase in a line or two (rich markup)."""
    report = phase.report
    failed = phase.failed
    style = "green" if failed == 0 else "red"
    line = (
        f"{report.scheduled:,} sent, {phase.ok:,} ok, [{style}]{failed:,} failed[/]; "
        f"p50 {_ms(percentile(report.latencies, 0.5))}, "
        f"p99 {_ms(percentile(report.latencies, 0.99))}"
    )
    retried = phase.retried
    if retried:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(retried.items()))
        fate = "each retried elsewhere" if failed == 0 else "not all retried"
        total = retried.total()
        errors = "error" if total == 1 else "errors"
        line += f"\n  gateway: {total:,} upstream {errors} ({kinds}), {fate}"
    return line


def summary_table(phases: list[Phase]) -> Table:
    """Return the table of the phases: requests, failures, gateway retries, latency."""
    table = Table(
        title="system summary",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("phase")
    for column in ("sent", "ok", "failed", "upstream\nerrors"):
        table.add_column(column, justify="right")
    for column in ("p50", "p90", "p99", "max"):
        table.add_column(f"{column}\nms", justify="right")
    for phase in phases:
        report, ordered = phase.report, phase.report.latencies
        failed = f"[{'green' if phase.failed == 0 else 'red'}]{phase.failed:,}[/]"
        table.add_row(
            f"{phase.number} {phase.title}",
            f"{report.scheduled:,}",
            f"{phase.ok:,}",
            failed,
            f"{phase.retried.total():,}",
            *(f"{percentile(ordered, share) * 1000:.1f}" for share in (0.5, 0.9, 0.99, 1.0)),
        )
    return table


@dataclass(frozen=True)
class ReplicaRow:
    """A replica for the replicas table."""

    label: str
    instance_id: str
    fate: str


def replicas_table(replicas: list[ReplicaRow], phases: list[Phase]) -> Table:
    """Return the attempts the gateway sent to each replica in each phase."""
    table = Table(
        title="attempts sent to each replica, by phase (failed in red)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("replica")
    for phase in phases:
        table.add_column(str(phase.number), justify="right")
    table.add_column("breaker")
    table.add_column("fate")
    last = phases[-1].after.instances if phases else {}
    for replica in replicas:
        cells = []
        for phase in phases:
            sent, failed = phase.attempts(replica.instance_id)
            cell = f"{sent:,}" if sent else "-"
            if failed:
                cell += f" [red]({failed:,})[/]"
            cells.append(cell)
        view = last.get(replica.instance_id)
        if view is None:
            breaker = "lease expired"
        else:
            breaker = view.breaker or "not used yet"
            if view.ejected:
                breaker += ", ejected"
        table.add_row(
            replica.label,
            *cells,
            breaker,
            replica.fate,
        )
    return table
