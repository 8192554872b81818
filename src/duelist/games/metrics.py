"""Convergence metrics for policies in a preference game.

Definitions (``BR(π) = softmax(log μ + Pπ/τ)``):

* game value (EGPO, Zhou et al. 2025, ``simulations/utils.py``):
  ``V(π1, π2) = π1ᵀPπ2 − τ KL(π1‖μ) + τ KL(π2‖μ)``;
* duality gap: ``V(BR(π), π) − V(π, BR(π))``. Using ``πᵀPq = 1 − qᵀPπ`` and the Gibbs variational
  identity, this equals ``2 τ KL(π‖BR(π))`` exactly, which is how it is computed here (no cancellation);
* exploitability: half the duality gap, ``max_q [qᵀPπ − τKL(q‖μ)] − ½ + τ KL(π‖μ) = τ KL(π‖BR(π))``.
  At ``τ = 0`` it is ``max_y (Pπ)_y − ½`` and the duality gap is twice that.

Both vanish exactly at ``π*_τ``. ``gap0`` below is the duality gap of the unregularised game.
"""

from __future__ import annotations

import numpy as np

from duelist.games.solvers import best_response


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p‖q) with 0·log 0 = 0; clipped at 0 (rounding can make it −1e-17)."""
    m = p > 0
    return max(float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m])))), 0.0)


def game_value(P: np.ndarray, mu: np.ndarray, tau: float, pi1: np.ndarray, pi2: np.ndarray) -> float:
    return float(pi1 @ P @ pi2 - tau * kl(pi1, mu) + tau * kl(pi2, mu))


def exploitability(P: np.ndarray, mu: np.ndarray, tau: float, pi: np.ndarray) -> float:
    """``τ KL(π‖BR(π))``, or ``max_y (Pπ)_y − ½`` when ``τ = 0``."""
    if tau == 0:
        return max(float((P @ pi).max() - 0.5), 0.0)
    return tau * kl(pi, best_response(P, mu, tau, pi))


def duality_gap(P: np.ndarray, mu: np.ndarray, tau: float, pi: np.ndarray) -> float:
    """EGPO's duality gap ``V(BR(π), π) − V(π, BR(π))`` = 2 × exploitability."""
    return 2.0 * exploitability(P, mu, tau, pi)


def win_rate(P: np.ndarray, pi: np.ndarray, opponent: np.ndarray) -> float:
    """``P(π ≻ opponent) = πᵀ P opponent``."""
    return float(pi @ P @ opponent)


def maxmin_value(R: np.ndarray, mu: np.ndarray, tau: float, pi: np.ndarray) -> float:
    """``min_k πᵀr_k − τ KL(π‖μ)``, the MaxMin objective with group rewards ``R`` (n × K)."""
    return float((R.T @ pi).min() - tau * kl(pi, mu))


def nash_md_bias_bound(eta: float, tau: float) -> float:
    """Upper bound on ``KL(π*_τ‖π̂_η)`` for Nash-MD's fixed point; see ``solvers.nash_md_fixed_point``."""
    return eta**2 / (32.0 * tau**2)


def first_below(values: np.ndarray, tol: float) -> int | None:
    """1-based iteration at which ``values`` first drops to ``tol`` or below (None if never)."""
    hits = np.flatnonzero(np.asarray(values) <= tol)
    return int(hits[0]) + 1 if hits.size else None


def fitted_log_slope(values: np.ndarray, lo: float, hi: float) -> float:
    """Least-squares slope of ``log values`` against the iteration index, over the entries in [lo, hi]
    (the linear-rate regime, above rounding noise and below the transient)."""
    v = np.asarray(values, dtype=np.float64)
    idx = np.flatnonzero((v >= lo) & (v <= hi))
    if idx.size < 3:
        raise ValueError(f"fewer than 3 points between {lo:g} and {hi:g}")
    return float(np.polyfit(idx, np.log(v[idx]), 1)[0])
