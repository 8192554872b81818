"""The Bradley–Terry kind against closed forms: logistic regression on fixed features, shift invariance,
hand-computed margin and centring terms, and its log 2 floor on a preference cycle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from duelist.models.heads import ScalarHeads
from duelist.rewards import get_kind
from duelist.rewards.bt import pair_metrics


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _newton_logistic(x: np.ndarray, iters: int = 100) -> np.ndarray:
    """Logistic regression without intercept, every label 1 (the chosen side is the positive class):
    L(θ) = mean log(1 + exp(−x·θ)), ∇L = Xᵀ(σ(Xθ) − 1)/n, ∇²L = Xᵀ diag(σ(1 − σ)) X / n; Newton's method."""
    theta = np.zeros(x.shape[1])
    for _ in range(iters):
        p = _sigmoid(x @ theta)
        grad = x.T @ (p - 1) / len(x)
        hess = (x * (p * (1 - p))[:, None]).T @ x / len(x)
        theta -= np.linalg.solve(hess, grad)
    return theta


@pytest.fixture
def bt_data():
    """400 pairs of 3-d features labelled by sampling BT with θ* = (1.5, −1, 0.5): noisy, so not separable."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 3)), rng.normal(size=(400, 3))
    a_wins = rng.random(400) < _sigmoid((a - b) @ np.array([1.5, -1.0, 0.5]))
    chosen = np.where(a_wins[:, None], a, b)
    rejected = np.where(a_wins[:, None], b, a)
    return torch.from_numpy(chosen), torch.from_numpy(rejected)


def _head(theta) -> ScalarHeads:
    head = ScalarHeads(3).double()
    with torch.no_grad():
        head.value[0].weight.copy_(torch.as_tensor(theta, dtype=torch.float64).reshape(1, 3))
    return head


def test_bt_loss_and_gradient_are_logistic_regression(bt_data):
    """At θ = (0.3, −0.2, 0.7) the kind's mean loss and its gradient equal the closed forms above, with
    x = φ(y_w) − φ(y_l)."""
    chosen, rejected = bt_data
    kind = get_kind("bt")
    theta = np.array([0.3, -0.2, 0.7])
    head = _head(theta)
    loss = kind.loss(head(chosen), head(rejected)).losses.mean()
    loss.backward()
    x = (chosen - rejected).numpy()
    expected = np.mean(np.log1p(np.exp(-x @ theta)))
    expected_grad = x.T @ (_sigmoid(x @ theta) - 1) / len(x)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-13)
    np.testing.assert_allclose(head.value[0].weight.grad.numpy()[0], expected_grad, atol=1e-13)


def test_bt_optimum_is_the_logistic_regression_optimum(bt_data):
    """Training the head (L-BFGS on the kind's loss) lands on Newton's logistic-regression solution."""
    chosen, rejected = bt_data
    kind = get_kind("bt")
    head = _head(np.zeros(3))
    opt = torch.optim.LBFGS(
        head.parameters(), max_iter=500, tolerance_grad=1e-12, tolerance_change=0, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = kind.loss(head(chosen), head(rejected)).losses.mean()
        loss.backward()
        return loss

    opt.step(closure)
    newton = _newton_logistic((chosen - rejected).numpy())
    np.testing.assert_allclose(head.value[0].weight.detach().numpy()[0], newton, atol=1e-7)
    assert np.abs(newton - np.array([1.5, -1.0, 0.5])).max() < 0.35  # and near θ* (400 noisy pairs)


def test_bt_is_invariant_to_a_per_prompt_shift():
    """−log σ((r_w + c) − (r_l + c)) = −log σ(r_w − r_l) for any c(x); the centring term is what breaks it."""
    g = torch.Generator().manual_seed(1)
    rw, rl, c = (torch.randn(64, generator=g, dtype=torch.float64) for _ in range(3))
    kind = get_kind("bt")
    base = kind.loss({"rewards": rw[:, None]}, {"rewards": rl[:, None]}).losses
    shifted = kind.loss({"rewards": (rw + c)[:, None]}, {"rewards": (rl + c)[:, None]}).losses
    torch.testing.assert_close(shifted, base, atol=1e-14, rtol=0)
    centred = get_kind("bt", center_rewards_coefficient=0.01)
    assert not torch.allclose(
        centred.loss({"rewards": (rw + c)[:, None]}, {"rewards": (rl + c)[:, None]}).losses,
        centred.loss({"rewards": rw[:, None]}, {"rewards": rl[:, None]}).losses,
    )


def test_bt_margin_and_centring_by_hand():
    """r_w = 2, r_l = 0.5, m = 1, c = 0.01: log(1 + e^{−0.5}) + 0.01 · 2.5² = 0.474077 + 0.0625."""
    kind = get_kind("bt", margin=True, center_rewards_coefficient=0.01)
    assert kind.data_fields() == {"margin": (None, None)}
    w, l = (
        {"rewards": torch.tensor([[2.0]], dtype=torch.float64)},
        {"rewards": torch.tensor([[0.5]], dtype=torch.float64)},
    )
    out = kind.loss(w, l, {"margin": torch.tensor([1.0], dtype=torch.float64)})
    assert float(out.losses[0]) == pytest.approx(math.log1p(math.exp(-0.5)) + 0.0625, abs=1e-15)
    with pytest.raises(KeyError, match="margin"):
        kind.loss(w, l, {})
    assert float(kind.logit(w, l)[0]) == 1.5


def test_bt_metrics():
    """accuracy counts r_w > r_l; std is over the batch's 2B rewards (here 1, 2, 3, 0: std √1.25)."""
    m = pair_metrics(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]))
    assert m["rewards/accuracy"].tolist() == [0.0, 1.0]
    assert m["rewards/margin"].tolist() == [-2.0, 2.0]
    assert m["rewards/mean"].tolist() == [2.0, 1.0]
    assert m["rewards/std"].tolist() == pytest.approx([math.sqrt(1.25)] * 2)


@pytest.mark.parametrize("seed", range(5))
def test_bt_cannot_fit_a_cycle(seed):
    """On a balanced 3-cycle (a ≻ b, b ≻ c, c ≻ a) the margins sum to 0, so by convexity of ℓ(z) = log(1 + e^{−z})
    the mean loss is ≥ ℓ(mean margin) = ℓ(0) = log 2, with equality at equal rewards: BT's best is log 2."""
    r = torch.randn(3, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()
    kind = get_kind("bt")
    opt = torch.optim.LBFGS([r], max_iter=200, tolerance_grad=1e-12, tolerance_change=0, line_search_fn="strong_wolfe")
    win, lose = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])

    def closure():
        opt.zero_grad()
        loss = kind.loss({"rewards": r[win, None]}, {"rewards": r[lose, None]}).losses.mean()
        loss.backward()
        return loss

    opt.step(closure)
    assert float(closure().detach()) == pytest.approx(math.log(2), abs=1e-10)
