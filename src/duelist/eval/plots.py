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
    """Top row, the reward–KL frontier over the run (``result["frontier"]``: reference, checkpoints, final):
    mean oracle reward, on-task share and win-rate over the reference against KL(π ‖ π_ref). Bottom row:
    the reward distributions of policy and reference, and the training curves if available."""
    hist = _history(metrics_file)
    points = result.get("frontier", [])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    frontier_panel(axes[0, 0], points, "reward", f"mean oracle reward ({result['judge']}), 95% interval")
    frontier_panel(axes[0, 1], points, "on_task", "share of samples on task, 95% interval")
    frontier_panel(axes[0, 2], points, "win_rate", "win-rate over the reference, 95% interval")
    axes[0, 2].axhline(0.5, color="grey", ls="--", lw=1)
    w, k = result["win_rate"], result["kl"]
    axes[0, 2].set_title(
        f"final: win-rate {w['mean']:.3f} [{w['lo']:.3f}, {w['hi']:.3f}], KL {k['mean']:.2f} ± {k['se']:.2f} nats"
    )
    axes[0, 0].set_title("reward–KL frontier over the run")
    if "on_task_policy" in result:
        p, r = result["on_task_policy"], result["on_task_reference"]
        axes[0, 1].set_title(f"on task: policy {p['mean']:.3f}, reference {r['mean']:.3f}")
    ax = axes[1, 0]
    bins = np.linspace(min(policy_rewards.min(), ref_rewards.min()), max(policy_rewards.max(), ref_rewards.max()), 30)
    ax.hist(ref_rewards, bins=bins, alpha=0.6, label=f"reference (mean {ref_rewards.mean():.3f})")
    ax.hist(policy_rewards, bins=bins, alpha=0.6, label=f"policy (mean {policy_rewards.mean():.3f})")
    ax.set_xlabel(f"oracle reward ({result['judge']})")
    ax.set_ylabel("samples")
    ax.legend()
    ax = axes[1, 1]
    if hist:
        steps = [h["step"] for h in hist]
        ax.plot(steps, [h["loss"] for h in hist], label="loss")
        if "rewards/accuracy" in hist[0]:
            ax.plot(steps, [h["rewards/accuracy"] for h in hist], label="reward accuracy")
        if "rewards/margin" in hist[0]:
            ax.plot(steps, [h["rewards/margin"] for h in hist], label="reward margin")
        ax.set_xlabel("step")
        ax.set_title("training")
        ax.legend()
    else:
        ax.axis("off")
    axes[1, 2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def frontier_panel(ax: Any, points: list[dict[str, Any]], key: str, ylabel: str, label: str | None = None) -> None:
    """``key`` of each point (with its interval) against its KL (± 1 s.e.), joined in run order; ``points``
    as ``eval.json`` stores them under ``frontier``. ``label`` names the line in a legend (several runs)."""
    pts = [p for p in points if key in p]
    if not pts:
        ax.text(0.5, 0.5, f"no {key.replace('_', '-')} measure for these prompts", ha="center", transform=ax.transAxes)
        ax.axis("off")
        return
    x = [p["kl"]["mean"] for p in pts]
    y = [p[key]["mean"] for p in pts]
    yerr = [[p[key]["mean"] - p[key]["lo"] for p in pts], [p[key]["hi"] - p[key]["mean"] for p in pts]]
    ax.errorbar(x, y, xerr=[p["kl"]["se"] for p in pts], yerr=yerr, fmt="o-", capsize=3, label=label)
    for p in pts:
        xy = (p["kl"]["mean"], p[key]["mean"])
        ax.annotate(p["label"], xy, textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("KL(π ‖ π_ref), nats (± s.e.)")
    ax.set_ylabel(ylabel)
