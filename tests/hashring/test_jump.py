"""jump_hash: the paper's reference results, range, minimal movement, bad input."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distsys.errors import ArgumentTypeError, InvalidArgumentError
from distsys.hashring import hash_key, jump_hash

# Results of Lamping and Veach's C++ reference, as published with other ports of it
# (ClickHouse's jumpConsistentHash tests, the Rust jump-consistent-hash docs).
REFERENCE = [
    (1, 1, 0),
    (42, 57, 43),
    (256, 1024, 520),
    (0xDEAD10CC, 1, 0),
    (0xDEAD10CC, 666, 361),
    (16045690984833335023, 255, 237),
    (0, 60, 0),
    (1, 60, 55),
    (2, 60, 46),
]


@pytest.mark.parametrize(("key", "buckets", "bucket"), REFERENCE)
def test_matches_the_reference_implementation(key: int, buckets: int, bucket: int) -> None:
    assert jump_hash(key, buckets) == bucket


def test_str_and_bytes_keys_are_hashed_with_hash_key_first() -> None:
    assert jump_hash("user:42", 1000) == jump_hash(hash_key("user:42"), 1000)
    assert jump_hash(b"user:42", 1000) == jump_hash("user:42", 1000)
    assert jump_hash("user:42", 1000) == 848  # golden: placement must never change


def test_a_negative_key_is_its_twos_complement() -> None:
    assert jump_hash(-1, 1000) == jump_hash(2**64 - 1, 1000)
    assert jump_hash(-(2**63), 77) == jump_hash(2**63, 77)


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(min_value=1, max_value=2**31 - 1))
def test_the_bucket_is_in_range(key: int, buckets: int) -> None:
    assert 0 <= jump_hash(key, buckets) < buckets


@given(
    st.one_of(st.integers(min_value=0, max_value=2**64 - 1), st.text(), st.binary()),
    st.integers(min_value=1, max_value=5000),
)
def test_one_more_bucket_moves_keys_only_into_it(key: int | str | bytes, buckets: int) -> None:
    before, after = jump_hash(key, buckets), jump_hash(key, buckets + 1)
    assert after in (before, buckets)


def test_keys_spread_evenly() -> None:
    counts = Counter(jump_hash(f"key-{i}", 10) for i in range(50_000))
    assert sorted(counts) == list(range(10))
    assert max(counts.values()) / min(counts.values()) < 1.1


@pytest.mark.parametrize("buckets", [0, -1, 2**31])
def test_buckets_out_of_range_are_refused(buckets: int) -> None:
    with pytest.raises(InvalidArgumentError, match=r"buckets=.*an int from 1 to 2147483647"):
        jump_hash(1, buckets)


@pytest.mark.parametrize("buckets", [1.0, "10", None, True])
def test_buckets_must_be_an_int(buckets: object) -> None:
    with pytest.raises(ArgumentTypeError, match="buckets="):
        jump_hash(1, buckets)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [2**64, -(2**63) - 1])
def test_int_keys_must_fit_in_64_bits(key: int) -> None:
    with pytest.raises(InvalidArgumentError, match=r"key=.*-2\*\*63 to 2\*\*64 - 1"):
        jump_hash(key, 10)


@pytest.mark.parametrize("key", [1.5, None, True])
def test_other_keys_are_refused(key: object) -> None:
    with pytest.raises(ArgumentTypeError, match="key="):
        jump_hash(key, 10)  # type: ignore[arg-type]


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="UTF-8"):
        jump_hash("\ud800", 10)
