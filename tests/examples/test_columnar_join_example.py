"""examples/columnar_join.py: the columnar join + group_by agrees with the row join."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "columnar_join.py"


def test_the_columnar_and_row_joins_agree() -> None:
    pytest.importorskip("pyarrow")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "20000"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "20,000 sales, 20 countries" in proc.stdout
    assert "columnar and row joins agree: True" in proc.stdout
    assert proc.stdout.startswith("agg [2 partitions] ...")
