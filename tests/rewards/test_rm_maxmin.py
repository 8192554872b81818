"""MaxMin-RLHF: the E-step by hand, EM recovering planted groups, the egalitarian policy on the two-opposed-groups
case against its closed form, and the kind's loss and worst-off reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from duelist.judges import EgalitarianJudge, get_judge
from duelist.judges.population import PopulationJudge
from duelist.rewards import get_kind
from duelist.rewards.maxmin import (
    e_step,
    egalitarian_policy,
    fit_linear_mixture,
    purity,
    utilitarian_policy,
)


def test_e_step_by_hand():
    """Users 0 (pairs 0, 1), 1 (pair 2), 2 (pair 3), 3 (no pairs). Per-user sums of log-likelihoods:
    u0 = (−0.1 − 2, −1 − 0.5) = (−2.1, −1.5) → group 1; u1 = (−0.3, −0.2) → 1; u2 = (−0.1, −3) → 0; u3 keeps its
    previous group 1."""
    ll = torch.tensor([[-0.1, -1.0], [-2.0, -0.5], [-0.3, -0.2], [-0.1, -3.0]])
    users = torch.tensor([0, 0, 1, 2])
    assert e_step(ll, users, 4, previous=torch.tensor([0, 0, 0, 1])).tolist() == [1, 1, 0, 1]
    assert e_step(ll, users, 4).tolist() == [1, 1, 0, 0]


def _planted_users(n_users: int = 30, pairs: int = 30, seed: int = 0):
    """Two groups with opposed tastes on the first two features, θ_1 = (2, −2, 1, 0) and θ_2 = (−2, 2, 0, 1);
    users alternate between them; each labels random feature pairs by sampling BT under their group's θ."""
    rng = np.random.default_rng(seed)
    thetas = np.array([[2.0, -2.0, 1.0, 0.0], [-2.0, 2.0, 0.0, 1.0]])
    truth = np.arange(n_users) % 2
    a, b = rng.normal(size=(n_users * pairs, 4)), rng.normal(size=(n_users * pairs, 4))
    users = np.repeat(np.arange(n_users), pairs)
    p = 1 / (1 + np.exp(-np.einsum("pd,pd->p", a - b, thetas[truth[users]])))
    a_wins = rng.random(len(p)) < p
    chosen, rejected = np.where(a_wins[:, None], a, b), np.where(a_wins[:, None], b, a)
    return torch.from_numpy(chosen), torch.from_numpy(rejected), torch.from_numpy(users), truth, thetas


def test_em_recovers_planted_groups():
    """Hard EM over a 2-mixture of linear BT rewards, from random assignments (5 restarts), on 30 users × 30
    noisy comparisons without group labels: purity ≥ 0.9 (it is 1.0), and each cluster's θ points the way of one
    planted θ (cosine > 0.9)."""
    chosen, rejected, users, truth, thetas = _planted_users()
    fit = fit_linear_mixture(chosen, rejected, users, groups=2, seed=0)
    assert purity(fit.assignment.numpy(), truth) >= 0.9
    assert purity(fit.assignment.numpy(), truth) == 1.0
    for g in range(2):
        t = fit.theta[g].numpy()
        cos = max(t @ th / np.linalg.norm(t) / np.linalg.norm(th) for th in thetas)
        assert cos > 0.9


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0, 10.0])
def test_egalitarian_solution_is_uniform_on_two_opposed_groups(beta):
    """2 actions, uniform reference, r_1 = (1, 0), r_2 = (0, 1): the max–min solution is (½, ½) for every β (its
    dual is symmetric about w = (½, ½)), while the utilitarian one with shares (0.7, 0.3) is
    π_1 = σ((0.7 − 0.3)/β) > ½: it follows the majority."""
    rewards, ref = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.5])
    pi, w = egalitarian_policy(rewards, ref, beta)
    np.testing.assert_allclose(pi, [0.5, 0.5], atol=1e-7)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-5)
    util = utilitarian_policy(rewards, np.array([0.7, 0.3]), ref, beta)
    assert util[0] == pytest.approx(1 / (1 + np.exp(-0.4 / beta)), abs=1e-12)
    assert util[0] > 0.5


def test_egalitarian_policy_beats_every_other_policy():
    """On random 3-group, 4-action rewards the dual's policy maximises min_g E_π r_g − β KL(π‖ref): no policy of a
    2,000-point random sample does better."""
    rng = np.random.default_rng(0)
    rewards, ref, beta = rng.normal(size=(3, 4)), np.array([0.1, 0.2, 0.3, 0.4]), 0.5

    def value(pi):
        return (rewards @ pi).min() - beta * np.sum(pi * np.log(pi / ref))

    pi, _ = egalitarian_policy(rewards, ref, beta)
    others = rng.dirichlet(np.ones(4), size=2000)
    assert value(pi) >= max(value(q) for q in others) - 1e-9


def test_maxmin_loss_reads_each_users_cluster_and_rewards_the_worst_group():
    """The M-step loss is BT on the column of each pair's user's cluster; the judge reward is the column whose
    standardised scores have the lowest batch mean, and the preference is that column's raw margin."""
    kind = get_kind("maxmin", groups=2)
    head = kind.make_head(3, num_users=2).double()
    with torch.no_grad():
        head.value[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
        head.assignment.copy_(torch.tensor([1, 0]))
    hw = torch.tensor([[3.0, 1.0, 0], [3.0, 1.0, 0]], dtype=torch.float64)
    hl = torch.tensor([[1.0, 2.0, 0], [1.0, 2.0, 0]], dtype=torch.float64)
    users = torch.tensor([0, 1])
    out = kind.loss(head(hw, user=users), head(hl, user=users))
    expected = torch.nn.functional.softplus(-torch.tensor([1.0 - 2.0, 3.0 - 1.0], dtype=torch.float64))
    torch.testing.assert_close(out.losses, expected)
    scores = {"scores": torch.tensor([[0.0, -1.0], [1.0, -2.0]]), "rewards": torch.tensor([[5.0, 1.0], [6.0, 3.0]])}
    assert kind.reward(scores).tolist() == [-1.0, -2.0]
    a, b = {k: v[:1] for k, v in scores.items()}, {k: v[1:] for k, v in scores.items()}
    assert kind.logit(a, b).tolist() == [1.0 - 3.0]


def test_egalitarian_judge_scores_with_the_worst_off_group():
    """Two opposed groups over responses x, y: r_1 = (1, 0), r_2 = (0, 1). On the batch [x, x, y] group 2 is worse off
    (mean ⅓ < ⅔), so the rewards are r_2 = (0, 0, 1). For P(x ≻ y) both sides form the batch, the groups tie and the
    first is taken: σ((1 − 0)/1). The default judge uses the population's groups."""
    table = {"x": (1.0, 0.0), "y": (0.0, 1.0)}

    def groups(prompts, responses):
        return np.array([table[r] for r in responses]).T

    judge = EgalitarianJudge(groups, temperature=1.0)
    assert judge.rewards([""] * 3, ["x", "x", "y"]).tolist() == [0.0, 0.0, 1.0]
    assert judge.prob([""], ["x"], ["y"])[0] == pytest.approx(1 / (1 + np.exp(-1.0)))
    pop = get_judge("egalitarian")
    texts = ["What a wonderful, moving film!", "Bad.", "It was fine, I suppose, with a few good scenes and actors."]
    g = PopulationJudge().group_rewards([""] * 3, texts)
    assert pop.rewards([""] * 3, texts).tolist() == g[g.mean(1).argmin()].tolist()
