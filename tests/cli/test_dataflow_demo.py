"""``distsys demo wordcount``: a word count on every core that survives a killed worker."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from distsys.cli import _demo, main
from distsys.cli._dataflow_demo import SplitWords, wordcount_demo, write_corpus
from tests.cli.test_pipeline_command import PIPED, TERMINAL


def test_is_a_demo_scenario() -> None:
    assert wordcount_demo in _demo.SCENARIOS
    assert _demo.demo.commands["wordcount"] is wordcount_demo


def test_counts_exactly_despite_a_killed_worker() -> None:
    result = CliRunner().invoke(
        main, ["demo", "wordcount", "--size", "300KB", "--workers", "2"], env=PIPED
    )
    assert result.exit_code == 0, result.output
    out = result.output
    text = " ".join(out.split())
    assert "generated 300" in out
    assert re.search(r"1 │ \w+\s+│\s+[\d,]+", out)
    assert "1 task attempt failed when its worker was killed" in text
    assert "The counts match collections.Counter exactly." in text
    assert re.search(r"1\.1: read_text → flat_map →\s", out)


def test_without_a_kill_and_on_a_terminal() -> None:
    result = CliRunner().invoke(
        main, ["demo", "wordcount", "--size", "100KB", "--no-kill", "--top", "3"], env=TERMINAL
    )
    assert result.exit_code == 0, result.output
    assert "killed" not in result.output
    assert "match collections.Counter exactly" in " ".join(result.output.split())


def test_a_bad_size_is_refused() -> None:
    result = CliRunner().invoke(main, ["demo", "wordcount", "--size", "big"], env=PIPED)
    assert result.exit_code == 2
    assert "--size" in result.output


def test_the_corpus_is_seeded(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_corpus(tmp_path / "a", 20_000, seed=3)
    second = write_corpus(tmp_path / "b", 20_000, seed=3)
    assert [p.read_text() for p in first] == [p.read_text() for p in second]
    assert sum(p.stat().st_size for p in first) >= 20_000
    assert SplitWords(None)("a b") == ["a", "b"]
