"""The stable hash that places keys in shuffle partitions, the same in every process.

Python's ``hash()`` of a ``str`` is salted per process, so two workers would send the
same word to different partitions. ``stable_hash`` is XXH3-64 over a canonical encoding
instead, chosen so that keys Python considers equal hash alike (a dict groups them
together, so the partitioner must too):

- ``str`` → its UTF-8 bytes (lone surrogates passed through); ``bytes`` → as they are;
- ``int`` and ``bool`` → a multiplicative mix of the low 64 bits (``True`` is ``1``);
- ``float`` → as the ``int`` it equals when integral (``2.0`` with ``2``), else its
  IEEE-754 bytes; ``Decimal`` and ``Fraction`` → as the int or float they equal;
- ``tuple`` (named tuples too) → a combination of its items' hashes, in order;
  ``frozenset`` → an order-independent combination; ``None`` → a constant;
- anything else → its pickle. Such keys must pickle identically when equal (dataclasses
  and enums of the types above do; sets and dicts inside keys do not).
"""

from __future__ import annotations

import pickle
import struct
from decimal import Decimal
from fractions import Fraction
from typing import Final

from xxhash import xxh3_64_intdigest

__all__ = ["hash_partition", "mix", "stable_hash"]

M64: Final = (1 << 64) - 1
GOLDEN: Final = 0x9E3779B97F4A7C15
_TUPLE_SEED: Final = 0x27D4EB2F165667C5
_NONE: Final = 0x165667B19E3779F9


def mix(value: int) -> int:
    """Return a 64-bit mix of ``value`` (any int): cheap, deterministic, well spread."""
    h = ((value & M64) * GOLDEN) & M64
    return h ^ (h >> 32)


def _str_hash(key: str) -> int:
    return xxh3_64_intdigest(key.encode("utf-8", "surrogatepass"))


def _float_hash(key: float) -> int:
    if key.is_integer():
        return mix(int(key))
    return xxh3_64_intdigest(struct.pack("<d", key))


def _tuple_hash(key: tuple[object, ...]) -> int:
    h = _TUPLE_SEED
    for item in key:
        h = ((h ^ stable_hash(item)) * GOLDEN) & M64
    return h ^ (h >> 29)


def _frozenset_hash(key: frozenset[object]) -> int:
    h = len(key)
    for item in key:
        h ^= mix(stable_hash(item) + 0x51ED27)
    return mix(h)


def _exact_hash(key: Decimal | Fraction) -> int:
    if key == int(key):
        return mix(int(key))
    as_float = float(key)
    if as_float == key:
        return _float_hash(as_float)
    return xxh3_64_intdigest(str(key).encode())


def stable_hash(key: object) -> int:
    """Return the unsigned 64-bit hash of ``key``, identical in every process and run.

    Keys that compare equal in Python hash alike (see the module docstring for the
    encoding of each type).
    """
    kind = type(key)
    if kind is str:
        return _str_hash(key)  # type: ignore[arg-type]
    if kind is int or kind is bool:
        return mix(key)  # type: ignore[arg-type]
    if kind is tuple:
        return _tuple_hash(key)  # type: ignore[arg-type]
    if kind is float:
        return _float_hash(key)  # type: ignore[arg-type]
    if key is None:
        return _NONE
    if kind is bytes:
        return xxh3_64_intdigest(key)  # type: ignore[arg-type]
    if isinstance(key, str):
        return _str_hash(key)
    if isinstance(key, int):
        return mix(int(key))
    if isinstance(key, tuple):
        return _tuple_hash(key)
    if isinstance(key, float):
        return _float_hash(float(key))
    if isinstance(key, Decimal | Fraction):
        return _exact_hash(key)
    if isinstance(key, frozenset):
        return _frozenset_hash(key)
    if isinstance(key, bytes | bytearray | memoryview):
        return xxh3_64_intdigest(bytes(key))
    return xxh3_64_intdigest(pickle.dumps(key, protocol=5))


def hash_partition(key: object, partitions: int) -> int:
    """The default partitioner: ``stable_hash(key) % partitions``.

    A partitioner is any picklable callable ``(key, partitions) -> int`` returning a
    partition in ``[0, partitions)``, the same for equal keys in every process.
    """
    return stable_hash(key) % partitions
