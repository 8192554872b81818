"""Draw the reward–KL frontiers of several evaluated runs on shared axes (one PNG).

Reads the ``frontier`` that ``duelist eval`` stores in each run's ``eval.json`` (the reference, every kept
checkpoint and the final policy, all measured on the same held-out prompts and seed), so nothing is resampled:
``python scripts/compare_frontiers.py runs/positive-review/eval.json runs/online-positive-review/eval.json -o x.png``.
Runs are comparable only when their evaluations used the same prompts, judge, samples and seed.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from duelist.eval.plots import frontier_panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path, help="eval.json files")
    parser.add_argument("-o", "--out", type=Path, default=Path("frontiers.png"))
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("reward", "mean oracle reward, 95% interval"), ("win_rate", "win-rate over the reference, 95% interval"))
    for path in args.evals:
        points = json.loads(path.read_text())["frontier"]
        for ax, (key, ylabel) in zip(axes, panels, strict=True):
            frontier_panel(ax, points, key, ylabel, label=path.parent.name)
    for ax in axes:
        ax.legend()
    axes[1].axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
