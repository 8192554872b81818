"""Sampled mode: m Bernoulli preference queries per response per win-rate estimate.

Regularised methods (inpo, egpo, nash_mp, nash_md) use the anchor-weight schedule a_t = min(ητ, 2/(t+2))
(the games.dynamics package docstring). Linearised, that is a Robbins–Monro iteration with gain 2/t for the fixed
point x = log μ + Pπ(x)/τ, drift A = −I + PD/τ and noise covariance Q = diag(g(1−g))/(mτ²), g = Pπ*; its
error is asymptotically N(0, Σ/T) with (2A + ½I)Σ + Σ(2A + ½I)ᵀ + 4Q = 0. KL(π*‖π) ≈ ½eᵀDe, so
E KL(π*_τ‖π_T) ≈ tr(DΣ)/(2T) ∝ 1/(mT) = n/queries (sampled_kl_prediction). The test checks the mean over
seeds against that prediction, for two sample sizes (which also checks the 1/m scaling).

APO's momentum amplifies the noise (observed ≈ 1.5× the prediction) and has no derived prediction; it
is not tested here. No-regret methods keep a constant step and are checked against a bound instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from duelist.games import Solution, mwu_sampled_bound, random_game, run, sampled_kl_prediction

GAME = random_game(10, 0.1, seed=3, ref="random")
SEEDS = 12
STEPS = 800


@pytest.mark.parametrize("name", ["inpo", "egpo", "nash_mp", "nash_md"])
def test_sampled_regularized_methods_reach_the_predicted_tolerance(name):
    """Mean KL over 12 seeds within [0.6, 1.6]× the prediction at m = 100 and m = 400 (standard error of
    the mean ≈ 12%); pooled over both, within [0.75, 1.3]×. With n = 10, T = 800 the prediction is
    1.8e-4 (m = 100) and 4.4e-5 (m = 400): KL falls like 1/queries."""
    sol = Solution(GAME)
    ratios = []
    for m in (100, 400):
        kls = [run(GAME, name, STEPS, mode="sampled", queries=m, seed=s, solution=sol).history["kl_last"][-1]
               for s in range(SEEDS)]
        ratio = np.mean(kls) / sampled_kl_prediction(GAME, m, STEPS, sol)
        assert 0.6 <= ratio <= 1.6, (m, ratio)
        ratios.append(ratio)
    assert 0.75 <= np.mean(ratios) <= 1.3


def test_sampled_no_regret_average_iterate_within_bound():
    """SPPO with noisy win-rates in [0, 1]: the MWU regret bound holds for the estimated rewards, and the
    gap to the true ones is two martingales (Hoeffding, variance proxy 1/(4m) per step):
    E expl(π̄_T) ≤ log n/(ηT) + η/8 + √(log(2n)/(2mT)) + √(1/(2πmT)). Checked on the mean of 8 seeds,
    at m = 10 and m = 100; the exact-mode value is below both."""
    sol = Solution(GAME)
    exact = run(GAME, "sppo", STEPS, solution=sol)
    for m in (10, 100):
        expl = [run(GAME, "sppo", STEPS, mode="sampled", queries=m, seed=s, solution=sol).history["gap0_avg"][-1] / 2
                for s in range(8)]
        assert np.mean(expl) <= mwu_sampled_bound(GAME.n, exact.eta, STEPS, m)
    assert exact.history["gap0_avg"][-1] / 2 <= mwu_sampled_bound(GAME.n, exact.eta, STEPS, None)
