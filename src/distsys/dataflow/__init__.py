"""Datasets: a MapReduce / Spark-style engine on all local cores, on Dask and on Spark.

``open_session()`` starts an engine; its ``read_text``, ``read_jsonl``, ``read_csv`` and
``from_iterable`` make a lazy :class:`Dataset`; transformations (``map``, ``flat_map``,
``filter``, ``reduce_by_key``, ``join``, ``sort_by``...) build a plan; actions
(``collect``, ``count``, ``take``, ``top``, ``reduce``, ``save_text``...) run it.
:func:`map_reduce` is the MapReduce paper's model on the same engine. ``read_table``
makes a :class:`TableDataset`: typed columns in Arrow tables, selected, filtered, joined
and aggregated (``group_by(...).agg(...)``) a table at a time in pyarrow — the columnar
path, with the optional pyarrow (``pip install 'distsys[columnar]'``), on the same
plans and engines (its records are the tables).

The design, shared by the engines (``local``, ``dask``, ``spark``):

- **The logical plan** (:mod:`distsys.dataflow._plan`) is a small immutable DAG of
  nodes: ``Source`` (reads partition ``i`` with ``source.read(i)``), narrow nodes
  (``Map``, ``FlatMap``, ``Filter``, ``MapPartitions``, ``Union``), ``Cache``,
  ``BroadcastJoin`` (narrow on its left side; its right side is computed whole and sent
  to every task), and wide ``Shuffle`` nodes (``CombineByKey`` with its
  :class:`Aggregator`, ``CountByValue``, ``Distinct``, ``GroupByKey``, ``Join``,
  ``SortBy``, ``PartitionAndSort``, ``Repartition``), each with its partition count and
  partitioner. ``Dataset.node`` is the node a dataset stands for.
- **An executor** (:class:`Executor`) runs a :class:`Job` — a node plus an
  :class:`Action` (a per-partition function and a driver-side finish) — and returns a
  :class:`JobResult` with :class:`JobStatistics`. Engines are looked up by name in a
  table (``ENGINES``): ``local`` is :class:`LocalExecutor` (worker processes shuffling
  through files); ``dask`` and ``spark`` run the same plans on a ``dask.distributed``
  cluster and on PySpark, imported only when a session asks for them.
"""

from distsys.dataflow._actions import Action
from distsys.dataflow._dataset import Dataset
from distsys.dataflow._engines import ENGINES, Engine
from distsys.dataflow._errors import (
    EmptyDatasetError,
    EngineUnavailableError,
    MalformedRecordError,
    MissingLibraryError,
    NotPicklableError,
    RecordTypeError,
    TaskFailedError,
)
from distsys.dataflow._executor import Executor, Job, JobResult
from distsys.dataflow._hashing import hash_partition, stable_hash
from distsys.dataflow._local import LocalExecutor
from distsys.dataflow._mapreduce import map_reduce
from distsys.dataflow._metrics import JobStatistics, SessionStatistics, StageStatistics, TaskMetrics
from distsys.dataflow._plan import Aggregator
from distsys.dataflow._progress import ProgressListener
from distsys.dataflow._session import Session, open_session
from distsys.dataflow._table import GroupedTable, TableDataset

__all__ = [
    "ENGINES",
    "Action",
    "Aggregator",
    "Dataset",
    "EmptyDatasetError",
    "Engine",
    "EngineUnavailableError",
    "Executor",
    "GroupedTable",
    "Job",
    "JobResult",
    "JobStatistics",
    "LocalExecutor",
    "MalformedRecordError",
    "MissingLibraryError",
    "NotPicklableError",
    "ProgressListener",
    "RecordTypeError",
    "Session",
    "SessionStatistics",
    "StageStatistics",
    "TableDataset",
    "TaskFailedError",
    "TaskMetrics",
    "hash_partition",
    "map_reduce",
    "open_session",
    "stable_hash",
]
