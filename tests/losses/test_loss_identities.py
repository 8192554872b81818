"""Limits, identities and per-pair minimisers that pin each loss to its paper's math."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from loss_fixtures import leaves, seq_stats, stats_from

from duelist.losses import PreferenceStats, get_loss
from duelist.losses.selfplay import win_rates_from_scores


@pytest.fixture
def s() -> PreferenceStats:
    return stats_from(leaves(b=8, seed=3))


def losses(name: str, stats: PreferenceStats, **params) -> torch.Tensor:
    return get_loss(name, **params)(stats).losses


def minimise(f, x0: float) -> float:
    """argmin of a smooth scalar function of one variable (float64 Newton steps from x0)."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    for _ in range(100):
        (g,) = torch.autograd.grad(f(x), x, create_graph=True)
        (h,) = torch.autograd.grad(g, x)
        with torch.no_grad():
            x -= g / h
    return x.item()


def free_pair(rho_w: torch.Tensor, rho_l: torch.Tensor, **extra) -> PreferenceStats:
    """One pair whose log-ratios are free variables (reference log-probs 0)."""
    z = torch.zeros(1, dtype=torch.float64)
    ex = {k: torch.tensor([v], dtype=torch.float64) for k, v in extra.items()}
    return PreferenceStats(rho_w.reshape(1), rho_l.reshape(1), z, z, extra=ex)


def test_dpo_at_reference_is_log2_with_slope_minus_beta_over_2():
    """ℓ(βΔ) at Δ = 0 is log 2 and ∂/∂Δ ℓ(βΔ) = −β σ(−βΔ) = −β/2."""
    rho_w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    out = get_loss("dpo", beta=0.3)(free_pair(rho_w, torch.zeros(1, dtype=torch.float64)))
    out.losses.sum().backward()
    assert out.losses.item() == pytest.approx(math.log(2), abs=1e-15)
    assert float(rho_w.grad) == pytest.approx(-0.15, abs=1e-15)


def test_cdpo_with_zero_epsilon_is_dpo(s):
    """(1−0)ℓ(βΔ) + 0·ℓ(−βΔ) = ℓ(βΔ)."""
    assert torch.equal(losses("cdpo", s, epsilon=0.0, beta=0.2), losses("dpo", s, beta=0.2))


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_cdpo_per_pair_minimiser(eps):
    """d/dz[(1−ε)ℓ(z) + εℓ(−z)] = −(1−ε)σ(−z) + εσ(z) = 0 ⇔ σ(z) = 1−ε ⇔ βΔ* = log((1−ε)/ε)."""
    beta = 0.1
    zero = torch.zeros((), dtype=torch.float64)
    delta = minimise(lambda d: get_loss("cdpo", beta=beta, epsilon=eps)(free_pair(d, zero)).losses.sum(), 0.0)
    assert beta * delta == pytest.approx(math.log((1 - eps) / eps), abs=1e-10)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 0.45])
def test_rdpo_is_unbiased_under_label_flips(eps, s):
    """A flip swaps y_w and y_l (Δ → −Δ). E_flip[L] = (1−ε)L(Δ) + εL(−Δ)
    = [((1−ε)² − ε²)ℓ(βΔ) + (ε(1−ε) − ε(1−ε))ℓ(−βΔ)]/(1−2ε) = ℓ(βΔ): the clean DPO loss."""
    flipped = PreferenceStats(s.policy_rejected_logps, s.policy_chosen_logps, s.ref_rejected_logps, s.ref_chosen_logps)
    expect = (1 - eps) * losses("rdpo", s, epsilon=eps) + eps * losses("rdpo", flipped, epsilon=eps)
    assert torch.allclose(expect, losses("dpo", s), atol=1e-13, rtol=0)


def test_rdpo_unbiased_by_monte_carlo():
    """Sampled flips at rate ε = 0.2 over 400,000 draws of one pair: the mean rDPO loss is the clean
    DPO loss within 4 standard errors."""
    eps, beta, delta, n = 0.2, 0.5, 1.3, 400_000
    g = torch.Generator().manual_seed(0)
    flip = torch.rand(n, generator=g, dtype=torch.float64) < eps
    d = torch.where(flip, -delta, delta)
    zero = torch.zeros(n, dtype=torch.float64)
    noisy = get_loss("rdpo", beta=beta, epsilon=eps)(PreferenceStats(d, zero, zero, zero)).losses
    se = float(noisy.std()) / math.sqrt(n)
    assert abs(float(noisy.mean()) - math.log1p(math.exp(-beta * delta))) < 4 * se


def test_fdpo_reverse_kl_is_dpo_bit_for_bit(s):
    assert torch.equal(losses("fdpo", s, divergence="reverse_kl", beta=0.3), losses("dpo", s, beta=0.3))


def test_fdpo_alpha_divergence_tends_to_dpo_as_alpha_to_0(s):
    """(1 − u^{−α})/α = (1 − e^{−αρ})/α = ρ − αρ²/2 + O(α²) → ρ = log u: the margin error is O(α)."""
    dpo = losses("dpo", s)
    alphas = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
    errs = [float((losses("fdpo", s, divergence="alpha", alpha=a) - dpo).abs().max()) for a in alphas]
    assert all(a > b for a, b in itertools.pairwise(errs)) and errs[-1] < 1e-6
    assert errs[0] / errs[1] == pytest.approx(10, rel=0.05)  # first order in α


def test_fdpo_js_margin_is_log_sigmoid_difference(s):
    """f′(u) = log(2u/(1+u)) = log 2 + log σ(ρ); the constant cancels: margin = log σ(ρ_w) − log σ(ρ_l)."""
    rho_w, rho_l = s.log_ratios()
    margin = F.logsigmoid(rho_w) - F.logsigmoid(rho_l)
    out = get_loss("fdpo", divergence="js", beta=0.4)(s)
    assert torch.allclose(out.losses, F.softplus(-0.4 * margin), atol=1e-14, rtol=0)
    assert torch.allclose(out.metrics["rewards/margin"], 0.4 * margin, atol=1e-14, rtol=0)


def test_fdpo_alpha_one_is_forward_kl(s):
    """α = 1: (e^{−ρ_l} − e^{−ρ_w})/1, the forward-KL margin −1/u_w + 1/u_l."""
    a = losses("fdpo", s, divergence="alpha", alpha=1.0)
    assert torch.allclose(a, losses("fdpo", s, divergence="forward_kl"), atol=1e-14, rtol=0)


def test_simpo_gamma0_equal_lengths_is_dpo_with_uniform_reference_and_beta_over_L():
    """ℓ(β(log π_w/L − log π_l/L)) = ℓ((β/L)(log π_w − c − (log π_l − c))) for a uniform reference c."""
    g = torch.Generator().manual_seed(1)
    pc, pr = -5 * torch.rand(6, generator=g, dtype=torch.float64), -5 * torch.rand(6, generator=g, dtype=torch.float64)
    length = torch.full((6,), 7.0, dtype=torch.float64)
    const = torch.full((6,), -3.7, dtype=torch.float64)
    simpo = get_loss("simpo", beta=2.0, gamma=0.0)(
        PreferenceStats(pc, pr, chosen_lengths=length, rejected_lengths=length)
    )
    dpo = get_loss("dpo", beta=2.0 / 7)(PreferenceStats(pc, pr, const, const))
    assert torch.allclose(simpo.losses, dpo.losses, atol=1e-14, rtol=0)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_per_pair_minimiser(beta):
    """d/dΔ (Δ − 1/(2β))² = 0 ⇔ Δ* = 1/(2β), where the loss is 0."""
    zero = torch.zeros((), dtype=torch.float64)
    delta = minimise(lambda d: get_loss("ipo", beta=beta)(free_pair(d, zero)).losses.sum(), 0.0)
    assert delta == pytest.approx(1 / (2 * beta), abs=1e-12)
    at = get_loss("ipo", beta=beta)(free_pair(torch.tensor(1 / (2 * beta), dtype=torch.float64), zero))
    assert float(at.losses) == pytest.approx(0.0, abs=1e-24)


def test_ipo_length_normalised_minimiser():
    """With length normalisation the minimiser is ρ_w/|y_w| − ρ_l/|y_l| = 1/(2β): here |y_w| = 4, ρ_l = 0 →
    ρ_w* = 4/(2β) = 20 for β = 0.1."""
    zero, four = torch.zeros(1, dtype=torch.float64), torch.full((1,), 4.0, dtype=torch.float64)

    def f(r):
        return get_loss("ipo", beta=0.1, length_normalize=True)(
            PreferenceStats(r.reshape(1), zero, zero, zero, four, four)
        ).losses.sum()

    assert minimise(f, 0.0) == pytest.approx(20.0, abs=1e-10)


@pytest.mark.parametrize(("p_win", "p_lose", "beta"), [(0.8, 0.3, 0.1), (0.55, 0.5, 0.001)])
def test_sppo_per_pair_minimiser(p_win, p_lose, beta):
    """∂/∂ρ_w ½(ρ_w − (p_win − ½)/β)² = 0 ⇔ ρ_w* = (p_win − ½)/β; likewise ρ_l* = (p_lose − ½)/β."""
    loss = get_loss("sppo", beta=beta)
    zero = torch.zeros((), dtype=torch.float64)
    rw = minimise(lambda r: loss(free_pair(r, zero, p_win=p_win, p_lose=p_lose)).losses.sum(), 0.0)
    rl = minimise(lambda r: loss(free_pair(zero, r, p_win=p_win, p_lose=p_lose)).losses.sum(), 0.0)
    assert rw == pytest.approx((p_win - 0.5) / beta, rel=1e-12)
    assert rl == pytest.approx((p_lose - 0.5) / beta, rel=1e-12, abs=1e-9)


def test_sppo_hard_is_sppo_with_hard_win_rates_times_two(s):
    """trl's sppo_hard = (ρ_w − 1/(2β))² + (ρ_l + 1/(2β))² = 2 × SPPO with p_win = 1, p_lose = 0."""
    b = s.batch_size
    s.extra = {"p_win": torch.ones(b, dtype=torch.float64), "p_lose": torch.zeros(b, dtype=torch.float64)}
    assert torch.allclose(losses("sppo_hard", s, beta=0.1), 2 * losses("sppo", s, beta=0.1), atol=1e-12, rtol=0)


def test_sppo_win_rates_from_scores():
    """SPPO's estimator with K = 2 samples (the pair, each counting itself at ½): p_win = ½(½ + σ(d)),
    p_lose = 1 − p_win; equal scores → ½; d → ∞ → ¾."""
    sw = torch.tensor([0.3, 1.0, 100.0], dtype=torch.float64)
    sl = torch.tensor([0.3, 0.0, -100.0], dtype=torch.float64)
    pw, pl = win_rates_from_scores(sw, sl, scale=1.0)
    assert pw.tolist() == pytest.approx([0.5, 0.25 + 0.5 / (1 + math.exp(-1)), 0.75], abs=1e-15)
    assert torch.allclose(pw + pl, torch.ones(3, dtype=torch.float64), atol=1e-15, rtol=0)


@pytest.mark.parametrize("name", ["tdpo1", "tdpo2"])
def test_tdpo_is_dpo_when_token_kl_vanishes(name, s):
    """D_SeqKL(y_w) = D_SeqKL(y_l) = 0 ⇒ ℓ(βΔ − 0) = DPO."""
    s.chosen_token_kl = torch.zeros_like(s.chosen_token_kl)
    s.rejected_token_kl = torch.zeros_like(s.rejected_token_kl)
    assert torch.equal(losses(name, s, beta=0.2), losses("dpo", s, beta=0.2))


def test_tdpo2_alpha0_is_dpo_and_no_gradient_through_chosen_kl(s):
    """TDPO2 scales the KL term by α (α = 0 → DPO) and stops the gradient of β D_SeqKL(y_w)."""
    assert torch.allclose(losses("tdpo2", s, alpha=0.0), losses("dpo", s), atol=1e-15, rtol=0)
    kw = s.chosen_token_kl.clone().requires_grad_()
    kl = s.rejected_token_kl.clone().requires_grad_()
    s.chosen_token_kl, s.rejected_token_kl = kw, kl
    get_loss("tdpo2")(s).losses.sum().backward()
    assert kw.grad is None or float(kw.grad.abs().max()) == 0.0
    assert float(kl.grad.abs().max()) > 0
    kw.grad = kl.grad = None
    get_loss("tdpo1")(s).losses.sum().backward()  # TDPO1 does differentiate through both
    assert float(kw.grad.abs().max()) > 0


def test_tgdpo_with_reward_model_equal_to_reference_is_dpo(s):
    """π_rm = π_ref ⇒ r̂ ≡ 0 ⇒ Σ_t β ρ_{w,t} − Σ_t β ρ_{l,t} = βΔ: exactly DPO (also α = 0)."""
    s.extra["rm_chosen_token_logps"] = s.ref_chosen_token_logps
    s.extra["rm_rejected_token_logps"] = s.ref_rejected_token_logps
    assert torch.allclose(losses("tgdpo", s, beta=0.3), losses("dpo", s, beta=0.3), atol=1e-14, rtol=0)
    s2 = stats_from(leaves(b=8, seed=4))
    assert torch.allclose(losses("tgdpo", s2, alpha=0.0), losses("dpo", s2), atol=1e-14, rtol=0)


def test_tgdpo_token_reward_model_gets_no_gradient(s):
    rm = s.extra["rm_chosen_token_logps"].clone().requires_grad_()
    pol = s.policy_chosen_token_logps.clone().requires_grad_()
    s.extra["rm_chosen_token_logps"], s.policy_chosen_token_logps = rm, pol
    get_loss("tgdpo")(s).losses.sum().backward()
    assert rm.grad is None and float(pol.grad.abs().max()) > 0


def test_rpo_eta0_is_dpo_and_sft_gradient(s):
    """η = 0 → DPO. The added term's gradient: sum form −ηβ ∇log π(y_w); mean form −η ∇(log π(y_w)/|y_w|)."""
    assert torch.equal(losses("rpo", s, eta=0.0, beta=0.1), losses("dpo", s, beta=0.1))
    pc = s.policy_chosen_logps.clone().requires_grad_()
    s.policy_chosen_logps = pc
    (get_loss("rpo", beta=0.1, eta=0.5)(s).losses.sum() - get_loss("dpo", beta=0.1)(s).losses.sum()).backward()
    assert torch.allclose(pc.grad, torch.full_like(pc, -0.05), atol=1e-15, rtol=0)
    pc.grad = None
    (get_loss("rpo", beta=0.1, eta=0.5, sft="mean")(s).losses.sum() - get_loss("dpo")(s).losses.sum()).backward()
    assert torch.allclose(pc.grad, -0.5 / s.chosen_lengths, atol=1e-15, rtol=0)


def test_flex_dpo_equal_betas_is_dpo_and_smaller_rejected_beta_shrinks_rejected_gradient(s):
    """β⁺ = β⁻ = β → ℓ(βΔ). ∂L/∂ρ_l = β⁻ σ(−z): a smaller β⁻ pushes the rejected log-prob down less."""
    assert torch.allclose(
        losses("flex_dpo", s, beta_chosen=0.2, beta_rejected=0.2), losses("dpo", s, beta=0.2), atol=1e-15, rtol=0
    )
    z = torch.zeros(1, dtype=torch.float64)
    rl = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    get_loss("flex_dpo", beta_chosen=0.1, beta_rejected=0.05)(PreferenceStats(z, rl, z, z)).losses.sum().backward()
    assert float(rl.grad) == pytest.approx(0.05 * 0.5, abs=1e-15)


def test_sft_is_mean_token_nll_per_sequence():
    s = seq_stats([-6.0, -1.0], [-1.0, -1.0], lc=[3, 1], lr=[1, 1])
    assert get_loss("sft")(s).losses.tolist() == [2.0, 1.0]
