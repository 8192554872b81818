"""Exact solvers: LP von Neumann winner, τ-regularised equilibrium, Condorcet winner, BT fit, MaxMin."""

from __future__ import annotations

import numpy as np
import pytest

from duelist.games import (
    GameError,
    bradley_terry_game,
    bradley_terry_matrix,
    bt_fit,
    bt_policy,
    condorcet_winner,
    cyclic_game,
    cyclic_matrix,
    duality_gap,
    exploitability,
    group_rewards,
    maxmin_policy,
    nash_equilibrium,
    population_game,
    random_game,
    random_population_game,
    regularized_equilibrium,
)
from duelist.games.solvers import best_response


@pytest.mark.parametrize("n", [3, 5, 7, 9, 11])
@pytest.mark.parametrize("p", [1.0, 0.9, 0.6])
def test_lp_equilibrium_is_uniform_on_odd_cycles(n, p):
    """Odd n-cycle, each response beats the next (n−1)/2 with probability p (n = 3, p = 1 is RPS).

    Uniform u is an equilibrium: every row of S = P − ½ has (n−1)/2 entries +s and (n−1)/2 entries −s, so
    Pu = ½. It is the only one: S is circulant with eigenvalues 2is·Σ_{k≤(n−1)/2} sin(2πjk/n) ≠ 0 for
    j ≠ 0, so ker S = span(1). If π is an equilibrium then Sπ ≤ 0 entrywise, and 1ᵀSπ = −n·(Su)ᵀπ = 0
    forces Sπ = 0, i.e. π ∈ ker S, so π = u. The LP must return u, with exploitability ≤ 1e-9."""
    P = cyclic_matrix(n, p)
    pi = nash_equilibrium(P)
    assert np.abs(pi - 1.0 / n).max() <= 1e-9
    assert exploitability(P, np.full(n, 1 / n), 0.0, pi) <= 1e-9
    assert condorcet_winner(P) is None


@pytest.mark.parametrize("seed", range(10))
def test_lp_puts_all_mass_on_the_condorcet_winner_of_a_bt_game(seed):
    """In a BT game the top-score response beats every other with σ(s_max − s_j) > ½: a Condorcet winner c.
    Any π ≠ e_c has P(π ≻ c) = Σ_k π_k σ(s_k − s_c) < ½, so e_c is the unique von Neumann winner."""
    g = bradley_terry_game(n=12, seed=seed)
    s = np.random.default_rng(seed).standard_normal(12)  # the scores bradley_terry_game drew
    assert np.allclose(g.P, bradley_terry_matrix(s))
    c = int(np.argmax(s))
    assert condorcet_winner(g.P) == c
    pi = nash_equilibrium(g.P)
    assert abs(pi[c] - 1.0) <= 1e-9
    assert exploitability(g.P, g.mu, 0.0, pi) <= 1e-9


def test_lp_exploitability_on_random_games():
    """100 random games at n = 10 and 10 at n = 60: max_y (Pπ)_y − ½ ≤ 1e-9, π a distribution."""
    worst = 0.0
    for n, count in ((10, 100), (60, 10)):
        for seed in range(count):
            P = random_game(n, seed=seed).P
            pi = nash_equilibrium(P)
            assert pi.min() >= 0 and abs(pi.sum() - 1) <= 1e-12
            worst = max(worst, (P @ pi).max() - 0.5)
    assert worst <= 1e-9


@pytest.mark.parametrize(("p", "tau"), [(0.6, 0.1), (0.9, 0.5), (0.55, 1.0)])
def test_regularized_equilibrium_two_responses_closed_form(p, tau):
    """n = 2, P[0,1] = p, uniform μ: (Pπ)_0 − (Pπ)_1 = (p − ½)(π_0 + π_1) = p − ½ for every π, so
    π*_τ[0] = σ((p − ½)/τ). The BT-optimal policy instead uses the BT score gap logit(p):
    π_BT[0] = σ(logit(p)/τ) (different unless p = ½): NLHF ≠ RLHF even with two responses."""
    P = np.array([[0.5, p], [1 - p, 0.5]])
    mu = np.array([0.5, 0.5])
    star = regularized_equilibrium(P, mu, tau)
    assert abs(star[0] - 1 / (1 + np.exp(-(p - 0.5) / tau))) <= 1e-12
    bt = bt_policy(bt_fit(P), mu, tau)
    assert abs(bt[0] - 1 / (1 + np.exp(-np.log(p / (1 - p)) / tau))) <= 1e-9
    assert bt[0] > star[0] + 1e-3


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
def test_regularized_equilibrium_is_uniform_on_symmetric_cycles(tau):
    """Rotation-symmetric game and uniform μ: the unique π*_τ is rotation invariant, hence uniform."""
    for n in (3, 5, 9):
        g = cyclic_game(n, 0.8, tau)
        assert np.abs(regularized_equilibrium(g.P, g.mu, tau) - 1 / n).max() <= 1e-12


def test_regularized_equilibrium_solves_the_fixed_point_to_1e_10():
    """Random games, random μ, τ from 0.003 to 10: ‖π − softmax(log μ + Pπ/τ)‖_∞ ≤ 1e-10 and the duality
    gap ≤ 1e-12; as τ → ∞, π*_τ → μ (‖π*_τ − μ‖₁ ≤ 1/τ·(const) checked at τ = 1e6)."""
    for n in (5, 10, 40):
        for seed in range(5):
            g = random_game(n, seed=seed, ref="random")
            for tau in (0.003, 0.01, 0.1, 1.0, 10.0):
                pi = regularized_equilibrium(g.P, g.mu, tau)
                assert np.abs(pi - best_response(g.P, g.mu, tau, pi)).max() <= 1e-10
                assert duality_gap(g.P, g.mu, tau, pi) <= 1e-12
            assert np.abs(regularized_equilibrium(g.P, g.mu, 1e6) - g.mu).sum() <= 1e-5


def test_regularized_equilibrium_unregularized_exploitability_bound():
    """π* = BR(π*) maximises qᵀPπ* − τKL(q‖μ), whose value at q = π* is ½ − τKL(π*‖μ) ≤ ½. Taking q = e_y:
    (Pπ*)_y − τ log(1/μ_y) ≤ ½, so the unregularised exploitability of π*_τ is ≤ τ·log(1/min μ)."""
    for seed in range(20):
        g = random_game(10, seed=seed, ref="random")
        for tau in (0.001, 0.01, 0.1):
            pi = regularized_equilibrium(g.P, g.mu, tau)
            assert exploitability(g.P, g.mu, 0.0, pi) <= tau * np.log(1 / g.mu.min()) + 1e-12


def test_bt_fit_recovers_scores_under_any_pair_distribution():
    """BT data: the MLE equals the generating scores (mean-centred), whichever pairs are observed."""
    rng = np.random.default_rng(0)
    s = rng.standard_normal(8)
    P = bradley_terry_matrix(s)
    q = rng.dirichlet(np.ones(8))
    for wins in (P, np.outer(q, q) * P):
        assert np.abs(bt_fit(wins) - (s - s.mean())).max() <= 1e-9


def test_bt_fit_without_a_finite_mle_raises():
    """A strict order with 0/1 outcomes: the top response never loses, the likelihood keeps increasing as
    its score grows. Without a ridge this is an error; with l2 > 0 the scores are finite and ordered."""
    P = np.triu(np.ones((4, 4)), 1) + 0.5 * np.eye(4)
    with pytest.raises(GameError, match="no finite maximum-likelihood"):
        bt_fit(P)
    s = bt_fit(P, l2=1e-3)
    assert np.all(np.diff(s) < 0)


def test_bt_policy_tends_to_the_condorcet_winner():
    """On a BT game, μ·exp(s/τ) → e_argmax(s) as τ → 0, which is also the LP equilibrium."""
    g = bradley_terry_game(n=10, seed=3)
    s = bt_fit(g.P)
    pi = bt_policy(s, g.mu, 1e-3)
    assert abs(pi[condorcet_winner(g.P)] - 1) <= 1e-9
    assert np.allclose(bt_policy(s, g.mu, 0.0), nash_equilibrium(g.P), atol=1e-9)


@pytest.mark.parametrize("tau", [0.05, 0.1, 1.0])
def test_maxmin_two_opposed_groups_is_uniform(tau):
    """Two responses, uniform μ, group 1 always prefers response 0 and group 2 response 1, weights .7/.3.
    Rewards vs μ: r_1 = (¾, ¼), r_2 = (¼, ¾). By the swap symmetry the MaxMin policy is uniform for every
    τ (reference §6.5 test). The utilitarian game P = .7P_1 + .3P_2 has P[0,1] = .7, so its π*_τ[0] =
    σ(.2/τ) > ½ follows the majority."""
    P1 = np.array([[0.5, 1.0], [0.0, 0.5]])
    g = population_game([P1, P1.T], [0.7, 0.3], tau)
    pi, w = maxmin_policy(g)
    assert np.abs(pi - 0.5).max() <= 1e-10 and np.abs(w - 0.5).max() <= 1e-8
    star = regularized_equilibrium(g.P, g.mu, tau)
    assert abs(star[0] - 1 / (1 + np.exp(-0.2 / tau))) <= 1e-12


def test_maxmin_policy_satisfies_kkt_on_random_populations():
    """π = softmax(log μ + Rw/τ) with w ≥ 0; every group in the support of w gets the same value πᵀr_k,
    which is the minimum over all groups (the optimality conditions of min_w τ log Σμ e^{Rw/τ})."""
    for seed in range(20):
        g = random_population_game(10, 3, 0.1, seed=seed, ref="random")
        pi, w = maxmin_policy(g)
        R = group_rewards(g)
        assert np.abs(pi - best_response(R, g.mu, g.tau, w)).max() <= 1e-12  # softmax(log μ + Rw/τ)
        v = R.T @ pi
        assert w.min() >= 0 and abs(w.sum() - 1) <= 1e-12
        assert np.abs(v[w > 1e-9] - v.min()).max() <= 1e-9
