"""MaxMin-RLHF (Chakraborty et al., ICML 2024, "MaxMin-RLHF: Alignment with Diverse Human Preferences"):
a mixture of Bradley–Terry reward models learned by EM from users' comparisons without group labels, and
the egalitarian (max–min) policy objective.

No official code exists; ALGORITHMS.md §6.5 tags the update rules UNCONFIRMED. They are derived here, and
docs/reward_models.md repeats the derivation.

**The mixture and its EM.** Users u = 1…U, each with comparisons D_u = {(x, y_w, y_l)}; G groups, each a BT
reward r_g; user u belongs to one unknown group h_u and all of u's comparisons follow it. The complete-data
log-likelihood is L(r, h) = Σ_u Σ_{D_u} log σ(r_{h_u}(x, y_w) − r_{h_u}(x, y_l)). Hard EM (classification EM)
ascends L coordinate-wise:

* E-step: for fixed r, L separates over users, so each user takes the group that maximises the likelihood of
  all their comparisons, h_u = argmax_g Σ_{D_u} log σ(r_g(y_w) − r_g(y_l)) (``e_step``; a product of σ's in
  the paper's notation, the same argmax);
* M-step: for fixed h, L separates over groups, so each r_g is the BT maximum-likelihood fit on the pooled
  comparisons of its users (``MaxMin.loss``: BT on the column of each pair's user's cluster).

Neither step decreases L, and L takes finitely many values in h, so the assignments stop changing after
finitely many rounds (the stopping rule). It reaches a local optimum: ``fit_linear_mixture`` restarts from
several random assignments and keeps the best L. A learner runs the same steps with the language model: score
every training pair with the head (``pair_log_likelihoods``), ``e_step``, write the assignment into the head
(``head.assignment``), train an epoch on ``MaxMin.loss``; repeat.

**The egalitarian objective.** max_π min_g E_{x, y∼π}[r_g(x, y)] − β KL(π ‖ π_ref). For fixed group weights
w ∈ Δ_G, max_π Σ_g w_g E_π r_g − β KL is attained by π_w ∝ π_ref · exp(Σ_g w_g r_g / β) with value
D(w) = β log E_{π_ref} exp(Σ_g w_g r_g / β) (the Gibbs variational principle). The objective is concave in π
and linear in w over the compact simplex, so (Sion) max_π min_w = min_w D(w): ``egalitarian_policy`` minimises
the convex D and returns π_{w*}. On two actions with r_1 = (1, 0), r_2 = (0, 1) and a uniform reference,
D is symmetric about w = (½, ½), hence minimised there, and π = uniform for every β, while the utilitarian
(one reward model, Σ_g share_g r_g) solution π_1 = σ((share_1 − share_2)/β) follows the majority.
The paper's policy step optimises this with PPO by taking, at each iteration, the group with the lowest
expected reward under the current policy and updating on its reward: the judge's reward (``MaxMin.reward``,
and ``duelist.judges.egalitarian.EgalitarianJudge``) is that group's reward, the group chosen as the one with
the lowest mean over the batch being judged (the current policy's samples). Group rewards are compared in
standard units (each group's scores, standardised over the training responses), since a BT reward is only
defined up to an additive constant; the raw rewards give the preference itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax
from torch import Tensor, nn

from duelist.losses.stats import LossOutput
from duelist.models.heads import HeadOutput, MixtureHeads
from duelist.rewards.bt import bt_losses, pair_metrics
from duelist.rewards.registry import Kind, register_kind


def worst_group(scores: Tensor) -> int:
    """The group whose standardised reward is lowest on average over the rows, from [N, G] scores."""
    return int(scores.mean(0).argmin())


def pair_log_likelihoods(w: HeadOutput, l: HeadOutput) -> Tensor:
    """log σ(r_g(y_w) − r_g(y_l)) for every pair and group, [P, G]: the E-step's input."""
    return F.logsigmoid(w["rewards"] - l["rewards"])


def e_step(loglik: Tensor, users: Tensor, num_users: int, previous: Tensor | None = None) -> Tensor:
    """h_u = argmax_g Σ_{pairs of u} loglik[p, g], [U] (ties: the lower group). Users without pairs keep
    ``previous`` (or group 0)."""
    totals = torch.zeros(num_users, loglik.shape[1], dtype=loglik.dtype).index_add_(0, users, loglik.detach())
    best = totals.argmax(dim=1)
    keep = torch.zeros(num_users, dtype=torch.long) if previous is None else previous
    return torch.where(torch.bincount(users, minlength=num_users) > 0, best, keep)


def purity(assignment: np.ndarray | Tensor, truth: np.ndarray | Tensor) -> float:
    """Share of users in their cluster's majority true group: (1/U) Σ_clusters max_g |cluster ∩ group g|."""
    a, t = np.asarray(assignment), np.asarray(truth)
    return sum(int(np.bincount(t[a == c]).max()) for c in np.unique(a)) / len(a)


@dataclass
class MixtureFit:
    theta: Tensor  # [G, D] the groups' linear reward weights
    assignment: Tensor  # [U]
    loglik: float  # complete-data log-likelihood at the end
    rounds: int


def _m_step(x: Tensor, cluster: Tensor, theta: Tensor, l2: float) -> Tensor:
    """BT maximum likelihood per group on x = φ_w − φ_l (all groups at once: the problem separates)."""
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        margins = (x * theta[cluster]).sum(-1)
        loss = bt_losses(margins, torch.zeros_like(margins)).sum() + l2 * (theta**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach()


def fit_linear_mixture(
    chosen: Tensor,
    rejected: Tensor,
    users: Tensor,
    groups: int,
    *,
    rounds: int = 50,
    restarts: int = 5,
    l2: float = 1e-3,
    seed: int = 0,
) -> MixtureFit:
    """Hard EM for a mixture of linear BT rewards r_g(y) = θ_g · φ(y) on fixed features (``chosen``/``rejected``
    φ [P, D], ``users`` [P] in 0…U−1): random initial assignments, M-step and E-step until the assignment stops
    changing; the restart with the highest log-likelihood wins. ``l2`` keeps each group's fit finite when its
    comparisons are separable."""
    x = (chosen - rejected).to(torch.float64)
    num_users = int(users.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    best: MixtureFit | None = None
    for _ in range(restarts):
        assign = torch.randint(groups, (num_users,), generator=gen)
        theta = torch.zeros(groups, x.shape[1], dtype=torch.float64)
        done = 0
        while done < rounds:
            done += 1
            theta = _m_step(x, assign[users], theta, l2)
            new = e_step(F.logsigmoid(x @ theta.T), users, num_users, assign)
            if torch.equal(new, assign):
                break
            assign = new
        total = float(F.logsigmoid((x * theta[assign[users]]).sum(-1)).sum())
        if best is None or total > best.loglik:
            best = MixtureFit(theta, assign, total, done)
    assert best is not None
    return best


def egalitarian_policy(rewards: np.ndarray, reference: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """argmax_π min_g E_π r_g − β KL(π ‖ ref) on a finite action set, through the dual min_{w ∈ Δ} D(w) (module
    docstring). ``rewards`` [G, A], ``reference`` [A]. Returns (π [A], the worst-case group weights w* [G])."""
    r = np.asarray(rewards, dtype=np.float64)
    log_ref = np.log(np.asarray(reference, dtype=np.float64))
    g = r.shape[0]

    def dual(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = log_ref + w @ r / beta
        return beta * float(logsumexp(z)), r @ softmax(z)  # D(w) and its gradient E_{π_w}[r_g]

    res = minimize(
        dual,
        np.full(g, 1 / g),
        jac=True,
        method="SLSQP",
        bounds=[(0, 1)] * g,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    w = np.clip(res.x, 0, None)
    w /= w.sum()
    return softmax(log_ref + w @ r / beta), w


def utilitarian_policy(rewards: np.ndarray, shares: np.ndarray, reference: np.ndarray, beta: float) -> np.ndarray:
    """argmax_π Σ_g share_g E_π r_g − β KL(π ‖ ref) = ref · exp(Σ_g share_g r_g / β) / Z (one pooled reward model)."""
    mean_reward = np.asarray(shares, dtype=np.float64) @ np.asarray(rewards, dtype=np.float64)
    return softmax(np.log(np.asarray(reference, dtype=np.float64)) + mean_reward / beta)


@register_kind(
    "maxmin",
    paper="Chakraborty et al., ICML 2024, MaxMin-RLHF: Alignment with Diverse Human Preferences",
    formula="E: h_u = argmax_g Σ_{D_u} log σ(r_g(y_w) − r_g(y_l)); M: −log σ(r_{h_u}(y_w) − r_{h_u}(y_l)); "
    "judge: r_{g*}, g* = argmin_g mean r̃_g",
)
class MaxMin(Kind):
    """MaxMin-RLHF: G Bradley–Terry reward columns and each training user's group, fitted by hard EM; as a
    judge it rewards with the worst-off group's reward (the egalitarian objective).

    ``groups`` G (2 in the paper's experiments); ``center_rewards_coefficient`` as for ``bt``.
    """

    reads_user = True
    refits = True

    def __init__(
        self,
        *,
        groups: Annotated[int, Field(ge=2)] = 2,
        center_rewards_coefficient: Annotated[float, Field(ge=0)] = 0.0,
    ):
        self.groups, self.center = groups, center_rewards_coefficient

    def make_head(self, hidden_size: int, num_users: int = 0) -> nn.Module:
        return MixtureHeads(hidden_size, self.groups, num_users)

    def loss(
        self, w: HeadOutput, l: HeadOutput, fields: Mapping[str, Tensor] | None = None, progress: float = 0.0
    ) -> LossOutput:
        col = w["cluster"].unsqueeze(1)
        rw, rl = w["rewards"].gather(1, col)[:, 0], l["rewards"].gather(1, col)[:, 0]
        return LossOutput(bt_losses(rw, rl, center=self.center), pair_metrics(rw, rl))

    def refit(self, head: nn.Module, w: HeadOutput, l: HeadOutput, users: Tensor | None) -> dict[str, float]:
        """The E-step: each training user joins the group that best explains all their comparisons."""
        if users is None:
            raise ValueError("MaxMin's E-step needs each pair's user")
        old = head.assignment.clone()
        new = e_step(pair_log_likelihoods(w, l).cpu(), users.cpu(), old.shape[0], old.cpu())
        head.assignment.copy_(new)
        return {"maxmin/reassigned": float((new != old.cpu()).sum())}

    def fit_new_users(
        self, head: nn.Module, chosen: Tensor, rejected: Tensor, prompt: Tensor | None, users: Tensor, count: int
    ) -> None:
        """New users join the group that best explains their pairs (the E-step with the groups' rewards fixed)."""
        old = head.assignment
        head.assignment = torch.cat([old, torch.zeros(count, dtype=old.dtype, device=old.device)])
        with torch.no_grad():
            loglik = pair_log_likelihoods(head(chosen), head(rejected))
        head.assignment.copy_(e_step(loglik.cpu(), users.cpu(), head.assignment.shape[0], head.assignment.cpu()))

    def logit(self, a: HeadOutput, b: HeadOutput) -> Tensor:
        g = worst_group(torch.cat([a["scores"], b["scores"]]))
        return a["rewards"][:, g] - b["rewards"][:, g]

    def reward(self, out: HeadOutput) -> Tensor:
        return out["scores"][:, worst_group(out["scores"])]
