"""The inputs and outputs every loss shares.

Per-sequence statistics are sums over response tokens (prompt and padding masked), shape [B].
Per-token tensors are [B, T] with a boolean mask of the same shape; padded positions hold 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from duelist.losses.registry import LossSpec


class LossOutput(NamedTuple):
    """Per-example losses [B] and per-example metrics (each [B]; the trainer averages them)."""

    losses: Tensor
    metrics: dict[str, Tensor]


@dataclass
class PreferenceStats:
    policy_chosen_logps: Tensor
    policy_rejected_logps: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_lengths: Tensor | None = None
    rejected_lengths: Tensor | None = None
    policy_chosen_token_logps: Tensor | None = None
    policy_rejected_token_logps: Tensor | None = None
    ref_chosen_token_logps: Tensor | None = None
    ref_rejected_token_logps: Tensor | None = None
    chosen_mask: Tensor | None = None
    rejected_mask: Tensor | None = None
    chosen_token_kl: Tensor | None = None  # KL(π_ref ‖ π_θ) at each response position, [B, T]
    rejected_token_kl: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **kw: Any) -> PreferenceStats:
        names = {f.name for f in fields(cls)}
        extra = dict(kw.pop("extra", None) or {})
        extra.update({k: kw.pop(k) for k in list(kw) if k not in names})
        return cls(**kw, extra=extra)

    @property
    def batch_size(self) -> int:
        return self.policy_chosen_logps.shape[0]

    def check(self, spec: LossSpec) -> None:
        """Raise a clear error if a field the loss needs is missing."""
        missing = []
        if spec.needs_reference and (self.ref_chosen_logps is None or self.ref_rejected_logps is None):
            missing += ["ref_chosen_logps", "ref_rejected_logps"]
        if spec.length_normalized and (self.chosen_lengths is None or self.rejected_lengths is None):
            missing += ["chosen_lengths", "rejected_lengths"]
        if spec.token_level:
            need = ["policy_chosen_token_logps", "policy_rejected_token_logps", "chosen_mask", "rejected_mask"]
            if spec.needs_reference:
                need += ["ref_chosen_token_logps", "ref_rejected_token_logps"]
            missing += [n for n in need if getattr(self, n) is None]
        if spec.needs_token_kl:
            missing += [n for n in ("chosen_token_kl", "rejected_token_kl") if getattr(self, n) is None]
        missing += [f for f in spec.extra_fields if f not in self.extra]
        if missing:
            raise ValueError(f"loss {spec.name!r} needs inputs that were not given: {', '.join(missing)}")
        b = self.batch_size
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor) and v.shape[:1] != (b,):
                raise ValueError(f"{f.name} has shape {tuple(v.shape)}; expected batch size {b} first")

    def mean_logps(self) -> tuple[Tensor, Tensor]:
        """Policy log-probs averaged over response tokens (SimPO, IPO with length normalisation)."""
        assert self.chosen_lengths is not None and self.rejected_lengths is not None
        return (
            self.policy_chosen_logps / self.chosen_lengths.clamp(min=1),
            self.policy_rejected_logps / self.rejected_lengths.clamp(min=1),
        )

    def log_ratios(self) -> tuple[Tensor, Tensor]:
        """ρ_w, ρ_l: policy minus reference sequence log-probs (reference 0 when absent)."""
        rc = self.ref_chosen_logps if self.ref_chosen_logps is not None else torch.zeros_like(self.policy_chosen_logps)
        rr = (
            self.ref_rejected_logps
            if self.ref_rejected_logps is not None
            else torch.zeros_like(self.policy_rejected_logps)
        )
        return self.policy_chosen_logps - rc, self.policy_rejected_logps - rr


def reward_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, Tensor]:
    """The implicit-reward metrics every pairwise loss reports (detached, per example)."""
    c, r = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": c,
        "rewards/rejected": r,
        "rewards/margin": c - r,
        "rewards/accuracy": (c > r).to(c.dtype),
    }
