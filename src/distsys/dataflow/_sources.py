"""Sources: text files split into byte ranges on line boundaries, and in-memory iterables.

A text file is cut into byte ranges ("splits") of about equal size, one partition each,
so workers read their own part of a file. Lines are separated by ``\\n`` (a ``\\r``
before it is dropped, so CRLF files read alike). Split ``[start, end)`` owns exactly the
lines whose first byte lies in ``[start, end)``: a reader starting at ``start > 0`` skips
through the first ``\\n`` at or after ``start - 1`` (the rest of a line the previous split
owns), and reads past ``end`` only to finish the line it is in. Every line therefore
belongs to exactly one split, whatever the split size. This is Hadoop's
``LineRecordReader`` rule.
"""

from __future__ import annotations

import codecs
import csv
import glob
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, ClassVar, Final, Literal

import msgspec

from distsys.dataflow._errors import MalformedRecordError
from distsys.dataflow._plan import Source
from distsys.errors import InvalidArgumentError

__all__ = [
    "BLOCK",
    "CsvFormat",
    "IterableSource",
    "JsonLinesFormat",
    "LineFormat",
    "TextFormat",
    "TextSource",
    "TextSplit",
    "chunk",
    "expand_paths",
    "plan_splits",
]

BLOCK: Final = 4 << 20  # bytes read and decoded at a time
SLOP: Final = 0.1  # a split may be this much bigger than the split size
Errors = Literal["fail", "skip"]
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class TextSplit:
    """The lines of ``path`` that start in the byte range ``[start, end)``.

    Attributes:
        path: the file.
        start: first byte of the range.
        end: one past its last byte.
        header: the file's header row, for CSV files read with ``header=True``.
    """

    path: str
    start: int
    end: int
    header: tuple[str, ...] | None = None


def expand_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Return the files named by ``paths``: files, directories (their visible files) or globs.

    Raises:
        InvalidArgumentError: a path does not exist, or a glob or directory has no file.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise InvalidArgumentError("paths", paths, "at least one file, directory or glob")
    found: list[str] = []
    for item in items:
        text = os.fspath(item)
        if _GLOB_CHARS & set(text):
            matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InvalidArgumentError(
                    "paths", text, "a glob pattern that matches files", detail="it matches none"
                )
            found += matches
        elif os.path.isdir(text):
            inside = sorted(
                entry.path
                for entry in os.scandir(text)
                if entry.is_file() and not entry.name.startswith((".", "_"))
            )
            if not inside:
                raise InvalidArgumentError(
                    "paths", text, "a directory with files in it", detail="it has none"
                )
            found += inside
        elif os.path.isfile(text):
            found.append(text)
        else:
            raise InvalidArgumentError(
                "paths", text, "an existing file, directory or glob pattern", detail="not found"
            )
    return found


def plan_splits(
    files: Sequence[str], split_size: int, *, splittable: bool = True
) -> list[TextSplit]:
    """Cut ``files`` into splits of at most about ``split_size`` bytes (equal sizes per file)."""
    splits = []
    for path in files:
        size = os.path.getsize(path)
        # Hadoop's slop: a file up to 10% over the split size stays one split.
        pieces = max(1, math.ceil(size / split_size - SLOP)) if splittable else 1
        bounds = [size * i // pieces for i in range(pieces + 1)]
        splits += [TextSplit(path, bounds[i], bounds[i + 1]) for i in range(pieces)]
    return splits


def check_encoding(encoding: str) -> str:
    """Return the codec's canonical name if lines can be split on ``\\n`` bytes in it."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InvalidArgumentError("encoding", encoding, "a known text encoding") from None
    if "\r\n".encode(name, "ignore") != b"\r\n":
        raise InvalidArgumentError(
            "encoding", encoding, "an ASCII-compatible encoding (utf-8, latin-1, cp1252...)"
        )
    return name


def _blocks(split: TextSplit) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)``: the split's lines in blocks that end at a line end."""
    with open(split.path, "rb") as source:
        pos = split.start
        if pos > 0:
            source.seek(pos - 1)
            pos += len(source.readline()) - 1
        first = pos
        carry = b""
        while pos < split.end:
            data = source.read(min(BLOCK, split.end - pos))
            if not data:
                break
            pos += len(data)
            cut = data.rfind(b"\n")
            if cut < 0:
                carry += data
                continue
            block = carry + data[: cut + 1] if carry else data[: cut + 1]
            yield first, block
            first += len(block)
            carry = data[cut + 1 :]
        if carry:  # a line that starts before ``end``: read it to its end
            yield first, carry + source.readline()


def _newlines_before(path: str, offset: int) -> int:
    """Count the ``\\n`` bytes in the first ``offset`` bytes of ``path``."""
    count = 0
    with open(path, "rb") as source:
        while offset > 0:
            data = source.read(min(BLOCK, offset))
            if not data:
                break
            count += data.count(b"\n")
            offset -= len(data)
    return count


class _Lines:
    """The decoded lines of a split, and how to name the file line number of one of them."""

    __slots__ = ("_base", "_first", "encoding", "errors", "metrics", "split")

    def __init__(self, split: TextSplit, encoding: str, errors: Errors, metrics: Any) -> None:
        self.split = split
        self.encoding = encoding
        self.errors = errors
        self.metrics = metrics
        self._first = split.start  # byte offset of the split's first line
        self._base: int | None = None  # lines of the file before that one

    def bad(self, index: int, reason: str) -> None:
        """Report the split's line ``index`` (0-based): raise, or count it as skipped."""
        if self._base is None:
            self._base = _newlines_before(self.split.path, self._first)
        line = self._base + index + 1
        if self.errors == "fail":
            raise MalformedRecordError(self.split.path, line, reason)
        if self.metrics is not None:
            self.metrics.skip(f"{self.split.path}:{line}: {reason}")

    def blocks(self) -> Iterator[tuple[int, list[str]]]:
        """Yield ``(index, lines)``: runs of lines, ``index`` being the first one's in the split."""
        index = 0
        for n, (offset, data) in enumerate(_blocks(self.split)):
            if n == 0:
                self._first = offset
            try:
                text = data.decode(self.encoding)
            except UnicodeDecodeError:
                raw = data.split(b"\n")
                if raw[-1] == b"":
                    raw.pop()
                yield from self._decode_each(index, raw)
                index += len(raw)
                continue
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            lines = text.split("\n")
            if lines[-1] == "":
                lines.pop()
            if self.metrics is not None:
                self.metrics.records_in += len(lines)
            yield index, lines
            index += len(lines)

    def _decode_each(self, index: int, raw: list[bytes]) -> Iterator[tuple[int, list[str]]]:
        run: list[str] = []
        for i, line in enumerate(raw):
            try:
                text = line.decode(self.encoding)
            except UnicodeDecodeError as exc:
                if run:
                    yield index + i - len(run), run
                    run = []
                self.bad(index + i, f"not valid {self.encoding}: {exc.reason} at byte {exc.start}")
                continue
            run.append(text[:-1] if text.endswith("\r") else text)
            if self.metrics is not None:
                self.metrics.records_in += 1
        if run:
            yield index + len(raw) - len(run), run


class LineFormat:
    """How a split's lines become records (abstract)."""

    __slots__ = ()
    op: ClassVar[str] = "read_text"

    def records(self, lines: _Lines) -> Iterator[Any]:
        """Yield the records of the lines."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class TextFormat(LineFormat):
    """Each line is a record (a ``str`` without its line end)."""

    op: ClassVar[str] = "read_text"

    def records(self, lines: _Lines) -> Iterator[Any]:
        return chain.from_iterable(block for _, block in lines.blocks())


@dataclass(frozen=True, slots=True)
class JsonLinesFormat(LineFormat):
    """Each non-blank line is one JSON document."""

    op: ClassVar[str] = "read_jsonl"

    def records(self, lines: _Lines) -> Iterator[Any]:
        decode = msgspec.json.decode
        for first, block in lines.blocks():
            for index, line in enumerate(block, first):
                try:
                    yield decode(line)
                except msgspec.DecodeError as exc:
                    if line.strip():
                        lines.bad(index, f"invalid JSON: {exc}")


@dataclass(frozen=True, slots=True)
class CsvFormat(LineFormat):
    """Each line is a CSV row: a dict keyed by the header, or a list when there is none.

    A row whose field count differs from the header's is malformed. Quoted fields must
    not hold line breaks unless the files are read whole (``multiline=True``).
    """

    header: bool = True
    delimiter: str = ","
    quotechar: str = '"'
    op: ClassVar[str] = "read_csv"

    def records(self, lines: _Lines) -> Iterator[Any]:
        split = lines.split
        position = [0]  # the split's index of the line the reader read last

        def feed() -> Iterator[str]:
            for first, block in lines.blocks():
                for index, line in enumerate(block, first):
                    position[0] = index
                    yield line + "\n"  # the csv module keeps line breaks inside quotes

        reader = csv.reader(feed(), delimiter=self.delimiter, quotechar=self.quotechar)
        names = split.header
        if self.header and split.start == 0:
            next(reader, None)  # the header line itself
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                lines.bad(position[0], f"invalid CSV: {exc}")
                continue
            if names is None:
                yield row
            elif len(row) == len(names):
                yield dict(zip(names, row, strict=True))
            elif row:
                lines.bad(
                    position[0], f"invalid CSV: {len(row)} fields where the header has {len(names)}"
                )


def read_header(path: str, encoding: str, delimiter: str, quotechar: str) -> tuple[str, ...]:
    """Return the first CSV row of ``path`` (empty for an empty file)."""
    with open(path, encoding=encoding, newline="") as source:
        row = next(csv.reader(source, delimiter=delimiter, quotechar=quotechar), [])
    return tuple(row)


@dataclass(frozen=True, eq=False, slots=True)
class TextSource(Source):
    """Records read from text files, one partition per split."""

    splits: tuple[TextSplit, ...]
    format: LineFormat
    encoding: str = "utf-8"
    errors: Errors = "fail"

    @property
    def partitions(self) -> int:
        return len(self.splits)

    @property
    def label(self) -> str:
        return self.format.op

    def estimated_bytes(self) -> int | None:
        return sum(split.end - split.start for split in self.splits)

    def read(self, index: int, metrics: Any = None) -> Iterator[Any]:
        lines = _Lines(self.splits[index], self.encoding, self.errors, metrics)
        return self.format.records(lines)


@dataclass(frozen=True, eq=False, slots=True)
class IterableSource(Source):
    """Records held in the plan itself, in chunks (from ``from_iterable``)."""

    chunks: tuple[tuple[Any, ...], ...]
    op: ClassVar[str] = "from_iterable"

    @property
    def partitions(self) -> int:
        return len(self.chunks)

    def estimated_bytes(self) -> int | None:
        return sum(map(len, self.chunks)) * 64  # a guess: small records

    def read(self, index: int, metrics: Any = None) -> Iterator[Any]:
        records = self.chunks[index]
        if metrics is not None:
            metrics.records_in += len(records)
        return iter(records)


def chunk(items: Iterable[Any], partitions: int) -> tuple[tuple[Any, ...], ...]:
    """Cut ``items`` into ``partitions`` contiguous chunks of sizes differing by at most one."""
    records = tuple(items)
    bounds = [len(records) * i // partitions for i in range(partitions + 1)]
    return tuple(records[bounds[i] : bounds[i + 1]] for i in range(partitions))
