"""The egalitarian (MaxMin-RLHF) objective as a judge: the reward is the worst-off group's reward.

MaxMin-RLHF (Chakraborty et al., ICML 2024) optimises max_π min_g E_π[r_g] − β KL(π ‖ π_ref) by taking, at each
iteration, the group with the lowest expected reward under the current policy and updating on that group's reward
(derivation in ``duelist.rewards.maxmin``). ``EgalitarianJudge`` does exactly that for whatever trainer calls it:
on each call it estimates every group's expected reward by its mean over the responses being judged (the current
policy's samples), picks the lowest, g*, and scores every response by r_{g*}; ``prob`` picks g* over a and b
together, so both sides are scored by the same group. Group rewards must be in comparable units; the default,
the population judge's groups, are (criteria in units of their typical spread).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from duelist.judges.base import RewardJudge

GroupRewards = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (prompts, responses) → [G, n]


def worst_group(group_rewards: np.ndarray) -> int:
    """argmin_g of the mean reward over the responses, from [G, n]."""
    return int(np.asarray(group_rewards).mean(axis=1).argmin())


class EgalitarianJudge(RewardJudge):
    """Rewards with the worst-off group's reward; ``group_rewards`` default: the population judge's groups."""

    def __init__(self, group_rewards: GroupRewards | None = None, temperature: float = 1.0, name: str = "egalitarian"):
        if group_rewards is None:
            from duelist.judges.population import PopulationJudge

            group_rewards = PopulationJudge().group_rewards
        self.group_rewards = group_rewards
        super().__init__(self._worst, temperature, name)

    def _worst(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        g = np.asarray(self.group_rewards(prompts, responses), dtype=np.float64)
        return g[worst_group(g)]

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        n = len(a)
        r = self._worst([*prompts, *prompts], [*a, *b])
        return self.prob_from_rewards(r[:n], r[n:])
