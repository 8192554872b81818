"""CRM: collaborative reward modelling (Zhang et al. 2025, "Two Minds Better Than One: Collaborative Reward
Modeling for LLM Alignment"), with the co-teaching selection rule and rate schedule (Han et al., NeurIPS 2018).

Two reward models r_A, r_B are trained at once on the same noisy batches. Each reviews the batch for its peer:
A ranks the pairs by its own margin d_A = r_A(y_w) − r_A(y_l) and B trains only on the fraction 1 − τ_t with
the largest d_A, and vice versa. No official code exists and ALGORITHMS.md §6.6 tags the exact rule
UNCONFIRMED; this is co-teaching's rule, with the schedule derived below.

**Rate schedule.** τ_t = ε · min(1, t / T): the dropped fraction ramps linearly from 0 to the assumed flip
rate ε over the first T of training (``ramp``, a fraction of the run; t = ``progress``), then stays at ε.
Why its two ends are what they are, for a batch with a share ε of flipped pairs:

* End value. If the peer's margins rank every flipped pair below every clean one (a perfect reviewer),
  dropping the lowest fraction τ leaves a flip rate of max(0, ε − τ)/(1 − τ) and keeps a share
  min(1, (1 − τ)/(1 − ε)) of the clean pairs. The first is 0 exactly when τ ≥ ε, the second is 1 exactly when
  τ ≤ ε: τ = ε is the only rate that removes every flip and keeps every clean pair.
* Start value. An untrained reviewer's margins are independent of the labels, so the kept pairs have flip rate
  ε whatever τ is; dropping only discards clean data. τ = 0 is best there.

Networks fit the clean majority before they memorise the flipped minority (the memorisation effect co-teaching
rests on), so the reviewer moves from the second case towards the first as training proceeds, and τ_t moves
from 0 to ε with it; the linear ramp is co-teaching's R(T) = 1 − min(T·τ/T_k, τ). Two reviewers rather than
self-selection: a model's own confident mistakes would confirm themselves, a peer's errors differ.

Per batch of B pairs, ⌊τ_t · B⌋ pairs are dropped for each model (ties in the peer's margin: the earlier pair
is kept). The per-pair loss is Σ_m 1[i kept for m] · ℓ_m,i · B / |kept_m|, so its batch mean is the sum of
the two models' mean BT losses over their kept pairs. Selection is not differentiated.

The two columns should come from two backbones (the head reads hidden states [N, 2, H], column m from backbone
m): two models sharing a backbone make correlated mistakes, which is what the peer review is meant to avoid.
The curriculum of the paper (easy pairs first) is the ramp: early batches train on everything, later ones on
the pairs both models find easy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from duelist.losses.stats import LossOutput
from duelist.models.heads import HeadOutput, ScalarHeads
from duelist.rewards.bt import bt_losses, pair_metrics
from duelist.rewards.registry import Kind, register_kind


def drop_rate(progress: float, noise_rate: float, ramp: float) -> float:
    """τ_t = ε · min(1, t / T) at training progress t ∈ [0, 1] (T = ``ramp``)."""
    return noise_rate * min(1.0, max(progress, 0.0) / ramp)


def peer_select(peer_margins: Tensor, rate: float) -> Tensor:
    """Boolean mask [B] keeping the B − ⌊rate · B⌋ pairs with the largest peer margins (ties: earlier kept)."""
    b = peer_margins.shape[0]
    keep = b - math.floor(rate * b)
    order = torch.sort(-peer_margins.detach(), stable=True).indices
    mask = torch.zeros(b, dtype=torch.bool, device=peer_margins.device)
    mask[order[:keep]] = True
    return mask


@register_kind(
    "crm",
    paper="Zhang et al. 2025, Two Minds Better Than One: Collaborative Reward Modeling (CRM); "
    "co-teaching schedule of Han et al., NeurIPS 2018",
    formula="τ_t = ε·min(1, t/T); each model: −log σ(r_m(y_w) − r_m(y_l)) on the 1 − τ_t of the batch with "
    "the largest peer margin",
)
class Collaborative(Kind):
    """Collaborative reward modelling: two BT reward models, each training on the pairs its peer is most
    confident about, dropping a share that ramps up to the assumed flip rate; robust to noisy labels.

    ``noise_rate`` ε: the assumed share of flipped labels; ``ramp`` T: the fraction of training over which the
    dropped share grows from 0 to ε; ``center_rewards_coefficient`` as for ``bt``. The judge's reward is the
    two models' mean standardised reward; P(a ≻ b) = σ of their mean raw margin.
    """

    backbones = 2

    def __init__(
        self,
        *,
        noise_rate: Annotated[float, Field(ge=0, lt=0.5)] = 0.2,
        ramp: Annotated[float, Field(gt=0, le=1)] = 0.25,
        center_rewards_coefficient: Annotated[float, Field(ge=0)] = 0.0,
    ):
        self.noise_rate, self.ramp, self.center = noise_rate, ramp, center_rewards_coefficient

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return ScalarHeads(hidden_size, columns=2, backbones=2)

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        rw, rl = w["rewards"], l["rewards"]  # [B, 2]
        margins = (rw - rl).detach()
        rate = drop_rate(progress, self.noise_rate, self.ramp)
        b = rw.shape[0]
        losses = torch.zeros(b, dtype=rw.dtype, device=rw.device)
        metrics = {}
        for m, peer in ((0, 1), (1, 0)):
            kept = peer_select(margins[:, peer], rate)
            per_pair = bt_losses(rw[:, m], rl[:, m], center=self.center)
            losses = losses + torch.where(kept, per_pair, torch.zeros_like(per_pair)) * (b / int(kept.sum()))
            metrics[f"crm/kept_{m}"] = kept.to(rw.dtype)
        metrics |= pair_metrics(rw.mean(1), rl.mean(1))
        metrics["crm/drop_rate"] = torch.full_like(losses, rate).detach()
        metrics["crm/agreement"] = ((margins[:, 0] > 0) == (margins[:, 1] > 0)).to(rw.dtype)
        return LossOutput(losses, metrics)

    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        return (a["rewards"] - b["rewards"]).mean(1)

    def reward(self, out: HeadOutput) -> Tensor:
        return out["scores"].mean(1)
