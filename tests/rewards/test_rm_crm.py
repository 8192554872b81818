"""CRM: the rate schedule and peer selection by hand, the loss against its definition, and peer-selected pairs
with a lower flip rate than the data on synthetic BT pairs with known flips."""

from __future__ import annotations

import pytest
import torch

from duelist.rewards import get_kind
from duelist.rewards.crm import drop_rate, peer_select


def test_drop_rate_schedule():
    """τ_t = ε · min(1, t/T): 0 at the start, ε/2 halfway through the ramp, ε after it."""
    assert drop_rate(0.0, 0.3, 0.2) == 0.0
    assert drop_rate(0.1, 0.3, 0.2) == pytest.approx(0.15)
    assert drop_rate(0.2, 0.3, 0.2) == pytest.approx(0.3)
    assert drop_rate(0.9, 0.3, 0.2) == pytest.approx(0.3)


def test_peer_select_keeps_the_largest_peer_margins():
    """B = 5, rate 0.5: ⌊2.5⌋ = 2 dropped, the 3 largest margins kept; on a tie the earlier pair is kept."""
    assert peer_select(torch.tensor([3.0, -1.0, 2.0, 0.0, 0.0]), 0.5).tolist() == [True, False, True, True, False]
    assert peer_select(torch.tensor([1.0, 2.0]), 0.0).all()


def test_crm_loss_by_hand():
    """At progress ≥ ramp the rate is ε = 0.25 and B = 4, so each model keeps 3 pairs: model 0 the three with the
    largest margins of model 1, and vice versa. Per-pair loss = Σ_m 1[kept for m] ℓ(d_m) · 4/3."""
    kind = get_kind("crm", noise_rate=0.25, ramp=0.5)
    rw = torch.tensor([[1.0, 2.0], [0.0, -1.0], [2.0, 0.5], [0.5, 0.0]], dtype=torch.float64)
    rl = torch.zeros(4, 2, dtype=torch.float64)
    out = kind.loss({"rewards": rw}, {"rewards": rl}, progress=0.6)
    ell = torch.nn.functional.softplus(-rw)
    kept0 = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)  # model 1's margins: 2, −1, 0.5, 0 → drop pair 1
    kept1 = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)  # model 0's margins: 1, 0, 2, 0.5 → drop pair 1
    torch.testing.assert_close(out.losses, (kept0 * ell[:, 0] + kept1 * ell[:, 1]) * 4 / 3)
    assert out.metrics["crm/drop_rate"].tolist() == [0.25] * 4
    early = kind.loss({"rewards": rw}, {"rewards": rl}, progress=0.0)
    torch.testing.assert_close(early.losses, ell.sum(1))  # τ_0 = 0: both models train on every pair


def test_peer_selection_has_a_lower_flip_rate_than_the_data():
    """2,000 pairs of 5-d features labelled by BT (θ* with norm ≈ 4.5), then exactly 30% of the labels flipped (a
    known subset). Two linear reward models, one seeing φ and one a rotation of φ (two 'backbones'), trained with
    the CRM loss (ε = 0.3, ramp 0.3, batches of 50, 4 epochs). At the end each model's peer-selected 70% of the
    data has a flip rate well below the base rate 0.3 (measured: < 0.1)."""
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 5
    theta = torch.tensor([2.0, -2.0, 1.5, 1.0, -3.0], dtype=torch.float64)
    a, b = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    a_wins = torch.rand(n, generator=g, dtype=torch.float64) < torch.sigmoid((a - b) @ theta)
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=g)[: int(0.3 * n)]] = True
    a_chosen = a_wins ^ flipped
    chosen, rejected = torch.where(a_chosen[:, None], a, b), torch.where(a_chosen[:, None], b, a)
    rotation = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64)).Q

    def views(x):
        return torch.stack([x, x @ rotation], dim=1)  # [N, 2, d]: what each model's backbone sees

    kind = get_kind("crm", noise_rate=0.3, ramp=0.3)
    torch.manual_seed(1)
    head = kind.make_head(d).double()
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    epochs, batch = 4, 50
    steps = epochs * n // batch
    for step in range(steps):
        idx = torch.randperm(n, generator=g)[:batch]
        opt.zero_grad()
        out = kind.loss(head(views(chosen[idx])), head(views(rejected[idx])), progress=step / steps)
        out.losses.mean().backward()
        opt.step()
    with torch.no_grad():
        margins = head(views(chosen))["rewards"] - head(views(rejected))["rewards"]
    assert flipped.double().mean().item() == pytest.approx(0.3)
    for m in range(2):
        kept = peer_select(margins[:, m], 0.3)
        assert kept.sum() == 1400
        assert flipped[kept].double().mean().item() < 0.1
