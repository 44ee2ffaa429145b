"""distsys demo cache and distsys demo ring."""

from __future__ import annotations

import random
import re
from collections import Counter

from click.testing import CliRunner

from distsys.cli import main
from distsys.cli._algorithms_demo import run_cache, zipf_keys


def test_zipf_keys_are_skewed_and_reproducible() -> None:
    keys = zipf_keys(20_000, 1_000, 1.1, random.Random(1))
    assert keys == zipf_keys(20_000, 1_000, 1.1, random.Random(1))
    assert all(0 <= k < 1_000 for k in keys)
    counts = Counter(keys)
    assert counts[0] > counts[9] > counts[99]  # popularity falls with rank


def test_a_bigger_cache_hits_more() -> None:
    keys = zipf_keys(20_000, 5_000, 1.1, random.Random(2))
    small, large = run_cache(keys, 50), run_cache(keys, 2_000)
    assert 0 < small.hit_ratio < large.hit_ratio < 1
    assert small.evictions > large.evictions


def test_cache_demo_prints_hit_ratios() -> None:
    result = CliRunner().invoke(main, ["demo", "cache", "--requests", "5000", "--universe", "2000"])
    assert result.exit_code == 0, result.output
    ratios = [float(r) for r in re.findall(r"(\d+\.\d)%\s+│\s+[\d,]+\s+│", result.output)]
    assert len(ratios) == 3
    assert ratios == sorted(ratios)


def test_ring_demo_moves_keys_only_to_the_newcomer() -> None:
    args = ["demo", "ring", "--keys", "20000", "--nodes", "5"]
    result = CliRunner().invoke(main, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "every moved key went to cache-05: yes" in result.output
    moved = float(re.search(r"moved (\d+\.\d+)% of the keys", result.output).group(1))  # type: ignore[union-attr]
    assert 10 < moved < 25  # about 1/6
    bound = float(re.search(r"at most (\d+\.\d+)x", result.output).group(1))  # type: ignore[union-attr]
    assert bound <= 1.25 * 1.1  # ceil(c * load) on small loads rounds up a little
