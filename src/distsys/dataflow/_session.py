"""Session: the entry point that owns an engine and makes datasets from sources."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from distsys.dataflow._dataset import Dataset
from distsys.dataflow._engines import open_executor
from distsys.dataflow._executor import Executor, Job, JobResult
from distsys.dataflow._metrics import SessionStatistics
from distsys.dataflow._sizes import parse_size
from distsys.dataflow._sources import (
    CsvFormat,
    Errors,
    IterableSource,
    JsonLinesFormat,
    LineFormat,
    TextFormat,
    TextSource,
    TextSplit,
    check_encoding,
    chunk,
    expand_paths,
    plan_splits,
    read_header,
)
from distsys.dataflow._table import TableDataset
from distsys.dataflow._table_source import (
    CsvTableFormat,
    TableSource,
    check_names,
    infer_schema,
    table_schema,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError

__all__ = ["Session", "open_session"]

T = TypeVar("T")
Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
MIN_SPLIT: Final = 1 << 20
MAX_SPLIT: Final = 128 << 20


def open_session(engine: str = "local", **options: Any) -> Session:
    """Open a session on ``engine``; close it (or use ``with``) to stop its workers.

    Args:
        engine: ``"local"`` (worker processes on this machine), ``"dask"`` (a Dask
            distributed cluster) or ``"spark"`` (PySpark).
        **options: the engine's options; for ``"local"`` see
            :class:`~distsys.dataflow.LocalExecutor` (``workers``, ``memory_limit``,
            ``processes``, ``progress``, ``max_task_failures``...); for ``"dask"``
            ``scheduler_address``, ``workers``, ``memory_limit``...; for ``"spark"``
            ``master``, ``app_name``, ``conf``... (docs/dataflow.md, "Switching engines").

    Raises:
        InvalidArgumentError: an unknown engine, or a bad option value.
        EngineUnavailableError: the engine cannot run here.
    """
    return Session(open_executor(engine, **options))


def _errors(value: object) -> Errors:
    if value not in ("fail", "skip"):
        raise InvalidArgumentError("errors", value, "'fail' or 'skip'")
    return value


class Session:
    """An open engine, and the factory of datasets that run on it.

    Datasets made by a session run their actions on its executor; its worker processes
    are reused by every job. A context manager; ``close()`` is idempotent. Used from one
    thread at a time.

    Args:
        executor: the engine (see :func:`open_session`).
    """

    __slots__ = ("_executor",)

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    @property
    def executor(self) -> Executor:
        """The executor jobs run on."""
        return self._executor

    @property
    def engine(self) -> str:
        """The engine's name."""
        return self._executor.name

    @property
    def parallelism(self) -> int:
        """Partitions of wide operations and ``from_iterable`` when not told otherwise."""
        return self._executor.parallelism

    @property
    def broadcast_limit(self) -> int:
        """Input bytes under which ``join`` broadcasts the other side (0: never)."""
        limit: int = getattr(self._executor, "broadcast_limit", 0)
        return limit

    def run(self, job: Job[T]) -> JobResult[T]:
        """Run a job (what every action does); return its value and statistics."""
        return self._executor.run(job)

    def statistics(self) -> SessionStatistics:
        """Return what the session did so far: its jobs, stage by stage."""
        return self._executor.statistics()

    def close(self) -> None:
        """Stop the engine and delete its scratch files; idempotent."""
        self._executor.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session(engine={self.engine!r}, parallelism={self.parallelism})"

    # ------------------------------------------------------------- sources

    def from_iterable(self, items: Iterable[T], *, partitions: int | None = None) -> Dataset[T]:
        """Return a dataset of ``items``, cut into ``partitions`` contiguous chunks.

        The items are read now, held by the plan and shipped to the workers: meant for
        data that fits in the driver's memory.
        """
        count = self.parallelism if partitions is None else partitions
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgumentError("from_iterable() partitions", partitions, "an int >= 1")
        if isinstance(items, str | bytes):
            raise ArgumentTypeError(
                "from_iterable() items", items, "an iterable of records (not one str or bytes)"
            )
        return Dataset(self, IterableSource(chunk(items, count)))

    def read_text(
        self,
        paths: Paths,
        *,
        partitions: int | None = None,
        split_size: int | str | None = None,
        encoding: str = "utf-8",
        errors: str = "fail",
    ) -> Dataset[str]:
        """Return the lines of text files (without line ends), split into byte ranges.

        Args:
            paths: a file, a directory (its files not starting with ``.`` or ``_``), a
                glob pattern (``"logs/**/*.txt"``), or a list of those.
            partitions: at least this many partitions (smaller splits if needed).
            split_size: at most this many bytes per split (default: enough splits for
                every worker, up to 128 MiB each).
            encoding: an ASCII-compatible text encoding.
            errors: ``"fail"`` stops the job at a line that does not decode, naming file
                and line; ``"skip"`` skips such lines and counts them in the statistics.

        Raises:
            InvalidArgumentError: a path does not exist, a glob matches no file, or an
                option is not acceptable.
        """
        return self._read(paths, TextFormat(), partitions, split_size, encoding, errors, True)

    def read_jsonl(
        self,
        paths: Paths,
        *,
        partitions: int | None = None,
        split_size: int | str | None = None,
        encoding: str = "utf-8",
        errors: str = "fail",
    ) -> Dataset[Any]:
        """Return one decoded JSON document per non-blank line of JSON Lines files.

        A line that is not valid JSON fails the job naming file and line, or is skipped
        and counted with ``errors="skip"``. Other arguments as for ``read_text``.
        """
        return self._read(paths, JsonLinesFormat(), partitions, split_size, encoding, errors, True)

    def read_csv(
        self,
        paths: Paths,
        *,
        header: bool = True,
        delimiter: str = ",",
        quotechar: str = '"',
        multiline: bool = False,
        partitions: int | None = None,
        split_size: int | str | None = None,
        encoding: str = "utf-8",
        errors: str = "fail",
    ) -> Dataset[Any]:
        """Return CSV rows: a dict per row keyed by the file's header, or lists of strings.

        Args:
            header: the first line of each file names the columns (rows become dicts;
                a row with another number of fields is malformed); False: rows are lists.
            delimiter: the field separator.
            quotechar: the quote character.
            multiline: quoted fields may hold line breaks; files are then read whole, one
                partition each, instead of being split.
            partitions, split_size, encoding, errors: as for ``read_text``.
        """
        return self._read(
            paths,
            CsvFormat(bool(header), delimiter, quotechar),
            partitions,
            split_size,
            encoding,
            errors,
            not multiline,
        )

    def read_table(
        self,
        paths: Paths,
        *,
        format: str = "csv",
        schema: Mapping[str, object] | None = None,
        header: bool = True,
        delimiter: str = ",",
        quotechar: str = '"',
        partitions: int | None = None,
        split_size: int | str | None = None,
        encoding: str = "utf-8",
        errors: str = "fail",
    ) -> TableDataset:
        """Return typed columns of CSV files as a :class:`TableDataset` (Arrow tables).

        Files are split into byte ranges on line boundaries as ``read_text`` splits them,
        and each split is parsed by ``pyarrow.csv`` into one table. Needs pyarrow
        (``pip install 'distsys[columnar]'``).

        Args:
            paths: files, directories or glob patterns, as for ``read_text``.
            format: ``"csv"``.
            schema: ``{column: type}``, a type being a pyarrow type or its name
                (``"int64"``, ``"float64"``, ``"string"``, ``"bool"``, ``"date32"``,
                ``"timestamp[us]"``...). With ``header=True`` it picks columns of the
                header (others are not read); with ``header=False`` it names every
                column of the files, in order. None (only with a header): every column,
                types inferred from the first megabyte of the first file.
            header: the first line of each file names its columns.
            delimiter: the field separator.
            quotechar: the quote character (quoted fields must not hold line breaks).
            partitions, split_size, encoding: as for ``read_text``.
            errors: ``"fail"`` stops the job at a line that does not parse as the
                schema says (a value of another type, another number of fields), naming
                file and line; ``"skip"`` drops such lines and counts them.

        Raises:
            MissingLibraryError: pyarrow is not installed.
            InvalidArgumentError: a path does not exist, a schema column missing from a
                header, an unknown type or format, or another bad option.
        """
        if format != "csv":
            raise InvalidArgumentError("read_table() format", format, "'csv'")
        mode = _errors(errors)
        codec = check_encoding(encoding)
        for name, value in (("delimiter", delimiter), ("quotechar", quotechar)):
            if not isinstance(value, str) or len(value) != 1:
                raise InvalidArgumentError(f"read_table() {name}", value, "one character")
        fmt = CsvTableFormat(bool(header), delimiter, quotechar, codec)
        files = expand_paths(paths)
        headers: dict[str, tuple[str, ...]] = {}
        if fmt.header:
            for path in files:
                headers[path] = read_header(path, codec, delimiter, quotechar)
                check_names(headers[path], path)
        if schema is None:
            if not fmt.header:
                raise InvalidArgumentError(
                    "read_table() schema",
                    None,
                    "a dict of column name -> type when the files have no header",
                )
            arrow = infer_schema(files[0], fmt, headers[files[0]])
        else:
            arrow = table_schema(schema, None, None)
        for path in files:
            if fmt.header:
                table_schema({f.name: f.type for f in arrow}, headers[path], path)
        size = self._split_size(files, partitions, split_size)
        splits = plan_splits(files, size)
        if fmt.header:
            splits = [TextSplit(s.path, s.start, s.end, headers[s.path]) for s in splits]
        names = tuple(headers.get(s.path) or tuple(arrow.names) for s in splits)
        source = TableSource(tuple(splits), arrow, names, fmt, mode)
        return TableDataset(Dataset(self, source), arrow)

    def _read(
        self,
        paths: Paths,
        format: LineFormat,
        partitions: int | None,
        split_size: int | str | None,
        encoding: str,
        errors: str,
        splittable: bool,
    ) -> Dataset[Any]:
        mode = _errors(errors)
        codec = check_encoding(encoding)
        files = expand_paths(paths)
        size = self._split_size(files, partitions, split_size)
        splits = plan_splits(files, size, splittable=splittable)
        if isinstance(format, CsvFormat) and format.header:
            headers = {p: read_header(p, codec, format.delimiter, format.quotechar) for p in files}
            splits = [TextSplit(s.path, s.start, s.end, headers[s.path]) for s in splits]
        return Dataset(self, TextSource(tuple(splits), format, codec, mode))

    def _split_size(
        self, files: list[str], partitions: int | None, split_size: int | str | None
    ) -> int:
        if split_size is not None:
            return parse_size(split_size, "split_size")
        total = sum(os.path.getsize(p) for p in files)
        workers = self.parallelism
        rounds = max(1, math.ceil(total / (workers * MAX_SPLIT)))
        size = max(MIN_SPLIT, math.ceil(total / (workers * rounds)))
        if partitions is not None:
            if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
                raise InvalidArgumentError("partitions", partitions, "an int >= 1")
            size = min(size, max(1, math.ceil(total / partitions)))
        return size
