"""Preference losses as pure functions of per-sequence (or per-token) statistics.

>>> from duelist.losses import get_loss, list_losses
>>> loss = get_loss("dpo", beta=0.1)
>>> out = loss(policy_chosen_logps=..., policy_rejected_logps=..., ref_chosen_logps=..., ref_rejected_logps=...)
>>> out.losses  # per example, [B]; out.metrics: rewards, margins, accuracy, each [B]

``build_loss(config)`` builds one loss (``{name: dpo, beta: 0.1}``) or a weighted sum
(``{name: sum, terms: [{name: dpo}, {name: sft, weight: 0.005}]}``).
"""

from duelist.losses.registry import (
    COMBINATOR,
    AuxModel,
    Loss,
    LossBase,
    LossConfigError,
    LossSpec,
    WeightedSum,
    build_loss,
    get_loss,
    get_spec,
    list_losses,
    model_fields,
    register_loss,
    registry,
)
from duelist.losses.stats import LossOutput, Needs, PreferenceStats

__all__ = [
    "COMBINATOR",
    "AuxModel",
    "Loss",
    "LossBase",
    "LossConfigError",
    "LossOutput",
    "LossSpec",
    "Needs",
    "PreferenceStats",
    "WeightedSum",
    "build_loss",
    "get_loss",
    "get_spec",
    "list_losses",
    "model_fields",
    "register_loss",
    "registry",
]
