"""Draw ``docs/plots/hashring_load_spread.png``: how evenly ``HashRing`` spreads keys.

Run: ``.venv/bin/python benchmarks/plot_hashring.py [--sets S] [--keys N] [--seed X]``

Three panels, all for ``distsys.hashring.HashRing`` and string keys ``key-0`` ..:

1. the coefficient of variation of keys per node (population std / mean) against
   virtual nodes per node, for 10 nodes, averaged over S random node-name sets, with the
   band from the 10th to the 90th percentile and the random-placement theory
   ``sqrt((n - 1) / (n * v + 1))`` (node shares ~ Dirichlet(v, ..., v));
   (the black crosses are the root mean square of the measured CVs, which the theory
   predicts; the mean CV, the target's metric, sits a few percent below it);
2. the most loaded node's keys over the mean, for the same rings;
3. the fraction of keys that move as nodes join one by one (1 -> 20), against the ideal
   ``1 / (n + 1)``.

Needs matplotlib (the ``bench`` extra). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed

from distsys.hashring import HashRing

NODES = 10
VNODES = (1, 5, 10, 20, 40, 80, 160, 320, 640)
OUT = Path(__file__).resolve().parent.parent / "docs" / "plots" / "hashring_load_spread.png"


def node_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        octets = ".".join(str(rng.randrange(256)) for _ in range(3))
        names.add(f"10.{octets}:{rng.randrange(1024, 65536)}")
    return sorted(names)


def spread(nodes: list[str], vnodes: int, keys: list[str]) -> tuple[float, float]:
    """Return (CV, max / mean) of keys per node."""
    counts = Counter(map(HashRing(nodes, vnodes=vnodes).get, keys))
    loads = [counts.get(node, 0) for node in nodes]
    mean = statistics.fmean(loads)
    return statistics.pstdev(loads) / mean, max(loads) / mean


def joins(rng: random.Random, keys: list[str], up_to: int) -> list[float]:
    """Return the fraction of keys moved by each join, from 1 -> 2 up to (up_to-1) -> up_to."""
    ring = HashRing()
    names = node_names(rng, up_to)
    ring.add(names[0])
    before = list(map(ring.get, keys))
    moved = []
    for name in names[1:]:
        ring.add(name)
        after = list(map(ring.get, keys))
        moved.append(sum(b != a for b, a in zip(before, after, strict=True)) / len(keys))
        before = after
    return moved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=40, help="random node sets per point (40)")
    parser.add_argument("--keys", type=int, default=200_000, help="keys per ring (200,000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the PNG")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    keys = [f"key-{i}" for i in range(args.keys)]
    sets = [node_names(rng, NODES) for _ in range(args.sets)]

    cv: dict[int, list[float]] = {}
    peak: dict[int, list[float]] = {}
    for vnodes in VNODES:
        results = [spread(nodes, vnodes, keys) for nodes in sets]
        cv[vnodes] = [c for c, _ in results]
        peak[vnodes] = [p for _, p in results]
        print(
            f"vnodes={vnodes:4d}  mean CV {statistics.fmean(cv[vnodes]):.4f}  "
            f"theory {math.sqrt((NODES - 1) / (NODES * vnodes + 1)):.4f}  "
            f"mean max/mean {statistics.fmean(peak[vnodes]):.3f}"
        )
    sequences = [joins(rng, keys, 20) for _ in range(10)]
    moved = [statistics.fmean(step) for step in zip(*sequences, strict=True)]

    fig, (ax_cv, ax_peak, ax_move) = plt.subplots(1, 3, figsize=(16, 5), layout="constrained")
    fig.suptitle(
        f"distsys HashRing, {NODES} nodes: {args.sets} random node-name sets, "
        f"{args.keys:,} string keys per ring (seed {args.seed})",
        fontsize=13,
    )

    def band(ax: plt.Axes, data: dict[int, list[float]], label: str, color: str) -> None:
        xs = list(data)
        deciles = [statistics.quantiles(values, n=10) for values in data.values()]
        ax.fill_between(xs, [d[0] for d in deciles], [d[-1] for d in deciles], color=color,
                        alpha=0.2, label="10th - 90th percentile")  # fmt: skip
        means = [statistics.fmean(values) for values in data.values()]
        ax.plot(xs, means, "o-", color=color, label=label)
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("virtual nodes per node (v)")
        ax.grid(True, which="both", alpha=0.3)

    band(ax_cv, cv, "measured mean CV", "tab:blue")
    dense = [1.05**i for i in range(134)]  # 1 .. 660, smooth on the log axis
    rms = [math.sqrt(statistics.fmean(c * c for c in values)) for values in cv.values()]
    ax_cv.plot(list(cv), rms, "x", color="black", markersize=8, label="measured RMS CV")
    ax_cv.plot(dense, [math.sqrt((NODES - 1) / (NODES * v + 1)) for v in dense], "--",
               color="black", label="theory (RMS): sqrt((n-1)/(n v+1))")  # fmt: skip
    ax_cv.axhline(0.075, color="tab:red", linestyle=":", label="target 0.075 at v = 160")
    ax_cv.axvline(160, color="gray", linestyle=":", linewidth=1)
    ax_cv.set_yscale("log")
    ticks = [0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 1.0]
    ax_cv.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax_cv.set_ylabel("CV of keys per node (pstdev / mean)")
    ax_cv.set_title("Load spread vs virtual nodes")
    ax_cv.legend()

    band(ax_peak, peak, "measured mean max/mean", "tab:orange")
    ax_peak.axvline(160, color="gray", linestyle=":", linewidth=1)
    ax_peak.set_ylabel("keys on the busiest node / mean")
    ax_peak.set_title("Busiest node vs virtual nodes")
    ax_peak.legend()

    counts = list(range(2, 21))
    ax_move.plot(counts, [1 / n for n in counts], "--", color="black", label="ideal 1/(n+1)")
    ax_move.plot(counts, moved, "o", color="tab:green", label="measured (mean of 10 sequences)")
    ax_move.set_xticks(counts[::2])
    ax_move.set_xlabel("nodes after the join (n + 1)")
    ax_move.set_ylabel("fraction of keys moved")
    ax_move.set_title("Keys moved as nodes join one by one (v = 160)")
    ax_move.grid(True, alpha=0.3)
    ax_move.legend()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
