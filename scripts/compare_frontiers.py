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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=Path, help="eval.json files")
    parser.add_argument("-o", "--out", type=Path, default=Path("frontiers.png"))
    args = parser.parse_args()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for path in args.evals:
        points = json.loads(path.read_text())["frontier"]
        name = path.parent.name
        for ax, key in zip(axes, ("reward", "win_rate"), strict=True):
            pts = [p for p in points if key in p]
            ax.errorbar(
                [p["kl"]["mean"] for p in pts], [p[key]["mean"] for p in pts],
                xerr=[p["kl"]["se"] for p in pts],
                yerr=[[p[key]["mean"] - p[key]["lo"] for p in pts], [p[key]["hi"] - p[key]["mean"] for p in pts]],
                fmt="o-", capsize=3, label=name,
            )
            for p in pts:
                ax.annotate(p["label"], (p["kl"]["mean"], p[key]["mean"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ylabels = ("mean oracle reward, 95% interval", "win-rate over the reference, 95% interval")
    for ax, ylabel in zip(axes, ylabels, strict=True):
        ax.set_xlabel("KL(π ‖ π_ref), nats (± s.e.)")
        ax.set_ylabel(ylabel)
        ax.legend()
    axes[1].axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
