"""Pointwise (single-response) losses: the same generic guarantees as the pair losses, and their minimisers.

Over a table of logits x (π = softmax(x)) with exact expectations, the online losses must give their
methods' tabular updates; here each is checked on its own, a closed form against a direct minimisation.
"""

from __future__ import annotations

import math

import pytest
import torch
from loss_fixtures import SAMPLE_VARIANTS, sample_stats, variant_id

from duelist.losses import PreferenceStats, get_loss
from duelist.losses.stats import SampleStats


@pytest.mark.parametrize("variant", SAMPLE_VARIANTS, ids=variant_id)
def test_pointwise_losses_are_finite_per_example_and_split_cleanly(variant):
    name, params = variant
    loss = get_loss(name, **params)
    tok, s = sample_stats(b=6, grad=True)
    out = loss(s)
    assert out.losses.shape == (6,) and torch.isfinite(out.losses).all()
    assert all(v.shape == (6,) and not v.requires_grad for v in out.metrics.values())
    out.losses.mean().backward()
    assert torch.isfinite(tok.grad).all() and float(tok.grad.abs().sum()) > 0
    sel = lambda i: SampleStats(s.policy_logps[i].detach(), s.ref_logps[i], s.lengths[i],  # noqa: E731
                                extra={k: v[i] for k, v in s.extra.items()})
    halves = torch.cat([loss(sel(slice(0, 2))).losses, loss(sel(slice(2, 6))).losses])
    assert torch.allclose(halves, out.losses.detach(), atol=1e-13, rtol=0)


@pytest.mark.parametrize("variant", SAMPLE_VARIANTS, ids=variant_id)
def test_pointwise_gradcheck_and_dtype(variant):
    name, params = variant
    loss = get_loss(name, **params)
    tok, s = sample_stats(b=3, t=4, seed=2)
    mask = torch.arange(tok.shape[1]) < s.lengths[:, None]

    def f(t):
        return loss(SampleStats((t * mask).sum(1), s.ref_logps, s.lengths, extra=s.extra)).losses

    assert torch.autograd.gradcheck(f, (tok.detach().clone().requires_grad_(),), eps=1e-6, atol=1e-7)
    _, s32 = sample_stats(b=3, dtype=torch.float32)
    assert loss(s32).losses.dtype == torch.float32


def test_a_pair_loss_refuses_single_responses_and_vice_versa():
    _, s = sample_stats(b=2)
    with pytest.raises(TypeError, match="takes a PreferenceStats"):
        get_loss("dpo")(s)
    with pytest.raises(TypeError, match="pointwise"):
        get_loss("pg")(PreferenceStats(torch.zeros(1), torch.zeros(1)))


def _table_minimiser(loss_fn, x0: torch.Tensor, steps: int = 4000, lr: float = 0.5) -> torch.Tensor:
    """argmin over logits x of loss_fn(log softmax(x)) by L-BFGS."""
    x = x0.clone().requires_grad_()
    opt = torch.optim.LBFGS([x], lr=lr, max_iter=steps, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = loss_fn(torch.log_softmax(x, 0))
        v.backward()
        return v

    opt.step(closure)
    return torch.softmax(x.detach(), 0)


def test_pg_population_minimiser_is_the_tilted_anchor():
    """Σ_y π_t(y) e^ρ(y) (β(ρ − δ − 1) − A(y)) = Σ_y π(y)(β log(π/ν) − A) − β, minimised at π ∝ ν e^{A/β}."""
    torch.manual_seed(0)
    pi_t = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    nu = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    adv, beta = torch.rand(5, dtype=torch.float64) - 0.5, 0.7
    loss = get_loss("pg", beta=beta, anchor="field")

    def population(logp):
        s = SampleStats(logp, pi_t.log(), extra={"advantage": adv, "anchor_shift": nu.log() - pi_t.log()})
        return (pi_t * loss(s).losses).sum()

    got = _table_minimiser(population, pi_t.log())
    want = nu * torch.exp(adv / beta)
    assert torch.allclose(got, want / want.sum(), atol=1e-9)


def test_sppo_sample_population_minimiser_is_not_plain_multiplicative_weights():
    """SPPO's −½ stands in for log Z: over normalised policies the minimiser satisfies
    log π = log π_t + η(P − ½) + λπ/(2π_t) with one multiplier λ ≤ 0 (stationarity of the Lagrangian), and
    differs from π_t e^{ηP}/Z unless the game is flat."""
    torch.manual_seed(1)
    pi_t = torch.softmax(torch.randn(4, dtype=torch.float64), 0)
    p = torch.tensor([0.7, 0.2, 0.55, 0.45], dtype=torch.float64)
    eta = 2.0
    loss = get_loss("sppo_sample", beta=1 / eta)

    def population(logp):
        return (pi_t * loss(SampleStats(logp, pi_t.log(), extra={"win_rate": p})).losses).sum()

    got = _table_minimiser(population, pi_t.log())
    lam = 2 * pi_t * (got.log() - pi_t.log() - eta * (p - 0.5)) / got
    assert torch.allclose(lam, lam.mean().expand(4), atol=1e-7) and float(lam.mean()) <= 0
    mw = pi_t * torch.exp(eta * p)
    assert float((got - mw / mw.sum()).abs().max()) > 1e-3
    assert math.isclose(float(got.sum()), 1.0, abs_tol=1e-12)
