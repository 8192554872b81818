"""Judged samples → training examples: the step between the judge and the loss in an online round.

A ``JudgedGroup`` holds one prompt's K samples, the judge's preference of each sample over each opponent
(``P[i, j] = P(y_i ≻ o_j)``; in self-play the opponents are the samples themselves) and the weights that
turn them into estimates:

* ``mass``: each sample's weight in the population loss — 1 for i.i.d. draws, the exact probability
  π_t(y_i) when a sampler enumerates every response (the one-token twins);
* ``opponent_weights[i, j]``: the weight of opponent j in sample i's win-rate
  ``r_i = Σ_j W_ij P[i, j]``, an estimate of P(y_i ≻ π) for the opponents' policy π. Self-play draws: the
  K − 1 other samples, W = (1 − I)/(K − 1); separate opponent draws: 1/M each; exact: the opponents'
  probabilities (a sample's own term included, P_ii = ½).

The builders below make pairs (``TokenizedPair``) or single-response examples (``TokenizedSample``) with
numeric fields the losses read: ``label`` = P(chosen ≻ rejected), ``p_win``/``p_lose`` = the win-rates of
chosen/rejected, ``win_rate`` and ``advantage`` (win-rate minus its mass-weighted mean) for single
responses, and ``weight`` (the example's weight in the step's loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from duelist.data.tokenize import TokenizedPair, TokenizedSample


@dataclass
class JudgedGroup:
    prompt: list[int]  # prompt token ids
    responses: list[list[int]]  # the K samples' token ids
    P: np.ndarray  # [K, M] P(sample i ≻ opponent j)
    opponent_weights: np.ndarray  # [K, M]
    mass: np.ndarray  # [K]
    rewards: np.ndarray | None = None  # [K] the judge's reward of each sample, when it has one
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # [K] each: per-sample numbers for its example

    @property
    def win_rates(self) -> np.ndarray:
        return (self.opponent_weights * self.P).sum(1)


def self_play_weights(k: int, mass: np.ndarray | None) -> np.ndarray:
    """Opponent weights when the samples are their own opponents (see the module docstring)."""
    if mass is not None:
        return np.tile(mass, (k, 1))
    if k < 2:
        raise ValueError("self-play needs at least 2 samples per prompt")
    return (1.0 - np.eye(k)) / (k - 1)


def _pair(g: JudgedGroup, i: int, j: int, label: float, weight: float) -> TokenizedPair:
    r = g.win_rates
    fields = {"label": float(label), "p_win": float(r[i]), "p_lose": float(r[j]), "weight": float(weight)}
    return TokenizedPair(g.prompt, g.responses[i], g.responses[j], extra=fields)


def best_vs_worst(g: JudgedGroup, margin: float | None = None) -> list[TokenizedPair]:
    """One pair per prompt: the sample with the highest win-rate as chosen, the lowest of the others as
    rejected; ties go to the earlier sample for chosen and to the later one for rejected. At K = 2 with a
    reward judge this is TRL's OnlineDPOTrainer rule (the higher score chosen, ties to the first). With
    ``margin``, the pair is kept only if r_chosen − r_rejected ≥ margin (DNO-Prct's large-margin filter).
    The label is 1 (hard): the chosen sample is preferred."""
    r = g.win_rates
    c = int(np.argmax(r))
    rest = [j for j in range(len(r)) if j != c]
    worst = min(rest, key=lambda j: (r[j], -j))
    if margin is not None and r[c] - r[worst] < margin:
        return []
    return [_pair(g, c, worst, 1.0, g.mass[c] * g.mass[worst])]


def all_pairs(g: JudgedGroup, label: Callable[[JudgedGroup, int, int], float] | None = None) -> list[TokenizedPair]:
    """Every pair i < j of samples (i chosen, j rejected) with a soft label, weighted by mass_i · mass_j: the
    sampled estimate of a loss over pairs drawn from π_t ⊗ π_t. ``label(g, i, j)`` defaults to the judge's
    P(y_i ≻ y_j); self-play only (opponents are the samples)."""
    if g.P.shape[0] != g.P.shape[1]:
        raise ValueError("all_pairs needs the samples' own K×K preference matrix (self-play)")
    k = len(g.responses)
    lab = label or (lambda g, i, j: g.P[i, j])
    return [_pair(g, i, j, lab(g, i, j), g.mass[i] * g.mass[j]) for i in range(k) for j in range(i + 1, k)]


def samples(g: JudgedGroup) -> list[TokenizedSample]:
    """Every sample as its own example: its win-rate, its advantage over the mass-weighted mean win-rate of
    the prompt's samples (the baseline; ½ in self-play, where win-rates sum to K/2), its mass, and the
    group's per-sample ``fields``."""
    r = g.win_rates
    baseline = float((g.mass * r).sum() / g.mass.sum())
    return [
        TokenizedSample(g.prompt, y, {"win_rate": float(r[i]), "advantage": float(r[i] - baseline),
                                      "weight": float(g.mass[i]), **{k: float(v[i]) for k, v in g.fields.items()}})
        for i, y in enumerate(g.responses)
    ]
