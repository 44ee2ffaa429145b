"""Plot the wall times measured by ``bench_dataflow_local.py --save FILE.json``.

Run: ``.venv/bin/python benchmarks/plot_dataflow.py FILE.json [docs/plots/dataflow_wordcount.png]``

One horizontal bar chart per workload (word count, join, sort of the counts), each bar a
contender's wall time with its start-up shaded darker; distsys in one colour, the
references (one process, ``multiprocessing.Pool``) in another, the peers in a third.
Needs matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TITLES = {
    "word count": "word count",
    "join": "join + sum per group",
    "sort": "full sort of the word counts",
}


def colour(name: str) -> str:
    if name.startswith("distsys"):
        return "#1f77b4"
    if name.startswith(("python", "multiprocessing")):
        return "#7f7f7f"
    return "#ff7f0e"


def plot(figures: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sections = [(k, v) for k, v in figures["sections"].items() if k in TITLES]
    fig, axes = plt.subplots(len(sections), 1, figsize=(9, 2.2 + 1.6 * len(sections) * 2))
    if len(sections) == 1:
        axes = [axes]
    for ax, (key, measures) in zip(axes, sections, strict=True):
        rows = [m for m in measures if m["seconds"] != float("inf")][::-1]
        names = [m["name"] for m in rows]
        walls = [m["seconds"] for m in rows]
        startups = [m["startup"] or 0.0 for m in rows]
        ax.barh(names, walls, color=[colour(n) for n in names], alpha=0.55)
        ax.barh(names, startups, color=[colour(n) for n in names])
        for y, wall in enumerate(walls):
            ax.text(wall, y, f" {wall:.1f} s", va="center", fontsize=8)
        ax.set_title(TITLES[key], loc="left", fontsize=10)
        ax.set_xlabel("wall seconds (darker: start-up)")
        ax.set_xlim(0, max(walls) * 1.15)
        ax.tick_params(axis="y", labelsize=8)
    corpus = figures["corpus_bytes"] / 2**20
    fig.suptitle(
        f"distsys.dataflow local engine vs peers — {corpus:,.0f} MB corpus, "
        f"{figures['sales_rows']:,} x {figures['customers']:,} join, "
        f"{figures['machine']['cpus']} cores",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str]) -> None:
    source = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path("docs/plots/dataflow_wordcount.png")
    plot(json.loads(source.read_text()), out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
