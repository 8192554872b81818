"""Losses of the online self-play methods (``duelist.online``): each round's examples come from the policy's
own judged samples, and the reference is whatever anchor the method names (the initial policy π_ref, or
the previous iterate π_t scored at the start of the round).

Each loss is written so that, minimised exactly over a table of logits with exact win-rates, it gives its
method's tabular update in ``duelist.games.dynamics`` (the twin tests check this to 1e-5):

* ``inpo``: (ρ̃_w − ρ̃_l − η(p − ½))², ρ̃ = log π_θ − ητ log π_ref − (1−ητ) log π_t → π_{t+1} ∝
  π_t^{1−ητ} π_ref^{ητ} exp(η P(y ≻ π_t));
* ``sppo_sample``: (ρ − (P̂ − ½)/β)² per sample, ρ against π_t (SPPO's Algorithm 1 over all K samples);
* ``pg``: w · (β (ρ − δ − 1) − A), w = exp(ρ), a proximal policy-gradient step with KL coefficient β to an
  anchor ν (δ = log ν − log π_t) → π_{t+1} ∝ ν exp(A/β) (SPO with ν = π_t; Nash-MD with ν the mixture).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from duelist.losses.pairwise import Labels, label_fields
from duelist.losses.registry import register_loss
from duelist.losses.stats import LossOutput, PreferenceStats, SampleStats, reward_metrics

Positive = Annotated[float, Field(gt=0)]
PREVIOUS = ("prev_chosen_logps", "prev_rejected_logps")


def _inpo_fields(params: Mapping[str, Any]) -> tuple[str, ...]:
    return PREVIOUS + label_fields(params)


@register_loss(
    "inpo",
    paper="Zhang et al. 2025, Iterative Nash Policy Optimization (INPO), the loss of its OMD step",
    formula="(ρ̃_w − ρ̃_l − η(p − ½))², ρ̃ = log π_θ − ητ log π_ref − (1−ητ) log π_t; hard labels p = 1",
    extra_fields=_inpo_fields,
    field_bounds={"label": (0.0, 1.0)},
)
def inpo(
    s: PreferenceStats,
    *,
    eta: Positive = 5.0,
    tau: Annotated[float, Field(ge=0)] = 0.1,
    labels: Labels = "hard",
) -> LossOutput:
    """INPO: a squared loss whose minimiser over pairs drawn from π_t is the online-mirror-descent step
    π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ} exp(η P(y ≻ π_t)) of the τ-regularised preference game.

    Derivation (ALGORITHMS.md §3.3 tags the loss UNCONFIRMED): with symmetric labels the target of an
    ordered pair (y, y') is η(I − ½), whose mean over I ~ Bernoulli(P(y ≻ y')) is η(P(y ≻ y') − ½). The
    least-squares fit of differences h(y) − h(y') onto it, with (y, y') ~ π_t ⊗ π_t, satisfies
    h(y) − E_{π_t} h = η(P(y ≻ π_t) − ½), so h = log π_θ − ητ log π_ref − (1−ητ) log π_t equals
    η P(y ≻ π_t) up to a constant: the OMD step. π_ref is the loss's reference; π_t's sequence log-probs
    come as the fields ``prev_chosen_logps``/``prev_rejected_logps``. Needs ητ ≤ 1. The paper's η and τ
    are not confirmed here; the defaults give ητ = ½ (the step halfway between π_t and the best response).
    """
    if eta * tau > 1:
        raise ValueError(f"inpo needs eta·tau ≤ 1 (got {eta}·{tau} = {eta * tau:g})")
    rho_w, rho_l = s.log_ratios()  # against π_ref
    pw, pl = s.get_extra(PREVIOUS[0], rho_w), s.get_extra(PREVIOUS[1], rho_l)
    # log π_θ − ητ log π_ref − (1−ητ) log π_t = ρ_ref − (1−ητ)(log π_t − log π_ref)
    a = 1 - eta * tau
    h_w = rho_w - a * (pw - s.ref_chosen_logps.to(rho_w.dtype))
    h_l = rho_l - a * (pl - s.ref_rejected_logps.to(rho_l.dtype))
    p = s.get_extra("label", rho_w) if labels == "soft" else torch.ones_like(rho_w)
    losses = (h_w - h_l - eta * (p - 0.5)) ** 2
    return LossOutput(losses, reward_metrics(h_w / eta, h_l / eta))


@register_loss(
    "sppo_sample",
    paper="Wu et al. 2024, Self-Play Preference Optimization, Algorithm 1 (every sample of π_t)",
    formula="(ρ − (P̂(y ≻ π_t) − ½)/β)², ρ against π_t",
    extra_fields=("win_rate",),
    field_bounds={"win_rate": (0.0, 1.0)},
    inputs="samples",
)
def sppo_sample(s: SampleStats, *, beta: Positive = 0.001) -> LossOutput:
    """SPPO's squared loss on single samples: each response y of π_t regresses its log-ratio
    ρ = log π_θ(y)/π_t(y) onto η(P̂(y ≻ π_t) − ½), η = 1/β; P̂ comes as the field ``win_rate``.

    This is the paper's Algorithm 1 (all K samples of a prompt); the released code trains only on the best
    and worst sample (``sppo``). The −½ stands in for log Z: minimised over normalised policies the
    population loss gives log π_{t+1} = log π_t + η(P − ½) + λ π_{t+1}/(2π_t) (a Lagrange term), not
    exactly the multiplicative-weights step; ``games.dynamics.SPPOLoss`` is this exact twin.
    """
    rho = s.log_ratios()
    p = s.get_extra("win_rate", rho)
    losses = (rho - (p - 0.5) / beta) ** 2
    return LossOutput(losses, {"sppo/win_rate": p.detach(), "log_ratio": rho.detach()})


def _pg_fields(params: Mapping[str, Any]) -> tuple[str, ...]:
    return ("advantage",) + (("anchor_shift",) if params["anchor"] == "field" else ())


@register_loss(
    "pg",
    paper="Proximal policy gradient (mirror-descent step) on judged samples: SPO (Swamy et al. 2024), "
    "Nash-MD (Munos et al. 2024)",
    formula="w·(β(ρ − δ − 1) − A), w = e^ρ, ρ = log π_θ/π_t; δ = log ν/π_t (0: anchor = reference)",
    extra_fields=_pg_fields,
    inputs="samples",
)
def pg(s: SampleStats, *, beta: Positive = 0.1, anchor: Literal["reference", "field"] = "reference") -> LossOutput:
    """max_π E_{y~π}[A(y)] − β KL(π‖ν), estimated from samples of the reference π_t (the sampling policy):
    E_{π_θ} f = E_{π_t}[w f] with w = π_θ/π_t = e^ρ, and KL(π_θ‖ν) = E_{π_θ}[ρ − δ], δ = log ν − log π_t.

    Over a table of logits the exact minimiser is π ∝ ν exp(A/β): multiplicative weights (SPO, ν = π_t,
    ``anchor=reference``) or Nash-MD's step from the geometric mixture ν (``anchor=field``, δ from the field
    ``anchor_shift``). The −β·w term is constant in expectation (E_{π_t} w = 1) and so leaves the objective's
    minimiser and mean gradient unchanged; it cancels the KL term's score-function noise at w = 1, where the
    gradient is −(A + βδ)∇log π(y): REINFORCE with the advantage A (field ``advantage``, win-rate minus its
    baseline) plus the anchor's pull. No clipping: one update per round keeps w at 1 where it is taken.
    """
    rho = s.log_ratios()
    adv = s.get_extra("advantage", rho)
    delta = s.get_extra("anchor_shift", rho) if anchor == "field" else torch.zeros_like(rho)
    w = torch.exp(rho)
    losses = w * (beta * (rho - delta - 1) - adv)
    return LossOutput(losses, {"pg/advantage": adv.detach(), "pg/weight": w.detach(), "log_ratio": rho.detach()})


@register_loss(
    "optimism",
    paper="Cen et al. 2024, Value-Incentivized Preference Optimization (VPO); Zhang et al. 2024, Self-Exploring "
    "Language Models (SELM): the optimism bonus",
    formula="αβ · ½(ρ_w + ρ_l)",
)
def optimism(s: PreferenceStats, *, alpha: Annotated[float, Field(ge=0)] = 0.1, beta: Positive = 0.1) -> LossOutput:
    """The exploration bonus on the policy's own samples, a term to add to online DPO:
    αβ·E_{y~π_t}[log π_θ(y) − log π_ref(y)], estimated on the pair's two responses (both samples of π_t).
    Minimising it lowers the likelihood the policy gives its own samples relative to the reference: VPO's
    online, optimistic sign (J*(r) = −βE_{π_cal}[ρ] with π_cal the sampling policy) and SELM's
    αβ(log π_θ(y) − log π_ref(y)) term. Its gradient is αβ/2 · (∇log π_θ(y_w) + ∇log π_θ(y_l)); α = 0 adds 0.
    """
    rho_w, rho_l = s.log_ratios()
    losses = alpha * beta * 0.5 * (rho_w + rho_l)
    return LossOutput(losses, {"optimism/log_ratio": (0.5 * (rho_w + rho_l)).detach()})
