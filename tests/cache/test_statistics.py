"""CacheStatistics and EvictionReason."""

from __future__ import annotations

import dataclasses

import pytest

from distsys.cache import CacheStatistics, EvictionReason


def stats(hits: int, misses: int) -> CacheStatistics:
    return CacheStatistics(
        hits=hits, misses=misses, evictions=0, expirations=0, size=0, weight=0, maxsize=1
    )


def test_hit_ratio() -> None:
    assert stats(0, 0).hit_ratio == 0.0
    assert stats(3, 1).hit_ratio == 0.75


def test_statistics_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats(1, 1).hits = 2  # type: ignore[misc]


def test_the_reasons() -> None:
    assert [reason.value for reason in EvictionReason] == ["capacity", "expired", "replaced"]
