"""Training diagnostics from the seed papers.

* Log-probability trajectories ("3D-properties" of DPO, Yan et al. 2024): during DPO training the
  rejected response's log-likelihood falls much faster than the chosen one rises, and the chosen
  likelihood itself often drops ("displacement"). ``trajectories`` reads per-step ``logps/chosen`` and
  ``logps/rejected`` from a run's metrics.jsonl; ``trajectory_summary`` reports the change of each
  from the first to the last logged step (mean of the first/last ``window`` steps) and the margin;
  ``plot_trajectories`` draws them. These are each step's *batch* means, so a start/end difference also
  reflects which pairs (and lengths) the batches held; for a clean measurement on a fixed set use the
  held-out log-ratios ρ(y_w), ρ(y_l) that ``duelist.eval.accuracy`` reports.
* Linear separability of chosen vs rejected ("More is Less", 2024): a logistic-regression probe on the
  model's final hidden states (last layer, at the last response token) of chosen and rejected
  responses; held-out accuracy near ½ means the representations do not separate the two, near 1 that
  a linear reward on them could. ``response_features`` extracts the features; ``linear_probe`` fits an
  L2-regularised logistic regression (numpy/scipy, L-BFGS) with a split **by pair** (both responses of
  a pair are on the same side) and returns held-out accuracy with a Wilson interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from duelist.eval.stats import Estimate, wilson_interval


def trajectories(metrics_file: str | Path) -> dict[str, np.ndarray]:
    """Per-step arrays: step, logps/chosen, logps/rejected (and rewards/margin if logged)."""
    rows = [json.loads(l) for l in Path(metrics_file).read_text().splitlines() if l.strip()]
    rows = [r for r in rows if "logps/chosen" in r and "logps/rejected" in r]
    if not rows:
        raise ValueError(f"{metrics_file}: no steps with logps/chosen and logps/rejected")
    out = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in ("step", "logps/chosen", "logps/rejected")}
    if all("rewards/margin" in r for r in rows):
        out["rewards/margin"] = np.array([r["rewards/margin"] for r in rows], dtype=np.float64)
    return out


def trajectory_summary(traj: dict[str, np.ndarray], window: int = 3) -> dict[str, float]:
    """Change of chosen and rejected log-probs from the start to the end of training.

    Each step's log-probs are of that step's batch, so the first and last ``window`` steps are averaged.
    ``rejected_drop`` > 0 and ``chosen_change`` < ``rejected_change`` is the usual DPO signature;
    ``chosen_change`` < 0 is the displacement of the chosen likelihood."""
    w = max(1, min(window, len(traj["step"]) // 2 or 1))
    c0, c1 = traj["logps/chosen"][:w].mean(), traj["logps/chosen"][-w:].mean()
    r0, r1 = traj["logps/rejected"][:w].mean(), traj["logps/rejected"][-w:].mean()
    return {
        "chosen_start": float(c0),
        "chosen_end": float(c1),
        "chosen_change": float(c1 - c0),
        "rejected_start": float(r0),
        "rejected_end": float(r1),
        "rejected_change": float(r1 - r0),
        "rejected_drop": float(r0 - r1),
        "margin_change": float((c1 - r1) - (c0 - r0)),
        "chosen_displaced": bool(c1 < c0),
    }


def plot_trajectories(traj: dict[str, np.ndarray], path: str | Path, title: str = "log-prob trajectories") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(traj["step"], traj["logps/chosen"], label="chosen log π(y_w|x)")
    ax.plot(traj["step"], traj["logps/rejected"], label="rejected log π(y_l|x)")
    ax.set_xlabel("step")
    ax.set_ylabel("mean sequence log-prob (batch)")
    s = trajectory_summary(traj)
    ax.set_title(f"{title}\nΔchosen {s['chosen_change']:+.2f}, Δrejected {s['rejected_change']:+.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def response_features(
    model: torch.nn.Module, prompts: Sequence[list[int]], responses: Sequence[list[int]], batch_size: int = 8
) -> np.ndarray:
    """[n, d] last-layer hidden state (after the final norm) at the last token of each prompt + response
    (right padding)."""
    from duelist.data.collate import pad_sequences
    from duelist.models.logprobs import split_lm

    body, _ = split_lm(model)  # the backbone: final-norm hidden states, no vocabulary projection
    was_training = body.training
    body.eval()
    device = next(body.parameters()).device
    out = []
    for s in range(0, len(prompts), batch_size):
        ids, att, _ = pad_sequences(prompts[s : s + batch_size], responses[s : s + batch_size], 0)
        h = body(input_ids=ids.to(device), attention_mask=att.to(device)).last_hidden_state
        last = att.sum(1) - 1
        out.append(h[torch.arange(len(last)), last.to(device)].float().cpu().numpy())
    body.train(was_training)
    return np.concatenate(out).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (intercept unpenalised); returns (w, b)."""
    d = x.shape[1]

    def f(theta: np.ndarray):
        w, b = theta[:d], theta[d]
        z = x @ w + b
        nll = -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() + 0.5 * l2 * (w @ w)
        g = expit(z) - y
        return nll, np.concatenate([x.T @ g + l2 * w, [g.sum()]])

    res = minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    return res.x[:d], float(res.x[d])


@dataclass
class ProbeResult:
    accuracy: Estimate
    train_accuracy: float
    l2: float
    n_train_pairs: int
    n_test_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy.as_dict(),
            "train_accuracy": self.train_accuracy,
            "l2": self.l2,
            "n_train_pairs": self.n_train_pairs,
            "n_test_pairs": self.n_test_pairs,
        }


def linear_probe(
    chosen: np.ndarray, rejected: np.ndarray, test_fraction: float = 0.3, l2: float = 1.0, seed: int = 0
) -> ProbeResult:
    """Can a linear classifier tell chosen (label 1) from rejected (label 0) features? Pairs are split
    into train and held-out at random; features are standardised with training statistics."""
    chosen, rejected = np.asarray(chosen, float), np.asarray(rejected, float)
    n = len(chosen)
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(test_fraction * n))
    te, tr = perm[:n_test], perm[n_test:]

    def stack(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate([chosen[idx], rejected[idx]]), np.concatenate([np.ones(len(idx)), np.zeros(len(idx))])

    xtr, ytr = stack(tr)
    xte, yte = stack(te)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w, b = fit_logistic(xtr, ytr, l2)
    acc_tr = float(((xtr @ w + b > 0) == (ytr > 0.5)).mean())
    correct = float(((xte @ w + b > 0) == (yte > 0.5)).sum())
    return ProbeResult(wilson_interval(correct, len(yte)), acc_tr, l2, len(tr), len(te))
