"""The local executor with real worker processes: results, retries, deaths, bad input."""

from __future__ import annotations

import operator
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from distsys.dataflow import (
    JobStatistics,
    LocalExecutor,
    NotPicklableError,
    RecordTypeError,
    Session,
    StageStatistics,
    TaskFailedError,
    TaskMetrics,
    open_session,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError
from tests.dataflow import functions as f


def test_word_count_in_worker_processes(pool: Session, tmp_path: Path) -> None:
    lines = [f"w{i % 7} w{i % 3} x" for i in range(500)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(lines) + "\n")
    ds = pool.read_text(path, split_size=500).flat_map(str.split)
    expected = Counter(w for line in lines for w in line.split())
    assert dict(ds.count_by_value().collect()) == expected
    job = pool.statistics().jobs[-1]
    first, second = job.stages
    assert first.name == "read_text → flat_map → count_by_value"
    assert second.name == "count_by_value → collect"
    assert (first.output, second.output) == ("shuffle", "result")
    assert first.records_in == 500
    assert first.tasks == ds.partitions > 2
    assert first.shuffle_written == second.shuffle_read > 0
    assert second.records_out == len(expected)
    assert first.peak_memory > 0
    assert dict(ds.map(f.pair_one).reduce_by_key(operator.add).collect()) == expected


def test_every_operation_in_processes(pool: Session) -> None:
    data = list(range(-30, 70))
    ds = pool.from_iterable(data, partitions=3)
    keyed = ds.map(f.pair_mod5)
    groups = {k: sorted(v) for k, v in keyed.group_by_key().collect()}
    assert groups == {k: [x for x in data if x % 5 == k] for k in range(5)}
    other = pool.from_iterable([(k, str(k)) for k in range(3)], partitions=2)
    for broadcast in (True, False):
        assert len(keyed.join(other, broadcast=broadcast).collect()) == 60
    assert ds.sort_by(f.mod7, ascending=False).collect() == sorted(data, key=f.mod7, reverse=True)
    assert sorted(ds.repartition(4).collect()) == data
    assert ds.distinct().count() == 100
    assert ds.top(2) == [69, 68]


def test_a_worker_killed_mid_task_is_replaced_and_the_task_retried(
    pool: Session, tmp_path: Path
) -> None:
    before = pool.statistics().worker_restarts
    pids = set(pool.executor.worker_pids)  # type: ignore[attr-defined]
    ds = pool.from_iterable(range(40), partitions=4).map(f.DieOnce(str(tmp_path / "died"), 25))
    assert ds.reduce(operator.add) == sum(range(40))
    assert (tmp_path / "died").exists()
    job = pool.statistics().jobs[-1]
    assert job.retries == 1
    assert pool.statistics().worker_restarts == before + 1
    assert set(pool.executor.worker_pids) != pids  # type: ignore[attr-defined]
    assert pool.from_iterable([1, 2]).count() == 2  # the pool is whole again


def test_a_flaky_task_succeeds_on_a_later_attempt(pool: Session, tmp_path: Path) -> None:
    flaky = f.FailTimes(str(tmp_path), victim=7, times=3)
    assert pool.from_iterable(range(10), partitions=2).map(flaky).collect() == list(range(10))
    assert pool.statistics().jobs[-1].retries == 3


def test_a_task_failing_four_times_fails_the_job_with_its_error(pool: Session) -> None:
    ds = pool.from_iterable(range(10), partitions=2).map(f.fail_always)
    with pytest.raises(TaskFailedError) as caught:
        ds.collect()
    error = caught.value
    assert error.attempts == 4
    assert error.partition in (0, 1)
    assert error.error_type == "ZeroDivisionError"
    assert isinstance(error.__cause__, ZeroDivisionError)
    assert "cannot handle" in str(error.__cause__)
    assert "failed 4 times" in str(error)
    assert "in fail_always" in error.remote_traceback
    assert "raise ZeroDivisionError" in str(error)
    assert pool.from_iterable([3]).collect() == [3]  # still usable


def test_max_task_failures_is_an_option(tmp_path: Path) -> None:
    session = open_session(workers=1, processes=False, max_task_failures=1, progress=False)
    with session, pytest.raises(TaskFailedError, match="failed once"):
        session.from_iterable([1]).map(f.fail_always).collect()


def test_a_non_pair_record_fails_at_once_naming_operation_and_record(pool: Session) -> None:
    ds = pool.from_iterable(range(6), partitions=2)
    with pytest.raises(RecordTypeError) as caught:
        ds.map(f.not_a_pair).reduce_by_key(operator.add).collect()
    assert caught.value.operation == "reduce_by_key"
    assert caught.value.record == "(3, 3, 3)"
    assert "record reaching reduce_by_key()=(3, 3, 3)" in str(caught.value)
    assert "a (key, value) pair" in str(caught.value)
    with pytest.raises(RecordTypeError, match=r"group_by_key\(\)='abc'"):
        pool.from_iterable(["abc"]).group_by_key().collect()
    with pytest.raises(RecordTypeError, match=r"join\(\)=(0|6) "):
        ds.map(f.double).join(ds.map(f.pair_mod5), broadcast=False).collect()


def test_unpicklable_functions_are_refused_before_any_work(pool: Session) -> None:
    jobs = len(pool.statistics().jobs)
    ds = pool.from_iterable(range(3)).map(lambda x: x + 1)
    with pytest.raises(NotPicklableError) as caught:
        ds.collect()
    message = str(caught.value)
    assert caught.value.operation == "map"
    assert "map()=<function" in message
    assert "<lambda>" in message
    assert "module level" in message
    assert isinstance(caught.value, TypeError)
    assert len(pool.statistics().jobs) == jobs
    nested = pool.from_iterable([(1, 2)]).reduce_by_key(lambda a, b: a)
    with pytest.raises(NotPicklableError, match=r"reduce_by_key\(\)"):
        nested.collect()
    keyed = pool.from_iterable([1]).key_by(lambda x: x)
    with pytest.raises(NotPicklableError, match=r"key_by\(\)"):
        keyed.count()


def test_functions_typed_into_python_c_are_refused_with_a_reason() -> None:
    code = (
        "from distsys.dataflow import open_session\n"
        "def inc(x):\n"
        "    return x + 1\n"
        "with open_session(workers=1, progress=False) as s:\n"
        "    try:\n"
        "        s.from_iterable([1]).map(inc).collect()\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
        "    with open_session(workers=1, processes=False, progress=False) as t:\n"
        "        print(t.from_iterable([1]).map(inc).collect())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "NotPicklableError" in done.stdout
    assert "inc is defined in the __main__ of an interactive session" in done.stdout
    assert done.stdout.strip().endswith("[2]")  # processes=False runs it in this process


def test_a_partitioner_returning_a_bad_partition_is_reported(inline: Session) -> None:
    ds = inline.from_iterable([(1, 1), (2, 2)])
    # A usage error, raised as it is (a retry would give the same answer), naming the task.
    with pytest.raises(InvalidArgumentError, match=r"an int in \[0, 3\)") as caught:
        ds.group_by_key(partitioner=operator.add).collect()
    assert "it returned 4 for the key 1" in str(caught.value)
    assert any("raised by task 1 of stage 1" in note for note in caught.value.__notes__)


def test_custom_partitioner_places_keys(inline: Session) -> None:
    ds = inline.from_iterable([("apple", 1), ("avocado", 2), ("banana", 3)], partitions=2)
    grouped = ds.reduce_by_key(operator.add, partitions=2, partitioner=f.first_letter)
    assert grouped.collect() == [("banana", 3), ("apple", 1), ("avocado", 2)]
    assert grouped.map_partitions(f.partition_size).collect() == [1, 2]


def test_unknown_and_unavailable_engines() -> None:
    with pytest.raises(
        InvalidArgumentError, match=r"engine='locl'.*one of 'dask', 'local', 'spark'"
    ):
        open_session("locl")
    with pytest.raises(InvalidArgumentError, match="did you mean 'local'"):
        open_session("locl")
    with pytest.raises(ArgumentTypeError):
        open_session(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "workers=0"),
        ({"workers": "2"}, "workers='2'"),
        ({"memory_limit": "lots"}, "memory_limit='lots'"),
        ({"memory_limit": 0}, "memory_limit=0"),
        ({"max_task_failures": 0}, "max_task_failures=0"),
        ({"start_method": "fork"}, "start_method='fork'"),
        ({"workdir": "/no/such/dir"}, "workdir='/no/such/dir'"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        LocalExecutor(processes=False, **options)  # type: ignore[arg-type]


def test_close_is_idempotent_and_removes_the_scratch_directory() -> None:
    session = open_session(workers=1, processes=False, memory_limit="1MB")
    executor = session.executor
    assert isinstance(executor, LocalExecutor)
    assert executor.memory_limit == 1 << 20
    workdir = executor.workdir
    assert os.path.isdir(workdir)
    session.close()
    session.close()
    assert not os.path.exists(workdir)
    with pytest.raises(InvalidArgumentError, match="closed"):
        session.from_iterable([1]).count()


def test_statistics_are_frozen_records(inline: Session) -> None:
    inline.from_iterable(range(4), partitions=2).count()
    stats = inline.statistics()
    job = stats.jobs[-1]
    assert isinstance(job, JobStatistics)
    assert isinstance(job.stages[0], StageStatistics)
    assert stats.engine == "local"
    assert stats.workers == 0
    with pytest.raises(AttributeError):
        job.seconds = 0  # type: ignore[misc]
    assert job.action == "count"
    assert job.records_in == 4
    assert repr(TaskMetrics()).startswith("TaskMetrics(cpu_seconds=0.0, peak_memory=0")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def job_started(self, job: int, action: str) -> None:
        self.events.append(("job", action))

    def stage_started(self, stage: int, name: str, tasks: int) -> None:
        self.events.append(("stage", stage, name, tasks))

    def task_ended(self, stage: int, metrics: TaskMetrics | None) -> None:
        self.events.append(("task", stage, metrics is not None))

    def stage_ended(self, statistics: StageStatistics) -> None:
        self.events.append(("stage done", statistics.stage))

    def job_ended(self, statistics: JobStatistics | None) -> None:
        self.events.append(("job done", statistics is not None))


def test_progress_listener_sees_stages_and_tasks() -> None:
    recorder = Recorder()
    with open_session(workers=2, processes=False, progress=recorder) as s:
        s.from_iterable(list("aab"), partitions=2).count_by_value().collect()
    assert recorder.events == [
        ("job", "collect"),
        ("stage", 1, "from_iterable → count_by_value", 2),
        ("task", 1, True),
        ("task", 1, True),
        ("stage done", 1),
        ("stage", 2, "count_by_value → collect", 2),
        ("task", 2, True),
        ("task", 2, True),
        ("stage done", 2),
        ("job done", True),
    ]


def test_rich_progress_draws_on_a_console() -> None:
    from rich.console import Console

    from distsys.dataflow._progress import RichProgress

    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=100)  # noqa: SIM115
    with (
        console.file,
        open_session(workers=1, processes=False, progress=RichProgress(console)) as s,
    ):
        assert s.from_iterable(range(10), partitions=2).map(f.double).count() == 10


def test_unpicklable_records_of_from_iterable_are_named(pool: Session) -> None:
    import threading

    ds = pool.from_iterable([1, threading.Lock(), 3])
    with pytest.raises(RecordTypeError, match=r"from_iterable\(\)=<unlocked _thread.lock"):
        ds.count()
