"""Population (finite-sum) games: variance-reduced Halpern iteration and MaxMin over groups."""

from __future__ import annotations

import math

import numpy as np

from duelist.games.dynamics.base import Dynamics, ExactOracle, register
from duelist.games.matrices import Game
from duelist.games.solvers import softmax

# -------------------------------------------------------------------------------- population-game solvers


@register
class VRHalpern(Dynamics):
    """Variance-reduced Halpern iteration (Cai, Alacaoglu, Diakonikolas 2024) on the finite-sum game.

    Monotone inclusion ``0 ∈ F(π) + G(π)`` with ``F = Σ_k w_k F_k``, ``F_k(π) = −P_k π`` (monotone:
    ``dᵀP_k d = 0`` on ``1ᵀd = 0``; Lipschitz ``‖S_k‖₂``) and ``G = τ∂KL(·‖μ) + N_Δ`` (its resolvent is the
    Euclidean KL-prox on the simplex, solved by a 1-D Newton in the Wright ω function). The zero is π*_τ.
    Outer: Halpern on the resolvent, ``u_{j+1} = λ_j u_0 + (1−λ_j) J̃(u_j)``, ``λ_j = 1/(j+2)``. Inner
    (``J̃(u)`` = solution ``v`` of ``v = J_{ηG}(u − ηF(v))``): forward-backward steps with a loopless SVRG
    estimate ``F(w) + F_k(v) − F_k(w)``, ``k ~ w``, snapshot ``w`` refreshed with probability
    ``1/√K``; ``4 + 2⌈log₂(j+2)⌉`` inner steps, tightening with j. Deviation: the anchor restarts at the
    current point whenever the residual ``‖u − J̃(u)‖`` halves, which turns Halpern's O(1/k) into a
    linear rate on this τ-strongly monotone problem (``restart=False`` gives plain Halpern).
    ``η = 1/L̄`` with ``L̄² = Σ w_k ‖S_k‖²``. One step here is one outer iteration; ``evaluations`` counts
    group win-rate vectors. Sampled mode: the same iteration on noisy group win-rates (no decay).
    """

    name = "vr_halpern"
    paper = "Cai, Alacaoglu, Diakonikolas 2024, Variance Reduced Halpern Iteration for Finite-Sum Monotone Inclusions"
    rule = "u_{j+1} = u_0/(j+2) + (1 − 1/(j+2)) J̃_{η(F+G)}(u_j),  J̃ by SVRG forward-backward"
    target = "regularized"
    iterate = "last"
    rate = "O(1/k) residual (monotone); linear with restarts when τ > 0"

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        """``1/L̄``; ``1/(2L̄)`` when ``τ = 0``, where the prox adds no contraction and the inner
        forward-backward map must contract by itself (factor ``ηL̄``)."""
        groups, w = game.group_matrices()
        L = math.sqrt(sum(wk * np.linalg.norm(g - 0.5, 2) ** 2 for g, wk in zip(groups, w, strict=True)))
        return 1.0 / L if game.tau > 0 else 0.5 / L

    def configure(self, restart: bool = True) -> None:
        self.restart = restart
        self.groups, self.weights = self.game.group_matrices()
        self.K = len(self.groups)
        self.u = self.game.mu.copy()
        self.anchor, self.v, self.j, self.nu = self.u.copy(), self.u.copy(), 0, 0.0
        self.res0: float | None = None
        self.residual = float("nan")
        self.batch = math.ceil(math.sqrt(self.K))

    @property
    def policy(self) -> np.ndarray:
        return self.v

    def step(self, oracle: ExactOracle) -> None:
        eta = self.eta
        c = eta * self.tau
        v = self.v
        snap, F_snap = v, -oracle.win_rates(v)
        for i in range(4 + 2 * math.ceil(math.log2(self.j + 2))):
            if i > 0 and self.rng.random() < 1.0 / math.sqrt(self.K):  # loopless SVRG snapshot refresh
                snap, F_snap = v, -oracle.win_rates(v)
            F = F_snap.copy()
            if snap is not v:  # F(w) + F_k(v) − F_k(w), k ~ weights: unbiased for F(v)
                for k in self.rng.choice(self.K, size=self.batch, p=self.weights):
                    F += (oracle.win_rates(snap, group=k) - oracle.win_rates(v, group=k)) / self.batch
            v, self.nu = kl_prox_simplex(self.u - eta * F, c, self.log_mu, self.nu)
        self.v = v
        res = self.residual = float(np.linalg.norm(self.u - v))  # ‖u_j − J̃(u_j)‖
        if self.res0 is None or (self.restart and res <= 0.5 * self.res0):
            self.anchor, self.u, self.j, self.res0 = v.copy(), v.copy(), 0, res  # restart at the new point
        else:
            lam = 1.0 / (self.j + 2)
            self.u = lam * self.anchor + (1.0 - lam) * v
            self.j += 1
        self.t += 1


def kl_prox_simplex(v: np.ndarray, c: float, log_mu: np.ndarray, nu: float = 0.0) -> tuple[np.ndarray, float]:
    """``argmin_{π∈Δ} ½‖π − v‖² + c·KL(π‖μ)`` and the multiplier of ``Σπ = 1``.

    Stationarity: ``π_i + c log π_i = v_i + c log μ_i − c − ν``, so ``π_i = c·ω(s_i)`` with Wright's
    ``ω(s) = W(eˢ)`` and ``s_i = (v_i + c log μ_i − c − ν)/c − log c``. ``Σ_i π_i(ν)`` is decreasing and
    convex in ν (``dπ_i/dν = −ω/(1+ω)``); Newton on ν from the warm start, bisection-safeguarded. ``c = 0``
    is the Euclidean projection.
    """
    if c == 0:
        return project_simplex(v), 0.0
    from scipy.special import wrightomega

    base = (v + c * log_mu - c) / c - math.log(c)

    def total(nu: float) -> tuple[float, np.ndarray]:
        w = wrightomega(base - nu / c).real
        return c * w.sum() - 1.0, w

    lo, hi = -np.inf, np.inf
    for _ in range(100):
        h, w = total(nu)
        if h > 0:
            lo = nu
        else:
            hi = nu
        if abs(h) < 1e-14:
            break
        new = nu + h / (w / (1.0 + w)).sum()
        if not lo < new < hi:  # Newton left the bracket: bisect (or expand an open bracket)
            new = (lo + hi) / 2 if np.isfinite(lo) and np.isfinite(hi) else (nu + (1.0 if h > 0 else -1.0)
                                                                             * max(1.0, abs(nu)))
        nu = new
    pi = c * w
    return pi / pi.sum(), nu


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (sort-based, Held et al. 1974)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.flatnonzero(u - css / np.arange(1, v.size + 1) > 0)[-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


@register
class MaxMin(Dynamics):
    """MaxMin over populations (Chakraborty et al. 2024, MaxMin-RLHF), with group k's reward its win-rate
    against the reference, ``r_k = P_k μ``. Target: ``argmax_π min_k πᵀr_k − τKL(π‖μ)``
    (``solvers.maxmin_policy``). The policy is the exact KL-regularised best response to the current group
    weights, ``π_t = softmax(log μ + R w_t/τ)``, and the weights move towards the groups that are worst
    off: ``w_{t+1} ∝ w_t exp(−γ_t R̂ᵀπ_t)``. Deviation from the paper: its "optimise for the currently
    worst group" hard argmin becomes this multiplicative update, i.e. mirror descent on the convex dual
    ``D(w) = τ log Σ μ e^{Rw/τ}`` (whose gradient is ``Rᵀπ_w``), which converges instead of chattering;
    γ → ∞ recovers the hard rule. Step: ``γ_t = η·τ/max_k Var_{π_t}(r_k)`` (the inverse of D's local
    ℓ1-smoothness, ``max_k ∂²D/∂w_k²``), halved until D decreases. Sampled mode averages the reward
    estimates over steps (they do not depend on π). A plain game is one group, solved in one step.
    """

    name = "maxmin"
    paper = "Chakraborty et al. 2024, MaxMin-RLHF (egalitarian objective over groups)"
    rule = "π_t = softmax(log μ + R w_t/τ);  w_{t+1} ∝ w_t · exp(−γ_t R̂ᵀπ_t),  R = [P_k μ]_k"
    target = "maxmin"
    iterate = "last"
    rate = "linear when the dual is strongly convex (affinely independent group rewards)"
    needs_tau = True

    @classmethod
    def default_eta(cls, game: Game, steps: int) -> float:
        return 1.0

    def step_size(self) -> float:
        return self.eta  # the rewards are averaged instead (sampled mode)

    def configure(self) -> None:
        self.K = self.game.num_groups
        self.w = np.full(self.K, 1.0 / self.K)
        self.R = np.zeros((self.game.n, self.K))

    def _dual(self, w: np.ndarray) -> float:
        z = self.log_mu + self.R @ w / self.tau
        return float(z.max() + np.log(np.exp(z - z.max()).sum()))

    def _step(self, oracle: ExactOracle, eta: float) -> None:
        est = np.stack([oracle.win_rates(self.game.mu, group=k if self.K > 1 else None)
                        for k in range(self.K)], axis=1)
        self.R += (est - self.R) / (self.t + 1)
        pi = softmax(self.log_mu + self.R @ self.w / self.tau)
        values = self.R.T @ pi
        var = ((self.R - values) ** 2 * pi[:, None]).sum(0)
        gamma = eta * self.tau / max(float(var.max()), 1e-300)
        d0 = self._dual(self.w)
        for _ in range(60):
            w = self.w * np.exp(-gamma * (values - values.min()))
            w /= w.sum()
            if self._dual(w) <= d0:
                break
            gamma /= 2
        self.w = w
        self.x = self.log_mu + self.R @ self.w / self.tau
