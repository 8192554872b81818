"""Equilibrium ranking: piKL on the consensus game (regret → 0, fixed point, λ → ∞) and agreement."""

import numpy as np
import pytest
from scipy.special import softmax

from duelist.sample.equilibrium_ranking import (
    agreement,
    equilibrium_ranking,
    human_record,
    rerank_experiment,
)

# generator (told "correct") prefers y0; discriminator thinks y2 is the correct one
TOY_G = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]))  # rows: v = correct, incorrect
TOY_D = np.log(np.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]))  # rows: y; columns: correct, incorrect


def test_toy_disagreement_converges_and_ranks():
    """Generator ranks y0 > y1 > y2, discriminator y2 > y1 > y0. piKL (λ = η = 0.1, T = 5000): each
    player's average regularised regret R_T = λ log Σ π1 e^{Q̄/λ} − (1/T)Σ_t u_t(π_t) decreases to < 2·10⁻³
    (from ≈ 0.09 / 0.04 at t = 1) at the O(log T / T) rate, and the consensus ranks y2 first for both ER-G
    and ER-D: the generator
    moves to the answer the discriminator can recognise. The fixed-point residual against the averaged
    values Q̄ shrinks like 1/(ηλT) (entropy term ∝ 1/(ηt) vanishing): 500 → 5000 iterations cut it ~7×."""
    res = equilibrium_ranking(TOY_G, TOY_D, iterations=5000)
    assert res.regret_g[0] > 0.05 and res.regret_d[0] > 0.02
    assert res.regret_g[-1] < 2e-3 and res.regret_d[-1] < 2e-3
    # the O(log T / T) rate of FTRL on strongly concave utilities: T·R_T / log T stays below 1 (≈ 0.76 at 5000)
    late = res.checkpoints >= 1000
    rate = res.checkpoints[late] / np.log(res.checkpoints[late])
    assert np.all(res.regret_g[late] * rate < 1) and np.all(res.regret_d[late] * rate < 1)
    assert list(res.ranking("generator")) == [0, 1, 2]
    assert list(res.ranking("discriminator")) == [2, 1, 0]
    assert list(res.ranking("er-g")) == [2, 1, 0]
    assert list(res.ranking("er-d")) == [2, 1, 0]
    assert res.pi_g.sum(-1) == pytest.approx(np.ones(2)) and res.pi_d.sum(-1) == pytest.approx(np.ones(3))
    short = equilibrium_ranking(TOY_G, TOY_D, iterations=500)
    assert res.fixed_point_residual("average") < 0.01
    assert res.fixed_point_residual("average") < short.fixed_point_residual("average") / 5


def test_fixed_point_of_the_average_is_the_regularised_best_response():
    """Derived stationarity: π^(T+1) = softmax((Q̄ + λ log π1)/(λ + 1/(ηT))). Its distance to the
    regularised best response softmax(log π1 + Q̄/λ) is O(1/(ηλT)); at T = 5000 with η = 1 (1/(ηλT) = 0.002)
    it is < 2·10⁻³ on a random batch of 20 prompts with 4 candidates each."""
    rng = np.random.default_rng(0)
    g, d = rng.normal(size=(20, 2, 4)), rng.normal(size=(20, 4, 2))
    res = equilibrium_ranking(g, d, eta_g=1.0, eta_d=1.0, iterations=5000, record=5)
    best_g = softmax(np.log(res.init_g) + res.qbar_g / res.lam_g, axis=-1)
    assert np.abs(best_g - res.pi_g).max() < 2e-3
    assert res.fixed_point_residual("average") < 2e-3
    assert res.regret_g[-1] < 2e-3 and res.regret_d[-1] < 2e-3


def test_large_lambda_keeps_the_initial_policies():
    """λ → ∞: the KL penalty dominates the payoff (≤ ½), so π stays at π^(1): |π − π^(1)| = O(1/λ)."""
    res = equilibrium_ranking(TOY_G, TOY_D, lam_g=1e6, lam_d=1e6, iterations=300)
    assert np.abs(res.pi_g - res.init_g).max() < 1e-5
    assert np.abs(res.pi_d - res.init_d).max() < 1e-5
    assert list(res.ranking("er-g")) == list(res.ranking("generator"))


def test_agreement_definition():
    """Labels (1v2, 1v3, 1v4, 2v3, 2v4, 3v4) = (1, 1, 0, 2, 0, 0): answer 0 beats 1 and 2, 2 beats 1.
    Top = 0 wins 2 of its 2 decided pairs; top = 1 loses both; random choice averages exactly ½."""
    pref = [1, 1, 0, 2, 0, 0]
    w = human_record(pref)
    assert w[0, 1] == w[0, 2] == w[2, 1] == 1 and w.sum() == 3
    assert agreement([0], [pref])["pairwise"] == 1.0
    assert agreement([1], [pref])["pairwise"] == 0.0
    assert agreement([0], [pref])["best"] == 1.0
    fr = [agreement([t], [pref]) for t in range(4)]
    total_w = sum(f["pairwise"] * f["pairs"] for f in fr)
    assert total_w / sum(f["pairs"] for f in fr) == pytest.approx(0.5)


def test_rerank_experiment_on_rows():
    rows = [
        {
            "log_g": TOY_G[:, [0, 1, 2, 2]].tolist(),
            "log_d": TOY_D[[0, 1, 2, 2]].tolist(),
            "preference": [2, 2, 2, 0, 0, 0],
        }
    ]
    out = rerank_experiment(rows, iterations=200)
    assert out["generator"]["pairwise"] == 0.0  # generator's top (answer 1) loses to 2, 3, 4
    assert out["er-d"]["pairwise"] == 1.0
