"""Progress of running jobs: a listener interface, and a rich display for terminals.

Importing this module does not import rich; :class:`RichProgress` imports it when
created, so the library stays light when no terminal is watching.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, runtime_checkable

from distsys.dataflow._metrics import JobStatistics, StageStatistics, TaskMetrics

__all__ = ["NullProgress", "ProgressListener", "RichProgress", "make_listener"]


@runtime_checkable
class ProgressListener(Protocol):
    """Receives the progress of jobs, on the driver's thread, as it happens."""

    def job_started(self, job: int, action: str) -> None:
        """A job started."""

    def stage_started(self, stage: int, name: str, tasks: int) -> None:
        """A stage's tasks became runnable (``stage`` is its number within the job)."""

    def task_ended(self, stage: int, metrics: TaskMetrics | None) -> None:
        """A task ended: ``metrics`` if it succeeded, None if the attempt failed."""

    def stage_ended(self, statistics: StageStatistics) -> None:
        """Every task of a stage succeeded."""

    def job_ended(self, statistics: JobStatistics | None) -> None:
        """The job ended: its statistics, or None if it failed."""


class NullProgress:
    """A listener that ignores everything."""

    def job_started(self, job: int, action: str) -> None:
        pass

    def stage_started(self, stage: int, name: str, tasks: int) -> None:
        pass

    def task_ended(self, stage: int, metrics: TaskMetrics | None) -> None:
        pass

    def stage_ended(self, statistics: StageStatistics) -> None:
        pass

    def job_ended(self, statistics: JobStatistics | None) -> None:
        pass


class RichProgress:
    """One progress bar per stage on standard error (or ``console``), removed at the end.

    Args:
        console: a ``rich.console.Console``; default: a new one on standard error.
    """

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console if console is not None else Console(stderr=True)
        self._columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("tasks · {task.fields[records]:,} records out{task.fields[retries]}"),
            TimeElapsedColumn(),
        )
        self._progress_type = Progress
        self._progress: Any = None
        self._tasks: dict[int, Any] = {}
        self._records: dict[int, int] = {}
        self._retries: dict[int, int] = {}

    def job_started(self, job: int, action: str) -> None:
        self._progress = self._progress_type(
            *self._columns, console=self._console, transient=True, refresh_per_second=8
        )
        self._progress.start()
        self._tasks.clear()

    def stage_started(self, stage: int, name: str, tasks: int) -> None:
        self._records[stage] = 0
        self._retries[stage] = 0
        self._tasks[stage] = self._progress.add_task(
            f"stage {stage}: {name}", total=max(tasks, 1), records=0, retries=""
        )

    def task_ended(self, stage: int, metrics: TaskMetrics | None) -> None:
        task = self._tasks[stage]
        if metrics is None:
            self._retries[stage] += 1
            self._progress.update(task, retries=f" · {self._retries[stage]} retried")
            return
        self._records[stage] += metrics.records_out
        self._progress.update(task, advance=1, records=self._records[stage])

    def stage_ended(self, statistics: StageStatistics) -> None:
        task = self._tasks[statistics.stage]
        self._progress.update(task, completed=max(statistics.tasks, 1))

    def job_ended(self, statistics: JobStatistics | None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def make_listener(progress: bool | ProgressListener | None) -> ProgressListener:
    """Return the listener for a ``progress=`` option (None: rich on a terminal only)."""
    if progress is None:
        progress = sys.stderr.isatty()
    if progress is True:
        return RichProgress()
    if progress is False:
        return NullProgress()
    return progress
