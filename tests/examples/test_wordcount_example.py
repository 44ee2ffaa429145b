"""examples/wordcount.py: the MapReduce paper's word count agrees with count_by_value."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "wordcount.py"


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_counts_the_generated_corpus() -> None:
    out = run()
    found = re.search(r"(\d+) words, (\d+) distinct, in 3 files", out)
    assert found is not None, out
    assert found.groups() == ("72000", "20")  # 3 files x 2,000 lines x 12 words
    top = re.search(r"most frequent: the (\d+), of (\d+),", out)
    assert top is not None, out
    assert int(top.group(1)) > int(top.group(2))  # Zipf: "the" is the most frequent
    assert "count_by_value agrees: True" in out
    assert "stage 1: read_text → map → combine → partition_and_sort" in out
    assert "stage 2: partition_and_sort → reduce → top: 4 tasks" in out


def test_counts_files_given_on_the_command_line(tmp_path: Path) -> None:
    text = "to be or not to be\nthat is the question\n"
    (tmp_path / "hamlet.txt").write_text(text)
    out = run(str(tmp_path / "hamlet.txt"))
    assert "10 words, 8 distinct, in 1 files" in out
    assert "most frequent: to 2, be 2, the 1, that 1, question 1" in out
    assert Counter(text.split())["to"] == 2
