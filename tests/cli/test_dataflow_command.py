"""``distsys dataflow``: wordcount and run, their errors, and their summaries."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from distsys.cli import main
from tests.cli.test_pipeline_command import PIPED, TERMINAL

CORPUS = "the cat sat\non the mat\nthe end\n"


def run(*args: str, env: dict[str, str | None] = PIPED, code: int = 0) -> Result:
    result = CliRunner().invoke(main, ["dataflow", *args], env=env)
    assert result.exit_code == code, result.output
    return result


def flat(text: str) -> str:
    """Return ``text`` with its line wrapping undone."""
    return " ".join(text.split())


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS)
    return path


def test_wordcount_prints_the_top_words_and_the_stages(corpus: Path) -> None:
    out = run("wordcount", str(corpus), "--top", "2", "--workers", "2").output
    assert re.search(r"1 │ the\s+│\s+3", out), out
    assert re.search(r"2 │ \w+\s+│\s+1", out), out
    assert "1.1: read_text → flat_map → count_by_value" in out
    assert "1.2: count_by_value → top" in out
    assert "3 input records, 1 job(s)" in flat(out)
    assert "2 worker processes (engine local" in flat(out)
    assert "\x1b[" not in out


def test_wordcount_saves_every_count(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "counts"
    result = run("wordcount", str(corpus), "--output", str(out), "--workers", "1", "--top", "1")
    assert f"Saved to {out}/" in flat(result.output)
    lines = sorted(
        line for part in sorted(out.glob("part-*")) for line in part.read_text().splitlines()
    )
    assert lines == ["cat\t1", "end\t1", "mat\t1", "on\t1", "sat\t1", "the\t3"]
    assert (out / "_SUCCESS").exists()


def test_wordcount_skips_or_fails_on_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"ok line\n\xff\xfe\nfine\n")
    failed = run("wordcount", str(path), "--workers", "1", code=1)
    assert f"{path}:2: not valid utf-8" in flat(failed.output)
    skipped = run("wordcount", str(path), "--workers", "1", "--errors", "skip")
    assert "1 malformed line(s) skipped" in flat(skipped.output)


def test_wordcount_errors_name_what_was_wrong(tmp_path: Path) -> None:
    missing = flat(run("wordcount", str(tmp_path / "nope.txt"), code=1).output)
    assert "nope.txt" in missing
    assert "not found" in missing
    bad_engine = flat(run("wordcount", "x", "--engine", "hadoop", code=2).output)
    assert "'hadoop' is not one of 'dask', 'local', 'spark'" in bad_engine
    assert "--memory-limit" in run("wordcount", "x", "--memory-limit", "lots", code=2).output


def test_wordcount_on_dask(corpus: Path) -> None:
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    out = flat(
        run("wordcount", str(corpus), "--top", "1", "--workers", "1", "--engine", "dask").output
    )
    assert re.search(r"1 │ the │ 3", out), out
    assert "(engine dask" in out


def test_progress_on_a_terminal(corpus: Path) -> None:
    out = run("wordcount", str(corpus), "--workers", "1", env=TERMINAL).output
    assert "1.1: read_text → flat_map → count_by_value" in out


SCRIPT = """
from operator import add


def pair(word):
    return word, 1


def build(session):
    return (
        session.read_text({path!r})
        .flat_map(str.split)
        .map(pair)
        .reduce_by_key(add, partitions=1)
        .sort_by(pair_count, ascending=False)
    )


def pair_count(item):
    return item[1], item[0]
"""


def test_run_a_script_that_builds_a_dataset(corpus: Path, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(path=str(corpus)))
    out = run("run", str(script), "--show", "2", "--workers", "2").output
    assert out.startswith("('the', 3)\n")
    assert "reduce_by_key → sort_by" in out
    saved = tmp_path / "saved"
    run("run", str(script), "--output", str(saved), "--workers", "1")
    assert "('the', 3)" in (saved / "part-00000").read_text()


def test_run_a_script_on_dask_ships_its_functions(corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    script = tmp_path / "job.py"
    script.write_text(SCRIPT.format(path=str(corpus)))  # its functions live only in job.py
    out = run("run", str(script), "--show", "1", "--workers", "1", "--engine", "dask").output
    assert out.startswith("('the', 3)\n")


def test_run_a_script_with_main(corpus: Path, tmp_path: Path) -> None:
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent(
            f"""
            def main(session):
                print("lines:", session.read_text({str(corpus)!r}).count())
            """
        )
    )
    assert "lines: 3" in run("run", str(script), "--workers", "1").output


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "defines neither build(session) -> Dataset nor main(session)"),
        ("raise ValueError('boom')\n", "failed to import: ValueError: boom"),
        ("def build(session):\n    return 42\n", "build() returned int, not a Dataset"),
        (
            "def build(session):\n    return session.from_iterable([1]).map(lambda x: x)\n",
            "map()=<function build.<locals>.<lambda>",
        ),
    ],
)
def test_run_reports_bad_scripts(tmp_path: Path, body: str, message: str) -> None:
    script = tmp_path / "bad.py"
    script.write_text(body)
    assert message in flat(run("run", str(script), "--workers", "1", code=1).output)
