"""The loop that runs an algorithm on a game and measures it, and closed-form predictions to test it against."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duelist.games.dynamics.base import ALGORITHMS, ExactOracle, SampledOracle, get_algorithm
from duelist.games.matrices import Game, GameError
from duelist.games.metrics import maxmin_value
from duelist.games.solvers import Solution, group_rewards

# ------------------------------------------------------------------------------------------------ runner


@dataclass
class Run:
    """One algorithm run: per-iteration metrics of the last and the average iterate, and the cost."""

    algorithm: str
    target: str
    iterate: str
    mode: str
    eta: float
    last: np.ndarray
    average: np.ndarray
    history: dict[str, np.ndarray] = field(repr=False)
    trajectory: np.ndarray = field(repr=False)  # (T, n): the last iterate after each step

    @property
    def policy(self) -> np.ndarray:
        """The iterate the algorithm's theory is about."""
        return self.average if self.iterate == "average" else self.last

    @property
    def error(self) -> np.ndarray:
        """Per-iteration distance to the algorithm's own target, for its reported iterate:
        regularised duality gap (``regularized``, ``bt``), unregularised duality gap (``unregularized``)
        or MaxMin suboptimality (``maxmin``)."""
        which = "avg" if self.iterate == "average" else "last"
        return self.history[f"{_error_key(self.target)}_{which}"]

    def iterations_to(self, tol: float) -> int | None:
        hits = np.flatnonzero(self.error <= tol)
        return int(hits[0]) + 1 if hits.size else None

    def summary(self, tol: float = 1e-6) -> dict[str, Any]:
        which = "avg" if self.iterate == "average" else "last"
        h = self.history
        return {"algorithm": self.algorithm, "target": self.target, "iterate": self.iterate, "mode": self.mode,
                "eta": self.eta, "steps": int(h["cost"].size), "error": float(self.error[-1]),
                "gap": float(h[f"gap_{which}"][-1]), "gap_unregularized": float(h[f"gap0_{which}"][-1]),
                "kl_to_equilibrium": float(h[f"kl_{which}"][-1]),
                "win_rate_vs_equilibrium": float(h[f"win_{which}"][-1]),
                "iterations_to_tol": self.iterations_to(tol), "tol": tol,
                "cost": int(h["cost"][-1]), "cost_unit": "queries" if self.mode == "sampled" else "evaluations",
                "equilibrium_found": self.policy.tolist()}


def _error_key(target: str) -> str:
    return {"unregularized": "gap0", "maxmin": "maxmin"}.get(target, "gap")


def run(game: Game, algorithm: str, steps: int = 1000, *, mode: str = "exact", queries: int = 100,
        seed: int = 0, eta: float | None = None, solution: Solution | None = None, tol: float | None = None,
        **options: Any) -> Run:
    """Run ``algorithm`` for ``steps`` iterations and record, for the last and the average iterate,
    the τ-regularised duality gap, the unregularised one, ``KL(π*_τ‖π)``, ``P(π ≻ π*_τ)`` (and the MaxMin
    suboptimality for ``maxmin``); ``cost`` is cumulative evaluations (exact) or queries (sampled).
    With ``tol``, stop at the first iteration whose ``Run.error`` is ≤ tol (the history is shorter)."""
    if mode not in ("exact", "sampled"):
        raise GameError(f"mode must be 'exact' or 'sampled', got {mode!r}")
    cls = get_algorithm(algorithm)
    rng = np.random.default_rng(seed)
    oracle = SampledOracle(game, queries, rng) if mode == "sampled" else ExactOracle(game)
    algo = cls(game, eta=eta, steps=steps, decay=mode == "sampled", rng=rng, **options)
    sol = solution or Solution(game)
    played = np.empty((steps, game.n))
    lasts = np.empty((steps, game.n))
    cost = np.empty(steps)
    total = np.zeros(game.n)
    done = steps
    for t in range(steps):
        played[t] = algo.policy
        total += played[t]
        algo.step(oracle)
        lasts[t] = algo.policy
        cost[t] = oracle.queries if oracle.sampled else oracle.evaluations
        if tol is not None:
            pi = total / (t + 1) if cls.iterate == "average" else lasts[t]
            if policy_metrics(game, pi[None], sol, cls.target == "maxmin")[_error_key(cls.target)][0] <= tol:
                done = t + 1
                break
    played, lasts, cost = played[:done], lasts[:done], cost[:done]
    # the average is over the policies that were played, π_0..π_t, as in the no-regret bounds
    averages = np.cumsum(played, axis=0) / np.arange(1, done + 1)[:, None]
    hist = {"cost": cost}
    for which, pis in (("last", lasts), ("avg", averages)):
        for key, values in policy_metrics(game, pis, sol, maxmin=cls.target == "maxmin").items():
            hist[f"{key}_{which}"] = values
    return Run(algorithm, cls.target, cls.iterate, mode, algo.eta, lasts[-1].copy(), averages[-1].copy(), hist,
               lasts)


def policy_metrics(game: Game, pis: np.ndarray, solution: Solution | None = None,
                   maxmin: bool = False) -> dict[str, np.ndarray]:
    """Metrics of each row of ``pis`` (T × n), vectorised: regularised duality gap ``2τKL(π‖BR(π))``,
    unregularised duality gap ``2(max_y (Pπ)_y − ½)``, ``KL(π*_τ‖π)``, ``P(π ≻ π*_τ)`` and optionally
    the MaxMin suboptimality."""
    sol = solution or Solution(game)
    P, mu, tau = game.P, game.mu, game.tau
    star = sol.regularized
    G = pis @ P.T  # row t: Pπ_t
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pi = np.log(pis)
        if tau > 0:
            Z = np.log(mu) + G / tau
            log_br = Z - Z.max(1, keepdims=True)
            log_br -= np.log(np.exp(log_br).sum(1, keepdims=True))
            gap = 2 * tau * np.where(pis > 0, pis * (log_pi - log_br), 0.0).sum(1)
        else:
            gap = 2 * (G.max(1) - 0.5)
        m = star > 0
        kl_star = (star[m] * (np.log(star[m]) - log_pi[:, m])).sum(1)
    out = {"gap": np.maximum(gap, 0.0), "gap0": np.maximum(2 * (G.max(1) - 0.5), 0.0),
           "kl": np.maximum(kl_star, 0.0), "win": pis @ (P @ star)}
    if maxmin:
        R = group_rewards(game)
        best = maxmin_value(R, mu, tau, sol.maxmin)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_mu = np.where(pis > 0, pis * (log_pi - np.log(mu)), 0.0).sum(1)
        out["maxmin"] = np.maximum(best - ((pis @ R).min(1) - tau * kl_mu), 0.0)
    return out


# ------------------------------------------------------------------------------------ closed-form helpers


def sampled_kl_prediction(game: Game, queries: int, steps: int, solution: Solution | None = None) -> float:
    """Predicted ``E KL(π*_τ‖π_T)`` for a regularised method in sampled mode (module docstring)."""
    from scipy.linalg import solve_continuous_lyapunov

    star = (solution or Solution(game)).regularized
    g = game.P @ star
    D = np.diag(star) - np.outer(star, star)
    A = -np.eye(game.n) + game.P @ D / game.tau
    Q = np.diag(g * (1.0 - g)) / (queries * game.tau**2)
    c = 2.0
    Sigma = solve_continuous_lyapunov(c * A + 0.5 * np.eye(game.n), -(c**2) * Q)
    return float(np.trace(D @ Sigma)) / (2.0 * steps)


def mwu_sampled_bound(n: int, eta: float, steps: int, queries: int | None) -> float:
    """Bound on the (expected) exploitability of MWU's average iterate; ``queries=None`` is exact mode."""
    bound = math.log(n) / (eta * steps) + eta / 8.0
    if queries is not None:
        bound += math.sqrt(math.log(2 * n) / (2 * queries * steps)) + math.sqrt(1.0 / (2 * math.pi * queries * steps))
    return bound


def algorithm_table() -> list[dict[str, str]]:
    """One row per registered algorithm (used by ``duelist game --list`` and docs/games.md)."""
    return [{"name": c.name, "target": c.target, "iterate": c.iterate, "rule": c.rule, "rate": c.rate,
             "paper": c.paper} for c in ALGORITHMS.values()]
