"""Duality gap, exploitability and the vectorised per-iteration metrics."""

from __future__ import annotations

import numpy as np

from duelist.games import (
    Solution,
    cyclic_game,
    duality_gap,
    exploitability,
    game_value,
    kl,
    policy_metrics,
    random_game,
    regularized_equilibrium,
    win_rate,
)
from duelist.games.solvers import best_response


def test_duality_gap_is_egpo_definition_and_twice_tau_kl_to_best_response():
    """V(BR(π), π) − V(π, BR(π)) with V(π1,π2) = π1ᵀPπ2 − τKL(π1‖μ) + τKL(π2‖μ). Using πᵀPb = 1 − bᵀPπ
    it equals 2[bᵀPπ − τKL(b‖μ) − ½ + τKL(π‖μ)], and the Gibbs identity max_q qᵀg − τKL(q‖μ) −
    (πᵀg − τKL(π‖μ)) = τKL(π‖b) turns that into 2τKL(π‖BR(π)). Zero at π*_τ."""
    rng = np.random.default_rng(0)
    for seed in range(10):
        g = random_game(10, 0.1, seed=seed, ref="random")
        pi = rng.dirichlet(np.ones(10))
        b = best_response(g.P, g.mu, g.tau, pi)
        egpo = game_value(g.P, g.mu, g.tau, b, pi) - game_value(g.P, g.mu, g.tau, pi, b)
        assert abs(egpo - duality_gap(g.P, g.mu, g.tau, pi)) <= 1e-12
        assert abs(egpo - 2 * g.tau * kl(pi, b)) <= 1e-12
        assert abs(exploitability(g.P, g.mu, g.tau, pi) - egpo / 2) <= 1e-12
        star = regularized_equilibrium(g.P, g.mu, g.tau)
        assert duality_gap(g.P, g.mu, g.tau, star) <= 1e-15


def test_unregularized_exploitability_closed_form_on_rps():
    """RPS, pure rock: paper beats it with probability 1, so max_y (Pπ)_y − ½ = ½; the duality gap at τ = 0
    is twice that. Uniform: every (Pu)_y = ½, exploitability 0. Win-rate of paper against rock is 1."""
    g = cyclic_game(3, 1.0, 0.0)
    rock = np.array([1.0, 0.0, 0.0])
    assert exploitability(g.P, g.mu, 0.0, rock) == 0.5
    assert duality_gap(g.P, g.mu, 0.0, rock) == 1.0
    assert exploitability(g.P, g.mu, 0.0, np.full(3, 1 / 3)) <= 1e-16
    paper = int(np.argmax(g.P[:, 0]))
    assert win_rate(g.P, np.eye(3)[paper], rock) == 1.0


def test_policy_metrics_match_the_scalar_definitions():
    g = random_game(6, 0.2, seed=3, ref="random")
    pis = np.random.default_rng(1).dirichlet(np.ones(6), size=5)
    m = policy_metrics(g, pis, Solution(g))
    star = regularized_equilibrium(g.P, g.mu, g.tau)
    for t, pi in enumerate(pis):
        assert abs(m["gap"][t] - duality_gap(g.P, g.mu, g.tau, pi)) <= 1e-13
        assert abs(m["gap0"][t] - 2 * exploitability(g.P, g.mu, 0.0, pi)) <= 1e-13
        assert abs(m["kl"][t] - kl(star, pi)) <= 1e-13
        assert abs(m["win"][t] - win_rate(g.P, pi, star)) <= 1e-13


def test_gap_bounds_kl_to_the_equilibrium():
    """Strong monotonicity: with q = π*_τ in the exploitability's max and Pπ* = τ(log π* − log μ) + c,
    exploitability(π) ≥ τ[KL(π‖μ) − KL(π*‖μ) − (π − π*)ᵀ(log π* − log μ)] = τKL(π‖π*_τ); so a duality gap
    ≤ 1e-6 certifies KL(π‖π*_τ) ≤ 1e-6/(2τ)."""
    rng = np.random.default_rng(5)
    for seed in range(10):
        g = random_game(10, 0.1, seed=seed, ref="random")
        star = regularized_equilibrium(g.P, g.mu, g.tau)
        for pi in rng.dirichlet(np.ones(10), size=20):
            assert duality_gap(g.P, g.mu, g.tau, pi) >= 2 * g.tau * kl(pi, star) - 1e-14
