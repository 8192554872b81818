"""Plots for evaluation reports (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _history(metrics_file: Path | None) -> list[dict[str, Any]]:
    if metrics_file is None or not metrics_file.is_file():
        return []
    return [json.loads(l) for l in metrics_file.read_text().splitlines() if l.strip()]


def eval_report(
    path: Path,
    result: dict[str, Any],
    policy_rewards: np.ndarray,
    ref_rewards: np.ndarray,
    metrics_file: Path | None = None,
) -> None:
    """Reward distributions, win-rate with its interval and KL, and the training curves if available."""
    hist = _history(metrics_file)
    ncols = 3 if hist else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4))
    ax = axes[0]
    bins = np.linspace(min(policy_rewards.min(), ref_rewards.min()), max(policy_rewards.max(), ref_rewards.max()), 30)
    ax.hist(ref_rewards, bins=bins, alpha=0.6, label=f"reference (mean {ref_rewards.mean():.3f})")
    ax.hist(policy_rewards, bins=bins, alpha=0.6, label=f"policy (mean {policy_rewards.mean():.3f})")
    ax.set_xlabel(f"oracle reward ({result['judge']})")
    ax.set_ylabel("samples")
    ax.legend()
    ax = axes[1]
    w = result["win_rate"]
    ax.bar([0], [w["mean"]], yerr=[[w["mean"] - w["lo"]], [w["hi"] - w["mean"]]], capsize=8, width=0.5)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xticks([0], ["policy vs reference"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("win-rate (95% interval)")
    k = result["kl"]
    ax.set_title(
        f"win-rate {w['mean']:.3f} [{w['lo']:.3f}, {w['hi']:.3f}]\nKL(π‖π_ref) = {k['mean']:.2f} ± {k['se']:.2f} nats"
    )
    if hist:
        ax = axes[2]
        steps = [h["step"] for h in hist]
        ax.plot(steps, [h["loss"] for h in hist], label="loss")
        if "rewards/accuracy" in hist[0]:
            ax.plot(steps, [h["rewards/accuracy"] for h in hist], label="reward accuracy")
        if "rewards/margin" in hist[0]:
            ax.plot(steps, [h["rewards/margin"] for h in hist], label="reward margin")
        ax.set_xlabel("step")
        ax.set_title("training")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
