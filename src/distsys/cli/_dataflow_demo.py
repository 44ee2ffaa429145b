"""``distsys demo wordcount``: MapReduce's word count on every core, with a worker killed.

::

    corpus (a few MB of Zipf words, generated into a temporary directory)
      │ split into byte ranges on line boundaries, one map task each
      ▼
    map tasks:    lines ─split─▶ words ─Counter─▶ one dict per reduce partition ─▶ files
      │  (one worker process is killed in the middle of its first task; the task runs
      │   again on a fresh worker)
      ▼ shuffle
    reduce tasks: merge the dicts of their partition ─▶ (word, count) ─▶ top N

The counts are then checked against ``collections.Counter`` in this process.
"""

from __future__ import annotations

import itertools
import os
import random
import string
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from distsys.cli._dataflow_command import jobs_table, open_engine, rank, top_table
from distsys.dataflow import JobStatistics
from distsys.dataflow._sizes import format_size, parse_size

__all__ = ["SplitWords", "explain", "wordcount_demo", "write_corpus"]

ZIPF_S = 1.1
VOCABULARY = 20_000
FILES = 4


def write_corpus(directory: Path, size: int, *, seed: int = 7) -> list[Path]:
    """Write about ``size`` bytes of Zipf-distributed words into ``FILES`` files."""
    rng = random.Random(seed)
    words = sorted({_word(rng) for _ in range(VOCABULARY * 2)})[:VOCABULARY]
    rng.shuffle(words)
    weights = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, len(words) + 1)))
    paths = []
    for index in range(FILES):
        path = directory / f"part-{index}.txt"
        with path.open("w", encoding="utf-8") as out:
            left = size // FILES
            while left > 0:
                chosen = rng.choices(words, cum_weights=weights, k=5_000)
                lines = (" ".join(chosen[i : i + 10]) for i in range(0, len(chosen), 10))
                text = "\n".join(lines) + "\n"
                if len(text) > left:  # end at the line end nearest the budget
                    text = text[: text.find("\n", left) + 1] or text
                out.write(text)
                left -= len(text)
        paths.append(path)
    return paths


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))


class SplitWords:
    """``str.split``, except that the first call (of the whole run) kills its worker.

    The marker file makes "first" hold across processes: the process that creates it
    exits at once with ``os._exit``, mid-task, as a crashed or OOM-killed worker would.
    """

    def __init__(self, marker: str | None) -> None:
        self.marker = marker

    def __call__(self, line: str) -> list[str]:
        if self.marker is not None and not os.path.exists(self.marker):
            try:
                with open(self.marker, "x"):
                    pass
            except FileExistsError:
                pass
            else:
                os._exit(9)
        return line.split()


def _words(paths: list[Path]) -> Iterator[str]:
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                yield from line.split()


@click.command("wordcount")
@click.option("--size", default="4MB", show_default=True, help="Bytes of text to generate.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (default: one per CPU).",
)
@click.option("--top", type=click.IntRange(1, 1000), default=10, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the corpus.")
@click.option(
    "--kill/--no-kill",
    default=True,
    show_default=True,
    help="Kill a worker process in the middle of a map task.",
)
def wordcount_demo(size: str, workers: int | None, top: int, seed: int, kill: bool) -> None:
    """Count the words of a generated corpus on every core, surviving a killed worker.

    The corpus is Zipf-distributed words in four files under a temporary directory.
    Each map task reads its byte range of a file, counts its words with a Counter and
    writes one file per reduce partition; each reduce task merges the counts of its
    partition. One worker process dies mid-task on purpose: its task runs again on a
    fresh worker, and the counts come out exact, as a check against
    ``collections.Counter`` shows.
    """
    console = Console()
    console.rule(Text.from_markup("[bold]wordcount[/]: MapReduce on every core"))
    try:
        nbytes = parse_size(size, "--size")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--size") from None
    with tempfile.TemporaryDirectory(prefix="distsys-wordcount-") as scratch:
        paths = write_corpus(Path(scratch), nbytes, seed=seed)
        total = sum(p.stat().st_size for p in paths)
        console.print(f"generated {format_size(total)} of text in {len(paths)} files")
        marker = os.path.join(scratch, "killed") if kill else None
        started = time.perf_counter()
        with open_engine(console, "local", workers, None) as session:
            tasks = 4 * session.parallelism
            lines = session.read_text([str(p) for p in paths], partitions=tasks)
            counts = lines.flat_map(SplitWords(marker)).count_by_value()
            best = counts.top(top, key=rank)
            distinct = counts.count()
            elapsed = time.perf_counter() - started
            jobs = session.statistics().jobs
            restarts = session.statistics().worker_restarts
            result = dict(counts.collect())
        exact = result == Counter(_words(paths))
        console.print(top_table(best))
        console.print(jobs_table(jobs))
        console.print(explain(jobs, sum(result.values()), distinct, elapsed, restarts, exact))


def explain(
    jobs: tuple[JobStatistics, ...],
    words: int,
    distinct: int,
    elapsed: float,
    restarts: int,
    exact: bool,
) -> str:
    """Return a few sentences on what the run did."""
    first = jobs[0]
    mapped, reduced = first.stages[0], first.stages[-1]
    text = (
        f"Counted {words:,} words ({distinct:,} distinct) on {mapped.records_in:,} lines in "
        f"{elapsed:.2f} s: {mapped.tasks} map tasks each counted its byte range with a "
        f"Counter and shuffled {format_size(mapped.shuffle_written)} of partial counts "
        f"(map-side combining), {reduced.tasks} reduce tasks merged them. The second job "
        "reused the shuffle files instead of counting again."
    )
    if first.retries:
        text += (
            f" {first.retries} task attempt failed when its worker was killed; "
            f"{restarts} worker was started in its place and the task ran again."
        )
    text += (
        " The counts match collections.Counter exactly."
        if exact
        else " The counts DO NOT match collections.Counter."
    )
    return text
