"""Sequence-level pairwise losses on summed (or length-averaged) response log-probs.

Notation (see ``docs/losses.md``): ρ = log π_θ(y|x) − log π_ref(y|x), Δ = ρ_w − ρ_l,
ℓ(z) = −log σ(z) = softplus(−z), |y| the number of response tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from duelist.losses.registry import register_loss
from duelist.losses.stats import LossOutput, PreferenceStats, reward_metrics

Beta = Annotated[float, Field(gt=0)]
FlipRate = Annotated[float, Field(ge=0, lt=0.5)]
EXP_CAP = 80.0  # exp(80) ≈ 5.5e34 stays finite in float32; beyond it the f-DPO score is flat (as in trl)


def _capped_exp(x: Tensor) -> Tensor:
    return torch.exp(x.clamp(max=EXP_CAP))


Labels = Literal["hard", "soft"]


def label_fields(params: Mapping[str, Any]) -> tuple[str, ...]:
    """``labels=soft`` reads each pair's preference probability p = P(chosen ≻ rejected) from the field ``label``."""
    return ("label",) if params.get("labels") == "soft" else ()


@register_loss(
    "dpo",
    paper="Rafailov et al. 2023, Direct Preference Optimization, eq. 7",
    formula="ℓ(β Δ); soft labels: p ℓ(β Δ) + (1−p) ℓ(−β Δ)",
    extra_fields=label_fields,
    field_bounds={"label": (0.0, 1.0)},
)
def dpo(s: PreferenceStats, *, beta: Beta = 0.1, labels: Labels = "hard") -> LossOutput:
    """Direct Preference Optimization: logistic loss on the β-scaled log-ratio margin.

    At θ = ref the loss is log 2 and ∂L/∂Δ = −β/2. ``labels=soft``: the cross-entropy against a per-pair
    preference probability p (field ``label``), minimised at σ(βΔ) = p; p = 1 is DPO. With the previous
    iterate as reference and p = σ(r(y_w) − r(y_l)) this is DNO's Algorithm 1 objective.
    """
    rho_w, rho_l = s.log_ratios()
    z = beta * (rho_w - rho_l)
    if labels == "hard":
        losses = F.softplus(-z)
    else:
        p = s.get_extra("label", z)
        losses = p * F.softplus(-z) + (1 - p) * F.softplus(z)
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))


@register_loss(
    "ipo",
    paper="Azar et al. 2023, A General Theoretical Paradigm to Understand Learning from Human Preferences, eq. 17",
    formula="(Δ − 1/(2β))²; soft labels: (Δ − (p − ½)/β)²; with length_normalize: Δ = ρ_w/|y_w| − ρ_l/|y_l|",
    extra_fields=label_fields,
    field_bounds={"label": (0.0, 1.0)},
)
def ipo(s: PreferenceStats, *, beta: Beta = 0.1, length_normalize: bool = False, labels: Labels = "hard") -> LossOutput:
    """Identity preference optimisation: squared regression of the margin onto 1/(2β) (β is the paper's τ).

    The per-pair minimiser is Δ* = 1/(2β), finite unlike DPO's. ``length_normalize`` divides each
    log-ratio by its response length first (trl's current behaviour, said to be confirmed with the
    authors; trl ≤ 0.19 and the paper's equation use sums, which is the default here). ``labels=soft``
    regresses onto (p − ½)/β with p = P(y_w ≻ y_l) (field ``label``): the expectation of the paper's
    symmetric-label form (I − ½)/τ over I ~ Bernoulli(p); p = 1 is the hard form.
    """
    rho_w, rho_l = s.log_ratios()
    if length_normalize:
        lw, ll = s.lengths()
        rho_w, rho_l = rho_w / lw, rho_l / ll
    if labels == "hard":
        losses = (rho_w - rho_l - 1 / (2 * beta)) ** 2
    else:
        p = s.get_extra("label", rho_w)
        losses = (rho_w - rho_l - (p - 0.5) / beta) ** 2
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))


@register_loss(
    "cdpo",
    paper="Mitchell 2023, A note on DPO with noisy preferences (conservative DPO; trl label_smoothing)",
    formula="(1−ε) ℓ(β Δ) + ε ℓ(−β Δ)",
)
def cdpo(s: PreferenceStats, *, beta: Beta = 0.1, epsilon: FlipRate = 0.1) -> LossOutput:
    """Conservative DPO: DPO with labels smoothed by an assumed flip rate ε.

    The per-pair minimiser is βΔ* = log((1−ε)/ε); ε = 0 is DPO. No paper default for ε exists (trl's is
    0, which is plain DPO); 0.1 matches rDPO's flip rate.
    """
    rho_w, rho_l = s.log_ratios()
    z = beta * (rho_w - rho_l)
    losses = (1 - epsilon) * F.softplus(-z) + epsilon * F.softplus(z)
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))


@register_loss(
    "rdpo",
    paper="Chowdhury, Kini, Natarajan 2024, Provably Robust DPO: Aligning Language Models with Noisy Feedback",
    formula="[(1−ε) ℓ(β Δ) − ε ℓ(−β Δ)] / (1 − 2ε)",
)
def rdpo(s: PreferenceStats, *, beta: Beta = 0.1, epsilon: FlipRate = 0.1) -> LossOutput:
    """Robust DPO: an unbiased estimate of the clean DPO loss when labels flip with probability ε.

    E_flip[L(noisy)] = ℓ(βΔ) exactly; the per-pair loss is unbounded below (its derivative in Δ is
    always negative), so it has no per-pair minimiser.
    """
    rho_w, rho_l = s.log_ratios()
    z = beta * (rho_w - rho_l)
    losses = ((1 - epsilon) * F.softplus(-z) - epsilon * F.softplus(z)) / (1 - 2 * epsilon)
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))


def f_score(rho: Tensor, divergence: str, alpha: float) -> Tensor:
    """f'(u) at u = π_θ/π_ref = e^ρ, up to an additive constant (which cancels in the margin)."""
    if divergence == "reverse_kl":
        return rho  # f(u) = u log u
    if divergence == "forward_kl":
        return -_capped_exp(-rho)  # f(u) = −log u → f'(u) = −1/u
    if divergence == "js":
        return rho - F.softplus(rho)  # log(2u/(1+u)) − log 2 = log σ(ρ)
    return -_capped_exp(-alpha * rho) / alpha  # α-divergence: (1 − u^{−α})/α, constant 1/α dropped


@register_loss(
    "fdpo",
    paper="Wang et al. 2024, Beyond Reverse KL: Generalizing DPO with Diverse Divergence Constraints",
    formula="ℓ(β f′(e^{ρ_w}) − β f′(e^{ρ_l})); f′ = log u | −1/u | log(2u/(1+u)) | (1 − u^{−α})/α",
)
def fdpo(
    s: PreferenceStats,
    *,
    beta: Beta = 0.1,
    divergence: Literal["reverse_kl", "forward_kl", "js", "alpha"] = "reverse_kl",
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.5,
) -> LossOutput:
    """f-DPO: the implicit reward is β f′(π_θ/π_ref) for the f-divergence that regularises the policy.

    ``reverse_kl`` is DPO exactly; ``js`` has margin log σ(ρ_w) − log σ(ρ_l); the α-divergence margin
    (e^{−αρ_l} − e^{−αρ_w})/α tends to Δ as α → 0 and equals the forward-KL margin at α = 1. ``alpha`` is in
    the paper's convention (trl ≥ 0.20 uses 1 − α; both agree at the default 0.5). Exponents are capped
    at 80 so that a very unlikely response cannot overflow float32.
    """
    rho_w, rho_l = s.log_ratios()
    sw, sl = f_score(rho_w, divergence, alpha), f_score(rho_l, divergence, alpha)
    losses = F.softplus(-beta * (sw - sl))
    return LossOutput(losses, reward_metrics(beta * sw, beta * sl))


@register_loss(
    "simpo",
    paper="Meng, Xia, Chen 2024, SimPO: Simple Preference Optimization with a Reference-Free Reward",
    formula="ℓ(β (log π_θ(y_w)/|y_w| − log π_θ(y_l)/|y_l|) − γ)",
    needs_reference=False,
    length_normalized=True,
)
def simpo(s: PreferenceStats, *, beta: Annotated[float, Field(gt=0)] = 2.0, gamma: float = 0.5) -> LossOutput:
    """SimPO: reference-free, length-normalised reward β·mean log π_θ(y|x) with a target margin γ.

    Defaults are the official SimPOConfig's (β = 2, γ/β = 0.25 → γ = 0.5). With γ = 0 and equal lengths
    L it is DPO with a uniform reference and β/L.
    """
    mw, ml = s.mean_logps()
    losses = F.softplus(-(beta * (mw - ml) - gamma))
    return LossOutput(losses, reward_metrics(beta * mw, beta * ml))


@register_loss(
    "rpo",
    paper="Liu et al. 2024, Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an "
    "Adversarial Regularizer (RPO)",
    formula="ℓ(β Δ) + η β (−log π_θ(y_w|x)); sft=mean: ℓ(β Δ) + η (−log π_θ(y_w|x)/|y_w|)",
)
def rpo(
    s: PreferenceStats,
    *,
    beta: Beta = 0.01,
    eta: Annotated[float, Field(ge=0)] = 0.005,
    sft: Literal["sum", "mean"] = "sum",
) -> LossOutput:
    """RPO: DPO plus an SFT (negative log-likelihood) term on the chosen response.

    ``sft=sum`` is the paper's objective as in the authors' alignment-handbook code (η·β times the
    summed NLL); ``sft=mean`` is the authors' OpenRLHF variant (η times each chosen sequence's mean token
    NLL, no β). Defaults η = 0.005, β = 0.01 are the paper's (App. E.1). η = 0 is DPO.
    """
    rho_w, rho_l = s.log_ratios()
    pref = F.softplus(-beta * (rho_w - rho_l))
    if sft == "sum":
        nll = -s.policy_chosen_logps
        losses = pref + eta * beta * nll
    else:
        nll = -s.mean_logps()[0]
        losses = pref + eta * nll
    return LossOutput(losses, {**reward_metrics(beta * rho_w, beta * rho_l), "sft/nll": nll.detach()})


@register_loss(
    "hinge",
    paper="Zhao et al. 2023, SLiC-HF (hinge calibration loss), as normalised in Liu et al. 2024 (RSO)",
    formula="max(0, 1 − β Δ)",
)
def hinge(s: PreferenceStats, *, beta: Beta = 0.1) -> LossOutput:
    """SLiC hinge loss on the reference-normalised margin; 1/β is the margin the pair must clear."""
    rho_w, rho_l = s.log_ratios()
    losses = torch.relu(1 - beta * (rho_w - rho_l))
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))


@register_loss(
    "flex_dpo",
    paper="Yan et al. 2025, 3D-Properties: Identifying Challenges in DPO and Charting a Path Forward (Flex-DPO)",
    formula="ℓ(β⁺ ρ_w − β⁻ ρ_l)",
)
def flex_dpo(s: PreferenceStats, *, beta_chosen: Beta = 0.1, beta_rejected: Beta = 0.08) -> LossOutput:
    """Flex-DPO: DPO with separate β for the chosen and rejected log-ratios.

    A smaller β⁻ shrinks the gradient on the rejected response (|∂L/∂ρ_l| = β⁻ σ(−z)), slowing the
    drastic drop of its likelihood that the 3D-properties paper identifies. β⁺ = β⁻ is DPO.
    """
    rho_w, rho_l = s.log_ratios()
    losses = F.softplus(-(beta_chosen * rho_w - beta_rejected * rho_l))
    return LossOutput(losses, reward_metrics(beta_chosen * rho_w, beta_rejected * rho_l))
