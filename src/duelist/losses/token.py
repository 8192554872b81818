"""Token-level DPO variants: they read per-token log-probs, per-token KL, or a token reward model.

Per-token inputs are [B, T] tensors aligned with the token batch, zero outside the response (the masks
are applied again here, so callers may pass any value at masked positions).
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from duelist.losses.registry import model_fields, register_loss
from duelist.losses.stats import LossOutput, PreferenceStats, reward_metrics

Beta = Annotated[float, Field(gt=0)]


def _seq_kl(s: PreferenceStats) -> tuple[Tensor, Tensor]:
    """D_SeqKL(y) = Σ_t KL(π_ref(·|x, y_<t) ‖ π_θ(·|x, y_<t)) over response positions."""
    assert s.chosen_token_kl is not None and s.rejected_token_kl is not None
    kw, kl = s.chosen_token_kl, s.rejected_token_kl
    if s.chosen_mask is not None and s.rejected_mask is not None:
        kw, kl = kw * s.chosen_mask, kl * s.rejected_mask
    return kw.sum(1), kl.sum(1)


def _tdpo_metrics(beta: float, rho_w: Tensor, rho_l: Tensor, kl_w: Tensor, kl_l: Tensor) -> dict[str, Tensor]:
    # the official code reports β(ρ + D_SeqKL) as each response's reward
    return {
        **reward_metrics(beta * (rho_w + kl_w), beta * (rho_l + kl_l)),
        "seq_kl/chosen": kl_w.detach(),
        "seq_kl/rejected": kl_l.detach(),
    }


@register_loss(
    "tdpo1",
    paper="Zeng et al. 2024, Token-level Direct Preference Optimization (TDPO1)",
    formula="ℓ(β Δ − (β D_SeqKL(y_l) − β D_SeqKL(y_w)))",
    needs_token_kl=True,
)
def tdpo1(s: PreferenceStats, *, beta: Beta = 0.1) -> LossOutput:
    """TDPO1: DPO's margin corrected by the difference of sequential KL divergences to the reference.

    D_SeqKL(y) = Σ_t KL(π_ref(·|x,y_<t) ‖ π_θ(·|x,y_<t)) over the full vocabulary (needs the live
    reference). When every per-token KL vanishes it is DPO: ℓ(βΔ).
    """
    rho_w, rho_l = s.log_ratios()
    kl_w, kl_l = _seq_kl(s)
    losses = F.softplus(-beta * (rho_w - rho_l + kl_w - kl_l))
    return LossOutput(losses, _tdpo_metrics(beta, rho_w, rho_l, kl_w, kl_l))


@register_loss(
    "tdpo2",
    paper="Zeng et al. 2024, Token-level Direct Preference Optimization (TDPO2)",
    formula="ℓ(β Δ − α (β D_SeqKL(y_l) − sg(β D_SeqKL(y_w))))",
    needs_token_kl=True,
)
def tdpo2(s: PreferenceStats, *, beta: Beta = 0.1, alpha: Annotated[float, Field(ge=0)] = 0.5) -> LossOutput:
    """TDPO2: as TDPO1 with the KL term scaled by α and no gradient through the chosen response's KL.

    The official code's defaults are β = 0.1, α = 0.5 (its README recommends TDPO2; its loss config selects
    TDPO1, hence two names here). α = 0, or vanishing per-token KL, is DPO.
    """
    rho_w, rho_l = s.log_ratios()
    kl_w, kl_l = _seq_kl(s)
    losses = F.softplus(-beta * (rho_w - rho_l + alpha * (kl_w.detach() - kl_l)))
    return LossOutput(losses, _tdpo_metrics(beta, rho_w, rho_l, kl_w, kl_l))


@register_loss(
    "tgdpo",
    paper="Zhu et al. 2025, TGDPO: Harnessing Token-Level Reward Guidance for Enhancing DPO",
    formula="ℓ(Σ_t β(1 + αβ r̂_{w,t}) ρ_{w,t} − Σ_t β(1 − αβ r̂_{l,t}) ρ_{l,t}); r̂_t = log π_rm(y_t) − log π_ref(y_t)",
    token_level=True,
    extra_fields=model_fields("rm"),
    models={"reward_model": "rm"},
)
def tgdpo(
    s: PreferenceStats,
    *,
    beta: Beta = 0.1,
    alpha: Annotated[float, Field(ge=0)] = 0.5,
    reward_model: str | None = None,
) -> LossOutput:
    """TGDPO: per-token DPO whose token weights are shifted by a frozen token reward model's log-ratios.

    ``reward_model`` is the frozen π_rm (a DPO-trained policy sharing the tokenizer: a model directory or
    hub id, or ``reference`` for π_rm = π_ref); the trainer scores each batch with it (no gradient) and
    passes ``rm_chosen_token_logps``/``rm_rejected_token_logps``. Called directly, pass those tensors.
    With π_rm = π_ref (r̂ ≡ 0) or α = 0 it is DPO exactly. Defaults β = 0.1, α = 0.5 are the official code's.
    """
    rho_w, rho_l = s.token_log_ratios()
    assert s.ref_chosen_token_logps is not None and s.ref_rejected_token_logps is not None
    assert s.chosen_mask is not None and s.rejected_mask is not None
    rm_w, rm_l = (s.get_extra(f, rho_w).detach() for f in model_fields("rm"))
    r_w = (rm_w - s.ref_chosen_token_logps) * s.chosen_mask
    r_l = (rm_l - s.ref_rejected_token_logps) * s.rejected_mask
    z = (beta * (1 + alpha * beta * r_w) * rho_w).sum(1) - (beta * (1 - alpha * beta * r_l) * rho_l).sum(1)
    losses = F.softplus(-z)
    metrics = {
        **reward_metrics(beta * rho_w.sum(1), beta * rho_l.sum(1)),
        "token_reward/chosen": r_w.sum(1),
        "token_reward/rejected": r_l.sum(1),
    }
    return LossOutput(losses, metrics)
