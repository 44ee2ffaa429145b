"""Typed CSV files read as Arrow tables: one table per byte-range split.

Files are cut into splits exactly as ``read_text`` cuts them (the ``LineRecordReader``
rule of :mod:`distsys.dataflow._sources`: a split owns the lines that start in its byte
range), and each split is parsed by ``pyarrow.csv`` in one call into a table of the
declared schema. A split that does not parse is searched for its first bad line —
pieces of lines parsed one after another, then a bisection of the failing piece — so the
error names the file and line, however pyarrow words it; with ``errors="skip"`` the bad
lines are dropped (and counted) instead. Quoted fields must not hold line breaks.

An empty field is null, whatever the column's type, as in Spark's CSV reader (a quoted
empty field ``""`` in a text column is the empty string); every other value is parsed as
its column's type says.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from distsys.dataflow._arrow import Schema, Table, data_type, require
from distsys.dataflow._errors import MalformedRecordError
from distsys.dataflow._plan import Source
from distsys.dataflow._sources import Errors, TextSplit, _newlines_before
from distsys.errors import InvalidArgumentError

__all__ = ["CsvTableFormat", "TableSource", "check_names", "infer_schema", "table_schema"]

PIECE: Final = 65_536  # lines parsed at a time while looking for a bad one
SAMPLE: Final = 1 << 20  # bytes of the first file read to infer column types
BLOCK_SIZE: Final = 1 << 20  # pyarrow's parse block: small blocks stay in cache


@dataclass(frozen=True, slots=True)
class CsvTableFormat:
    """How the CSV files are laid out.

    Attributes:
        header: the first line of each file names the columns.
        delimiter: the field separator.
        quotechar: the quote character.
        encoding: the text encoding (pyarrow transcodes anything but UTF-8).
    """

    header: bool = True
    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"


def _arrow_encoding(codec: str) -> str:
    """Return pyarrow's name of ``codec``: it transcodes (slowly) any name but ``utf8``."""
    return "utf8" if codec == "utf-8" else codec


def table_schema(
    schema: Mapping[str, object], header: tuple[str, ...] | None, path: str | None
) -> Schema:
    """Return the pyarrow schema of ``schema`` (``{column: type}``), checked against a header.

    Raises:
        InvalidArgumentError: an unknown type, or a column the file's header lacks.
    """
    pa = require("read_table()")
    if not isinstance(schema, Mapping) or not schema:
        raise InvalidArgumentError(
            "schema", schema, "a non-empty dict of column name -> type, e.g. {'id': 'int64'}"
        )
    fields = []
    for name, kind in schema.items():
        if not isinstance(name, str):
            raise InvalidArgumentError("schema", name, "column names that are str")
        if header is not None and name not in header:
            raise InvalidArgumentError(
                f"schema column {name!r}",
                name,
                f"a column of the header of {path}: {', '.join(header)}",
            )
        fields.append(pa.field(name, data_type(f"schema[{name!r}]", kind)))
    return pa.schema(fields)


def infer_schema(path: str, fmt: CsvTableFormat, header: tuple[str, ...]) -> Schema:
    """Return the column types pyarrow infers from the first megabyte of ``path``."""
    pa = require("read_table()")
    with open(path, "rb") as source:
        data = source.read(SAMPLE)
    if len(data) == SAMPLE:
        data = data[: data.rfind(b"\n") + 1]
    table = pa.csv.read_csv(
        io.BytesIO(data),
        read_options=pa.csv.ReadOptions(
            column_names=list(header), skip_rows=1, encoding=_arrow_encoding(fmt.encoding)
        ),
        parse_options=pa.csv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quotechar),
    )
    # A column with no value in the sample has pyarrow's ``null`` type: read it as text.
    fields = [
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema
    ]
    return pa.schema(fields)


def _read_lines(split: TextSplit) -> tuple[int, bytes]:
    """Return the offset of the first line ``split`` owns, and the bytes of its lines.

    The lines are those that start in ``[start, end)`` (see :mod:`._sources`), read in
    one call rather than in blocks: the parser takes the whole range at once.
    """
    with open(split.path, "rb") as source:
        first = split.start
        if first > 0:
            source.seek(first - 1)
            first += len(source.readline()) - 1
        if first >= split.end:
            return first, b""
        data = source.read(split.end - first)
        if data and not data.endswith(b"\n"):
            data += source.readline()  # the last line starts before ``end``: finish it
    return first, data


@dataclass(frozen=True, slots=True)
class _Parser:
    """Parses lines of one file into tables of ``schema``."""

    names: tuple[str, ...]
    schema: Schema
    fmt: CsvTableFormat

    def __call__(self, data: bytes) -> Table:
        pa = require("read_table()")
        csv = pa.csv
        types = {f.name: f.type for f in self.schema}
        return csv.read_csv(
            pa.py_buffer(data),
            read_options=csv.ReadOptions(
                column_names=list(self.names),
                use_threads=False,
                block_size=BLOCK_SIZE,
                encoding=_arrow_encoding(self.fmt.encoding),
            ),
            parse_options=csv.ParseOptions(
                delimiter=self.fmt.delimiter, quote_char=self.fmt.quotechar
            ),
            convert_options=csv.ConvertOptions(
                column_types=types,
                include_columns=list(types),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    def some(self, data: bytes) -> Table:
        """Parse ``data``, which may hold no line at all."""
        if not data or data.isspace():  # (no copy, unlike strip)
            return self.schema.empty_table()
        return self(data)

    def error(self, data: bytes) -> str | None:
        """Return why ``data`` does not parse, or None if it does."""
        pa = require("read_table()")
        try:
            self.some(data)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            return str(exc)
        return None


def _first_bad(parse: _Parser, lines: list[bytes]) -> tuple[int, str] | None:
    """Return the index of the first line of ``lines`` that does not parse, and why."""
    if parse.error(b"".join(lines)) is None:
        return None
    low, high = 0, len(lines)  # lines[:low] parse, lines[:high] do not
    while high - low > 1:
        middle = (low + high) // 2
        if parse.error(b"".join(lines[:middle])) is None:
            low = middle
        else:
            high = middle
    reason = parse.error(lines[high - 1]) or "cannot be parsed"
    return high - 1, reason


@dataclass(frozen=True, eq=False, slots=True)
class TableSource(Source):
    """Arrow tables parsed from CSV files: one table per split."""

    splits: tuple[TextSplit, ...]
    schema: Schema
    names: tuple[tuple[str, ...], ...]  # the columns of each split's file, in file order
    fmt: CsvTableFormat
    errors: Errors = "fail"
    op: ClassVar[str] = "read_table"

    @property
    def partitions(self) -> int:
        return len(self.splits)

    def estimated_bytes(self) -> int | None:
        return sum(split.end - split.start for split in self.splits)

    def read(self, index: int, metrics: Any = None) -> Iterator[Any]:
        yield self._parse(index, metrics)  # no bytes of the split stay alive after it

    def _parse(self, index: int, metrics: Any) -> Table:
        split = self.splits[index]
        parse = _Parser(self.names[index], self.schema, self.fmt)
        first, data = _read_lines(split)
        skipped = 0
        if self.fmt.header and split.start == 0:
            cut = data.find(b"\n") + 1 or len(data)
            data = data[cut:]
            skipped = 1
        pa = require("read_table()")
        try:
            table = parse.some(data)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            table = self._salvage(parse, data, split, first, skipped, metrics)
        if metrics is not None:
            metrics.records_in += table.num_rows
        return table

    def _salvage(
        self,
        parse: _Parser,
        data: bytes,
        split: TextSplit,
        first: int,
        skipped: int,
        metrics: Any,
    ) -> Table:
        """Find the bad lines of a split that did not parse: raise, or parse without them."""
        base: list[int] = []

        def line_number(index: int) -> int:
            if not base:
                base.append(_newlines_before(split.path, first) + skipped)
            return base[0] + index + 1

        parts = data.split(b"\n")  # lines end at ``\n`` only, as the splits say
        lines = [part + b"\n" for part in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        tables = []
        for start in range(0, len(lines), PIECE):
            piece = lines[start : start + PIECE]
            offset = start
            while (bad := _first_bad(parse, piece)) is not None:
                index, reason = bad
                line = line_number(offset + index)
                if self.errors == "fail":
                    raise MalformedRecordError(split.path, line, reason)
                if metrics is not None:
                    metrics.skip(f"{split.path}:{line}: {reason}")
                tables.append(parse.some(b"".join(piece[:index])))
                piece = piece[index + 1 :]
                offset += index + 1
            tables.append(parse.some(b"".join(piece)))
        pa = require("read_table()")
        return pa.concat_tables(tables) if tables else self.schema.empty_table()


def check_names(names: Sequence[str], path: str) -> None:
    """Check that a header names each column once.

    Raises:
        InvalidArgumentError: a column name repeats.
    """
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidArgumentError(
                "header", f"{path}", "a header naming each column once", detail=f"{name!r} repeats"
            )
        seen.add(name)
