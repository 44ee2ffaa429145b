"""The functions the Dask executor submits: they run in the cluster's workers.

Each takes what one task needs — a shuffle's :class:`~distsys.dataflow._exchange.ShuffleSpec`,
a stage's physical plan (scattered once per stage), the partition index — and the
futures of its inputs as trailing arguments, which Dask replaces by their values; ``keys``
names them for :func:`~distsys.dataflow._remote.compute`. Exceptions leave as
:class:`~distsys.dataflow._remote.RemoteTaskError`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

from distsys.dataflow._exchange import ShuffleSpec, build_table, merge, sample, split, split_sorted
from distsys.dataflow._plan import Node
from distsys.dataflow._remote import call_guarded, cloudpickle_module, compute, result_task

__all__ = [
    "ByValue",
    "call",
    "cut_task",
    "map_task",
    "named_inputs",
    "partition_task",
    "reduce_task",
    "run_action",
    "samples_of",
    "sort_task",
    "table_task",
]

Inputs = dict[tuple[int, int], Any]


class ByValue:
    """An argument pickled with cloudpickle even inside an object pickle would send by
    reference, so ``cloudpickle.register_pickle_by_value`` (a script's module, which the
    workers cannot import) is honoured; it arrives as the object itself, or still wrapped
    when Dask did not serialize it (workers in this process): :func:`call` unwraps it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (pickle.loads, (cloudpickle_module().dumps(self.value),))


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Return ``fn(*args)`` with every :class:`ByValue` argument unwrapped."""
    return fn(*(arg.value if isinstance(arg, ByValue) else arg for arg in args))


def named_inputs(keys: tuple[tuple[int, int], ...], values: tuple[Any, ...]) -> Inputs:
    return dict(zip(keys, values, strict=True))


def map_task(
    stage: str,
    spec: ShuffleSpec,
    plan: Node,
    index: int,
    keys: tuple[tuple[int, int], ...],
    *values: Any,
) -> list[Any]:
    inputs = named_inputs(keys, values)
    return call_guarded(  # type: ignore[no-any-return]
        stage, index, lambda: split(spec, compute(plan, index, inputs, None), index)
    )


def sort_task(
    stage: str,
    spec: ShuffleSpec,
    plan: Node,
    index: int,
    keys: tuple[tuple[int, int], ...],
    *values: Any,
) -> tuple[list[Any], list[Any]]:
    inputs = named_inputs(keys, values)
    return call_guarded(  # type: ignore[no-any-return]
        stage, index, lambda: sample(spec, compute(plan, index, inputs, None))
    )


def samples_of(run: tuple[list[Any], list[Any]]) -> list[Any]:
    return run[1]


def cut_task(
    stage: str, spec: ShuffleSpec, bounds: list[Any], index: int, run: tuple[list[Any], Any]
) -> list[Any]:
    return call_guarded(  # type: ignore[no-any-return]
        stage, index, lambda: split_sorted(spec, run[0], bounds)
    )


def reduce_task(stage: str, spec: ShuffleSpec, index: int, left: int, *pieces: Any) -> list[Any]:
    return call_guarded(  # type: ignore[no-any-return]
        stage, index, lambda: merge(spec, pieces[:left], pieces[left:])
    )


def partition_task(
    stage: str, plan: Node, index: int, keys: tuple[tuple[int, int], ...], *values: Any
) -> list[Any]:
    inputs = named_inputs(keys, values)
    return call_guarded(  # type: ignore[no-any-return]
        stage, index, lambda: list(compute(plan, index, inputs, None))
    )


def table_task(stage: str, *partitions: list[Any]) -> dict[Any, list[Any]]:
    return call_guarded(stage, 0, lambda: build_table(partitions))  # type: ignore[no-any-return]


def run_action(
    stage: str,
    plan: Node,
    index: int,
    run_partition: Callable[[int, Iterator[Any]], Any],
    size: Callable[[Any], int] | None,
    keys: tuple[tuple[int, int], ...],
    *values: Any,
) -> Any:
    return result_task(stage, plan, index, run_partition, size, named_inputs(keys, values))
