"""The peer engines of ``bench_dataflow_local.py``: Dask, PySpark, Ray and polars.

Each function runs one workload the way a user of that engine would write it, with the
engine's start-up (cluster, session) inside the call, and returns ``(result, startup
seconds or None)``; results have the shapes the benchmark compares: a ``{word: count}``
dict, a ``{country: sum}`` dict, or a directory of ``part-*`` files whose lines, in
file-name order, are the sorted ``word<TAB>count`` rows.

- **Dask**: a ``dask.distributed`` ``LocalCluster`` of ``workers`` single-threaded worker
  processes (the issue's "2-worker LocalCluster"); a bag for the word count, dataframes
  for the join and the sort.
- **PySpark**: a ``local[workers]`` session; the RDD API and the DataFrame (SQL) API for
  the word count, the DataFrame API for the join and the sort. The JVM is shut down after
  each run so it neither lingers in the next contender's memory nor skips the next run's
  start-up. ``spark.sql.shuffle.partitions`` is set to ``2 x workers`` (the default 200
  tiny tasks would only slow it down on two cores).
- **Ray**: ``ray.init(num_cpus=workers)`` on this machine, one task per byte range of
  the corpus counting its words (the Pool's function, shipped by value), the Counters
  merged in the driver — "Ray tasks", the word count only.
- **polars**: lazy frames over the CSV files, its own thread pool (all cores).

A missing library makes :func:`available` return a note instead; the benchmark then
skips that engine's contenders. Only builtins and lambdas reach the Dask and Spark
workers, so they need not import this module.
"""

from __future__ import annotations

import importlib.util
import logging
import operator
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "available",
    "counts_dask",
    "counts_polars",
    "counts_spark",
    "join_dask",
    "join_polars",
    "join_spark",
    "wc_dask",
    "wc_polars",
    "wc_ray",
    "wc_spark_rdd",
    "wc_spark_sql",
]

BAG_BLOCK = "32MiB"  # bytes per Dask partition of the corpus: ~10 partitions at 300 MB
CSV_BLOCK = "64MB"
MODULES = {
    "dask": ("dask.distributed", "dask.dataframe"),
    "spark": ("pyspark",),
    "polars": ("polars",),
    "ray": ("ray",),
}
Result = tuple[Any, float | None]


def available(engine: str) -> str | None:
    """Return None if ``engine``'s libraries import, else a note saying what is missing."""
    for module in MODULES[engine]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{engine} skipped: {module} is not installed (pip install 'distsys[{engine}]')"
    return None


# ---------------------------------------------------------------- Ray


def wc_ray(corpus: list[str], workers: int) -> Result:
    """Count the words with Ray tasks: one per byte range, as the Pool does."""
    from collections import Counter

    import ray
    from ray import cloudpickle

    import bench_dataflow_local as bench  # the byte ranges and the counting function

    cloudpickle.register_pickle_by_value(bench)  # Ray's workers cannot import benchmarks/
    started = time.perf_counter()
    ray.init(
        num_cpus=workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    try:
        startup = time.perf_counter() - started
        count = ray.remote(bench.count_words_range)
        pending = [count.remote(part) for part in bench.byte_ranges(corpus, workers)]
        total: Counter[str] = Counter()
        for counts in ray.get(pending):
            total.update(counts)
        return dict(total), startup
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- Dask


@contextmanager
def _dask_client(workers: int) -> Iterator[tuple[Any, float]]:
    from dask.distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        memory_limit=0,  # no pausing or spilling by Dask's own monitor: as the others
    )
    client = Client(cluster)
    try:
        yield client, time.perf_counter() - started
    finally:
        client.close()
        cluster.close()


def wc_dask(corpus: list[str], workers: int) -> Result:
    """Count the words with a Dask bag: ``map(str.split).flatten().frequencies()``."""
    import dask.bag as db

    with _dask_client(workers) as (_, startup):
        lines = db.read_text(corpus, blocksize=BAG_BLOCK)
        counts = lines.map(str.split).flatten().frequencies().compute()
        return dict(counts), startup


def join_dask(sales: str, customers: str, workers: int) -> Result:
    """Join the sales to the customers with Dask dataframes, sum the counts per country."""
    import dask.dataframe as dd

    with _dask_client(workers) as (_, startup):
        left = dd.read_csv(
            sales, header=None, names=["customer", "count"], dtype="int64", blocksize=CSV_BLOCK
        )
        right = dd.read_csv(
            customers,
            header=None,
            names=["customer", "country"],
            dtype={"customer": "int64", "country": "string"},
            blocksize=CSV_BLOCK,
        )
        sums = left.merge(right, on="customer").groupby("country")["count"].sum().compute()
        return {str(k): int(v) for k, v in sums.items()}, startup


def counts_dask(corpus: list[str], workers: int, out: str) -> Result:
    """Count the words (bag), sort the counts (dataframe ``sort_values``), write them."""
    import dask.bag as db

    with _dask_client(workers) as (_, startup):
        lines = db.read_text(corpus, blocksize=BAG_BLOCK)
        counts = lines.map(str.split).flatten().frequencies()
        frame = counts.to_dataframe(meta={"word": "string", "count": "int64"})
        ordered = frame.sort_values(["count", "word"], ascending=False)
        ordered.to_csv(
            os.path.join(out, "part-*"),
            name_function=lambda i: f"{i:05d}",
            sep="\t",
            header=False,
            index=False,
        )
        return out, startup


# ---------------------------------------------------------------- PySpark


@contextmanager
def _spark(workers: int) -> Iterator[tuple[Any, float]]:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.perf_counter()
    spark = (
        SparkSession.builder.master(f"local[{workers}]")
        .appName("distsys-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", str(2 * workers))
        .config("spark.sql.adaptive.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        yield spark, time.perf_counter() - started
    finally:
        spark.stop()
        gateway = SparkContext._gateway
        if gateway is not None:  # stop the JVM: the next session starts from nothing
            process = getattr(gateway, "proc", None)
            gateway.shutdown()
            if process is not None:
                process.stdin.close()
                process.wait(timeout=30)
            SparkContext._gateway = None
            SparkContext._jvm = None


def wc_spark_rdd(corpus: list[str], workers: int) -> Result:
    """Count the words with the RDD API: ``flatMap(split).map(pair).reduceByKey(add)``."""
    with _spark(workers) as (spark, startup):
        lines = spark.sparkContext.textFile(",".join(corpus), minPartitions=2 * workers)
        pairs = lines.flatMap(lambda line: line.split()).map(lambda word: (word, 1))
        return dict(pairs.reduceByKey(operator.add).collect()), startup


def _spark_counts(spark: Any, corpus: list[str]) -> Any:
    from pyspark.sql import functions as f

    lines = spark.read.text(corpus)
    words = lines.select(f.explode(f.split(lines.value, " ")).alias("word"))
    return words.where(words.word != "").groupBy("word").count()


def wc_spark_sql(corpus: list[str], workers: int) -> Result:
    """Count the words with the DataFrame API: ``explode(split(line))``, group, count."""
    with _spark(workers) as (spark, startup):
        rows = _spark_counts(spark, corpus).collect()
        return {row[0]: row[1] for row in rows}, startup


def join_spark(sales: str, customers: str, workers: int) -> Result:
    """Join and sum per country with the DataFrame API."""
    with _spark(workers) as (spark, startup):
        left = spark.read.csv(sales, schema="customer LONG, count LONG")
        right = spark.read.csv(customers, schema="customer LONG, country STRING")
        sums = left.join(right, "customer").groupBy("country").sum("count").collect()
        return {row[0]: row[1] for row in sums}, startup


def counts_spark(corpus: list[str], workers: int, out: str) -> Result:
    """Count the words and sort the counts with the DataFrame API; write them as CSV."""
    from pyspark.sql import functions as f

    with _spark(workers) as (spark, startup):
        counts = _spark_counts(spark, corpus)
        ordered = counts.orderBy(f.desc("count"), f.desc("word"))
        ordered.write.mode("overwrite").csv(out, sep="\t")
        return out, startup


# ---------------------------------------------------------------- polars


def _polars_lines(corpus: list[str]) -> Any:
    import polars as pl

    return pl.scan_csv(
        corpus,
        has_header=False,
        separator="\x1f",  # a byte the corpus never holds: one column, the whole line
        quote_char=None,
        new_columns=["line"],
        schema_overrides={"line": pl.String},
    )


def _polars_counts(corpus: list[str]) -> Any:
    import polars as pl

    words = _polars_lines(corpus).select(pl.col("line").str.split(" ").explode().alias("word"))
    return words.filter(pl.col("word") != "").group_by("word").len("count")


def wc_polars(corpus: list[str], workers: int) -> Result:
    """Count the words with polars: split, explode, group by, count."""
    counts = _polars_counts(corpus).collect()
    return dict(zip(counts["word"].to_list(), counts["count"].to_list(), strict=True)), None


def join_polars(sales: str, customers: str, workers: int) -> Result:
    """Join and sum per country with polars."""
    import polars as pl

    left = pl.scan_csv(sales, has_header=False, schema={"customer": pl.Int64, "count": pl.Int64})
    right = pl.scan_csv(
        customers, has_header=False, schema={"customer": pl.Int64, "country": pl.String}
    )
    sums = left.join(right, on="customer").group_by("country").agg(pl.col("count").sum())
    frame = sums.collect()
    return dict(zip(frame["country"].to_list(), frame["count"].to_list(), strict=True)), None


def counts_polars(corpus: list[str], workers: int, out: str) -> Result:
    """Count the words and sort the counts with polars; write one TSV file."""
    ordered = _polars_counts(corpus).sort(["count", "word"], descending=True)
    ordered.sink_csv(os.path.join(out, "part-00000"), separator="\t", include_header=False)
    return out, None
