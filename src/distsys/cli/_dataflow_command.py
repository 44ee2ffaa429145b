"""``distsys dataflow``: run datasets from the command line.

- ``distsys dataflow wordcount PATH...`` counts the words of text files (``read_text(...)
  .flat_map(str.split).count_by_value()``), prints the most frequent ones, and can save
  every count as ``word<TAB>count`` lines.
- ``distsys dataflow run SCRIPT.py`` runs a script that builds a dataset. The convention:
  the script defines ``build(session) -> Dataset``; the command then saves the dataset
  (``--output DIR``) or prints its first records (``--show N``). A script may instead
  define ``main(session)`` and run its own actions. The script is imported as a module in
  the driver and in every worker (so its functions can be shipped to them): keep its top
  level free of work, as with any module used by ``multiprocessing``.

Both show a progress bar per stage on a terminal and end with a table of what each stage
did. ``--engine`` names an entry of :data:`distsys.dataflow.ENGINES`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from distsys.dataflow import ENGINES, Dataset, JobStatistics, Session, open_session
from distsys.dataflow._progress import RichProgress
from distsys.dataflow._sizes import format_size, parse_size
from distsys.errors import DistsysError

__all__ = ["dataflow", "format_count", "jobs_table", "load_script", "open_engine", "rank"]

T = TypeVar("T")


def format_count(pair: tuple[str, int]) -> str:
    """Return ``word<TAB>count``."""
    return f"{pair[0]}\t{pair[1]}"


def rank(pair: tuple[str, int]) -> tuple[int, str]:
    """Order word counts by count, then word (``top`` takes the largest)."""
    return pair[1], pair[0]


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value, "--memory-limit")
    except DistsysError as exc:
        raise click.BadParameter(str(exc)) from None


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--engine``, ``--workers`` and ``--memory-limit`` to a command."""
    command = click.option(
        "--memory-limit",
        callback=_size,
        metavar="SIZE",
        help="Data a task may hold in memory before it spills, per worker (e.g. 256MB).",
    )(command)
    command = click.option(
        "--workers",
        type=click.IntRange(1, 1024),
        help="Worker processes (default: one per CPU).",
    )(command)
    return click.option(
        "--engine",
        type=click.Choice(sorted(ENGINES)),
        default="local",
        show_default=True,
        help="Where the job runs.",
    )(command)


def open_engine(
    console: Console,
    engine: str,
    workers: int | None,
    memory_limit: int | None,
    **extra: Any,
) -> Session:
    """Open a session, with a progress display when ``console`` is a terminal."""
    options: dict[str, Any] = {**extra}
    if workers is not None:
        options["workers"] = workers
    if memory_limit is not None:
        options["memory_limit"] = memory_limit
    if engine == "local":
        options["progress"] = RichProgress(console) if console.is_interactive else False
    try:
        return open_session(engine, **options)
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None


def _run(work: Callable[[], T]) -> T:
    try:
        return work()
    except DistsysError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def dataflow() -> None:
    """Run datasets: word counts, or your own script, on all local cores."""


@dataflow.command("wordcount")
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--top",
    type=click.IntRange(0, 10_000),
    default=20,
    show_default=True,
    help="Most frequent words to print.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Also save every count as word<TAB>count lines in this directory.",
)
@click.option(
    "--errors",
    type=click.Choice(["fail", "skip"]),
    default="fail",
    show_default=True,
    help="What a line that is not valid UTF-8 does: fail the job, or get skipped.",
)
@engine_options
def wordcount_command(
    paths: tuple[str, ...],
    top: int,
    output: str | None,
    errors: str,
    engine: str,
    workers: int | None,
    memory_limit: int | None,
) -> None:
    """Count the words of the text files, directories or globs PATHS."""
    console = Console()
    started = time.perf_counter()
    with open_engine(console, engine, workers, memory_limit) as session:
        counts = _run(
            lambda: (
                session.read_text(list(paths), errors=errors).flat_map(str.split).count_by_value()
            )
        )
        if output is not None:
            _run(lambda: counts.map(format_count).save_text(output, overwrite=True))
        best = _run(lambda: counts.top(top, key=rank))
        elapsed = time.perf_counter() - started
        console.print(top_table(best))
        console.print(jobs_table(session.statistics().jobs))
        console.print(summary(session, elapsed, output))


def top_table(best: list[tuple[str, int]]) -> Table:
    """Return the most frequent words as a table."""
    table = Table(title=f"top {len(best)} words", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("word")
    table.add_column("count", justify="right")
    for position, (word, count) in enumerate(best, 1):
        table.add_row(str(position), word, f"{count:,}")
    return table


def jobs_table(jobs: tuple[JobStatistics, ...]) -> Table:
    """Return what every stage of ``jobs`` did, one row per stage."""
    stages = [(job, stage) for job in jobs for stage in job.stages]
    spills = any(stage.spilled for _, stage in stages)
    table = Table(title="stages (job.stage: operations)", title_justify="left")
    table.add_column("stage", ratio=1)
    spill = ["spill"] if spills else []
    columns = ["tasks", "records in", "out", "shuffle", *spill, "retry", "s"]
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for job, stage in stages:
        cells = [
            f"{job.job}.{stage.stage}: {stage.name}",
            str(stage.tasks),
            f"{stage.records_in:,}",
            f"{stage.records_out:,}",
            format_size(stage.shuffle_written) if stage.shuffle_written else "-",
        ]
        if spills:
            cells.append(format_size(stage.spilled) if stage.spilled else "-")
        cells += [str(stage.retries), f"{stage.seconds:.2f}"]
        table.add_row(*cells)
    return table


def summary(session: Session, elapsed: float, output: str | None = None) -> Text:
    """Return a few sentences about the run."""
    stats = session.statistics()
    jobs = stats.jobs
    records = sum(j.records_in for j in jobs[:1])
    retries = sum(j.retries for j in jobs)
    skipped = sum(j.skipped for j in jobs)
    who = f"{stats.workers} worker processes" if stats.workers else "the driver process"
    text = Text(
        f"{records:,} input records, {len(jobs)} job(s) in {elapsed:.2f} s on {who} "
        f"(engine {stats.engine}, start-up {stats.startup_seconds:.2f} s)."
    )
    if retries:
        text.append(f" {retries} failed task attempt(s) were retried")
        if stats.worker_restarts:
            text.append(f"; {stats.worker_restarts} worker(s) died and were replaced")
        text.append(".")
    if skipped:
        problems = [p for j in jobs for p in j.problems][:3]
        text.append(f" {skipped:,} malformed line(s) skipped, e.g. {'; '.join(problems)}.")
    if output is not None:
        text.append(f" Saved to {output}/ (part files, then _SUCCESS).")
    return text


_IDENTIFIER = re.compile(r"[^0-9a-zA-Z_]")


def load_script(path: str) -> tuple[str, Any]:
    """Import the script at ``path`` as a module; return its module name and the module.

    Raises:
        click.ClickException: it cannot be imported, or defines neither build nor main.
    """
    file = Path(path).resolve()
    name = "distsys_script_" + _IDENTIFIER.sub("_", file.stem)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise click.ClickException(f"{path} is not a Python script")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise click.ClickException(f"{path} failed to import: {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(module, "build", None)) and not callable(getattr(module, "main", None)):
        del sys.modules[name]
        raise click.ClickException(
            f"{path} defines neither build(session) -> Dataset nor main(session)"
        )
    return name, module


def _ship_by_value(module: Any) -> None:
    """Make Dask and Spark send the script's functions whole: their workers cannot import it."""
    for name in ("cloudpickle", "pyspark.cloudpickle"):  # Dask's, and PySpark's own copy
        try:
            pickler = importlib.import_module(name)
        except ImportError:  # that engine's library is missing: open_session says so
            continue
        pickler.register_pickle_by_value(module)


@dataflow.command("run")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    help="Save the dataset build() returns as text files in this directory.",
)
@click.option(
    "--show",
    type=click.IntRange(0, 100_000),
    default=20,
    show_default=True,
    help="Records of the dataset to print when there is no --output.",
)
@engine_options
def run_command(
    script: str,
    output: str | None,
    show: int,
    engine: str,
    workers: int | None,
    memory_limit: int | None,
) -> None:
    """Run SCRIPT: its build(session) returns a Dataset (or its main(session) runs)."""
    console = Console()
    name, module = load_script(script)
    started = time.perf_counter()
    extra = {"modules": ((name, os.path.abspath(script)),)} if engine == "local" else {}
    if engine != "local":
        _ship_by_value(module)
    with open_engine(console, engine, workers, memory_limit, **extra) as session:
        build = getattr(module, "build", None)
        if callable(build):
            dataset = _run(lambda: build(session))
            if not isinstance(dataset, Dataset):
                raise click.ClickException(
                    f"build() returned {type(dataset).__name__}, not a Dataset"
                )
            if output is not None:
                _run(lambda: dataset.save_text(output, overwrite=True))
            else:
                records = _run(lambda: dataset.take(show))
                for record in records:
                    console.print(repr(record), highlight=False, soft_wrap=True)
        else:
            _run(lambda: module.main(session))
        elapsed = time.perf_counter() - started
        console.print(jobs_table(session.statistics().jobs))
        console.print(summary(session, elapsed, output))
