"""Convergence plots for game-lab runs (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from duelist.games.dynamics import Run

FLOOR = 1e-17  # exact zeros cannot go on a log axis


def convergence_plot(path: str | Path, runs: Sequence[Run], title: str = "", tol: float | None = None) -> Path:
    """Each run's error (its own target metric, see ``Run.error``) against the iteration and against the
    cost (preference queries in sampled mode, win-rate evaluations in exact mode), log scale."""
    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, r in enumerate(runs):
        err = np.maximum(r.error, FLOOR)
        # several methods coincide in exact mode (sppo/spo/dno, inpo/online_ipo): dashes keep both visible
        style = {"label": f"{r.algorithm} ({r.iterate}, {r.target})", "lw": 1.4, "color": colors[(2 * i) % 20],
                 "ls": ("-", "--", ":", "-.")[i % 4]}
        axes[0].plot(np.arange(1, err.size + 1), err, **style)
        axes[1].plot(r.history["cost"], err, **style)
    unit = "preference queries" if runs and runs[0].mode == "sampled" else "win-rate evaluations"
    for ax, xlabel in zip(axes, ("iteration", unit), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("error to own target (gap or suboptimality)")
        ax.grid(True, which="major", alpha=0.3)
        if tol is not None:
            ax.axhline(tol, color="grey", ls="--", lw=1)
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cliff_plot(path: str | Path, rows: Sequence[dict], title: str = "") -> Path:
    """Policy distance ‖Δπ‖₁ against the perturbation size ε (log-log), one colour per τ (rows from
    ``games.cliff.cliff_sweep``): measured distance solid, the Lipschitz bound ε/τ dashed, the MaxMin Holder
    bound √(2ε/τ) dotted when present. τ = 0 has no bound: its flat line is the cliff."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = plt.get_cmap("viridis")
    taus = sorted({r["tau"] for r in rows})
    for i, tau in enumerate(taus):
        sel = [r for r in rows if r["tau"] == tau]
        eps = np.array([r["eps"] for r in sel])
        c = colors(i / max(len(taus) - 1, 1))
        ax.plot(eps, np.maximum([r["distance"] for r in sel], FLOOR), "o-", color=c, lw=1.6, ms=4,
                label=f"τ = {tau:g}" + (" (argmax)" if tau == 0 else ""))
        if tau > 0:
            ax.plot(eps, [r["bound"] for r in sel], "--", color=c, lw=1)
            if "holder_bound" in sel[0]:
                ax.plot(eps, [r["holder_bound"] for r in sel], ":", color=c, lw=1.2)
    ax.plot([], [], "--", color="grey", label="bound ε/τ")
    if any("holder_bound" in r for r in rows):
        ax.plot([], [], ":", color="grey", label="MaxMin bound √(2ε/τ)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(max(min(r["distance"] for r in rows if r["distance"] > 0) / 3, 1e-8), 4)
    ax.set_xlabel("reward perturbation ε = ‖Δr‖_∞")
    ax.set_ylabel("worst policy move ‖π(r+Δr) − π(r)‖₁")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
