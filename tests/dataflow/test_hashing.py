"""stable_hash: equal keys hash alike, in every process."""

from __future__ import annotations

import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

from hypothesis import example, given
from hypothesis import strategies as st

from distsys.dataflow import hash_partition, stable_hash
from distsys.dataflow._hashing import mix

scalars = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(), st.binary(), st.booleans(), st.none()
)
keys = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner), max_leaves=6
)


@given(keys)
@example(math.inf)
@example(-math.inf)
@example(10**400)
@example(2**53 + 1)
def test_equal_keys_hash_alike(key: object) -> None:
    assert 0 <= stable_hash(key) < 2**64
    assert stable_hash(key) == stable_hash(key)
    if isinstance(key, int) or (isinstance(key, float) and math.isfinite(key) and key == int(key)):
        whole = int(key)
        assert stable_hash(key) == stable_hash(whole)
        if abs(whole) < 2**1000 and float(whole) == whole:  # the float equal to it, if any
            assert stable_hash(whole) == stable_hash(float(whole))


def test_numbers_that_compare_equal_hash_alike() -> None:
    assert stable_hash(1) == stable_hash(1.0) == stable_hash(True) == stable_hash(Decimal(1))
    assert stable_hash(0.5) == stable_hash(Fraction(1, 2)) == stable_hash(Decimal("0.5"))
    assert stable_hash((1, "a")) == stable_hash((1.0, "a"))
    assert stable_hash(frozenset({1, 2})) == stable_hash(frozenset({2.0, 1}))
    assert stable_hash(-0.0) == stable_hash(0)
    assert stable_hash(2**70) == mix(2**70)


def test_the_hash_is_the_same_in_another_process() -> None:
    sample = ["word", 42, (1, "x"), None, b"raw", 2.5]
    code = f"from distsys.dataflow import stable_hash\nprint([stable_hash(k) for k in {sample!r}])"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert other == str([stable_hash(k) for k in sample])


@given(st.text(), st.integers(1, 50))
def test_hash_partition_is_in_range(key: str, partitions: int) -> None:
    assert 0 <= hash_partition(key, partitions) < partitions


def test_hash_partition_spreads_keys() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[hash_partition(f"key-{i}", 8)] += 1
    assert min(counts) > 800
