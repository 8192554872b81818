"""Win-rate intervals and the sample KL estimator, checked against known truths."""

import numpy as np
import pytest

from duelist.eval.kl import kl_from_samples
from duelist.eval.stats import mean_interval, wilson_interval, winrate_interval


def test_wilson_closed_form():
    """Wilson: centre (p + z²/2n)/(1 + z²/n), half-width z√(p(1−p)/n + z²/4n²)/(1 + z²/n).
    For 7/10 at 95% (z = 1.959964): [0.3968, 0.8922]."""
    e = wilson_interval(7, 10)
    assert (e.lo, e.hi) == pytest.approx((0.39677, 0.89218), abs=1e-4)
    assert wilson_interval(0, 20).lo == pytest.approx(0.0, abs=1e-12) and wilson_interval(20, 20).hi == 1.0


@pytest.mark.parametrize(("p", "n", "k"), [(0.5, 64, 1), (0.7, 128, 1), (0.9, 64, 1), (0.65, 128, 2)])
def test_winrate_interval_coverage(p, n, k):
    """2,000 simulated evaluations of n prompts, each with k×k comparisons won with probability p (ties
    impossible for k = 1, averaged fractions for k = 2): the 95% interval covers p at least 93% of the time."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        per_prompt = rng.binomial(1, p, size=(n, k * k)).mean(1)
        e = winrate_interval(per_prompt)
        hits += e.lo <= p <= e.hi
    assert hits / 2000 >= 0.93


def test_ties_count_half_and_use_t_interval():
    e = winrate_interval(np.array([1.0, 0.5, 0.5, 0.0, 1.0, 1.0]))
    assert e.mean == pytest.approx(4 / 6)
    m = mean_interval(np.array([1.0, 0.5, 0.5, 0.0, 1.0, 1.0]))
    assert (e.lo, e.hi) == pytest.approx((max(0, m.lo), min(1, m.hi)))


def test_kl_estimator_matches_exact_kl_of_categoricals():
    """y ~ p, mean of log p(y) − log q(y) → KL(p‖q) = Σ p log(p/q); within 3 standard errors."""
    rng = np.random.default_rng(1)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    q = np.array([0.25, 0.25, 0.25, 0.25])
    exact = float(np.sum(p * np.log(p / q)))
    y = rng.choice(4, size=4000, p=p)
    groups = np.repeat(np.arange(2000), 2)
    e = kl_from_samples(np.log(p[y]), np.log(q[y]), groups)
    assert abs(e.mean - exact) <= 3 * e.se
    assert e.se < 0.02


def test_kl_of_a_policy_against_itself_is_zero():
    e = kl_from_samples(np.full(10, -3.0), np.full(10, -3.0), np.arange(10))
    assert e.mean == 0.0
