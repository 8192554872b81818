"""Judges: preference oracles that return P(a ≻ b | prompt) for batches of pairs.

A ``RewardJudge`` turns a scalar reward into preferences through Bradley–Terry,
P(a ≻ b) = σ((r(a) − r(b)) / temperature); temperature 0 gives the hard comparison
(1 if r(a) > r(b), ½ on ties, 0 otherwise).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import expit


class Judge(ABC):
    name: str = "judge"

    @abstractmethod
    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """P(a_i ≻ b_i | prompt_i) for each i, shape [n]; P(a ≻ b) + P(b ≻ a) = 1."""


class RewardJudge(Judge):
    def __init__(
        self,
        reward: Callable[[Sequence[str], Sequence[str]], np.ndarray],
        temperature: float = 0.0,
        name: str = "reward",
    ):
        if temperature < 0:
            raise ValueError("temperature must be ≥ 0")
        self._reward = reward
        self.temperature = temperature
        self.name = name

    def rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return np.asarray(self._reward(prompts, responses), dtype=np.float64)

    def prob_from_rewards(self, ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
        d = np.asarray(ra, dtype=np.float64) - np.asarray(rb, dtype=np.float64)
        if self.temperature == 0:
            return 0.5 * (1 + np.sign(d))
        return expit(d / self.temperature)

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.prob_from_rewards(self.rewards(prompts, a), self.rewards(prompts, b))
