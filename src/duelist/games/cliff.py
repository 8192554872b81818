"""The Policy Cliff: how far the optimal policy moves when the reward moves a little.

The KL-regularised optimum of a reward ``r`` over ``n`` actions with reference ``μ`` at temperature τ is
``π_τ(r) = argmax_π πᵀr − τ KL(π‖μ) = μ·exp(r/τ)/Z`` (the DPO / RLHF target). At τ = 0 it is the limit of
that as τ → 0: ``μ`` restricted to the maximisers of ``r`` and renormalised. Distances are in ℓ1
(``‖π − π'‖₁`` = twice the total-variation distance), reward perturbations in ℓ∞.

**τ > 0: Lipschitz with the exact constant 1.** ``‖π_τ(r) − π_τ(r')‖₁ ≤ ‖r − r'‖_∞ / τ``, and no smaller
constant works. Derivation:

1. Jacobian. ``∂π/∂r = D/τ`` with ``D = diag π − ππᵀ``, so ``(Dδ)_i = π_i(δ_i − πᵀδ)`` and
   ``‖Dδ‖₁ = Σ_i π_i |δ_i − πᵀδ|``, a convex function of δ. Its maximum over the cube ``‖δ‖_∞ ≤ 1`` is at a
   vertex ``δ = s_A`` (+1 on a set A, −1 off it); there ``πᵀs_A = 2q − 1`` with ``q = π(A)`` and the sum is
   ``q·2(1−q) + (1−q)·2q = 4q(1−q)``. So ``‖J‖_{∞→1} = max_A 4π(A)(1−π(A))/τ ≤ 1/τ``
   (``jacobian_norm``), with equality iff some set of actions holds exactly half the mass.
2. Exact modulus. ``‖v‖₁ = max_s sᵀv`` over sign vectors, and for a fixed s the map ``δ ↦ sᵀπ(r+δ)``
   has ``∂_i = π_i(s_i − sᵀπ)/τ``, of the sign of ``s_i`` (``|sᵀπ| ≤ 1``): it is maximised over the cube
   ``‖δ‖_∞ ≤ ε`` at ``δ = εs``. With ``A = {s = +1}``, ``q = π_r(A)`` and ``x = ε/τ``, the mass of A moves
   to ``σ(logit q + 2x)``, so the exact worst case for this r is
   ``d_τ(r, ε) = max_A 2[σ(logit π_r(A) + 2x) − π_r(A)]`` (``local_modulus``, by enumerating A).
3. Over all rewards (and any μ: every interior point of the simplex is some π_τ(r)), the bracket
   ``σ(logit q + 2x) − q`` is largest at ``q = σ(−x)``, where it equals ``tanh(x/2)``:
   ``sup {‖π_τ(r) − π_τ(r')‖₁ : ‖r − r'‖_∞ ≤ ε} = 2 tanh(ε/(2τ)) ≤ ε/τ`` (``exact_modulus``). The sup is
   attained for every ε by two actions, ``r = (−ε/2, ε/2)`` → ``r' = (ε/2, −ε/2)`` (π goes from σ(−x)
   to σ(x)). The best Lipschitz constant is ``sup_x 2tanh(x/2)/x = 1``, approached as ε → 0 at a
   half/half split, i.e. on a degenerate reward with two tied best actions, and never attained at ε > 0.
   Since π ignores constant shifts of r, ``‖r − r'‖_∞`` may be replaced by half the span of ``r − r'``.

**τ = 0: the cliff.** If k ≥ 2 actions tie for the best reward (the set T) and the next best is
``g`` lower, then for every ``0 < ε < g/2`` the perturbation ``+ε`` on the tied action ``i`` with the least
reference mass and ``−ε`` elsewhere makes ``i`` the unique maximiser: the policy moves by
``2(1 − μ_i/μ(T))`` (``2(1 − 1/k)`` for uniform μ) however small ε is. With ``2ε > g`` an action outside
T can win (distance 2); with a unique maximiser and ``2ε < g`` nothing moves.

**Several rewards aggregated into an effective reward** (group rewards ``R = [r_1 … r_K]``, perturbed
with ``max_k ‖Δr_k‖_∞ ≤ ε``):

* weighted sum ``r_w = Σ_k w_k r_k``: ``Δr_w`` ranges over exactly the cube of radius ``‖w‖₁ε`` (any δ
  in it is reached with ``Δr_k = sign(w_k)·δ/‖w‖₁``), so the exact worst case is
  ``d_τ(r_w, ‖w‖₁ε)`` and ``‖Δπ‖₁ ≤ 2tanh(‖w‖₁ε/(2τ)) ≤ ‖w‖₁ε/τ``: the single-reward bound in the
  aggregated perturbation (``weighted_local_modulus``).
* MaxMin ``max_π min_k πᵀr_k − τKL(π‖μ)`` (MaxMin-RLHF, Chakraborty et al. 2024): the optimum is
  ``π_τ(Rw*)`` where the group weights ``w*`` minimise the dual ``τ log Σ μ e^{Rw/τ}`` over the simplex —
  an argmin over groups inside the effective reward ``Rw*``. Holder bound: with
  ``f_R(π) = min_k πᵀr_k − τKL(π‖μ)``, ``f_R(π) ≤ πᵀRw* − τKL(π‖μ) = f_R(π_R) − τKL(π‖π_R)`` (strong
  duality), and ``|f_R − f_R'| ≤ ε`` uniformly; writing this for R and R' and adding gives
  ``τ[KL(π_R'‖π_R) + KL(π_R‖π_R')] ≤ 2ε``, and Pinsker gives ``‖Δπ‖₁ ≤ √(2ε/τ)`` (``maxmin_holder_bound``).
  No bound ``C·ε/τ`` holds: with two actions and ``r_1 = (s/2, −s/2)``, ``r_2 = (c − s/2, c + s/2)``
  (``πᵀr_1 = s(p − ½)``, ``πᵀr_2 = c − s(p − ½)``, uniform μ) the optimum sits at the kink
  ``p = ½ + c/(2s)`` while ``τ|logit p| ≤ s``, so shifting group 2 by a constant moves π by ``|Δc|/s``.
  With ``s = κ√(τε)`` (κ slightly above 1 keeps the kink optimal) a perturbation ε moves the policy by
  ``√(ε/τ)/κ`` — within √2 of the Holder bound, and ``√(τ/ε)/κ`` times the weighted-sum bound, which is
  unbounded as ε → 0. The effective reward itself moves by ~s ≫ ε as w* sweeps from one group to the
  other: the argmax-like cliff of the aggregation, which entropy regularisation only softens to a square
  root. At τ = 0 MaxMin is a linear programme and jumps outright: ``r_1 = (1, 0, ½+δ)``,
  ``r_2 = (0, 1, ½+δ)`` has the unique solution (½, ½, 0) for δ < 0 and e_3 for δ > 0.
  ``maxmin_distance`` measures a lower bound on the worst case over structured perturbations.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp

from duelist.games.matrices import GameError
from duelist.games.solvers import maxmin_from_rewards, softmax

TIE = 1e-12  # rewards this close to the maximum count as tied at τ = 0 (as in solvers.bt_policy)
MAX_ACTIONS = 16  # the exact worst case enumerates the 2^n subsets of actions


def optimal_policy(r: np.ndarray, mu: np.ndarray, tau: float) -> np.ndarray:
    """``μ·exp(r/τ)/Z``; at τ = 0 its limit, μ restricted to the maximisers of r and renormalised."""
    r = np.asarray(r, dtype=np.float64)
    if tau > 0:
        return softmax(np.log(mu) + r / tau)
    p = np.where(r >= r.max() - TIE, mu, 0.0)
    return p / p.sum()


def lipschitz_bound(eps: float, tau: float) -> float:
    """``ε/τ``: the bound on ``‖π_τ(r) − π_τ(r')‖₁`` for ``‖r − r'‖_∞ ≤ ε`` (constant 1, tight)."""
    return eps / tau if tau > 0 else float("inf")


def exact_modulus(eps: float, tau: float) -> float:
    """``2tanh(ε/(2τ))``: the largest policy move over all rewards and references for ``‖Δr‖_∞ ≤ ε``."""
    return 2.0 * float(np.tanh(eps / (2.0 * tau))) if tau > 0 else (2.0 if eps > 0 else 0.0)


def maxmin_holder_bound(eps: float, tau: float) -> float:
    """``√(2ε/τ)``: the bound on the MaxMin policy's move for group perturbations ``max_k ‖Δr_k‖_∞ ≤ ε``."""
    return float(np.sqrt(2.0 * eps / tau)) if tau > 0 else float("inf")


def _subsets(n: int) -> np.ndarray:
    if n > MAX_ACTIONS:
        raise GameError(f"the exact worst case enumerates subsets of actions: at most {MAX_ACTIONS} (got {n})")
    return ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)


def jacobian_norm(pi: np.ndarray, tau: float) -> float:
    """``‖∂π/∂r‖_{∞→1} = max_A 4π(A)(1 − π(A))/τ`` at the policy ``π`` (≤ 1/τ)."""
    q = _subsets(pi.size) @ pi
    return float(np.max(4.0 * q * (1.0 - q)) / tau)


def local_modulus(r: np.ndarray, mu: np.ndarray, tau: float, eps: float) -> tuple[float, np.ndarray]:
    """The exact worst case ``max_{‖δ‖_∞ ≤ ε} ‖π_τ(r + δ) − π_τ(r)‖₁`` and a maximising δ (see the module
    docstring: ``δ = ε·s_A`` with ``A`` maximising ``σ(logit π(A) + 2ε/τ) − π(A)``; at τ = 0 the cliff rule)."""
    r = np.asarray(r, dtype=np.float64)
    pi = optimal_policy(r, mu, tau)
    if tau > 0:
        masks = _subsets(r.size)
        # logit π(A) from the logits (not from π, whose masses below e^-300 are rounded to 0)
        z = np.log(mu) + r / tau
        lse_in = logsumexp(np.where(masks, z, -np.inf), axis=1)
        lse_out = logsumexp(np.where(masks, -np.inf, z), axis=1)
        with np.errstate(invalid="ignore"):
            ell = lse_in - lse_out
            gain = expit(ell + 2.0 * eps / tau) - expit(ell)
        gain[~np.isfinite(ell)] = 0.0  # the empty and the full set cannot move
        delta = np.where(masks[int(np.argmax(gain))], eps, -eps)
    else:
        delta = _cliff_perturbation(r, mu, eps)
    return float(np.abs(optimal_policy(r + delta, mu, tau) - pi).sum()), delta


def _cliff_perturbation(r: np.ndarray, mu: np.ndarray, eps: float) -> np.ndarray:
    top = r >= r.max() - TIE
    rest = np.where(top, -np.inf, r)
    if eps > 0 and (~top).any() and 2 * eps > r.max() - rest.max():
        winner = int(np.argmax(rest))  # the runner-up overtakes every tied action
    elif eps > 0 and top.sum() >= 2:
        winner = int(np.argmin(np.where(top, mu, np.inf)))  # the tied action with the least reference mass
    else:
        return np.zeros_like(r)
    return np.where(np.arange(r.size) == winner, eps, -eps)


def weighted_local_modulus(R: np.ndarray, w: np.ndarray, mu: np.ndarray, tau: float,
                           eps: float) -> tuple[float, np.ndarray]:
    """Exact worst case for the weighted-sum reward ``Rw`` under ``max_k ‖Δr_k‖_∞ ≤ ε``: the single-reward
    worst case at radius ``‖w‖₁ε``. Returns the distance and the group perturbations ΔR (n × K) reaching it."""
    w = np.asarray(w, dtype=np.float64)
    l1 = float(np.abs(w).sum())
    d, delta = local_modulus(R @ w, mu, tau, l1 * eps)
    return d, np.outer(delta, np.sign(w)) / l1


def maxmin_optimal_policy(R: np.ndarray, mu: np.ndarray, tau: float) -> np.ndarray:
    """``argmax_π min_k πᵀr_k − τKL(π‖μ)`` for group rewards R (n × K), τ > 0."""
    return maxmin_from_rewards(np.asarray(R, dtype=np.float64), mu, tau)[0]


def maxmin_distance(R: np.ndarray, mu: np.ndarray, tau: float, eps: float) -> tuple[float, np.ndarray]:
    """The largest MaxMin policy move over structured group perturbations of size ε: a constant shift
    ``±ε`` of one group (it changes which group is worst off, which no single reward's policy reacts to),
    and the worst single-reward direction for the effective reward ``Rw*`` applied to every group. A lower
    bound on the worst case (an exact one would be a non-convex search over n × K perturbations); the
    upper bound is ``maxmin_holder_bound``. Returns the distance and the perturbation ΔR."""
    R = np.asarray(R, dtype=np.float64)
    pi, w = maxmin_from_rewards(R, mu, tau)
    n, k = R.shape
    candidates = [np.outer(np.ones(n), np.eye(k)[g]) * sign * eps for g in range(k) for sign in (1.0, -1.0)]
    candidates.append(np.outer(local_modulus(R @ w, mu, tau, eps)[1], np.ones(k)))
    moves = [float(np.abs(maxmin_optimal_policy(R + dR, mu, tau) - pi).sum()) for dR in candidates]
    best = int(np.argmax(moves))
    return moves[best], candidates[best]


def cliff_sweep(R: np.ndarray, mu: np.ndarray, taus: list[float], eps_grid: np.ndarray, aggregate: str = "sum",
                weights: np.ndarray | None = None) -> list[dict]:
    """Policy distance against perturbation size for each τ: one row per (τ, ε) with the distance, the
    Lipschitz bound ε'/τ (ε' = ‖w‖₁ε for a weighted sum) and the exact modulus 2tanh(ε'/(2τ)); for MaxMin the
    Holder bound √(2ε/τ) instead of the modulus. ``R`` is n × K (one column: a single reward). ``aggregate``:
    ``sum`` (weights default to uniform) or ``maxmin`` (τ > 0 only; its distance is ``maxmin_distance``'s
    lower bound)."""
    R = np.asarray(R, dtype=np.float64)
    w = np.full(R.shape[1], 1.0 / R.shape[1]) if weights is None else np.asarray(weights, dtype=np.float64)
    rows = []
    for tau in taus:
        for eps in eps_grid:
            row: dict = {"tau": float(tau), "eps": float(eps)}
            if aggregate == "maxmin":
                row["distance"] = maxmin_distance(R, mu, tau, eps)[0]
                row["bound"] = lipschitz_bound(eps, tau)  # what a weighted sum would guarantee
                row["holder_bound"] = maxmin_holder_bound(eps, tau)
            else:
                radius = float(np.abs(w).sum() * eps)
                row["distance"] = weighted_local_modulus(R, w, mu, tau, eps)[0]
                row["bound"] = lipschitz_bound(radius, tau)
                row["modulus"] = exact_modulus(radius, tau)
            rows.append(row)
    return rows
