"""PAL: one prototype is Bradley–Terry on its features; PAL-A's distances and hinges by hand; learned user
weights separate two planted ideal points; a new user fitted few-shot by its weights alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duelist.models.heads import AngleHead, IdealPointHead
from duelist.rewards import get_kind
from duelist.rewards.maxmin import purity
from duelist.rewards.pal import fit_user_weights, smooth_hinge

D = 4


def _identity_(linear: torch.nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.weight.shape[0], dtype=linear.weight.dtype))
        linear.bias.zero_()


def test_pal_b_with_one_prototype_is_bt_on_its_features():
    """K = 1: softmax over one logit is 1 for every user, so r_u(x, y) = s · cos(f(x, y), g(x)) for all u. With f
    the identity on unit features φ and g(x) = u constant, r = θ · φ with θ = s·u/‖u‖: the PAL-B loss equals
    the BT loss of that linear reward (logistic regression on φ_w − φ_l), and the user logits get no gradient."""
    torch.manual_seed(0)
    kind = get_kind("pal-b", prototypes=1, layers=0, residual=False, bound_weight=0.0)
    head: AngleHead = kind.make_head(D, num_users=5).double()
    _identity_(head.f.net[0])
    u = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    with torch.no_grad():
        head.g[0].net[0].weight.zero_()
        head.g[0].net[0].bias.copy_(u)
        head.log_scale.fill_(math.log(7.0))
    phi_w = torch.nn.functional.normalize(torch.randn(64, D, dtype=torch.float64), dim=-1)
    phi_l = torch.nn.functional.normalize(torch.randn(64, D, dtype=torch.float64), dim=-1)
    prompt = torch.randn(64, D, dtype=torch.float64)
    users = torch.randint(5, (64,))
    loss = kind.loss(head(phi_w, prompt, users), head(phi_l, prompt, users), {"user": users}).losses
    theta = 7.0 * u / u.norm()
    bt = get_kind("bt").loss({"rewards": (phi_w @ theta)[:, None]}, {"rewards": (phi_l @ theta)[:, None]}).losses
    torch.testing.assert_close(loss, bt, atol=1e-13, rtol=0)
    loss.mean().backward()
    assert torch.equal(head.users.logits.grad, torch.zeros(5, 1, dtype=torch.float64))


def test_pal_a_distances_and_hinges_by_hand():
    """f = identity, prototypes p_1 = (2, 0, 0, 0), p_2 = (0, 2, 0, 0), user logits (log 3, 0) → w = (¾, ¼),
    a = f(Pw) = (1.5, 0.5, 0, 0). y_w at a (distance 0), y_l at the origin (distance √2.5): z = √2.5 = 1.5811,
    hinge 0; swapped, z = −1.5811 and hinge 2.5811. Norm bound with B = 1: ‖a‖ − 1 = √2.5 − 1."""
    kind = get_kind("pal-a", layers=0, residual=False, bound=1.0, bound_weight=1.0)
    head: IdealPointHead = kind.make_head(D, num_users=1).double()
    _identity_(head.f.net[0])
    with torch.no_grad():
        head.prototypes.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0]], dtype=torch.float64))
        head.users.logits.copy_(torch.tensor([[math.log(3), 0.0]], dtype=torch.float64))
    user = torch.zeros(1, dtype=torch.long)
    near, far = torch.tensor([[1.5, 0.5, 0, 0]], dtype=torch.float64), torch.zeros(1, D, dtype=torch.float64)
    with torch.no_grad():
        w, l = head(near, user=user), head(far, user=user)
    torch.testing.assert_close(w["ideal"], near)
    assert float(kind.logit(w, l)[0]) == pytest.approx(math.sqrt(2.5), abs=1e-15)
    bound = math.sqrt(2.5) - 1
    assert float(kind.loss(w, l).losses[0]) == pytest.approx(bound, abs=1e-15)
    assert float(kind.loss(l, w).losses[0]) == pytest.approx(1 + math.sqrt(2.5) + bound, abs=1e-15)


def test_smooth_hinge_by_hand():
    """γ = 5: z = −10 → 1 − 2.5 + 10 = 8.5 (linear part); z = 0 → 1/10; z ≥ 1 → 0; both pieces are γ/2 = 2.5 at
    z = 1 − γ = −4."""
    z = torch.tensor([-10.0, 0.0, 2.0, -4.0], dtype=torch.float64)
    assert smooth_hinge(z, 5.0).tolist() == pytest.approx([8.5, 0.1, 0.0, 2.5], abs=1e-15)


def _ideal_point_data(ideals: torch.Tensor, users_group: list[int], pairs: int, seed: int):
    """Each user labels ``pairs`` random item pairs by nearness to their group's ideal point."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for u, grp in enumerate(users_group):
        a, b = (
            torch.randn(pairs, D, generator=g, dtype=torch.float64),
            torch.randn(pairs, D, generator=g, dtype=torch.float64),
        )
        a_wins = (a - ideals[grp]).norm(dim=-1) < (b - ideals[grp]).norm(dim=-1)
        rows.append((torch.where(a_wins[:, None], a, b), torch.where(a_wins[:, None], b, a), torch.full((pairs,), u)))
    return (torch.cat(x) for x in zip(*rows, strict=True))


def test_pal_a_user_weights_separate_two_planted_ideal_points():
    """12 users, 6 near each of two ideal points (±2 on the first axis), 40 pairs each; PAL-A (K = 2, linear f)
    trained on their pairs puts every user's larger weight on the prototype of their own group (purity 1)."""
    torch.manual_seed(0)
    ideals = torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]], dtype=torch.float64)
    groups = [0, 1] * 6
    chosen, rejected, users = _ideal_point_data(ideals, groups, 40, seed=1)
    kind = get_kind("pal-a", layers=0, residual=False)
    head = kind.make_head(D, num_users=12).double()
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        kind.loss(head(chosen, user=users), head(rejected, user=users)).losses.mean().backward()
        opt.step()
    weights = torch.softmax(head.users.logits.detach(), dim=-1)
    assert purity(weights.argmax(-1).numpy(), np.array(groups)) == 1.0
    with torch.no_grad():
        acc = (kind.logit(head(chosen, user=users), head(rejected, user=users)) > 0).double().mean()
    assert acc > 0.9


def test_new_user_is_fitted_by_their_weights_alone():
    """A PAL-A head with prototypes at the two ideal points and three known users; a new user of group 1 is added
    and fitted on 20 pairs, touching nothing but their logits: their weight on prototype 1 exceeds ½ and they
    are ranked right on 200 held-out pairs ≥ 90% of the time."""
    torch.manual_seed(0)
    ideals = torch.tensor([[2.0, 0, 0, 0], [-2.0, 0, 0, 0]], dtype=torch.float64)
    kind = get_kind("pal-a", layers=0, residual=False, bound_weight=0.0)
    head: IdealPointHead = kind.make_head(D, num_users=3).double()
    _identity_(head.f.net[0])
    with torch.no_grad():
        head.prototypes.copy_(ideals)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    (new,) = head.users.add_users(1, generator=torch.Generator().manual_seed(3))
    head.double()
    chosen, rejected, _ = _ideal_point_data(ideals, [1], 220, seed=5)
    users = torch.full((20,), new)
    fit_user_weights(kind, head, chosen[:20], rejected[:20], users, steps=300, lr=0.1)
    after = head.state_dict()
    for k, v in before.items():
        torch.testing.assert_close(after[k][: v.shape[0]], v, atol=0, rtol=0)  # old users and all else unchanged
    assert torch.softmax(head.users.logits[new].detach(), -1)[1] > 0.5
    test_users = torch.full((200,), new)
    with torch.no_grad():
        acc = (kind.logit(head(chosen[20:], user=test_users), head(rejected[20:], user=test_users)) > 0).double().mean()
    assert acc >= 0.9
    assert all(p.requires_grad for p in head.parameters())  # restored
