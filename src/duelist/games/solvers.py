"""Exact solutions of preference games: von Neumann winner (LP), τ-regularised equilibrium (Newton),
Condorcet winner, the Bradley–Terry fit and the BT-optimal policy, Nash-MD's fixed point and the MaxMin
policy of a population game.

All functions work on numpy float64 arrays ``P`` (n×n, ``P + Pᵀ = 1``), ``mu`` (n,) and ``tau`` ≥ 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.optimize import linprog

from duelist.games.matrices import Game, GameError

SOFTMAX_FLOOR = -300.0  # logits this far below the max get probability exactly 0


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax that sets probabilities below e^-300 (relative to the largest) to exactly 0: such
    entries change no metric, and left in they become subnormal floats in products (P·π, π πᵀ),
    which made n = 1000 runs at small τ ~15× slower."""
    d = z - z.max(axis=-1, keepdims=True)
    e = np.where(d > SOFTMAX_FLOOR, np.exp(np.maximum(d, SOFTMAX_FLOOR)), 0.0)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- unregularised equilibrium (LP)


def nash_equilibrium(P: np.ndarray) -> np.ndarray:
    """A von Neumann winner: ``π`` with ``P(π ≻ y) ≥ ½`` for every response ``y`` (Dudík et al. 2015).

    Because ``Pᵀπ = 1 − Pπ``, this is the LP ``max v s.t. (Pπ)_y ≤ 1 − v, Σπ = 1, π ≥ 0`` whose optimum is
    ``v = ½``. HiGHS solves it to ~1e-10; we then re-solve the equalising system on the support it found
    (``(Pπ)_y = ½`` on the active responses, ``Σπ = 1``) by least squares, which brings the exploitability
    ``max_y (Pπ)_y − ½`` to rounding level. The polish is kept only if it stays a distribution and does not
    raise the exploitability. When the equilibrium is not unique, the LP's vertex is returned.
    """
    n = P.shape[0]
    c = np.zeros(n + 1)
    c[-1] = -1.0
    A_ub = np.hstack([P, np.ones((n, 1))])
    res = linprog(c, A_ub=A_ub, b_ub=np.ones(n), A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0],
                  bounds=[(0, None)] * n + [(None, None)], method="highs",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise GameError(f"LP for the Nash equilibrium failed: {res.message}")
    pi = np.clip(res.x[:n], 0.0, None)
    pi /= pi.sum()
    best, best_expl = pi, float((P @ pi).max() - 0.5)
    support = np.flatnonzero(pi > 1e-9)
    active = np.flatnonzero(P @ pi >= 0.5 - 1e-7)
    A = np.vstack([P[np.ix_(active, support)], np.ones((1, support.size))])
    b = np.r_[np.full(active.size, 0.5), 1.0]
    sol = np.linalg.lstsq(A, b, rcond=None)[0]
    if sol.min() >= -1e-12:
        cand = np.zeros(n)
        cand[support] = np.clip(sol, 0.0, None)
        cand /= cand.sum()
        expl = float((P @ cand).max() - 0.5)
        if expl <= best_expl:
            best = cand
    return best


def condorcet_winner(P: np.ndarray) -> int | None:
    """The response that beats every other with probability > ½, or None. When it exists it is the unique
    von Neumann winner: any ``π ≠ e_c`` has ``P(π ≻ c) = Σ_k π_k P[k, c] < ½``."""
    beats = P > 0.5
    np.fill_diagonal(beats, True)
    rows = np.flatnonzero(beats.all(axis=1))
    return int(rows[0]) if rows.size else None


# ---------------------------------------------------------------------- τ-regularised equilibrium (Newton)


def best_response(P: np.ndarray, mu: np.ndarray, tau: float, pi: np.ndarray) -> np.ndarray:
    """``argmax_q qᵀPπ − τ KL(q‖μ) = softmax(log μ + Pπ/τ)``; for ``τ = 0`` a uniform mix of the maximisers."""
    g = P @ pi
    if tau == 0:
        top = g >= g.max() - 1e-12
        return top / top.sum()
    return softmax(np.log(mu) + g / tau)


def regularized_equilibrium(P: np.ndarray, mu: np.ndarray, tau: float, tol: float = 1e-11,
                            max_iter: int = 200) -> np.ndarray:
    """The unique ``π*_τ = softmax(log μ + Pπ*_τ/τ)``, the Nash equilibrium of the τ-regularised game of
    Munos et al. 2024 (NLHF).

    Newton's method on the logits: find ``x`` with ``R(x) = x − log μ − P softmax(x)/τ = 0``. The root is
    ``x* = log μ + Pπ*/τ`` (no free constant), and the Jacobian is ``J = I − P D/τ`` with
    ``D = diag π − ππᵀ``. Since ``1ᵀD = 0``, ``PD = SD`` where ``S = P − ½11ᵀ`` is skew; ``SD`` is similar on
    the range of D to the skew matrix ``D^½ S D^½``, so its eigenvalues are imaginary and ``J``'s are
    ``1 − iλ/τ ≠ 0``: J is always invertible. ``‖R‖²`` is coercive (``Pπ/τ`` is bounded) and its only
    stationary point is the root (``JᵀR = 0 ⇒ R = 0``), so Newton with an Armijo line search on ``‖R‖²``
    converges from any start; we start at the best response to ``μ``. Convergence is declared when
    ``‖R‖_∞ ≤ tol`` (relative to the logits' size when they are large), which gives a duality gap ~1e-20.
    For ``τ = 0`` the LP solution is returned.
    """
    if tau == 0:
        return nash_equilibrium(P)
    n = P.shape[0]
    log_mu = np.log(mu)
    x = log_mu + P @ mu / tau

    def residual(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pi = softmax(x)
        return x - log_mu - P @ pi / tau, pi

    R, pi = residual(x)
    for _ in range(max_iter):
        if np.abs(R).max() <= max(tol, 64 * np.finfo(float).eps * np.abs(x).max()):
            return pi
        PD = P * pi[None, :] - np.outer(P @ pi, pi)
        d = np.linalg.solve(np.eye(n) - PD / tau, -R)
        f0, step = float(R @ R), 1.0
        while True:
            R_new, pi_new = residual(x + step * d)
            if float(R_new @ R_new) <= (1 - 1e-4 * step) * f0 or step < 1e-12:
                break
            step *= 0.5
        x, R, pi = x + step * d, R_new, pi_new
    raise GameError(f"regularised equilibrium: Newton did not converge in {max_iter} steps "
                    f"(residual {np.abs(R).max():.3g}, tau={tau})")


def nash_md_fixed_point(P: np.ndarray, mu: np.ndarray, tau: float, eta: float) -> np.ndarray:
    """The point that tabular Nash-MD with a fixed step ``η`` converges to (``0 < ητ < 1``).

    Derivation. Nash-MD's step in logits is ``x' = (1−ητ)x + ητ log μ + η Pν`` with the geometric mixture
    ``ν = softmax((1−ητ)x + ητ log μ)``. At a fixed point ``x = log μ + Pν/τ``, so
    ``π̂ = softmax(log μ + Pν/τ)`` (a best response to ν, not to itself) and
    ``log ν = (1−ητ)(log μ + Pν/τ) + ητ log μ + c = log μ + Pν/τ'`` with ``τ' = τ/(1−ητ)``:
    ``ν = π*_{τ'}``. Hence ``π̂_η = BR_τ(π*_{τ/(1−ητ)}) ≠ π*_τ``.

    Bias bound (``games.metrics.nash_md_bias_bound``). For two temperatures ``a < b``, subtracting the
    fixed-point equations and taking the inner product with ``d = π*_a − π*_b`` (``dᵀPd = 0`` because S is
    skew and ``1ᵀd = 0``) gives ``a·J(π*_a, π*_b) = (1 − a/b)·(π*_aᵀPπ*_b − ½)`` with J the Jeffreys
    divergence. Using ``|π*_aᵀPπ*_b − ½| = |dᵀSπ*_b| ≤ ‖d‖₁/2`` and ``J ≥ ‖d‖₁²`` (Pinsker twice):
    ``‖d‖₁ ≤ (b − a)/(2ab)``; here that is ``‖ν − π*_τ‖₁ ≤ η/2``. Then ``log π̂ − log π*_τ = S(ν − π*_τ)/τ +
    const`` has range at most ``‖ν − π*_τ‖₁/τ ≤ η/(2τ)``, and Hoeffding's lemma gives
    ``KL(π*_τ‖π̂_η) ≤ (η/(2τ))²/8 = η²/(32τ²)``: the bias is second order in η. The often quoted additive
    ``2η/τ`` (in KL) is a valid but first-order, looser bound whenever ``η < 64τ``.
    """
    if not 0 < eta * tau < 1:
        raise GameError(f"Nash-MD fixed point needs 0 < eta*tau < 1 (got {eta * tau})")
    nu = regularized_equilibrium(P, mu, tau / (1.0 - eta * tau))
    return best_response(P, mu, tau, nu)


# ------------------------------------------------------------------------------------------ Bradley–Terry


def bt_fit(wins: np.ndarray, l2: float = 0.0, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood Bradley–Terry scores (mean zero) from a matrix of (expected) win counts.

    ``wins[i, j]`` is how often ``i`` beat ``j``; pass ``P`` itself for "every pair once", or
    ``q_i q_j P[i, j]`` for pairs drawn from ``q``. The negative log-likelihood
    ``−Σ_{i≠j} wins[i,j]·log σ(s_i − s_j)`` is convex with gradient ``Σ_j (n_ij σ(s_i − s_j) − wins[i,j])``
    (``n_ij = wins_ij + wins_ji``) and a weighted-Laplacian Hessian; Newton with the gauge ``Σs = 0``. A
    finite MLE exists iff the "i beat j at least once" graph is strongly connected (Zermelo/Ford); otherwise
    a GameError is raised unless ``l2 > 0`` (ridge ``l2·‖s‖²``).
    """
    W = np.array(wins, dtype=np.float64)
    np.fill_diagonal(W, 0.0)
    n = W.shape[0]
    if l2 == 0:
        from scipy.sparse.csgraph import connected_components

        k, _ = connected_components(W > 0, directed=True, connection="strong")
        if k > 1:
            raise GameError("Bradley-Terry fit: no finite maximum-likelihood scores (some set of responses "
                            "never loses to the rest); pass l2 > 0")
    N = W + W.T
    s = np.zeros(n)

    def nll(s: np.ndarray) -> float:
        d = s[:, None] - s[None, :]
        return float(np.sum(W * np.logaddexp(0.0, -d)) + l2 * s @ s)

    f = nll(s)
    for _ in range(max_iter):
        sig = 1.0 / (1.0 + np.exp(-(s[:, None] - s[None, :])))
        g = (N * sig).sum(1) - W.sum(1) + 2 * l2 * s
        H = -N * sig * (1 - sig)
        np.fill_diagonal(H, 0.0)
        np.fill_diagonal(H, -H.sum(1) + 2 * l2)
        d = np.linalg.solve(H + np.ones((n, n)) / n, -g)
        step = 1.0
        while True:
            f_new = nll(s + step * d)
            if f_new <= f + 1e-4 * step * float(g @ d) or step < 1e-12:
                break
            step *= 0.5
        s, f = s + step * d, f_new
        if np.abs(step * d).max() < 1e-13 * max(1.0, np.abs(s).max()):
            break
    return s - s.mean()


def bt_policy(scores: np.ndarray, mu: np.ndarray, tau: float) -> np.ndarray:
    """The KL-regularised reward maximiser for a BT reward: ``μ·exp(s/τ)/Z`` (DPO's population optimum)."""
    if tau == 0:
        top = scores >= scores.max() - 1e-12
        return top / top.sum()
    return softmax(np.log(mu) + scores / tau)


# ----------------------------------------------------------------------------------------------- MaxMin


def group_rewards(game: Game) -> np.ndarray:
    """(n, K): ``r_k(y) = P_k(y ≻ μ)``, each group's win-rate of ``y`` against the reference policy."""
    groups, _ = game.group_matrices()
    return np.stack([g @ game.mu for g in groups], axis=1)


def maxmin_policy(game: Game, max_groups: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """MaxMin (egalitarian) policy ``argmax_π min_k πᵀr_k − τ KL(π‖μ)`` and the worst-case group weights.

    Chakraborty et al. 2024 (MaxMin-RLHF) use group reward models; here group k's reward is its win-rate
    against the reference, ``r_k = P_k μ``. By the minimax theorem the problem equals
    ``min_{w∈Δ_K} D(w)``, ``D(w) = τ log Σ_y μ_y exp((Rw)_y/τ)``, with ``π = softmax(log μ + Rw/τ)``.
    D is convex and smooth; we enumerate the support of ``w`` (K ≤ max_groups), minimise D on each face by
    Newton, and return the face that satisfies the KKT conditions (``w ≥ 0``; groups outside the support
    are not worse off than the common worst value). ``π`` is unique because the primal is strictly concave.
    """
    return maxmin_from_rewards(group_rewards(game), game.mu, game.tau, max_groups)


def maxmin_from_rewards(R: np.ndarray, mu: np.ndarray, tau: float,
                        max_groups: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """``maxmin_policy`` for any group rewards ``R`` (n × K, column k = group k's reward); see there."""
    if tau <= 0:
        raise GameError("MaxMin policy: tau must be > 0")
    k = R.shape[1]
    if k > max_groups:
        raise GameError(f"MaxMin policy: at most {max_groups} groups are supported (got {k})")
    log_mu = np.log(mu)
    for size in range(1, k + 1):
        for face in itertools.combinations(range(k), size):
            w = _minimise_dual_on_face(R[:, face], log_mu, tau)
            if w is None or w.min() < -1e-12:
                continue
            full = np.zeros(k)
            full[list(face)] = np.clip(w, 0.0, None)
            full /= full.sum()
            pi = softmax(log_mu + R @ full / tau)
            values = R.T @ pi
            if values.min() >= values[list(face)].max() - 1e-10:
                return pi, full
    raise GameError("MaxMin policy: no KKT point found")


def _minimise_dual_on_face(R: np.ndarray, log_mu: np.ndarray, tau: float) -> np.ndarray | None:
    k = R.shape[1]
    if k == 1:
        return np.ones(1)
    Z = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])  # basis of {Σw = 0}
    w = np.full(k, 1.0 / k)

    def dual(w: np.ndarray) -> float:
        z = log_mu + R @ w / tau
        return float(tau * (z.max() + np.log(np.exp(z - z.max()).sum())))

    f = dual(w)
    for _ in range(100):
        pi = softmax(log_mu + R @ w / tau)
        g = Z.T @ (R.T @ pi)
        C = np.diag(pi) - np.outer(pi, pi)
        H = Z.T @ (R.T @ C @ R) @ Z / tau
        d = -np.linalg.lstsq(H, g, rcond=None)[0]
        if np.abs(g).max() < 1e-13:
            return w
        # near the minimum of a face with small rewards (nearly tied groups) the decrease Newton predicts is
        # below D's rounding; accept steps that do not raise D beyond that rounding, or the search stalls
        rounding = 8 * np.finfo(float).eps * (abs(f) + tau * (np.abs(log_mu + R @ w / tau).max() + 1))
        step = 1.0
        while step > 1e-12:
            f_new = dual(w + step * (Z @ d))
            if f_new <= f + 1e-4 * step * float(g @ d) + rounding:
                break
            step *= 0.5
        if step <= 1e-12 or np.abs(w).max() > 1e6:
            return None  # unbounded along this face or stalled: not the optimal face
        w, f = w + step * (Z @ d), f_new
    return None


# ------------------------------------------------------------------------------------------------ bundle


@dataclass
class Solution:
    """The exact targets of a game, computed on first use."""

    game: Game

    @cached_property
    def regularized(self) -> np.ndarray:
        g = self.game
        return regularized_equilibrium(g.P, g.mu, g.tau)

    @cached_property
    def nash(self) -> np.ndarray:
        return nash_equilibrium(self.game.P)

    @cached_property
    def maxmin(self) -> np.ndarray:
        return maxmin_policy(self.game)[0]

    @cached_property
    def condorcet(self) -> int | None:
        return condorcet_winner(self.game.P)
