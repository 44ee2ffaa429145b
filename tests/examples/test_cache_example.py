"""examples/cache_zipf.py runs and prints numbers that hang together."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cache_zipf.py"


def test_cache_zipf() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout

    found = re.search(
        r"over (\d+) keys, (\d+) lookups, capacity (\d+): hit ratio ([\d.]+) "
        r"\(top \d+ keys carry ([\d.]+)\)",
        out,
    )
    assert found is not None, out
    keys, lookups, capacity = map(int, found.groups()[:3])
    ratio, best = map(float, found.groups()[3:])
    counts = re.search(r"hits (\d+), misses (\d+), evictions (\d+)", out)
    assert counts is not None, out
    hits, misses, evictions = map(int, counts.groups())

    assert hits + misses == lookups
    assert abs(ratio - hits / lookups) < 0.001
    assert evictions == misses - capacity  # every miss stores; the first `capacity` fit
    assert 0.3 < ratio < best <= 1.0  # skewed enough to pay off, never above the bound
    assert capacity < keys

    flight = re.search(r"ran (\d+) time\(s\) for 20 concurrent calls, then (\d+) hits", out)
    assert flight is not None, out
    assert flight.groups() == ("1", "20")
