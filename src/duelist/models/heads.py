"""Heads of reward and preference models: small modules read at each sequence's last token.

A head maps the backbone's final hidden state at the last token of prompt + response (``hidden``, [N, H];
[N, M, H] for a kind trained with M backbones) to named tensors, one row per response. Some heads also
read the hidden state at the prompt's last token (``prompt``, [N, H]: the same forward pass gives it,
attention being causal) or a per-pair user index (``user``, [N], long). Which kind builds which head,
and how its outputs become a loss and a preference, is in ``duelist.rewards``.

Heads with scalar rewards emit ``rewards`` (raw, [N, G]: one column per reward model they hold) and
``scores`` (the same, standardised with the mean and standard deviation stored in the head by
``set_normalisation``, usually measured over the training pairs' responses after training).

``last_token_states`` runs a backbone on right-padded token sequences and gathers the hidden states at
chosen positions (each sequence's last token, and the prompt's last token).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HeadOutput = dict[str, Tensor]
CLIP_SCALE_INIT = math.log(1 / 0.07)  # PAL-B's learnable scale starts as CLIP's
CLIP_SCALE_MAX = 100.0


def _init_linear(layer: nn.Linear, hidden_size: int) -> None:
    # value-head initialisation of OpenRLHF / the GPM code: N(0, 1/(H+1)) keeps initial rewards near 0
    nn.init.normal_(layer.weight, mean=0.0, std=1 / (hidden_size + 1))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _needs(name: str, value: Tensor | None, what: str) -> Tensor:
    if value is None:
        raise ValueError(f"the {name} head reads {what}; pass it")
    return value


class RewardHead(nn.Module):
    """Base of heads with G scalar reward columns: holds their normalisation statistics as buffers."""

    def __init__(self, columns: int):
        super().__init__()
        self.columns = columns
        self.register_buffer("norm_mean", torch.zeros(columns))
        self.register_buffer("norm_std", torch.ones(columns))

    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        if mean.shape != (self.columns,) or std.shape != (self.columns,) or bool((std <= 0).any()):
            raise ValueError(f"normalisation needs {self.columns} means and {self.columns} positive stds")
        self.norm_mean.copy_(mean)
        self.norm_std.copy_(std)

    def emit(self, rewards: Tensor, **more: Tensor) -> HeadOutput:
        scores = (rewards - self.norm_mean.to(rewards.dtype)) / self.norm_std.to(rewards.dtype)
        return {"rewards": rewards, "scores": scores, **more}


def fit_normalisation(head: RewardHead, rewards: Tensor) -> tuple[Tensor, Tensor]:
    """Store in ``head`` the per-column mean and standard deviation of raw ``rewards`` [N, G] (the head's
    ``rewards`` output over the training pairs' responses); a column with no spread keeps std 1."""
    mean = rewards.detach().double().mean(0)
    std = rewards.detach().double().std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    head.set_normalisation(mean.to(head.norm_mean.dtype), std.to(head.norm_std.dtype))
    return mean, std


class ScalarHeads(RewardHead):
    """G linear rewards r_g(x, y) = w_g · h (no bias, as in TRL's and OpenRLHF's value heads).

    G = 1 is the Bradley–Terry reward model; G > 1 a mixture (MaxMin-RLHF). With ``backbones`` = M > 1
    the input is [N, M, H] and column m reads backbone m (M models, one reward each, as CRM trains)."""

    def __init__(self, hidden_size: int, columns: int = 1, backbones: int = 1):
        super().__init__(columns)
        if backbones > 1 and backbones != columns:
            raise ValueError("with several backbones, each reward column reads its own: columns must equal backbones")
        self.backbones = backbones
        layers = (
            [nn.Linear(hidden_size, columns, bias=False)]
            if backbones == 1
            else [nn.Linear(hidden_size, 1, bias=False) for _ in range(backbones)]
        )
        for layer in layers:
            _init_linear(layer, hidden_size)
        self.value = nn.ModuleList(layers)

    def forward(self, hidden: Tensor, prompt: Tensor | None = None, user: Tensor | None = None) -> HeadOutput:
        if self.backbones == 1:
            return self.emit(self.value[0](hidden))
        if hidden.dim() != 3 or hidden.shape[1] != self.backbones:
            raise ValueError(f"expected hidden states [N, {self.backbones}, H], got {tuple(hidden.shape)}")
        return self.emit(torch.cat([v(hidden[:, m]) for m, v in enumerate(self.value)], dim=1))


class MixtureHeads(ScalarHeads):
    """G reward columns and each training user's cluster (``assignment``, set by the E-step); with users
    it also emits ``cluster`` [N], the cluster of each row's user."""

    def __init__(self, hidden_size: int, columns: int, num_users: int):
        super().__init__(hidden_size, columns)
        if num_users < 1:
            raise ValueError("a mixture over users needs at least one user")
        self.register_buffer("assignment", torch.arange(num_users) % columns)

    def forward(self, hidden: Tensor, prompt: Tensor | None = None, user: Tensor | None = None) -> HeadOutput:
        out = super().forward(hidden)
        if user is not None:
            out["cluster"] = self.assignment[user]
        return out


class EmbeddingHead(nn.Module):
    """GPM's preference embedding v(x, y) ∈ R^{2k}, with the eigenvalues λ_l(x) of its skew-symmetric
    operator: all 1, or λ(x) = k · softmax(W h_prompt / √H) from a prompt head (Zhang et al., GPM).

    ``layers`` > 0 puts an MLP (``Projector``: that many ReLU layers of width ``width``) before the linear value
    map, for an embedding of fixed features (a frozen backbone); 0 is the paper's linear value head."""

    def __init__(self, hidden_size: int, k: int, prompt_head: bool = False, layers: int = 0, width: int = 256):
        super().__init__()
        self.k = k
        self.hidden_size = hidden_size
        self.body = Projector(hidden_size, width, layers, residual=False) if layers else nn.Identity()
        self.value = nn.Linear(width if layers else hidden_size, 2 * k, bias=False)
        _init_linear(self.value, width if layers else hidden_size)
        self.prompt_head = nn.Linear(hidden_size, k, bias=False) if prompt_head else None
        if self.prompt_head is not None:
            _init_linear(self.prompt_head, hidden_size)

    def forward(self, hidden: Tensor, prompt: Tensor | None = None, user: Tensor | None = None) -> HeadOutput:
        v = self.value(self.body(hidden))
        if self.prompt_head is None:
            lam = torch.ones(v.shape[0], self.k, dtype=v.dtype, device=v.device)
        else:
            h = _needs("GPM prompt", prompt, "the prompt's last hidden state")
            lam = self.k * torch.softmax(self.prompt_head(h) / math.sqrt(self.hidden_size), dim=-1)
        return {"embedding": v, "eigenvalues": lam}


class Projector(nn.Module):
    """PAL's projector: ``layers`` hidden layers of width ``out`` with ReLU, then a linear map; with
    ``residual`` (only when in = out) the input is added back."""

    def __init__(self, inp: int, out: int, layers: int = 2, residual: bool = True):
        super().__init__()
        dims = [inp] + [out] * layers
        mods: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], out))
        self.net = nn.Sequential(*mods)
        self.residual = residual and inp == out

    def forward(self, x: Tensor) -> Tensor:
        y = self.net(x)
        return x + y if self.residual else y


class UserWeights(nn.Module):
    """Per-user logits over K prototypes; a user's mixture weights are their softmax (PAL)."""

    def __init__(self, num_users: int, prototypes: int):
        super().__init__()
        if num_users < 1:
            raise ValueError("a per-user model needs at least one user")
        self.logits = nn.Parameter(torch.randn(num_users, prototypes))

    def forward(self, user: Tensor) -> Tensor:
        return torch.softmax(self.logits[user], dim=-1)

    def add_users(self, n: int, generator: torch.Generator | None = None) -> list[int]:
        """Append ``n`` new users (random logits); returns their indices."""
        first = self.logits.shape[0]
        new = torch.randn(n, self.logits.shape[1], generator=generator, dtype=self.logits.dtype)
        self.logits = nn.Parameter(torch.cat([self.logits.detach(), new.to(self.logits.device)]))
        return list(range(first, first + n))


class IdealPointHead(RewardHead):
    """PAL-A: item f(x, y) = projector(h); user ideal point a_u = f(Σ_k w_uk p_k) (``mix="f(Pw)"``) or
    Σ_k w_uk f(p_k) (``"f(P)w"``), prototypes p_k in the hidden space; reward r_u(y) = −‖f(x, y) − a_u‖."""

    def __init__(
        self,
        hidden_size: int,
        dim: int,
        prototypes: int,
        num_users: int,
        mix: str = "f(Pw)",
        layers: int = 2,
        residual: bool = True,
    ):
        super().__init__(1)
        if mix not in ("f(Pw)", "f(P)w"):
            raise ValueError(f"mix must be 'f(Pw)' or 'f(P)w', got {mix!r}")
        self.mix = mix
        self.f = Projector(hidden_size, dim, layers, residual)
        self.prototypes = nn.Parameter(torch.randn(prototypes, hidden_size) / math.sqrt(hidden_size))
        self.users = UserWeights(num_users, prototypes)

    def ideal_points(self, user: Tensor) -> Tensor:
        w = self.users(user)
        if self.mix == "f(Pw)":
            return self.f(w @ self.prototypes)
        return w @ self.f(self.prototypes)

    def forward(self, hidden: Tensor, prompt: Tensor | None = None, user: Tensor | None = None) -> HeadOutput:
        a = self.ideal_points(_needs("PAL", user, "a user index per row"))
        f = self.f(hidden)
        return self.emit(-torch.linalg.vector_norm(f - a, dim=-1, keepdim=True), feature=f, ideal=a)


class AngleHead(RewardHead):
    """PAL-B: item f(x, y) = projector(h); the user's prompt-dependent ideal point u_u(x) = Σ_k w_uk g_k(h_x)
    (one projector g_k per prototype, on the prompt's last hidden state); reward r_u(x, y) =
    s · cos(f(x, y), u_u(x)), with a learnable scale s = min(exp(ℓ), 100), ℓ initialised to log(1/0.07)."""

    def __init__(
        self, hidden_size: int, dim: int, prototypes: int, num_users: int, layers: int = 2, residual: bool = True
    ):
        super().__init__(1)
        self.f = Projector(hidden_size, dim, layers, residual)
        self.g = nn.ModuleList(Projector(hidden_size, dim, layers, residual) for _ in range(prototypes))
        self.users = UserWeights(num_users, prototypes)
        self.log_scale = nn.Parameter(torch.tensor(CLIP_SCALE_INIT))

    def forward(self, hidden: Tensor, prompt: Tensor | None = None, user: Tensor | None = None) -> HeadOutput:
        h_x = _needs("PAL-B", prompt, "the prompt's last hidden state")
        w = self.users(_needs("PAL-B", user, "a user index per row"))
        u = torch.einsum("nk,knd->nd", w, torch.stack([g(h_x) for g in self.g]))
        f = self.f(hidden)
        scale = self.log_scale.exp().clamp(max=CLIP_SCALE_MAX)
        cos = F.cosine_similarity(f, u, dim=-1)
        return self.emit((scale * cos).unsqueeze(-1), feature=f, ideal=u)


def last_token_states(
    backbone: nn.Module, sequences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]], pad_id: int
) -> Tensor:
    """Run ``backbone`` (an HF base model returning ``last_hidden_state``) on right-padded ``sequences``
    and return the hidden states at ``positions`` (per sequence, the same number of indices P), [N, P, H]."""
    device = next(backbone.parameters()).device
    n, t = len(sequences), max(len(s) for s in sequences)
    ids = torch.full((n, t), pad_id, dtype=torch.long)
    att = torch.zeros((n, t), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        att[i, : len(s)] = 1
    hidden = backbone(input_ids=ids.to(device), attention_mask=att.to(device)).last_hidden_state
    idx = torch.as_tensor([list(p) for p in positions], dtype=torch.long, device=device)
    return hidden[torch.arange(n, device=device).unsqueeze(1), idx]
