"""TableDataset: typed columns in Arrow tables, joined and aggregated a table at a time.

A :class:`TableDataset` is a :class:`~distsys.dataflow.Dataset` whose records are
``pyarrow.Table`` objects, plus the schema they all have. Its operations build the same
plan nodes as the row API, with functions that work on whole tables in pyarrow's C++
(:mod:`distsys.dataflow._table_ops`), so every engine runs them unchanged:

- ``select`` and ``filter`` are ``Map`` nodes;
- ``join`` broadcasts the other side when it is small — its tables are gathered into
  one (a ``CombineByKey`` into one partition) and sent to every task by a
  ``BroadcastJoin`` — or else cuts both sides into ``(partition, piece)`` pairs by a hash
  of the key columns and brings each partition's pieces together with one
  ``GroupByKey``, then joins them with pyarrow's hash join;
- ``group_by(...).agg(...)`` aggregates each table (partial aggregation), shuffles the
  partial rows by key, and merges them (final aggregation).

Schemas are known in the driver, so a missing column, a key of another type on the two
sides or an unknown aggregation fails when the plan is built, before any work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from distsys.dataflow._arrow import Schema, Table, concat, require
from distsys.dataflow._dataset import Dataset
from distsys.dataflow._plan import (
    Aggregator,
    BroadcastJoin,
    CombineByKey,
    FlatMap,
    GroupByKey,
    Map,
    Union,
    estimated_bytes,
)
from distsys.dataflow._table_agg import check_keys, parse_aggregates, result_schema
from distsys.dataflow._table_ops import (
    BroadcastSide,
    JoinBroadcast,
    JoinShuffled,
    MergePartials,
    NumRows,
    PartialAggregate,
    Rows,
    Scatter,
    Select,
    Where,
    append_table,
    by_index,
    concat_lists,
    join_tables,
    key_zero,
    start_list,
)
from distsys.errors import ArgumentTypeError, InvalidArgumentError

if TYPE_CHECKING:
    from distsys.dataflow._session import Session

__all__ = ["GroupedTable", "TableDataset"]


def _names(operation: str, value: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ArgumentTypeError(operation, value, "a column name or a list of column names")


def _partitions(operation: str, value: int | None, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{operation} partitions", value, "an int >= 1")
    return value


class TableDataset:
    """A lazy, partitioned table of typed columns, held as Arrow tables.

    Made by :meth:`Session.read_table <distsys.dataflow.Session.read_table>`. Its
    transformations return a new TableDataset and compute nothing; its actions
    (``collect``, ``to_pylist``, ``count``) run a job on the session's engine. Every
    operation works on whole tables in pyarrow, not row by row: use it for typed data
    that is joined, filtered and aggregated by column; use the row API (``to_rows()``)
    for arbitrary Python functions of each record.

    Immutable, so safe to share between threads; actions run one job at a time on the
    session.
    """

    __slots__ = ("_data", "_schema")

    def __init__(self, data: Dataset[Any], schema: Schema) -> None:
        self._data = data
        self._schema = schema

    @property
    def schema(self) -> Schema:
        """The ``pyarrow.Schema`` of every table."""
        return self._schema

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        names: list[str] = self._schema.names
        return list(names)

    @property
    def dataset(self) -> Dataset[Any]:
        """The underlying dataset, whose records are ``pyarrow.Table`` objects."""
        return self._data

    @property
    def session(self) -> Session:
        """The session it runs on."""
        return self._data.session

    @property
    def partitions(self) -> int:
        """How many partitions it has."""
        return self._data.partitions

    def explain(self) -> str:
        """Return the plan as an indented tree (shuffles indent)."""
        return self._data.explain()

    def __repr__(self) -> str:
        columns = ", ".join(f"{f.name}: {f.type}" for f in self._schema)
        return f"TableDataset({columns}; partitions={self.partitions})"

    def _new(self, node: Any, schema: Schema) -> TableDataset:
        return TableDataset(Dataset(self._data.session, node), schema)

    def _column(self, operation: str, name: object) -> str:
        if not isinstance(name, str) or name not in self._schema.names:
            raise InvalidArgumentError(
                f"{operation} column", name, f"a column: {', '.join(self._schema.names)}"
            )
        return name

    # ---------------------------------------------------------------- narrow

    def select(self, *columns: str) -> TableDataset:
        """Return only ``columns``, in that order.

        Raises:
            InvalidArgumentError: a name that is not a column.
        """
        if not columns:
            raise InvalidArgumentError("select() columns", columns, "at least one column name")
        chosen = tuple(self._column("select()", c) for c in columns)
        schema = self._schema.empty_table().select(list(chosen)).schema
        return self._new(Map(self._data.node, Select(chosen), "select"), schema)

    def filter(self, predicate: Any) -> TableDataset:
        """Return the rows for which ``predicate``, a pyarrow expression, is true.

        ``pyarrow.compute.field("count") > 10``, combined with ``&``, ``|`` and ``~``;
        a row where it is null is dropped.

        Raises:
            ArgumentTypeError: ``predicate`` is not a pyarrow expression.
            InvalidArgumentError: it names a missing column or does not type-check.
        """
        pa = require("filter()")
        if not isinstance(predicate, pa.compute.Expression):
            raise ArgumentTypeError(
                "filter() predicate",
                predicate,
                "a pyarrow.compute expression, e.g. pc.field('count') > 10",
            )
        try:
            self._schema.empty_table().filter(predicate)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InvalidArgumentError(
                "filter() predicate",
                str(predicate),
                f"a boolean expression of the columns {', '.join(self._schema.names)}",
                detail=str(exc).splitlines()[0],
            ) from None
        return self._new(Map(self._data.node, Where(predicate), "filter"), self._schema)

    def cache(self) -> TableDataset:
        """Return this table, kept once computed (see ``Dataset.cache``)."""
        return TableDataset(self._data.cache(), self._schema)

    # ---------------------------------------------------------------- wide

    def join(
        self,
        other: TableDataset,
        on: str | Sequence[str],
        *,
        right_on: str | Sequence[str] | None = None,
        how: Literal["inner", "left"] = "inner",
        broadcast: bool | None = None,
        partitions: int | None = None,
        suffix: str = "_right",
    ) -> TableDataset:
        """Return the rows of this table joined with ``other``'s where the keys are equal.

        The result has this table's columns, then ``other``'s other than its keys (a
        name both have gets ``suffix`` on ``other``'s side). Null keys match nothing.

        Args:
            other: the table to join with.
            on: the key column(s) of this table (and of ``other`` unless ``right_on``).
            right_on: ``other``'s key column(s), when their names differ.
            how: ``"inner"`` keeps rows with a match; ``"left"`` keeps every row of this
                table, with nulls where ``other`` has no match.
            broadcast: True sends ``other`` whole to every task (no shuffle of this
                table; the result keeps its partitions); False hash-partitions both
                sides; None (default) broadcasts when ``other``'s input is under the
                session's ``broadcast_limit`` and ``partitions`` is not given.
            partitions: partitions of a shuffled join's result (default: the session's
                parallelism).
            suffix: appended to ``other``'s column names that this table also has.

        Raises:
            InvalidArgumentError: a key that is not a column, keys of different types,
                an unknown ``how``.
        """
        pa = require("join()")
        if not isinstance(other, TableDataset):
            raise ArgumentTypeError("join() other", other, "a TableDataset (from read_table)")
        if other.session is not self.session:
            raise InvalidArgumentError("join() other", other, "a table of the same session")
        if how not in ("inner", "left"):
            raise InvalidArgumentError("join() how", how, "'inner' or 'left'")
        left_keys = check_keys("join() on", _names("join() on", on), self._schema)
        right_keys = check_keys(
            "join() right_on",
            _names("join() right_on", on if right_on is None else right_on),
            other._schema,
        )
        if len(left_keys) != len(right_keys):
            raise InvalidArgumentError(
                "join() right_on", right_keys, f"{len(left_keys)} columns, as many as on="
            )
        for left, right in zip(left_keys, right_keys, strict=True):
            a, b = self._schema.field(left).type, other._schema.field(right).type
            if a != b:
                raise InvalidArgumentError(
                    f"join() key {right!r} of the other table",
                    str(b),
                    f"the type of key {left!r} of this table, {a}",
                    detail="cast one side in its read_table schema",
                )
        try:
            schema = join_tables(
                self._schema.empty_table(),
                other._schema.empty_table(),
                left_keys,
                right_keys,
                how,
                suffix,
            ).schema
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise InvalidArgumentError(
                "join()", f"on={left_keys}", "keys and columns pyarrow can join", detail=str(exc)
            ) from None
        if broadcast is None:
            size = estimated_bytes(other._data.node)
            limit = self.session.broadcast_limit
            broadcast = partitions is None and size is not None and size <= limit
        if broadcast:
            if partitions is not None:
                raise InvalidArgumentError(
                    "join() broadcast",
                    True,
                    "no partitions= (a broadcast join keeps this table's partitions)",
                )
            return self._broadcast_join(other, left_keys, right_keys, how, suffix, schema)
        count = _partitions("join()", partitions, self.session.parallelism)
        sides = Union(
            (
                FlatMap(self._data.node, Scatter(left_keys, count, 0), "join (scatter)"),
                FlatMap(other._data.node, Scatter(right_keys, count, 1), "join (scatter)"),
            )
        )
        grouped = GroupByKey(sides, count, by_index)
        join = JoinShuffled(left_keys, right_keys, how, suffix, self._schema, other._schema, schema)
        return self._new(FlatMap(grouped, join, "join"), schema)

    def _broadcast_join(
        self,
        other: TableDataset,
        on: tuple[str, ...],
        right_on: tuple[str, ...],
        how: Literal["inner", "left"],
        suffix: str,
        schema: Schema,
    ) -> TableDataset:
        gather = Aggregator(start_list, append_table, concat_lists)
        keyed = Map(other._data.node, key_zero, "join (broadcast side)")
        gathered = CombineByKey(keyed, 1, gather, by_index, "join (gather)")
        small = Map(gathered, BroadcastSide(other._schema), "join (broadcast side)")
        probe = Map(self._data.node, key_zero, "join")
        joined = BroadcastJoin(probe, small, "left")
        finish = JoinBroadcast(on, right_on, how, suffix, other._schema, schema)
        return self._new(Map(joined, finish, "join"), schema)

    def group_by(self, *keys: str) -> GroupedTable:
        """Return the table grouped by the ``keys`` columns; aggregate it with ``agg``.

        Raises:
            InvalidArgumentError: no key, or a key that is not a column.
        """
        return GroupedTable(self, check_keys("group_by()", keys, self._schema))

    # ---------------------------------------------------------------- conversions

    def to_rows(self, kind: Literal["tuple", "dict"] = "tuple") -> Dataset[Any]:
        """Return a row dataset: a tuple per row (columns in order), or a dict per row."""
        if kind not in ("tuple", "dict"):
            raise InvalidArgumentError("to_rows() kind", kind, "'tuple' or 'dict'")
        return Dataset(self.session, FlatMap(self._data.node, Rows(kind), "to_rows"))

    # ---------------------------------------------------------------- actions

    def collect(self) -> Table:
        """Return every row as one ``pyarrow.Table``, partitions in order."""
        return concat(self._data.collect(), self._schema)

    def to_pylist(self) -> list[dict[str, Any]]:
        """Return every row as a dict of column name to value, partitions in order."""
        rows: list[dict[str, Any]] = self.collect().to_pylist()
        return rows

    def count(self) -> int:
        """Return the number of rows."""
        return sum(Dataset(self.session, Map(self._data.node, NumRows(), "count")).collect())


class GroupedTable:
    """A :class:`TableDataset` grouped by key columns, waiting for ``agg``.

    Immutable, so safe to share between threads, like the table it groups.
    """

    __slots__ = ("_keys", "_table")

    def __init__(self, table: TableDataset, keys: tuple[str, ...]) -> None:
        self._table = table
        self._keys = keys

    @property
    def keys(self) -> tuple[str, ...]:
        """The key columns."""
        return self._keys

    def __repr__(self) -> str:
        return f"GroupedTable(keys={self._keys!r})"

    def agg(
        self,
        *aggregates: tuple[str, str],
        partitions: int | None = None,
        **named: tuple[str, str],
    ) -> TableDataset:
        """Return one row per distinct key: the keys, then one column per aggregate.

        Each aggregate is ``(column, function)``, function one of ``sum``, ``count``
        (non-null values), ``min``, ``max``, ``mean``; positional ones are named
        ``<column>_<function>``, keyword ones by their keyword:
        ``agg(("count", "sum"), orders=("count", "count"))``. Nulls are skipped.

        Args:
            partitions: partitions of the result (default: the session's parallelism).

        Raises:
            InvalidArgumentError: an unknown column or function, ``sum`` / ``mean`` of a
                column that is not numeric, no aggregate, or two outputs of one name.
        """
        table = self._table
        specs = parse_aggregates(aggregates, named, table.schema, self._keys)
        schema = result_schema(table.schema, self._keys, specs)
        count = _partitions("agg()", partitions, table.session.parallelism)
        node = table.dataset.node
        pieces = FlatMap(node, PartialAggregate(self._keys, specs, count), "agg (partial)")
        grouped = GroupByKey(pieces, count, by_index)
        merged = Map(grouped, MergePartials(self._keys, specs, schema), "agg")
        return table._new(merged, schema)
