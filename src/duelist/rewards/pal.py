"""PAL: pluralistic alignment through a mixture of ideal points (Chen et al., ICLR 2025, "PAL:
Sample-Efficient Personalized Reward Modeling for Pluralistic Alignment"; code RamyaLab/pluralistic-alignment).

K prototypes are shared by every user; user u has mixture weights w_u = softmax(W_u) over them, so a new
user is described by K numbers and is fitted few-shot by learning only W_u (``fit_user_weights``).
Both variants of the paper's code:

* **PAL-A** (``pal-a``, ideal points, the code's ``dist``): items f(x, y) = projector(h); the user's ideal
  point is a_u = f(Σ_k w_uk p_k) (``mix: f(Pw)``, the configs' choice) or Σ_k w_uk f(p_k) (``f(P)w``), the
  prototypes p_k living in the backbone's hidden space. y_w ≻ y_l for u iff f(y_w) is nearer a_u:
  z = ‖f(y_l) − a_u‖ − ‖f(y_w) − a_u‖ > 0. Loss: hinge max(0, 1 − z) (``a-*.yaml``) or the quadratically
  smoothed hinge with parameter γ (``smooth_hinge``: (1/2γ)·max(0, 1 − z)² for z ≥ 1 − γ, else 1 − γ/2 − z).
* **PAL-B** (``pal-b``, the code's ``angle``): the ideal point depends on the prompt, u_u(x) = Σ_k w_uk g_k(h_x)
  (one projector g_k per prototype on the prompt's last hidden state); reward r_u(x, y) = s · cos(f(x, y), u_u(x))
  with a learnable CLIP-style scale s = min(exp ℓ, 100), ℓ₀ = log(1/0.07); loss: cross-entropy over the two
  responses, i.e. Bradley–Terry on r_u: −log σ(r_u(y_w) − r_u(y_l)) (``b-*.yaml``: ``CE``).

Both add the code's norm bound on the ideal points, λ · max(0, ‖a‖ − B) (``upper_bound: 4``, ``lmd: 1``).
Deviation: here it is averaged over the batch's pairs, where the code sums it over the rows it bounds, so the
weight does not depend on the batch size.

With one prototype every user's weight is 1, so PAL-B is one Bradley–Terry model whose reward is
s·cos(f(x, y), g(x)): with f the identity on unit features φ and a fixed u it is logistic regression on φ
with weights s·u/‖u‖ (tests/rewards/test_pal.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from duelist.losses.stats import LossOutput
from duelist.models.heads import AngleHead, HeadOutput, IdealPointHead
from duelist.rewards.bt import pair_metrics
from duelist.rewards.registry import USER_FIELD, Kind, register_kind

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]


def hinge(z: Tensor) -> Tensor:
    return (1 - z).clamp(min=0)


def smooth_hinge(z: Tensor, gamma: float) -> Tensor:
    """Quadratically smoothed hinge at margin 1: continuous with its derivative at z = 1 − γ (value γ/2)."""
    return torch.where(z >= 1 - gamma, (1 - z).clamp(min=0) ** 2 / (2 * gamma), 1 - gamma / 2 - z)


def norm_bound(ideal: Tensor, bound: float) -> Tensor:
    """max(0, ‖a‖ − B) per row."""
    return (torch.linalg.vector_norm(ideal, dim=-1) - bound).clamp(min=0)


class _Pal(Kind):
    reads_user = True
    user_scores = True

    def _dim(self, hidden_size: int) -> int:
        return self.dim if self.dim is not None else hidden_size

    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        return a["rewards"][:, 0] - b["rewards"][:, 0]

    def _bound(self, w: HeadOutput) -> Tensor:
        return self.bound_weight * norm_bound(w["ideal"], self.bound) if self.bound_weight else 0.0

    def fit_new_users(
        self, head: nn.Module, chosen: Tensor, rejected: Tensor, prompt: Tensor | None, users: Tensor, count: int
    ) -> None:
        """Few-shot localisation: new users' mixture logits alone, fitted on their pairs (``fit_user_weights``)."""
        head.users.add_users(count, torch.Generator().manual_seed(0))
        fit_user_weights(self, head, chosen, rejected, users, prompt)


@register_kind(
    "pal-a",
    paper="Chen et al., ICLR 2025, PAL: Pluralistic Alignment (PAL-A, ideal points)",
    formula="z = ‖f(y_l) − a_u‖ − ‖f(y_w) − a_u‖, a_u = f(Σ_k w_uk p_k); max(0, 1 − z) + λ·max(0, ‖a_u‖ − B)",
)
class PalIdealPoint(_Pal):
    """PAL-A: each user's ideal point is a softmax mixture of K prototypes; a response is better for a user
    the nearer its embedding is to the user's ideal point (reward −‖f(x, y) − a_u‖).

    ``prototypes`` K (2 in the paper's configs); ``dim`` of the preference space (None: the backbone's hidden
    size); ``mix`` f(Pw) or f(P)w; projector ``layers`` and ``residual`` (the configs' mlp2 with residual);
    ``objective`` hinge or smooth_hinge (``gamma``); norm bound ``bound`` B with weight ``bound_weight`` λ.
    """

    def __init__(
        self,
        *,
        prototypes: Count = 2,
        dim: Count | None = None,
        mix: Literal["f(Pw)", "f(P)w"] = "f(Pw)",
        layers: Annotated[int, Field(ge=0)] = 2,
        residual: bool = True,
        objective: Literal["hinge", "smooth_hinge"] = "hinge",
        gamma: Positive = 5.0,
        bound: Positive = 4.0,
        bound_weight: NonNegative = 1.0,
    ):
        self.prototypes, self.dim, self.mix, self.layers, self.residual = prototypes, dim, mix, layers, residual
        self.objective, self.gamma, self.bound, self.bound_weight = objective, gamma, bound, bound_weight

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return IdealPointHead(
            hidden_size, self._dim(hidden_size), self.prototypes, num_users, self.mix, self.layers, self.residual
        )

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        rw, rl = w["rewards"][:, 0], l["rewards"][:, 0]
        z = rw - rl
        fit = hinge(z) if self.objective == "hinge" else smooth_hinge(z, self.gamma)
        return LossOutput(fit + self._bound(w), pair_metrics(rw, rl))


@register_kind(
    "pal-b",
    paper="Chen et al., ICLR 2025, PAL: Pluralistic Alignment (PAL-B, prompt-dependent ideal points)",
    formula="r_u(x,y) = s·cos(f(x,y), Σ_k w_uk g_k(x)); −log σ(r_u(y_w) − r_u(y_l)) + λ·max(0, ‖u‖ − B)",
)
class PalAngle(_Pal):
    """PAL-B: the reward is the scaled cosine between a response's embedding and the user's prompt-dependent
    ideal point, a softmax mixture of K prototype maps of the prompt; trained as Bradley–Terry on it.

    ``prototypes`` K; ``dim`` (None: hidden size); projector ``layers``/``residual``; norm bound ``bound``
    with weight ``bound_weight`` on the ideal points.
    """

    reads_prompt = True

    def __init__(
        self,
        *,
        prototypes: Count = 2,
        dim: Count | None = None,
        layers: Annotated[int, Field(ge=0)] = 2,
        residual: bool = True,
        bound: Positive = 4.0,
        bound_weight: NonNegative = 1.0,
    ):
        self.prototypes, self.dim, self.layers, self.residual = prototypes, dim, layers, residual
        self.bound, self.bound_weight = bound, bound_weight

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return AngleHead(hidden_size, self._dim(hidden_size), self.prototypes, num_users, self.layers, self.residual)

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        rw, rl = w["rewards"][:, 0], l["rewards"][:, 0]
        return LossOutput(F.softplus(rl - rw) + self._bound(w), pair_metrics(rw, rl))


def fit_user_weights(
    kind: Kind,
    head: nn.Module,
    chosen: Tensor,
    rejected: Tensor,
    users: Tensor,
    prompt: Tensor | None = None,
    steps: int = 300,
    lr: float = 0.05,
) -> list[float]:
    """Few-shot localisation of users (PAL): fit only the mixture logits of ``users`` on their pairs, with
    the backbone's hidden states given (``chosen``/``rejected`` [N, H], ``prompt`` [N, H] for PAL-B) and
    everything else in the head frozen. Add new users first with ``head.users.add_users(n)``. Rows of users
    without pairs get zero gradients and stay as they are (Adam moves nothing on a zero gradient). Returns
    the mean loss at each step."""
    params = list(head.parameters())
    trainable = [p.requires_grad for p in params]
    logits = head.users.logits
    for p in params:
        p.requires_grad_(p is logits)
    opt = torch.optim.Adam([logits], lr=lr)
    history = []
    try:
        for _ in range(steps):
            opt.zero_grad()
            out = kind.loss(head(chosen, prompt, users), head(rejected, prompt, users), {USER_FIELD: users})
            loss = out.losses.mean()
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
    finally:
        for p, t in zip(params, trainable, strict=True):
            p.requires_grad_(t)
    return history
