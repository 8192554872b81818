"""The Bradley–Terry reward model, and the pairwise loss and metrics the other scalar kinds share.

Bradley & Terry (1952): P(y_w ≻ y_l | x) = σ(r(x, y_w) − r(x, y_l)). The reward model is a scalar head
r(x, y) = w · h(x, y) on the backbone's hidden state at the response's last (EOS) token, trained on
−log σ(r_w − r_l − m) with an optional per-pair margin m (TRL's ``margin`` column, Llama 2's margin
loss), plus TRL's ``center_rewards_coefficient`` · (r_w + r_l)², which pins the additive constant the
logistic loss leaves free (Eisenstein et al. 2023). Without centring the loss is invariant to
r → r + c(x); with linear features and no centring it *is* logistic regression on φ(y_w) − φ(y_l)
(tests/rewards/test_bt.py checks both against a closed form).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from duelist.losses.stats import LossOutput
from duelist.models.heads import HeadOutput, ScalarHeads
from duelist.rewards.registry import Bounds, Kind, register_kind

NonNegative = Annotated[float, Field(ge=0)]
MARGIN_FIELD = "margin"


def pair_metrics(chosen: Tensor, rejected: Tensor) -> dict[str, Tensor]:
    """Per-pair reward metrics (detached, each [B]): chosen, rejected, margin, accuracy (r_w > r_l), the
    pair's mean reward, and the reward standard deviation over the batch's 2B responses (repeated per pair,
    so the averaged metric is the mean within-batch spread)."""
    c, r = chosen.detach(), rejected.detach()
    both = torch.cat([c, r])
    std = both.std(correction=0) if both.numel() > 1 else torch.zeros((), dtype=c.dtype, device=c.device)
    return {
        "rewards/chosen": c,
        "rewards/rejected": r,
        "rewards/margin": c - r,
        "rewards/accuracy": (c > r).to(c.dtype),
        "rewards/mean": (c + r) / 2,
        "rewards/std": std.expand_as(c),
    }


def bt_losses(chosen: Tensor, rejected: Tensor, margin: Tensor | None = None, center: float = 0.0) -> Tensor:
    """Per-pair −log σ(r_w − r_l − m) + center · (r_w + r_l)²."""
    z = chosen - rejected if margin is None else chosen - rejected - margin
    losses = F.softplus(-z)
    return losses + center * (chosen + rejected) ** 2 if center else losses


def field(fields: Mapping[str, Tensor] | None, name: str, kind: str) -> Tensor:
    """A per-pair field the kind declared in ``data_fields``; a clear error when the batch lacks it."""
    if fields is None or name not in fields:
        raise KeyError(f"model kind {kind!r} reads the per-pair field {name!r}; the batch does not carry it")
    return fields[name]


@register_kind(
    "bt",
    paper="Bradley & Terry 1952; the reward model of Ouyang et al. 2022 as TRL's RewardTrainer trains it",
    formula="−log σ(r_w − r_l − m) + c·(r_w + r_l)²",
)
class BradleyTerry(Kind):
    """Bradley–Terry reward model: a scalar head, the logistic loss on the reward margin.

    ``margin``: every pair carries a ``margin`` field m (TRL's margin column); ``center_rewards_coefficient``
    c: TRL's centring term (its docs suggest 0.01; 0 leaves the loss invariant to r → r + c(x)).
    P(a ≻ b) = σ(r_a − r_b) with the raw rewards.
    """

    def __init__(self, *, center_rewards_coefficient: NonNegative = 0.0, margin: bool = False):
        self.center = center_rewards_coefficient
        self.use_margin = margin

    def data_fields(self) -> dict[str, Bounds]:
        return {MARGIN_FIELD: (None, None)} if self.use_margin else {}

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return ScalarHeads(hidden_size)

    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        return a["rewards"][:, 0] - b["rewards"][:, 0]

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        rw, rl = w["rewards"][:, 0], l["rewards"][:, 0]
        m = field(fields, MARGIN_FIELD, self.name) if self.use_margin else None
        return LossOutput(bt_losses(rw, rl, m, self.center), pair_metrics(rw, rl))
