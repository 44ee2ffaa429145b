"""Module-level functions the engine tests ship to Dask and Spark workers.

Dask and Spark send functions with cloudpickle (lambdas would work there); the local
engine needs importable ones, and the same program must run on all three.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def pair_one(word: str) -> tuple[str, int]:
    return word, 1


def add(a: Any, b: Any) -> Any:
    return a + b


def key_mod(n: int) -> tuple[int, int]:
    return n % 10, n


def key_mod7(n: int) -> tuple[int, str]:
    return n % 7, f"r{n}"


def by_count(pair: tuple[str, int]) -> int:
    return pair[1]


def by_tens(n: int) -> int:
    return n // 10


def modulo(key: int, partitions: int) -> int:
    return key % partitions


def keys_of(records: Iterator[tuple[Any, Any]]) -> list[list[Any]]:
    return [sorted({key for key, _ in records})]


def listed(records: Iterator[Any]) -> list[list[Any]]:
    return [list(records)]


def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


def total(word: str, counts: Iterator[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


def explode(n: int) -> int:
    if n == 13:
        raise ZeroDivisionError("thirteen")
    return n


def start_list(value: Any) -> list[Any]:
    return [value]


def append(acc: list[Any], value: Any) -> list[Any]:
    return [*acc, value]


def concat(a: list[Any], b: list[Any]) -> list[Any]:
    return a + b
