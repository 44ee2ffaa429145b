"""Generate a text corpus of Zipf-distributed words for the dataflow benchmarks.

Run: ``.venv/bin/python benchmarks/gen_corpus.py DIR [--size 300MB] [--files 4]
[--vocabulary 500000] [--seed 1]``

The vocabulary is ``--vocabulary`` distinct lowercase words of 2 to 12 letters; word
ranks follow a Zipf(1.1) law (the rank-to-word assignment is shuffled, so popular words
are not the short ones), lines hold 4 to 16 words. The same seed and sizes always give
the same bytes. The corpus is split into ``--files`` files named ``corpus-000.txt``... so
both splitting inside a file and reading a glob are exercised. Uses numpy when it is
installed (the ``bench`` extra; about 10 s for 300 MB), pure Python otherwise (slower).
Generated data is never committed: write it under a scratch directory.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import string
import sys
from pathlib import Path

ZIPF_S = 1.1
WORDS_PER_LINE = (4, 16)
CHUNK_WORDS = 1 << 20  # words generated and written per step

__all__ = ["generate_corpus", "parse_size", "vocabulary"]


def parse_size(text: str) -> int:
    """Return a byte count from ``"300MB"``, ``"1.5GiB"``, ``"4096"``..."""
    found = re.fullmatch(r"\s*([\d.]+)\s*([kmgt]?i?b?)\s*", text.lower())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 300MB")
    number, unit = found.groups()
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[unit[:1]]
    return int(float(number) * scale)


def vocabulary(size: int, seed: int) -> list[str]:
    """Return ``size`` distinct words, in the order of their Zipf rank."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    letters = string.ascii_lowercase
    while len(seen) < size:
        length = min(2 + int(rng.expovariate(0.25)), 12)
        seen.setdefault("".join(rng.choices(letters, k=length)))
    return list(seen)


def generate_corpus(
    directory: Path,
    size: int,
    *,
    files: int = 4,
    words: int = 500_000,
    seed: int = 1,
) -> list[Path]:
    """Write about ``size`` bytes of Zipf words into ``files`` files under ``directory``.

    Returns:
        The paths written, in order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(words, seed)
    per_file = max(1, size // files)
    paths = [directory / f"corpus-{i:03d}.txt" for i in range(files)]
    try:
        import numpy as np
    except ImportError:
        np = None
    for index, path in enumerate(paths):
        with path.open("w", encoding="utf-8", newline="\n") as out:
            if np is not None:
                _write_numpy(out, vocab, per_file, seed * 1000 + index)
            else:
                _write_python(out, vocab, per_file, seed * 1000 + index)
    return paths


def _write_numpy(out: object, vocab: list[str], size: int, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    weights = np.arange(1, len(vocab) + 1, dtype=np.float64) ** -ZIPF_S
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    table = np.array(vocab, dtype=object)
    written = 0
    low, high = WORDS_PER_LINE
    while written < size:
        ranks = np.minimum(np.searchsorted(cdf, rng.random(CHUNK_WORDS)), len(vocab) - 1)
        chosen = table[ranks].tolist()
        text = _lines(chosen, rng.integers(low, high + 1, size=CHUNK_WORDS).tolist())
        text = text[: size - written] if written + len(text) > size else text
        text = text[: text.rfind("\n") + 1] if written + len(text) >= size else text
        out.write(text)  # type: ignore[attr-defined]
        written += len(text)
        if not text:
            break


def _write_python(out: object, vocab: list[str], size: int, seed: int) -> None:
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / rank**ZIPF_S for rank in range(1, len(vocab) + 1)))
    written = 0
    low, high = WORDS_PER_LINE
    while written < size:
        chosen = rng.choices(vocab, cum_weights=cumulative, k=CHUNK_WORDS // 8)
        text = _lines(chosen, [rng.randint(low, high) for _ in range(len(chosen))])
        if written + len(text) >= size:
            text = text[: size - written]
            text = text[: text.rfind("\n") + 1]
        out.write(text)  # type: ignore[attr-defined]
        written += len(text)
        if not text:
            break


def _lines(words: list[str], lengths: list[int]) -> str:
    lines = []
    start = 0
    for length in lengths:
        if start >= len(words):
            break
        lines.append(" ".join(words[start : start + length]))
        start += length
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", type=parse_size, default=parse_size("300MB"))
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--vocabulary", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    paths = generate_corpus(
        args.directory, args.size, files=args.files, words=args.vocabulary, seed=args.seed
    )
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {total:,} bytes in {len(paths)} files under {args.directory}", file=sys.stderr)


if __name__ == "__main__":
    main()
