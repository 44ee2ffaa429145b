"""The same programs on the local, Dask and Spark engines: same results, same errors.

One Dask LocalCluster and one Spark context (two workers each) serve the whole module.
Every program is compared with a plain-Python reference; where the order of records is
part of the result (``sort_by``, ``repartition``, ``union``) with the local engine too.
"""

from __future__ import annotations

import json
import operator
import random
import shutil
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distsys.dataflow import (
    Dataset,
    EngineUnavailableError,
    MalformedRecordError,
    NotPicklableError,
    RecordTypeError,
    Session,
    TaskFailedError,
    map_reduce,
    open_session,
)
from tests.dataflow import engine_functions as fn

ENGINES = ["local", "dask", "spark"]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "and",
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
]


@pytest.fixture(scope="module")
def dask_session() -> Iterator[Session]:
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with open_session("dask", workers=2) as session:
        yield session


@pytest.fixture(scope="module")
def spark_session() -> Iterator[Session]:
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java, and there is none on PATH")
    with open_session("spark", workers=2) as session:
        yield session


@pytest.fixture(params=ENGINES)
def session(request: pytest.FixtureRequest, pool: Session) -> Session:
    """The session of each engine in turn (the local one is the shared two-worker pool)."""
    if request.param == "local":
        return pool
    found: Session = request.getfixturevalue(f"{request.param}_session")
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("engines") / "corpus.txt"
    lines = [" ".join(rng.choices(WORDS, k=rng.randint(0, 12))) for _ in range(600)]
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_counts(path: Path) -> Counter[str]:
    return Counter(path.read_text().split())


def numbers(count: int = 300, seed: int = 3) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(100) for _ in range(count)]


def same_on_local(pool: Session, build: Callable[[Session], Dataset[Any]]) -> list[Any]:
    return build(pool).collect()


# ------------------------------------------------------------------ word count


def test_word_count(session: Session, corpus: Path) -> None:
    words = session.read_text(corpus, partitions=3).flat_map(str.split)
    expected = sorted(reference_counts(corpus).items())
    assert sorted(words.count_by_value().collect()) == expected
    assert sorted(words.map(fn.pair_one).reduce_by_key(operator.add).collect()) == expected


def test_map_reduce_word_count(session: Session, corpus: Path) -> None:
    counts = map_reduce(
        str(corpus), fn.words, fn.total, combiner=fn.total, reducers=3, session=session
    )
    result = counts.collect()
    assert sorted(result) == sorted(reference_counts(corpus).items())
    for part in (
        map_reduce(session.read_text(corpus), fn.words, fn.total, reducers=3)
        .map_partitions(fn.listed)
        .collect()
    ):
        assert part == sorted(part)  # each reduce task sees its keys in order


# ------------------------------------------------------------------ joins


@pytest.mark.parametrize("broadcast", [False, True])
def test_columnar_join_and_group_by(
    session: Session, pool: Session, tmp_path: Path, broadcast: bool
) -> None:
    pytest.importorskip("pyarrow")
    rng = random.Random(5)
    sales = tmp_path / "sales.csv"
    sales.write_text("".join(f"{rng.randrange(60)},{rng.randrange(100)}\n" for _ in range(2000)))
    customers = tmp_path / "customers.csv"
    customers.write_text("".join(f"{c},c{c % 7}\n" for c in range(50)))
    names: dict[int, str] = {c: f"c{c % 7}" for c in range(50)}
    rows = [tuple(map(int, line.split(","))) for line in sales.read_text().splitlines()]
    inner: Counter[str] = Counter()
    for customer, count in rows:
        if customer in names:
            inner[names[customer]] += count
    left_rows = sorted((c, n, names.get(c)) for c, n in rows)

    def build(on: Session) -> tuple[list[Any], list[Any]]:
        left = on.read_table(
            sales, header=False, schema={"customer": "int64", "count": "int64"}, partitions=3
        )
        right = on.read_table(
            customers, header=False, schema={"customer": "int64", "country": "string"}
        )
        joined = left.join(right, on="customer", broadcast=broadcast)
        totals = joined.group_by("country").agg(total=("count", "sum"), n=("count", "count"))
        outer = left.join(right, on="customer", how="left", broadcast=broadcast)
        return sorted(totals.to_rows().collect()), sorted(outer.to_rows().collect(), key=str)

    totals, outer = build(session)
    assert {country: total for country, total, _ in totals} == dict(inner)
    assert sorted(outer, key=str) == sorted(left_rows, key=str)
    assert (totals, outer) == build(pool)


@pytest.mark.parametrize("broadcast", [False, True])
def test_join_inner_and_left(session: Session, broadcast: bool) -> None:
    left = [(n % 12, f"l{n}") for n in range(40)]
    right = [(n % 9, n) for n in range(0, 30, 2)]
    table: dict[int, list[int]] = defaultdict(list)
    for key, value in right:
        table[key].append(value)
    inner = sorted((k, (v, w)) for k, v in left for w in table.get(k, []))
    outer = sorted((k, (v, w)) for k, v in left for w in table.get(k, [None]))
    a = session.from_iterable(left, partitions=3)
    b = session.from_iterable(right, partitions=2)
    assert sorted(a.join(b, broadcast=broadcast).collect()) == inner
    assert sorted(a.left_join(b, broadcast=broadcast).collect(), key=repr) == sorted(
        outer, key=repr
    )


# ------------------------------------------------------------------ sorting


def test_sort_by_is_global_and_stable(session: Session, pool: Session) -> None:
    data = numbers()

    def build(s: Session) -> Dataset[Any]:
        return s.from_iterable(data, partitions=4).sort_by(fn.by_tens, partitions=3)

    result = build(session).collect()
    assert result == sorted(data, key=fn.by_tens)  # stable: equal keys keep their order
    assert result == same_on_local(pool, build)
    down = session.from_iterable(data, partitions=4).sort_by(operator.neg, ascending=False)
    assert down.collect() == sorted(data, key=operator.neg, reverse=True)


def test_sorted_word_counts(session: Session, corpus: Path) -> None:
    counts = session.read_text(corpus).flat_map(str.split).count_by_value()
    ranked = counts.sort_by(fn.by_count, ascending=False, partitions=3).collect()
    assert [c for _, c in ranked] == sorted(reference_counts(corpus).values(), reverse=True)
    assert counts.top(3, key=fn.by_count) == reference_counts(corpus).most_common(3)


# ------------------------------------------------------------------ by key


def test_reduce_by_key_honours_the_partitioner(session: Session) -> None:
    data = numbers()
    sums = session.from_iterable(data, partitions=3).map(fn.key_mod)
    reduced = sums.reduce_by_key(fn.add, partitions=4, partitioner=fn.modulo)
    expected: dict[int, int] = defaultdict(int)
    for n in data:
        expected[n % 10] += n
    assert sorted(reduced.collect()) == sorted(expected.items())
    placed = reduced.map_partitions(fn.keys_of).collect()
    assert placed == [sorted(k for k in expected if k % 4 == i) for i in range(4)]


def test_group_and_aggregate_by_key(session: Session) -> None:
    data = list(range(50))
    pairs = session.from_iterable(data, partitions=3).map(fn.key_mod7)
    groups = {k: sorted(v) for k, v in pairs.group_by_key(partitions=2).collect()}
    expected: dict[int, list[str]] = defaultdict(list)
    for n in data:
        expected[n % 7].append(f"r{n}")
    assert groups == {k: sorted(v) for k, v in expected.items()}
    lists = pairs.aggregate_by_key([], fn.append, fn.concat).collect()
    assert {k: sorted(v) for k, v in lists} == groups


def test_distinct_and_count_by_value(session: Session) -> None:
    data = numbers(200)
    ds = session.from_iterable(data, partitions=4)
    assert sorted(ds.distinct(partitions=3).collect()) == sorted(set(data))
    assert sorted(ds.count_by_value().collect()) == sorted(Counter(data).items())


# ------------------------------------------------------------------ layout


def test_union_and_repartition_match_the_local_engine(session: Session, pool: Session) -> None:
    def build(s: Session) -> Dataset[Any]:
        first = s.from_iterable(range(20), partitions=2)
        second = s.from_iterable(range(100, 107), partitions=3)
        return first.union(second).repartition(4)

    result = build(session)
    assert result.partitions == 4
    assert result.collect() == same_on_local(pool, build)
    assert sorted(result.collect()) == [*range(20), *range(100, 107)]
    assert (
        result.map_partitions(fn.listed).collect()
        == build(pool).map_partitions(fn.listed).collect()
    )
    union = session.from_iterable(["a", "b"], partitions=2).union(session.from_iterable(["c", "d"]))
    assert union.collect() == ["a", "b", "c", "d"]


# ------------------------------------------------------------------ actions


def test_actions(session: Session) -> None:
    data = numbers(100)
    ds = session.from_iterable(data, partitions=5)
    assert ds.collect() == data
    assert ds.count() == len(data)
    assert ds.take(7) == data[:7]
    assert ds.take(0) == []
    assert ds.take(1000) == data
    assert ds.top(5) == sorted(data, reverse=True)[:5]
    assert ds.reduce(operator.add) == sum(data)
    assert ds.filter(fn.explode).first() == data[0]
    assert session.from_iterable([], partitions=2).count() == 0


def test_save_text(session: Session, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    parts = session.read_text(corpus).flat_map(str.split).count_by_value(partitions=2)
    written = parts.map(repr).save_text(out)
    assert len(written) == 2
    assert (out / "_SUCCESS").exists()
    saved = [line for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()]
    assert sorted(saved) == sorted(repr(p) for p in reference_counts(corpus).items())


def test_cache_is_reused_then_dropped(session: Session) -> None:
    cached = session.from_iterable(range(30), partitions=3).map(fn.key_mod).cache()
    totals = cached.reduce_by_key(operator.add)
    assert sorted(totals.collect()) == sorted(totals.collect())
    assert cached.count() == 30
    assert session.statistics().cached >= 1
    cached.unpersist()
    assert cached.count() == 30


def test_statistics_report_records_out_and_time(session: Session) -> None:
    session.from_iterable(range(10), partitions=2).collect()
    job = session.statistics().jobs[-1]
    assert job.engine == session.engine
    assert job.action == "collect"
    assert job.stages[-1].records_out == 10
    assert job.seconds > 0


# ------------------------------------------------------------------ errors


def test_a_record_that_is_not_a_pair(session: Session) -> None:
    with pytest.raises(RecordTypeError, match="reduce_by_key"):
        session.from_iterable([1, 2, 3]).reduce_by_key(operator.add).collect()


def test_a_failing_function_fails_the_job(session: Session) -> None:
    with pytest.raises(TaskFailedError, match="thirteen"):
        session.from_iterable(range(20), partitions=2).map(fn.explode).collect()


def test_a_malformed_line(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(MalformedRecordError) as caught:
        session.read_jsonl(path).collect()
    assert caught.value.line == 2
    assert session.read_jsonl(path, errors="skip").collect() == [{"a": 1}]


def test_a_function_that_cannot_be_shipped(session: Session) -> None:
    lock = threading.Lock()

    def locked(n: int) -> int:
        with lock:
            return n

    with pytest.raises(NotPicklableError, match=r"map\(\)"):
        session.from_iterable(range(3)).map(locked).collect()


@pytest.mark.parametrize(("engine", "library"), [("dask", "distributed"), ("spark", "pyspark")])
def test_a_missing_library_names_the_extra(
    engine: str, library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, library, None)  # import fails as if not installed
    with pytest.raises(EngineUnavailableError, match=rf"pip install 'distsys\[{engine}\]'"):
        open_session(engine)


@pytest.mark.parametrize("engine", ["dask", "spark"])
def test_lambdas_work_on_cluster_engines(engine: str, request: pytest.FixtureRequest) -> None:
    session: Session = request.getfixturevalue(f"{engine}_session")
    assert session.from_iterable(range(5)).map(lambda n: n * n).collect() == [0, 1, 4, 9, 16]
