"""GPM against its algebra: skew-symmetry for any embeddings, the exact 3-cycle with k = 1, the prompt head's
eigenvalues, and a fitted cycle that BT cannot fit."""

from __future__ import annotations

import math

import pytest
import torch

from duelist.models.heads import EmbeddingHead
from duelist.rewards import get_kind
from duelist.rewards.gpm import preference_score


@pytest.mark.parametrize("prompt_head", [False, True])
def test_gpm_is_skew_symmetric(prompt_head):
    """s(a, b) = −s(b, a) and s(a, a) = 0 exactly (bitwise), P(a ≻ b) + P(b ≻ a) = 1, for a random head
    (k = 3, with and without prompt-dependent eigenvalues) on random hidden states."""
    torch.manual_seed(0)
    kind = get_kind("gpm", k=3, prompt_head=prompt_head)
    head = kind.make_head(16).double()
    ha, hb, hx = (torch.randn(32, 16, dtype=torch.float64) for _ in range(3))
    a, b = head(ha, hx), head(hb, hx)
    s_ab, s_ba = preference_score(a, b), preference_score(b, a)
    assert torch.equal(s_ab, -s_ba)
    assert torch.equal(preference_score(a, a), torch.zeros(32, dtype=torch.float64))
    torch.testing.assert_close(
        kind.prob(a, b) + kind.prob(b, a), torch.ones(32, dtype=torch.float64), atol=1e-15, rtol=0
    )
    assert s_ab.abs().min() > 0  # not trivially zero


def test_gpm_prompt_head_eigenvalues():
    """λ(x) = k · softmax(W h_x / √H): positive, summing to k; without a prompt head all λ are 1."""
    torch.manual_seed(1)
    head = EmbeddingHead(16, 4, prompt_head=True).double()
    lam = head(torch.randn(5, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64))["eigenvalues"]
    assert (lam > 0).all()
    torch.testing.assert_close(lam.sum(-1), torch.full((5,), 4.0, dtype=torch.float64))
    h = torch.randn(5, 16, dtype=torch.float64)
    assert torch.equal(EmbeddingHead(16, 4).double()(h)["eigenvalues"], torch.ones(5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="prompt"):
        head(h)


def test_gpm_represents_the_three_cycle_with_k1():
    """Unit vectors at 0°, 120°, 240° and λ = 1: s(a, b) = sin(θ_b − θ_a) = sin 120° = √3/2 for a ≻ b, b ≻ c and
    c ≻ a; with τ = 0.1, P = σ(8.660254) = 0.9998267 for each, and each reverse is 1 − that."""
    kind = get_kind("gpm", k=1, tau=0.1)
    ang = torch.tensor([0.0, 120.0, 240.0], dtype=torch.float64) * math.pi / 180
    emb = torch.stack([ang.cos(), ang.sin()], dim=1)
    out = {"embedding": emb, "eigenvalues": torch.ones(3, 1, dtype=torch.float64)}

    def rows(i):
        return {k: v[i] for k, v in out.items()}

    win, lose = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    s = preference_score(rows(win), rows(lose))
    torch.testing.assert_close(s, torch.full((3,), math.sqrt(3) / 2, dtype=torch.float64), atol=1e-15, rtol=0)
    p = kind.prob(rows(win), rows(lose))
    assert p.tolist() == pytest.approx([1 / (1 + math.exp(-math.sqrt(3) / 2 / 0.1))] * 3, abs=1e-15)
    assert p[0].item() == pytest.approx(0.9998267, abs=1e-7)
    assert kind.loss(rows(win), rows(lose)).losses.max() < 1.8e-4  # BT's best on this cycle: log 2 = 0.693


def test_gpm_learns_a_cycle_from_data():
    """A k = 1 head on one-hot hidden states of three responses, trained on the cycle, ranks every direction
    right (P > 0.99 for a ≻ b, b ≻ c, c ≻ a), where BT's loss cannot go below log 2."""
    torch.manual_seed(0)
    kind = get_kind("gpm", k=1, tau=0.1)
    head = kind.make_head(3).double()
    onehot = torch.eye(3, dtype=torch.float64)
    win, lose = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        kind.loss(head(onehot[win]), head(onehot[lose])).losses.mean().backward()
        opt.step()
    with torch.no_grad():
        p = kind.prob(head(onehot[win]), head(onehot[lose]))
    assert (p > 0.99).all()


def test_gpm_margin():
    """With a margin field m: −log σ((s − m)/τ)."""
    kind = get_kind("gpm", k=1, tau=0.5, margin=True)
    a = {
        "embedding": torch.tensor([[1.0, 0.0]], dtype=torch.float64),
        "eigenvalues": torch.ones(1, 1, dtype=torch.float64),
    }
    b = {
        "embedding": torch.tensor([[0.0, 2.0]], dtype=torch.float64),
        "eigenvalues": torch.ones(1, 1, dtype=torch.float64),
    }
    out = kind.loss(a, b, {"margin": torch.tensor([0.5], dtype=torch.float64)})  # s = 1·2 − 0·0 = 2
    assert float(out.losses[0]) == pytest.approx(math.log1p(math.exp(-(2 - 0.5) / 0.5)), abs=1e-15)
    with pytest.raises(TypeError, match="pairwise"):
        kind.reward(a)


def test_an_mlp_body_keeps_the_score_skew_symmetric():
    """``layers`` > 0 (an MLP before the value map) changes the embedding, not the operator: s(a,b) = −s(b,a),
    s(a,a) = 0 exactly."""
    kind = get_kind("gpm", k=2, layers=2, width=8)
    head = kind.make_head(16).double()
    a, b = head(torch.randn(5, 16, dtype=torch.float64)), head(torch.randn(5, 16, dtype=torch.float64))
    assert torch.equal(kind.logit(a, b), -kind.logit(b, a))
    assert torch.equal(kind.logit(a, a), torch.zeros(5, dtype=torch.float64))
    assert sum(p.numel() for p in head.parameters()) == 16 * 8 + 8 + 8 * 8 + 8 + 8 * 8 + 8 + 8 * 4
