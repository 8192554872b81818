"""Reward and preference models: registered model kinds (heads, losses, preferences, rewards), the pure
algorithms behind the plural and noise-robust kinds (MaxMin-RLHF's EM, CRM's peer selection), and the saved
model folder that scores texts and judges (``duelist.rewards.model``).

>>> from duelist.rewards import get_kind
>>> kind = get_kind("bt", center_rewards_coefficient=0.01)
>>> head = kind.make_head(hidden_size=576)
>>> out = kind.loss(head(h_chosen), head(h_rejected))   # per-pair losses [B] and metrics
"""

from duelist.rewards.registry import (
    USER_FIELD,
    Kind,
    KindConfigError,
    KindSpec,
    build_kind,
    get_kind,
    get_spec,
    list_kinds,
    register_kind,
    registry,
)

__all__ = [
    "USER_FIELD",
    "Kind",
    "KindConfigError",
    "KindSpec",
    "build_kind",
    "get_kind",
    "get_spec",
    "list_kinds",
    "register_kind",
    "registry",
]
