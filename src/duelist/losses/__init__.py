"""Preference losses as pure functions of per-sequence (or per-token) statistics.

>>> from duelist.losses import get_loss
>>> loss = get_loss("dpo", beta=0.1)
>>> out = loss(policy_chosen_logps=..., policy_rejected_logps=..., ref_chosen_logps=..., ref_rejected_logps=...)
"""

from duelist.losses.registry import (
    Loss,
    LossConfigError,
    LossSpec,
    build_loss,
    get_loss,
    get_spec,
    list_losses,
    register_loss,
    registry,
)
from duelist.losses.stats import LossOutput, PreferenceStats

__all__ = [
    "Loss",
    "LossConfigError",
    "LossOutput",
    "LossSpec",
    "PreferenceStats",
    "build_loss",
    "get_loss",
    "get_spec",
    "list_losses",
    "register_loss",
    "registry",
]
