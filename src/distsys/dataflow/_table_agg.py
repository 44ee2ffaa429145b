"""Aggregations of a table grouped by key columns, in two phases.

Each partition aggregates its own rows first (*partial* aggregation: one row per key),
the partial rows are hash partitioned by key, and each reduce partition merges the
partial rows of its keys (*final* aggregation) — Spark's partial / final
``HashAggregate``. The phases per function:

=========  ==========================  ====================================
function   partial columns             final
=========  ==========================  ====================================
``sum``    sum                         sum of the sums
``count``  count of non-null values    sum of the counts
``min``    min                         min of the mins
``max``    max                         max of the maxes
``mean``   sum, count                  sum of the sums / sum of the counts
=========  ==========================  ====================================

Nulls are skipped, as in SQL: the sum, min, max and mean of a group with no value are
null, its count is 0. Tables are renamed to positional names (``k0``, ``v0``, ``p0``...)
inside the phases, so user column names never clash with pyarrow's output names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from distsys.dataflow._arrow import Schema, Table, require
from distsys.errors import InvalidArgumentError

__all__ = [
    "FUNCTIONS",
    "Aggregate",
    "check_keys",
    "final",
    "parse_aggregates",
    "partial",
    "result_schema",
]

FUNCTIONS: Final = ("sum", "count", "min", "max", "mean")
_PARTS: Final = {
    "sum": ("sum",),
    "count": ("count",),
    "min": ("min",),
    "max": ("max",),
    "mean": ("sum", "count"),
}
_MERGE: Final = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}
_NUMERIC: Final = ("sum", "mean")


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One output column: ``function`` of ``column``, named ``name``."""

    column: str
    function: str
    name: str


def parse_aggregates(
    specs: Sequence[object], named: Mapping[str, object], schema: Schema, keys: Sequence[str]
) -> tuple[Aggregate, ...]:
    """Return the aggregates of ``agg(*specs, **named)``, checked against ``schema``.

    A spec is ``(column, function)``; positional ones are named ``<column>_<function>``.

    Raises:
        InvalidArgumentError: an unknown column or function, a function the column's type
            does not support, no aggregate at all, or two output columns of one name.
    """
    pa = require("agg()")
    found: list[Aggregate] = []
    items = [(None, spec) for spec in specs] + list(named.items())
    if not items:
        raise InvalidArgumentError(
            "agg()", "nothing", "at least one (column, function) pair, e.g. total=('n', 'sum')"
        )
    for name, spec in items:
        if (
            not isinstance(spec, tuple)
            or len(spec) != 2
            or not all(isinstance(part, str) for part in spec)
        ):
            raise InvalidArgumentError(
                f"agg() {name or 'aggregate'}",
                spec,
                f"a (column, function) pair of str, function one of {', '.join(FUNCTIONS)}",
            )
        column, function = spec
        if column not in schema.names:
            raise InvalidArgumentError(
                f"agg() column of {name or spec!r}", column, f"a column: {', '.join(schema.names)}"
            )
        if function not in FUNCTIONS:
            raise InvalidArgumentError(
                f"agg() function of {name or spec!r}", function, f"one of {', '.join(FUNCTIONS)}"
            )
        kind = schema.field(column).type
        if function in _NUMERIC and not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        ):
            raise InvalidArgumentError(
                f"agg() {function} of column {column!r}",
                str(kind),
                "a numeric column (integer, floating point or decimal)",
            )
        found.append(Aggregate(column, function, name or f"{column}_{function}"))
    names = list(keys) + [a.name for a in found]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidArgumentError(
                "agg() output column", name, "output column names that differ from each other"
            )
    return tuple(found)


def _partial_columns(aggregates: Sequence[Aggregate]) -> list[tuple[int, str]]:
    """Return ``(aggregate index, function)`` of each partial column, in order."""
    return [(i, part) for i, a in enumerate(aggregates) for part in _PARTS[a.function]]


def partial(table: Table, keys: Sequence[str], aggregates: Sequence[Aggregate]) -> Table:
    """Return one row per key of ``table``: the keys ``k<i>``, the partials ``p<j>``."""
    columns = list(dict.fromkeys(a.column for a in aggregates))
    slot = {column: f"v{i}" for i, column in enumerate(columns)}
    renamed = table.select([*keys, *columns]).rename_columns(
        [f"k{i}" for i in range(len(keys))] + [slot[c] for c in columns]
    )
    parts = _partial_columns(aggregates)
    specs = [(slot[aggregates[i].column], function) for i, function in parts]
    grouped = renamed.group_by([f"k{i}" for i in range(len(keys))], use_threads=False)
    out = grouped.aggregate(list(dict.fromkeys(specs)))
    key_columns = [out.column(f"k{i}") for i in range(len(keys))]
    part_columns = [out.column(f"{column}_{function}") for column, function in specs]
    names = [f"k{i}" for i in range(len(keys))] + [f"p{j}" for j in range(len(specs))]
    pa = require("group_by()")
    return pa.table(key_columns + part_columns, names=names)


def final(
    partials: Table, keys: Sequence[str], aggregates: Sequence[Aggregate], schema: Schema | None
) -> Table:
    """Merge partial rows (from :func:`partial`) into the result rows (cast to ``schema``)."""
    pa = require("group_by()")
    pc = pa.compute
    parts = _partial_columns(aggregates)
    merges = [(f"p{j}", _MERGE[function]) for j, (_, function) in enumerate(parts)]
    grouped = partials.group_by([f"k{i}" for i in range(len(keys))], use_threads=False)
    out = grouped.aggregate(merges)
    merged = [out.column(f"p{j}_{function}") for j, (_, function) in enumerate(merges)]
    columns = [out.column(f"k{i}") for i in range(len(keys))]
    position = 0
    for aggregate in aggregates:
        if aggregate.function == "mean":
            total, count = merged[position], merged[position + 1]
            columns.append(pc.divide(pc.cast(total, pa.float64()), pc.cast(count, pa.float64())))
            position += 2
        else:
            columns.append(merged[position])
            position += 1
    if schema is None:
        return pa.table(columns, names=[*keys, *(a.name for a in aggregates)])
    columns = [pc.cast(c, f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.table(columns, schema=schema)


def result_schema(schema: Schema, keys: Sequence[str], aggregates: Sequence[Aggregate]) -> Schema:
    """Return the schema of the aggregated table: the keys, then one column per aggregate."""
    empty = schema.empty_table()
    merged = final(partial(empty, keys, aggregates), keys, aggregates, None)
    return merged.schema


def check_keys(operation: str, keys: Sequence[object], schema: Schema) -> tuple[str, ...]:
    """Return ``keys`` as column names of ``schema``.

    Raises:
        InvalidArgumentError: no key, a key that is not a column, or one named twice.
    """
    if not keys:
        raise InvalidArgumentError(f"{operation} keys", keys, "at least one column name")
    for key in keys:
        if not isinstance(key, str) or key not in schema.names:
            raise InvalidArgumentError(
                f"{operation} key", key, f"a column: {', '.join(schema.names)}"
            )
    if len(set(keys)) != len(keys):
        raise InvalidArgumentError(f"{operation} keys", keys, "column names, each once")
    return tuple(str(k) for k in keys)
