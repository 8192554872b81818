"""Plot ``vs_trl.py`` results: each duelist operating point as (memory, speed) relative to TRL in its round.

Every round of every result file gives two points, *speed* (circle) and *memory* (square), placed at
duelist's peak memory / TRL's peak and duelist's tokens/s / TRL's, both measured in that round, so TRL sits
at (1, 1). The shaded boxes are issue 6's targets: the speed point at ≥ 3× TRL's tokens/s within its peak
memory, the memory point at ≤ 0.5× its peak and ≥ 1× its tokens/s.

    python benchmarks/plot_vs_trl.py benchmarks/results/cpu-fixed-3rounds-fp32-rows*.json \
        benchmarks/results/cpu-hh-trl-defaults-rows.json -o benchmarks/vs_trl.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

MARKERS = {"speed": "o", "memory": "s"}
TARGETS = {"speed": (1.0, 3.0), "memory": (0.5, 1.0)}  # memory ratio at most, speed ratio at least


def ratios(result: dict) -> dict[str, list[tuple[float, float]]]:
    """Per operating point, one (memory ratio, speed ratio) per round, each against that round's TRL."""
    out: dict[str, list[tuple[float, float]]] = {point: [] for point in MARKERS}
    for rnd in result["rounds"]:
        trl = rnd["trl"]
        for point in MARKERS:
            out[point].append((rnd[point]["peak_gib"] / trl["peak_gib"],
                               rnd[point]["tokens_per_s"] / trl["tokens_per_s"]))
    return out


def label(path: Path, result: dict) -> str:
    rounds = len(result["rounds"])
    return f"{path.stem} ({result['data']}, {result['device']}, {rounds} round{'s' * (rounds > 1)})"


def plot(paths: list[Path], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 6.5))
    top = 3.5
    for point, (x1, y0) in TARGETS.items():
        ax.add_patch(Rectangle((0, y0), x1, 100, color="tab:green", alpha=0.08, lw=0))
        ax.text(x1 - 0.01, y0 + 0.05, f"{point} target", ha="right", va="bottom", color="tab:green", fontsize=8)
    for i, path in enumerate(paths):
        result = json.loads(path.read_text())
        colour = f"C{i}"
        for point, xy in ratios(result).items():
            xs, ys = zip(*xy, strict=True)
            top = max(top, *ys)
            ax.scatter(xs, ys, marker=MARKERS[point], color=colour, alpha=0.8,
                       label=label(path, result) if point == "speed" else None)
    ax.scatter([1], [1], marker="*", s=200, color="black", label="TRL (each round's own)")
    ax.set_xlim(0, 1.15)
    ax.set_ylim(0, top * 1.08)
    ax.set_xlabel("peak memory / TRL's (RSS on CPU, max allocated on GPU)")
    ax.set_ylabel("tokens/s / TRL's")
    ax.set_title("duelist vs TRL DPOTrainer: ○ speed point, □ memory point, one mark per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by vs_trl.py --out")
    parser.add_argument("-o", "--out", type=Path, default=Path("benchmarks/vs_trl.png"))
    args = parser.parse_args()
    plot(args.results, args.out)


if __name__ == "__main__":
    main()
