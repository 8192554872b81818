"""Sequence-level pairwise losses on summed response log-probs.

Notation (see ``docs/losses.md``): ρ = log π_θ(y|x) − log π_ref(y|x), Δ = ρ_w − ρ_l,
ℓ(z) = −log σ(z) = softplus(−z).
"""

from __future__ import annotations

from typing import Annotated

import torch.nn.functional as F
from pydantic import Field

from duelist.losses.registry import register_loss
from duelist.losses.stats import LossOutput, PreferenceStats, reward_metrics

Beta = Annotated[float, Field(gt=0)]


@register_loss(
    "dpo",
    paper="Rafailov et al. 2023, Direct Preference Optimization, eq. 7",
    formula="ℓ(β Δ)",
)
def dpo(s: PreferenceStats, *, beta: Beta = 0.1) -> LossOutput:
    """Direct Preference Optimization: logistic loss on the β-scaled log-ratio margin.

    At θ = ref the loss is log 2 and ∂L/∂Δ = −β/2.
    """
    rho_w, rho_l = s.log_ratios()
    losses = F.softplus(-beta * (rho_w - rho_l))
    return LossOutput(losses, reward_metrics(beta * rho_w, beta * rho_l))
