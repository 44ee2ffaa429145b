"""Word count, as in the MapReduce paper, on every core of this machine.

Dean and Ghemawat's paper (OSDI 2004) introduces MapReduce with this program::

    map(String key, String value):            reduce(String key, Iterator values):
      // key: document name                     // key: a word
      // value: document contents               // values: a list of counts
      for each word w in value:                 int result = 0;
        EmitIntermediate(w, "1");               for each v in values:
                                                  result += ParseInt(v);
                                                Emit(AsString(result));

``map_words`` and ``reduce_counts`` below are that program in Python. ``map_reduce`` runs
it: map tasks read the input's byte ranges, the combiner (the reducer again, as the paper
suggests) sums each map task's counts before the shuffle, ``R`` reduce tasks each get
the words that hash to them, sorted, and call the reducer once per word. The same
count with the Dataset API is one line, and the two agree.

Run it with ``python examples/wordcount.py [FILE ...]``; without files it counts a small
generated corpus.
"""

from __future__ import annotations

import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from distsys.dataflow import map_reduce, open_session

WORDS = "the of and to a in is it that was he for on are as with his they at be"


def map_words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1  # EmitIntermediate(w, "1")


def reduce_counts(word: str, counts: Iterator[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)  # Emit(AsString(result))


def by_count(pair: tuple[str, int]) -> tuple[int, str]:
    return pair[1], pair[0]


def write_corpus(directory: Path) -> list[str]:
    """Write three small files of words drawn with a Zipf-like skew; return their paths."""
    rng = random.Random(2004)
    words = WORDS.split()
    weights = [1 / rank for rank in range(1, len(words) + 1)]
    paths = []
    for n in range(3):
        path = directory / f"doc-{n}.txt"
        lines = (" ".join(rng.choices(words, weights, k=12)) for _ in range(2_000))
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths


def count(paths: list[str]) -> None:
    with open_session(workers=2) as session:
        lines = session.read_text(paths, partitions=6)
        counts = map_reduce(lines, map_words, reduce_counts, combiner=reduce_counts, reducers=4)
        top = counts.top(5, key=by_count)
        total = sum(n for _, n in counts.collect())
        print(f"{total} words, {counts.count()} distinct, in {len(paths)} files")
        print("most frequent:", ", ".join(f"{word} {n}" for word, n in top))

        same = lines.flat_map(str.split).count_by_value()  # the Dataset API
        print("count_by_value agrees:", dict(same.collect()) == dict(counts.collect()))

        job = session.statistics().jobs[0]
        for stage in job.stages:
            print(
                f"stage {stage.stage}: {stage.name}: {stage.tasks} tasks, "
                f"{stage.records_in} records in, {stage.records_out} out"
            )


def main() -> None:
    if len(sys.argv) > 1:
        count(sys.argv[1:])
        return
    with tempfile.TemporaryDirectory() as scratch:
        count(write_corpus(Path(scratch)))


if __name__ == "__main__":
    main()
