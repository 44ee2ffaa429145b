"""Every example runs and prints a result that makes sense."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def match(pattern: str, text: str) -> re.Match[str]:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return found


def test_pipeline() -> None:
    out = run_example("pipeline.py")
    sent = int(match(r"sent (\d+) of 100 items to 8 workers, deadline 1.0 s", out).group(1))
    completed, total = map(
        int, match(r"completed (\d+) items, sum of their squares (\d+)", out).groups()
    )
    how_many, listed = match(r"cancelled (\d+) items by the deadline: \[([\d, ]*)\]", out).groups()
    cancelled = {int(n) for n in listed.split(",") if n.strip()}
    assert int(how_many) == len(cancelled)

    # Items go out in order, and each one sent is either completed or cancelled.
    assert completed + len(cancelled) == sent
    finished = set(range(sent)) - cancelled
    assert total == sum(n * n for n in finished)
    # The stragglers' minute-long calls can never beat the one-second deadline.
    assert not {7, 57} & finished
