"""The root ``distsys`` command, and what importing the CLI costs the rest of distsys."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

import distsys
import distsys.cli
from distsys.cli import main


def test_exports() -> None:
    assert distsys.cli.__all__ == ["main"]


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"distsys, version {distsys.__version__}\n"


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "demo" in result.output


def test_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "distsys.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert proc.stdout.strip() == f"distsys, version {distsys.__version__}"


def test_the_library_imports_neither_click_nor_rich() -> None:
    code = (
        "import sys, pkgutil, importlib, distsys\n"
        "for m in pkgutil.iter_modules(distsys.__path__):\n"
        "    if m.name != 'cli':\n"
        "        importlib.import_module('distsys.' + m.name)\n"
        "print(sorted(n for n in ('click', 'rich') if n in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stdout.strip() == "[]"
