"""The inputs and outputs every loss shares.

Per-sequence statistics are sums over response tokens (prompt and padding masked), shape [B].
Per-token tensors are [B, T] with a boolean mask of the same shape; padded positions hold 0.
Extra inputs live in ``PreferenceStats.extra``: per-pair numbers read from the data (shape [B], e.g.
SPPO's win-rate estimates ``p_win``/``p_lose``) and per-token log-probs of auxiliary frozen models
(shape [B, T], e.g. TGDPO's token reward model, ``rm_chosen_token_logps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor


class LossOutput(NamedTuple):
    """Per-example losses [B] and per-example metrics (each [B]; the trainer averages them)."""

    losses: Tensor
    metrics: dict[str, Tensor]


@dataclass(frozen=True)
class Needs:
    """What a loss (or a sum of losses) reads besides the policy's summed log-probs."""

    reference: bool = False
    lengths: bool = False
    token_level: bool = False
    token_kl: bool = False
    extra_fields: tuple[str, ...] = ()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            self.reference or other.reference,
            self.lengths or other.lengths,
            self.token_level or other.token_level,
            self.token_kl or other.token_kl,
            tuple(dict.fromkeys(self.extra_fields + other.extra_fields)),
        )


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
        """Known field names go to their fields; any other keyword goes to ``extra``."""
        names = {f.name for f in fields(cls)}
        extra = dict(kw.pop("extra", None) or {})
        extra.update({k: kw.pop(k) for k in list(kw) if k not in names})
        return cls(**kw, extra=extra)

    @property
    def batch_size(self) -> int:
        return self.policy_chosen_logps.shape[0]

    def check(self, needs: Needs, name: str) -> None:
        """Raise a clear error if an input the loss ``name`` needs is missing or mis-shaped."""
        missing = []
        if needs.reference and (self.ref_chosen_logps is None or self.ref_rejected_logps is None):
            missing += ["ref_chosen_logps", "ref_rejected_logps"]
        if needs.lengths and (self.chosen_lengths is None or self.rejected_lengths is None):
            missing += ["chosen_lengths", "rejected_lengths"]
        if needs.token_level:
            need = ["policy_chosen_token_logps", "policy_rejected_token_logps", "chosen_mask", "rejected_mask"]
            if needs.reference:
                need += ["ref_chosen_token_logps", "ref_rejected_token_logps"]
            missing += [n for n in need if getattr(self, n) is None]
        if needs.token_kl:
            missing += [n for n in ("chosen_token_kl", "rejected_token_kl") if getattr(self, n) is None]
        missing += [f for f in needs.extra_fields if f not in self.extra]
        if missing:
            raise ValueError(f"loss {name!r} needs inputs that were not given: {', '.join(missing)}")
        b = self.batch_size
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        tensors.update({f"extra[{k!r}]": v for k, v in self.extra.items()})
        for key, v in tensors.items():
            if isinstance(v, Tensor) and v.shape[:1] != (b,):
                raise ValueError(f"{key} has shape {tuple(v.shape)}; expected batch size {b} first")

    def select(self, index: Tensor | slice) -> PreferenceStats:
        """The same statistics for a subset of the pairs (every tensor indexed on its first axis)."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        kw = {k: (v[index] if isinstance(v, Tensor) else v) for k, v in kw.items()}
        return PreferenceStats(**kw, extra={k: v[index] for k, v in self.extra.items()})

    def lengths(self) -> tuple[Tensor, Tensor]:
        if self.chosen_lengths is None or self.rejected_lengths is None:
            raise ValueError("chosen_lengths and rejected_lengths are needed for length-normalised log-probs")
        return self.chosen_lengths.clamp(min=1), self.rejected_lengths.clamp(min=1)

    def mean_logps(self) -> tuple[Tensor, Tensor]:
        """Policy log-probs averaged over response tokens (SimPO, the SFT term)."""
        lc, lr = self.lengths()
        return self.policy_chosen_logps / lc, self.policy_rejected_logps / lr

    def log_ratios(self) -> tuple[Tensor, Tensor]:
        """ρ_w, ρ_l: policy minus reference sequence log-probs (reference 0 when absent)."""
        rc = self.ref_chosen_logps if self.ref_chosen_logps is not None else torch.zeros_like(self.policy_chosen_logps)
        rr = (
            self.ref_rejected_logps
            if self.ref_rejected_logps is not None
            else torch.zeros_like(self.policy_rejected_logps)
        )
        return self.policy_chosen_logps - rc, self.policy_rejected_logps - rr

    def token_log_ratios(self) -> tuple[Tensor, Tensor]:
        """Per-token ρ_{w,t}, ρ_{l,t} [B, T], zero outside the responses."""
        assert self.policy_chosen_token_logps is not None and self.policy_rejected_token_logps is not None
        assert self.ref_chosen_token_logps is not None and self.ref_rejected_token_logps is not None
        assert self.chosen_mask is not None and self.rejected_mask is not None
        w = (self.policy_chosen_token_logps - self.ref_chosen_token_logps) * self.chosen_mask
        lo = (self.policy_rejected_token_logps - self.ref_rejected_token_logps) * self.rejected_mask
        return w, lo

    def get_extra(self, name: str, like: Tensor) -> Tensor:
        """An extra input, in the dtype and device of ``like``."""
        return self.extra[name].to(dtype=like.dtype, device=like.device)


@dataclass
class SampleStats:
    """Inputs of a pointwise loss: one response per example (e.g. a policy-gradient step on judged samples).
    Per-sequence tensors are [N]; ``extra`` holds per-sample numbers (win-rate, advantage, anchors), [N]."""

    policy_logps: Tensor
    ref_logps: Tensor | None = None
    lengths: Tensor | None = None
    policy_token_logps: Tensor | None = None
    ref_token_logps: Tensor | None = None
    mask: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.policy_logps.shape[0]

    def check(self, needs: Needs, name: str) -> None:
        """Raise a clear error if an input the loss ``name`` needs is missing or mis-shaped."""
        missing = []
        if needs.reference and self.ref_logps is None:
            missing.append("ref_logps")
        if needs.lengths and self.lengths is None:
            missing.append("lengths")
        if needs.token_level:
            need = ["policy_token_logps", "mask"] + (["ref_token_logps"] if needs.reference else [])
            missing += [n for n in need if getattr(self, n) is None]
        if needs.token_kl:
            raise ValueError(f"loss {name!r} reads token KL, which pointwise batches do not carry")
        missing += [f for f in needs.extra_fields if f not in self.extra]
        if missing:
            raise ValueError(f"loss {name!r} needs inputs that were not given: {', '.join(missing)}")
        tensors = {f.name: getattr(self, f.name) for f in fields(self)}
        tensors.update({f"extra[{k!r}]": v for k, v in self.extra.items()})
        for key, v in tensors.items():
            if isinstance(v, Tensor) and v.shape[:1] != (self.batch_size,):
                raise ValueError(f"{key} has shape {tuple(v.shape)}; expected batch size {self.batch_size} first")

    def log_ratios(self) -> Tensor:
        """ρ = log π_θ(y|x) − log π_ref(y|x) per sample (reference 0 when absent)."""
        return self.policy_logps - (self.ref_logps if self.ref_logps is not None else 0)

    def get_extra(self, name: str, like: Tensor) -> Tensor:
        """An extra input, in the dtype and device of ``like``."""
        return self.extra[name].to(dtype=like.dtype, device=like.device)


def reward_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor) -> dict[str, Tensor]:
    """The implicit-reward metrics every pairwise loss reports (detached, per example)."""
    c, r = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": c,
        "rewards/rejected": r,
        "rewards/margin": c - r,
        "rewards/accuracy": (c > r).to(c.dtype),
    }
