"""Every Python example in the README and docs/ runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
SKIP = "# not run:"  # a block whose first line starts so is illustration only
PRINTS = re.compile(r"#\s*prints (.+)$", re.MULTILINE)  # `print(x)  # prints 42` is checked


def examples() -> list[tuple[str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, code in enumerate(BLOCK.findall(page.read_text()), 1):
            if not code.lstrip().startswith(SKIP):
                found.append((f"{page.name}#{n}", code))
    return found


@pytest.mark.parametrize(("where", "code"), examples(), ids=[w for w, _ in examples()])
def test_example_runs(where: str, code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
    expected = [line.strip() for line in PRINTS.findall(code)]
    if expected:
        assert done.stdout.split("\n")[: len(expected)] == expected, done.stdout
