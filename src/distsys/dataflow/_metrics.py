"""What one task counts while it runs, and the frozen statistics the driver reports."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["JobStatistics", "SessionStatistics", "StageStatistics", "TaskMetrics"]

MAX_PROBLEMS = 10  # messages about skipped records kept per task and per job


class TaskMetrics:
    """Counters one task updates as it runs (in the worker); sent back when it ends.

    Counted in bulk at stage boundaries (per block of lines read, per frame of records
    written), never per record, so counting costs nothing measurable. Not thread-safe:
    one task owns it.
    """

    __slots__ = (
        "cpu_seconds",
        "peak_memory",
        "problems",
        "records_in",
        "records_out",
        "shuffle_read",
        "shuffle_written",
        "skipped",
        "spilled",
    )

    def __init__(self) -> None:
        self.records_in = 0
        self.records_out = 0
        self.shuffle_read = 0
        self.shuffle_written = 0
        self.spilled = 0
        self.skipped = 0
        self.peak_memory = 0
        self.cpu_seconds = 0.0
        self.problems: list[str] = []

    def skip(self, message: str) -> None:
        """Count a skipped input record, keeping the first few messages."""
        self.skipped += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"TaskMetrics({fields})"


@dataclass(frozen=True, slots=True)
class StageStatistics:
    """What one stage of a job did.

    Attributes:
        stage: the stage's number within its job (1-based, in the order they ran).
        name: the operations the stage ran, e.g. ``"read_text → flat_map → count_by_value"``.
        output: what its tasks produced: ``"shuffle"`` (map outputs of a shuffle),
            ``"cache"`` (kept partitions) or ``"result"`` (the action's).
        tasks: how many tasks (one per partition) it ran.
        records_in: records its tasks read (input lines, or shuffled records).
        records_out: records its tasks wrote (to the shuffle, the cache or the action).
        shuffle_read: bytes of shuffle files its tasks read.
        shuffle_written: bytes of shuffle files its tasks wrote.
        spilled: bytes its tasks spilled to disk because data outgrew the memory limit.
        skipped: malformed input records skipped (``errors="skip"``).
        retries: task attempts that failed and were retried.
        seconds: wall time from its first task's start to its last task's end.
        task_seconds: the sum of its tasks' run times.
        cpu_seconds: the sum of its tasks' CPU times (less than ``task_seconds`` when
            the workers wait for I/O or for a CPU other processes hold).
        peak_memory: the largest resident memory of a worker running it, in bytes (0 if
            not measured).
    """

    stage: int
    name: str
    output: str
    tasks: int
    records_in: int
    records_out: int
    shuffle_read: int
    shuffle_written: int
    spilled: int
    skipped: int
    retries: int
    seconds: float
    task_seconds: float
    cpu_seconds: float
    peak_memory: int


@dataclass(frozen=True, slots=True)
class JobStatistics:
    """What one job (one action) did, stage by stage.

    Attributes:
        job: the job's number in its session (1-based).
        action: the action that ran it (``"collect"``, ``"count"``...).
        engine: the engine that ran it.
        stages: the stages that ran, in order (stages whose output an earlier job left
            behind are not run again and not listed).
        seconds: wall time of the whole job.
        problems: the first messages about skipped malformed records.
    """

    job: int
    action: str
    engine: str
    stages: tuple[StageStatistics, ...]
    seconds: float
    problems: tuple[str, ...] = ()

    @property
    def records_in(self) -> int:
        """Records read by the first stages (the input)."""
        return sum(s.records_in for s in self.stages if s.shuffle_read == 0)

    @property
    def retries(self) -> int:
        """Failed task attempts that were retried, over all stages."""
        return sum(s.retries for s in self.stages)

    @property
    def skipped(self) -> int:
        """Malformed input records skipped, over all stages."""
        return sum(s.skipped for s in self.stages)

    @property
    def spilled(self) -> int:
        """Bytes spilled to disk, over all stages."""
        return sum(s.spilled for s in self.stages)

    @property
    def shuffle_written(self) -> int:
        """Shuffle bytes written, over all stages."""
        return sum(s.shuffle_written for s in self.stages)


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    """A snapshot of a session.

    Attributes:
        engine: the engine's name.
        workers: worker processes (0 when tasks run in the driver process).
        jobs: every job run so far, oldest first.
        startup_seconds: how long starting the engine took.
        worker_restarts: workers started again after one died.
        cached: datasets currently kept by ``cache()``.
    """

    engine: str
    workers: int
    jobs: tuple[JobStatistics, ...]
    startup_seconds: float
    worker_restarts: int
    cached: int
