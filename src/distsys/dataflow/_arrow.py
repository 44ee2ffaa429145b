"""pyarrow, imported when a columnar operation first needs it, and the helpers over it.

pyarrow is optional (``pip install 'distsys[columnar]'``): ``import distsys.dataflow``
never imports it; :func:`require` does, and raises
:class:`~distsys.dataflow.MissingLibraryError` naming the extra when it is missing.
pyarrow ships no type information, so its tables, schemas and types are ``Any`` here,
under the aliases below; this module is the one place that imports it.

Hash partitioning of a table is vectorised: integer keys are mixed with the golden-ratio
multiplier in numpy; other keys are hashed once per distinct value with
:func:`~distsys.dataflow.stable_hash`. Equal keys of the same type land in the same
partition in every process, so both sides of a join agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from distsys.dataflow._errors import MissingLibraryError
from distsys.dataflow._hashing import GOLDEN, stable_hash
from distsys.errors import InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "EXTRA",
    "DataType",
    "Schema",
    "Table",
    "concat",
    "data_type",
    "partition_ids",
    "require",
    "split_by",
]

EXTRA: Final = "columnar"
LIBRARY: Final = "pyarrow"
Table = Any  # pyarrow.Table
Schema = Any  # pyarrow.Schema
DataType = Any  # pyarrow.DataType
TYPE_EXAMPLES: Final = (
    "a pyarrow type or its name: 'int64', 'int32', 'float64', 'string', 'bool', "
    "'date32', 'timestamp[us]'..."
)


def require(operation: str) -> Any:
    """Return the ``pyarrow`` module (with ``compute`` and ``csv`` loaded).

    Raises:
        MissingLibraryError: pyarrow (or numpy, which the table operations use too) is not
            installed; names the extra that installs both.
    """
    try:
        import numpy  # noqa: F401  # the key lookups and hashes of _table_ops and below
        import pyarrow  # type: ignore[import-untyped]
        import pyarrow.compute  # type: ignore[import-untyped]
        import pyarrow.csv  # type: ignore[import-untyped]
    except ImportError as exc:
        missing = exc.name.partition(".")[0] if exc.name else LIBRARY
        raise MissingLibraryError(operation, missing, EXTRA) from None
    return pyarrow


def data_type(field: str, value: object) -> DataType:
    """Return the pyarrow type ``value`` names (``"int64"``) or is.

    Raises:
        InvalidArgumentError: naming ``field`` when it is neither.
    """
    pa = require("read_table()")
    if isinstance(value, pa.DataType):
        return value
    if isinstance(value, str):
        try:
            return pa.type_for_alias(value)
        except ValueError:
            pass
    raise InvalidArgumentError(field, value, TYPE_EXAMPLES)


def concat(tables: Sequence[Table], schema: Schema) -> Table:
    """Return ``tables`` as one table (no copy), or an empty one of ``schema``."""
    pa = require("concat")
    if not tables:
        return schema.empty_table()
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables)


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    import numpy as np

    with np.errstate(over="ignore"):
        h = values * np.uint64(GOLDEN)
        return h ^ (h >> np.uint64(29))


def _column_hashes(column: Any) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash per value of a chunked array (nulls hash alike)."""
    import numpy as np

    pa = require("hash partitioning")
    pc = pa.compute
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        ints = pc.fill_null(pc.cast(column, pa.int64()), 0)
        raw: npt.NDArray[np.int64] = ints.to_numpy()
        return _mix(raw.astype(np.uint64))
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)
    distinct = pc.unique(column)
    codes = pc.fill_null(pc.index_in(column, value_set=distinct), 0)
    table = np.fromiter(
        (stable_hash(v) for v in distinct.to_pylist()), dtype=np.uint64, count=len(distinct)
    )
    found: npt.NDArray[np.int64] = codes.to_numpy()
    return table[found]


def partition_ids(table: Table, keys: Sequence[str], partitions: int) -> npt.NDArray[np.int64]:
    """Return the partition in ``[0, partitions)`` of each row, by its ``keys`` columns."""
    import numpy as np

    if partitions == 1 or not keys:
        return np.zeros(table.num_rows, dtype=np.int64)
    h = _column_hashes(table.column(keys[0]))
    for key in keys[1:]:
        with np.errstate(over="ignore"):
            h = _mix(h ^ _column_hashes(table.column(key)))
    ids: npt.NDArray[np.int64] = (h % np.uint64(partitions)).astype(np.int64)
    return ids


def split_by(table: Table, keys: Sequence[str], partitions: int) -> list[tuple[int, Table]]:
    """Cut ``table`` into ``(partition, rows)`` pieces by hash of ``keys``; no empty piece."""
    import numpy as np

    if table.num_rows == 0:
        return []
    ids = partition_ids(table, keys, partitions)
    counts = np.bincount(ids, minlength=partitions)
    if int(np.count_nonzero(counts)) == 1:
        return [(int(ids[0]), table)]
    ordered = table.take(np.argsort(ids, kind="stable"))
    pieces = []
    start = 0
    for partition, count in enumerate(counts.tolist()):
        if count:
            pieces.append((partition, ordered.slice(start, count)))
            start += count
    return pieces
