"""The tournament heat map: row policy's win-rate over column policy, with its 95% interval."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from duelist.eval.tournament.matrix import TournamentResult


def heatmap(path: str | Path, result: TournamentResult, title: str = "") -> Path:
    """Cells coloured by win-rate (red: the row loses, blue: the row wins, white: ½); each row is labelled
    with its rank and worst-case win-rate."""
    path = Path(path)
    p = len(result.names)
    size = max(4.5, 1.1 * p + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(result.matrix, cmap="RdBu", vmin=0, vmax=1)
    rank = {name: k + 1 for k, name in enumerate(result.ranking)}
    for i in range(p):
        for j in range(p):
            text = "½" if i == j else f"{result.matrix[i, j]:.2f}\n[{result.lower[i, j]:.2f}, {result.upper[i, j]:.2f}]"
            dark = abs(result.matrix[i, j] - 0.5) > 0.3
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(p), result.names, rotation=30, ha="right")
    ax.set_yticks(range(p), [f"#{rank[n]} {n} (worst {w:.2f})" for n, w in zip(result.names, result.worst_case,
                                                                                 strict=True)])
    ax.set_xlabel("opponent")
    ax.set_ylabel("policy (rank, worst-case win-rate)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="P(row ≻ column)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long row labels
    plt.close(fig)
    return path
