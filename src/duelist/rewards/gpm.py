"""GPM: the general preference embedding model (Zhang et al., "Beyond Bradley-Terry Models: A General
Preference Model for Language Model Alignment", 2024; code general-preference/general-preference-model).

Each response gets an embedding v(x, y) ∈ R^{2k} (a linear head at its last token). The preference score is

    s(y_i ≻ y_j | x) = ⟨R(x) v_i, v_j⟩,  R(x) = diag over l of [[0, −λ_l(x)], [λ_l(x), 0]],

so with v = (v_0, v_1, …) block by block, s = Σ_l λ_l (v_i,2l · v_j,2l+1 − v_i,2l+1 · v_j,2l). R is
skew-symmetric, hence s(a, b) = −s(b, a) and s(a, a) = 0 for any embeddings, and P(a ≻ b) = σ(s/τ) gives
P(a ≻ b) + P(b ≻ a) = 1. The eigenvalues are 1 (no prompt head) or λ(x) = k · softmax(W h_prompt / √H)
(the code's ``add_prompt_head``; H the backbone's hidden size). Scoring K responses costs K forward
passes: each response is embedded once, then every pair is a dot product.

With k = 1 and unit embeddings at angles θ, s(a, b) = sin(θ_b − θ_a): three responses at 0°, 120° and 240°
give s = sin 120° = √3/2 for a ≻ b, b ≻ c and c ≻ a, a preference cycle no scalar reward can express.

Deviation (none in value): λ is read from both rows and averaged, λ̄ = (λ_a + λ_b)/2. Rows of one prompt
have the same λ, so this is the paper's s; it makes s(a, b) = −s(b, a) hold exactly in floating point even
when the two rows' prompt states come from different batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from duelist.losses.stats import LossOutput
from duelist.models.heads import EmbeddingHead, HeadOutput
from duelist.rewards.bt import MARGIN_FIELD, field
from duelist.rewards.registry import Bounds, Kind, register_kind


def preference_score(a: HeadOutput, b: HeadOutput) -> Tensor:
    """s(a ≻ b) = ⟨R v_a, v_b⟩ row by row, [N] (λ averaged over the two rows, see the module docstring)."""
    va, vb = a["embedding"], b["embedding"]
    lam = (a["eigenvalues"] + b["eigenvalues"]) / 2
    cross = va[:, 0::2] * vb[:, 1::2] - va[:, 1::2] * vb[:, 0::2]  # [N, k], one term per 2×2 block
    return (lam * cross).sum(-1)


@register_kind(
    "gpm",
    paper="Zhang et al. 2024, Beyond Bradley-Terry Models: A General Preference Model (GPM)",
    formula="s = ⟨R(x) v_w, v_l⟩, R block-diagonal skew-symmetric (eigenvalues from the prompt's last token with "
    "prompt_head); −log σ((s − m)/τ)",
)
class GeneralPreference(Kind):
    """General preference embedding model: a 2k-dimensional embedding per response and a skew-symmetric
    score, P(a ≻ b) = σ(s(a, b)/τ); represents cycles; no scalar reward.

    ``k``: number of 2×2 blocks (the code's ``value_head_dim`` = 2k; released models use 4–8 dimensions);
    ``tau``: the code's ``general_preference_tau`` (0.1); ``prompt_head``: prompt-dependent eigenvalues
    λ(x) = k·softmax(W h_prompt/√H) instead of all 1; ``margin``: every pair carries a ``margin`` field m;
    ``layers`` > 0: an MLP of that many ReLU layers of width ``width`` before the value map (a duelist extension
    for frozen features; the paper's head is linear).
    """

    has_reward = False

    def __init__(
        self,
        *,
        k: Annotated[int, Field(ge=1)] = 2,
        tau: Annotated[float, Field(gt=0)] = 0.1,
        prompt_head: bool = False,
        margin: bool = False,
        layers: Annotated[int, Field(ge=0)] = 0,
        width: Annotated[int, Field(ge=1)] = 256,
    ):
        self.k, self.tau, self.use_margin, self.layers, self.width = k, tau, margin, layers, width
        self.reads_prompt = prompt_head

    def data_fields(self) -> dict[str, Bounds]:
        return {MARGIN_FIELD: (None, None)} if self.use_margin else {}

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return EmbeddingHead(hidden_size, self.k, self.reads_prompt, self.layers, self.width)

    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        return preference_score(a, b) / self.tau

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        s = preference_score(w, l)
        z = s - field(fields, MARGIN_FIELD, self.name) if self.use_margin else s
        d = s.detach()
        metrics = {
            "preference/score": d,
            "preference/prob": torch.sigmoid(d / self.tau),
            "preference/accuracy": (d > 0).to(d.dtype),
            "preference/embedding_norm": (w["embedding"].detach().norm(dim=-1) + l["embedding"].detach().norm(dim=-1))
            / 2,
        }
        return LossOutput(F.softplus(-z / self.tau), metrics)
