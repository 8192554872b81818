"""The Policy Cliff (duelist.games.cliff): reward-to-policy stability with and without entropy regularisation.

π_τ(r) = μ·exp(r/τ)/Z. The derivations are in the module docstring; each test repeats the step it checks.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.optimize import linprog

from duelist.cli import main
from duelist.games.cliff import (
    exact_modulus,
    jacobian_norm,
    lipschitz_bound,
    local_modulus,
    maxmin_distance,
    maxmin_holder_bound,
    maxmin_optimal_policy,
    optimal_policy,
    weighted_local_modulus,
)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum())


def random_instance(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    n = int(rng.integers(2, 8))
    r = rng.normal(size=n) * rng.choice([0.1, 1.0, 3.0])
    mu = rng.dirichlet(np.ones(n))
    return r, mu, float(10 ** rng.uniform(-2, 0.5)), float(10 ** rng.uniform(-4, 0.5))


def test_jacobian_infinity_to_one_norm_matches_finite_differences():
    """∂π/∂r = D/τ, D = diag π − ππᵀ; ‖Dδ‖₁ is convex in δ, so its maximum over the cube is at a vertex s_A,
    where it equals 4π(A)(1−π(A)). On 50 random instances central differences along every vertex match
    ‖Ds‖₁/τ to 1e-6/τ, the largest ‖Ds‖₁/τ equals jacobian_norm to 1e-12, and it never exceeds 1/τ."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        r, mu, tau, _ = random_instance(rng)
        n, h = r.size, 1e-6 * tau
        pi = optimal_policy(r, mu, tau)
        D = np.diag(pi) - np.outer(pi, pi)
        vertices = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2.0 - 1.0
        for s in vertices:
            fd = l1(optimal_policy(r + h * s, mu, tau), optimal_policy(r - h * s, mu, tau)) / (2 * h)
            assert abs(fd - np.abs(D @ s).sum() / tau) <= 1e-6 / tau
        assert max(np.abs(D @ s).sum() for s in vertices) / tau == pytest.approx(jacobian_norm(pi, tau), rel=1e-12)
        assert jacobian_norm(pi, tau) <= 1 / tau * (1 + 1e-12)
    # a half/half split makes it exactly 1/τ
    assert jacobian_norm(np.array([0.25, 0.25, 0.5]), 0.2) == pytest.approx(5.0, rel=1e-15)


def test_stability_bound_holds_on_random_instances():
    """‖π_τ(r) − π_τ(r')‖₁ ≤ 2tanh(‖Δr‖_∞/(2τ)) ≤ ‖Δr‖_∞/τ for 2,000 random (r, r', μ, τ), perturbations
    of every shape (cube vertices, uniform in the cube, one coordinate, up to ε = 3 with τ down to 0.01).
    The largest ratio to ε/τ seen is below 1, and to the exact modulus below 1 + 1e-12."""
    rng = np.random.default_rng(1)
    worst_lip, worst_mod = 0.0, 0.0
    for i in range(2000):
        r, mu, tau, eps = random_instance(rng)
        kind = i % 3
        delta = (rng.choice([-eps, eps], r.size) if kind == 0 else rng.uniform(-eps, eps, r.size) if kind == 1
                 else eps * np.eye(r.size)[rng.integers(r.size)])
        d = l1(optimal_policy(r + delta, mu, tau), optimal_policy(r, mu, tau))
        e = float(np.abs(delta).max())
        worst_lip = max(worst_lip, d / lipschitz_bound(e, tau))
        worst_mod = max(worst_mod, d / exact_modulus(e, tau))
    assert worst_lip <= 1.0
    assert worst_mod <= 1 + 1e-12


def test_local_modulus_is_the_exact_worst_case():
    """d_τ(r, ε) = max_A 2[σ(logit π(A) + 2ε/τ) − π(A)], reached at δ = ε·s_A (for fixed signs s the map
    δ ↦ sᵀπ(r+δ) is monotone in each coordinate with the sign of s_i). On 100 random instances the returned δ
    has ‖δ‖_∞ = ε and attains d, 400 other perturbations in the cube (vertices and interior) never exceed it,
    and d ≤ 2tanh(ε/(2τ))."""
    rng = np.random.default_rng(2)
    for _ in range(100):
        r, mu, tau, eps = random_instance(rng)
        d, delta = local_modulus(r, mu, tau, eps)
        base = optimal_policy(r, mu, tau)
        assert np.abs(delta).max() == pytest.approx(eps, rel=1e-15)
        assert d == pytest.approx(l1(optimal_policy(r + delta, mu, tau), base), rel=1e-12)
        for j in range(400):
            other = rng.choice([-eps, eps], r.size) if j % 2 else rng.uniform(-eps, eps, r.size)
            assert l1(optimal_policy(r + other, mu, tau), base) <= d * (1 + 1e-12) + 1e-15
        assert d <= exact_modulus(eps, tau) * (1 + 1e-12)


@pytest.mark.parametrize("tau", [0.01, 0.1, 1.0])
@pytest.mark.parametrize("eps", [1e-4, 1e-2, 0.3, 3.0])
def test_exact_modulus_is_attained_by_two_actions(tau, eps):
    """sup over all rewards of the move for ‖Δr‖_∞ ≤ ε is 2tanh(ε/(2τ)): σ(logit q + 2x) − q is largest at
    q = σ(−x), where it is tanh(x/2) (x = ε/τ). Two actions r = (−ε/2, ε/2) → (ε/2, −ε/2) move π from σ(−x)
    to σ(x): 2(σ(x) − σ(−x)) = 2tanh(x/2), to 1e-12 relative; local_modulus finds the same value there."""
    mu = np.array([0.5, 0.5])
    r = np.array([-eps / 2, eps / 2])
    moved = l1(optimal_policy(r, mu, tau), optimal_policy(-r, mu, tau))
    assert moved == pytest.approx(2 * np.tanh(eps / (2 * tau)), rel=1e-12)
    assert moved == pytest.approx(exact_modulus(eps, tau), rel=1e-12)
    assert local_modulus(r, mu, tau, eps)[0] == pytest.approx(moved, rel=1e-12)


def test_constant_one_is_approached_on_a_degenerate_reward():
    """The Lipschitz constant 1 is tight: sup_x 2tanh(x/2)/x = 1 as x → 0, never reached at x > 0. On the
    degenerate reward r = (1, 1, 0) (two tied best actions, uniform μ, τ = 0.1) the worst move divided by
    ε/τ rises to 1 as ε shrinks: 1 − 3.3e-3 at ε = 1e-2 (tanh(0.1)/0.1: the set {0} holds half the mass up to
    e^{-10}/4), 1 − 3.3e-5 at 1e-3, 1 − 3.1e-7 at 1e-4, 1 − 1.6e-9 at 1e-5; strictly below 1 throughout."""
    r, mu, tau = np.array([1.0, 1.0, 0.0]), np.full(3, 1 / 3), 0.1
    ratios = [local_modulus(r, mu, tau, e)[0] / lipschitz_bound(e, tau) for e in (1e-2, 1e-3, 1e-4, 1e-5)]
    assert ratios[0] == pytest.approx(np.tanh(0.1) / 0.1, rel=1e-4)
    assert all(a < b for a, b in itertools.pairwise(ratios))
    assert 1 - 1e-8 < ratios[-1] < 1
    # the global sup ratio 2tanh(x/2)/x is below 1 at every x > 0 and tends to 1
    x = np.geomspace(1e-6, 10, 50)
    assert np.all(2 * np.tanh(x / 2) / x < 1) and 2 * np.tanh(x[0] / 2) / x[0] > 1 - 1e-12


def test_cliff_at_tau_zero_on_a_degenerate_reward():
    """At τ = 0 (μ restricted to the maximisers) a tie between k best actions makes a cliff: +ε on one tied
    action and −ε elsewhere makes it the unique maximiser, moving the policy by 2(1 − 1/k) for every
    0 < ε < gap/2. On r = (1, 1, 0): exactly 1.0 (TV ½) from ε = 1e-12 to 0.49, and 2 (TV 1) between the
    two opposite perturbations r ± ε(1, −1, −1). The τ > 0 policies converge to it: at ε = 1e-3 the worst
    move is 1 − 1e-12 or more at τ = 1e-5. With three ties and μ = (0.5, 0.3, 0.2) the least-weighted tie
    moves it by 2(1 − 0.2) = 1.6. Without a tie (r = (1, 0.5, 0)) nothing moves until ε = 0.25."""
    r, mu = np.array([1.0, 1.0, 0.0]), np.full(3, 1 / 3)
    for eps in np.geomspace(1e-12, 0.49, 25):
        assert local_modulus(r, mu, 0.0, eps)[0] == 1.0
        s = np.array([1.0, -1.0, -1.0])
        assert l1(optimal_policy(r + eps * s, mu, 0.0), optimal_policy(r - eps * s, mu, 0.0)) == 2.0
    assert local_modulus(r, mu, 0.0, 0.51)[0] == 2.0
    assert local_modulus(r, mu, 1e-5, 1e-3)[0] >= 1 - 1e-12
    assert local_modulus(np.zeros(3), np.array([0.5, 0.3, 0.2]), 0.0, 1e-9)[0] == pytest.approx(1.6, abs=1e-15)
    assert local_modulus(np.array([1.0, 0.5, 0.0]), mu, 0.0, 0.2499)[0] == 0.0
    assert local_modulus(np.array([1.0, 0.5, 0.0]), mu, 0.0, 0.2501)[0] == 2.0


def test_weighted_sum_bound_in_terms_of_the_aggregated_perturbation():
    """r_w = Σ_k w_k r_k: with max_k ‖Δr_k‖_∞ ≤ ε, Δr_w fills the cube of radius ‖w‖₁ε (Δr_k = sign(w_k)δ/‖w‖₁
    reaches any δ there), so the worst move is d_τ(r_w, ‖w‖₁ε) ≤ ‖w‖₁ε/τ. On 300 random instances (K = 3,
    signed weights) random group perturbations stay below it, and the returned ΔR has max_k ‖Δr_k‖_∞ = ε
    and attains it."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        r, mu, tau, eps = random_instance(rng)
        R = np.column_stack([r, rng.normal(size=r.size), rng.normal(size=r.size)])
        w = rng.normal(size=3)
        d, dR = weighted_local_modulus(R, w, mu, tau, eps)
        assert np.abs(dR).max() == pytest.approx(eps, rel=1e-12)
        base = optimal_policy(R @ w, mu, tau)
        assert l1(optimal_policy((R + dR) @ w, mu, tau), base) == pytest.approx(d, rel=1e-12)
        assert d <= lipschitz_bound(np.abs(w).sum() * eps, tau) * (1 + 1e-12)
        for _ in range(20):
            other = rng.uniform(-eps, eps, R.shape)
            assert l1(optimal_policy((R + other) @ w, mu, tau), base) <= d * (1 + 1e-12) + 1e-15


def test_maxmin_holder_bound_on_random_instances():
    """MaxMin: f_R(π) ≤ f_R(π_R) − τKL(π‖π_R) (strong duality) and |f_R − f_R'| ≤ ε give
    τ·Jeffreys(π_R, π_R') ≤ 2ε, so ‖Δπ‖₁ ≤ √(2ε/τ) by Pinsker. 100 random instances (n = 4, K = 3, random μ,
    random group perturbations of size ε): the Jeffreys inequality and the bound hold."""
    rng = np.random.default_rng(4)
    for _ in range(100):
        R = rng.uniform(0, 1, (4, 3))
        mu, tau, eps = rng.dirichlet(np.ones(4)), float(10 ** rng.uniform(-2, 0)), float(10 ** rng.uniform(-4, -1))
        dR = rng.uniform(-eps, eps, R.shape)
        a, b = maxmin_optimal_policy(R, mu, tau), maxmin_optimal_policy(R + dR, mu, tau)
        jeffreys = float(np.sum((a - b) * (np.log(a) - np.log(b))))
        e = float(np.abs(dR).max())
        assert tau * jeffreys <= 2 * e * (1 + 1e-9)
        assert l1(a, b) <= maxmin_holder_bound(e, tau)


@pytest.mark.parametrize("eps", [1e-4, 1e-5, 1e-6, 1e-7])
def test_maxmin_has_no_lipschitz_bound(eps):
    """Two actions, uniform μ, r_1 = (s/2, −s/2), r_2 = (c − s/2, c + s/2): πᵀr_1 = s(p − ½), πᵀr_2 =
    c − s(p − ½), and the MaxMin optimum is the kink p = ½ + c/(2s) while τ|logit p| ≤ s. Shifting group 2
    by a constant from c = −ε/2 to +ε/2 (max_k ‖Δr_k‖_∞ = ε) moves π by ε/s. With s = κ√(τε), κ = 1.05,
    τ = 0.1 that is √(ε/τ)/κ: the solver agrees to 1e-6 relative (its gradient tolerance is absolute,
    1e-13, and s is ~1e-4); the move is within the Holder bound √(2ε/τ) (ratio 1/(κ√2) = 0.673), and its
    ratio to the weighted-sum bound ε/τ is √(τ/ε)/κ — 30.1 at ε = 1e-4, 301 at 1e-6, 952 at 1e-7 —
    unbounded as ε → 0. The weighted sum of the same two rewards (w = ½, ½) does not move at all (its
    effective reward is c/2 on both actions)."""
    tau, kappa = 0.1, 1.05
    s = kappa * np.sqrt(tau * eps)
    mu = np.full(2, 0.5)

    def rewards(c: float) -> np.ndarray:
        return np.array([[s / 2, c - s / 2], [-s / 2, c + s / 2]])

    a, b = maxmin_optimal_policy(rewards(-eps / 2), mu, tau), maxmin_optimal_policy(rewards(eps / 2), mu, tau)
    assert tau * abs(np.log(b[0] / b[1])) <= s  # still at the kink
    moved = l1(a, b)
    assert moved == pytest.approx(eps / s, rel=1e-6)
    assert moved == pytest.approx(np.sqrt(eps / tau) / kappa, rel=1e-6)
    assert moved / maxmin_holder_bound(eps, tau) == pytest.approx(1 / (kappa * np.sqrt(2)), rel=1e-6)
    assert moved / lipschitz_bound(eps, tau) == pytest.approx(np.sqrt(tau / eps) / kappa, rel=1e-6)
    w = np.full(2, 0.5)
    assert l1(optimal_policy(rewards(-eps / 2) @ w, mu, tau), optimal_policy(rewards(eps / 2) @ w, mu, tau)) < 1e-12
    # the structured search of maxmin_distance finds the constant shift: from c = 0 it moves π by ε/s
    # while the kink stays optimal (ε ≤ s²/(2τ), here at ε/10 with s = √(τε))
    s = np.sqrt(tau * eps)
    d = maxmin_distance(np.array([[s / 2, -s / 2], [-s / 2, s / 2]]), mu, tau, eps / 10)[0]
    assert d == pytest.approx(eps / 10 / s, rel=1e-6)


def maxmin_lp(R: np.ndarray) -> np.ndarray:
    """τ = 0 MaxMin: max v s.t. (Rᵀπ)_k ≥ v, Σπ = 1, π ≥ 0 (HiGHS)."""
    n, k = R.shape
    res = linprog(np.r_[np.zeros(n), -1.0], A_ub=np.hstack([-R.T, np.ones((k, 1))]), b_ub=np.zeros(k),
                  A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)],
                  method="highs")
    return res.x[:n]


def test_maxmin_jumps_at_tau_zero_and_not_at_tau_positive():
    """r_1 = (1, 0, ½+δ), r_2 = (0, 1, ½+δ). At τ = 0: for δ < 0 any π has min ≤ ½ with equality only at
    (½, ½, 0) (π_3 = 0 needed, then π_1 = π_2), for δ > 0 e_3 is the unique maximiser (value ½ + δ, and any
    other π has min ≤ ½ + δπ_3). So δ = ∓1e-6 moves the LP solution by ‖Δπ‖₁ = 2: the cliff. At τ = 0.1 the
    two groups are symmetric, w* = (½, ½), the effective reward is (½, ½, ½ + δ), and the move is the
    single-reward one, ≤ 2e-6/τ."""
    def rewards(delta: float) -> np.ndarray:
        return np.array([[1.0, 0.0], [0.0, 1.0], [0.5 + delta, 0.5 + delta]])

    lo, hi = maxmin_lp(rewards(-1e-6)), maxmin_lp(rewards(1e-6))
    assert np.abs(lo - [0.5, 0.5, 0.0]).max() <= 1e-9 and np.abs(hi - [0.0, 0.0, 1.0]).max() <= 1e-9
    assert l1(lo, hi) == pytest.approx(2.0, abs=1e-8)
    mu, tau = np.full(3, 1 / 3), 0.1
    a, b = maxmin_optimal_policy(rewards(-1e-6), mu, tau), maxmin_optimal_policy(rewards(1e-6), mu, tau)
    assert l1(a, optimal_policy(np.array([0.5, 0.5, 0.5 - 1e-6]), mu, tau)) <= 1e-12
    assert l1(a, b) <= lipschitz_bound(2e-6, tau)


def test_cli_cliff_table_json_and_plot(tmp_path, capsys):
    """`duelist game cliff` on the default degenerate reward (1, 1, 0), uniform μ: at τ = 0 every ε < ½ moves
    the policy by exactly 1 (and ε = 1 by 2); at τ > 0 every row is within ε/τ, and at ε = 1e-4 the ratio is
    ≥ 0.9997 for τ = 0.01 and 0.1 (the bound approached). The MaxMin run on the kink instance
    (s = 0.01) moves by ε/s = 10·ε/τ at τ = 0.1 in the linear regime."""
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    assert main(["game", "cliff", "--json", str(out), "--plot", str(png)]) == 0
    rows = json.loads(out.read_text())["rows"]
    zero = [r for r in rows if r["tau"] == 0]
    assert [r["distance"] for r in zero if r["eps"] < 0.5] == [1.0] * 8 and zero[-1]["distance"] == 2.0
    for r in rows:
        if r["tau"] > 0:
            assert r["distance"] <= r["bound"] * (1 + 1e-12)
            assert r["distance"] <= r["modulus"] * (1 + 1e-12)
    first = {r["tau"]: r["distance"] / r["bound"] for r in rows if r["eps"] == 1e-4 and r["tau"] > 0}
    assert first[0.01] >= 0.9997 and first[0.1] >= 0.9997
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "|dpi|_1" in capsys.readouterr().out
    out2 = tmp_path / "m.json"
    assert main(["game", "cliff", "--rewards", "0.005,-0.005;-0.005,0.005", "--aggregate", "maxmin", "--taus",
                 "0.1", "--eps-min", "1e-7", "--eps-max", "1e-5", "--points", "3", "--json", str(out2)]) == 0
    for r in json.loads(out2.read_text())["rows"]:
        assert r["distance"] / r["bound"] == pytest.approx(10.0, rel=1e-6)
        assert r["distance"] <= r["holder_bound"]
