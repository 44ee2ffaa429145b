"""Module-level functions the dataflow tests ship to worker processes (lambdas cannot be).

Kept apart from the test modules so a worker imports only this small module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any


def double(x: int) -> int:
    return 2 * x


def is_even(x: int) -> bool:
    return x % 2 == 0


def mod7(x: int) -> int:
    return x % 7


def neg(x: int) -> int:
    return -x


def pair_mod5(x: int) -> tuple[int, int]:
    return x % 5, x


def pair_one(word: str) -> tuple[str, int]:
    return word, 1


def add(a: Any, b: Any) -> Any:
    return a + b


def append(acc: list[Any], value: Any) -> list[Any]:
    acc.append(value)
    return acc


def concat(a: list[Any], b: list[Any]) -> list[Any]:
    return a + b


def upto(x: int) -> range:
    return range(x % 4)


def partition_sum(records: Iterator[int]) -> Iterable[int]:
    return [sum(records)]


def partition_size(records: Iterator[Any]) -> list[int]:
    return [sum(1 for _ in records)]


def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


def total(word: str, counts: Iterator[int]) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


def first_letter(key: Any, partitions: int) -> int:
    return ord(str(key)[0]) % partitions


def fail_always(x: int) -> int:
    raise ZeroDivisionError(f"cannot handle {x}")


class DieOnce:
    """Kill the worker process (``os._exit``) the first time it sees ``victim``.

    ``marker`` is a file: it is created just before dying, so the retry lives.
    """

    def __init__(self, marker: str, victim: int) -> None:
        self.marker = marker
        self.victim = victim

    def __call__(self, x: int) -> int:
        if x == self.victim and not os.path.exists(self.marker):
            with open(self.marker, "w"):
                pass
            os._exit(13)
        return x


class FailTimes:
    """Raise the first ``times`` calls on ``victim`` (counted in files under ``directory``)."""

    def __init__(self, directory: str, victim: int, times: int) -> None:
        self.directory = directory
        self.victim = victim
        self.times = times

    def __call__(self, x: int) -> int:
        if x == self.victim:
            seen = len(os.listdir(self.directory))
            if seen < self.times:
                with open(os.path.join(self.directory, str(seen)), "w"):
                    pass
                raise RuntimeError(f"flaky failure {seen + 1}")
        return x


def not_a_pair(x: int) -> Any:
    return (x, x, x) if x == 3 else (x, x)
