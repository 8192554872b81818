"""A trained reward or preference model as a judge: ``get_judge("rm:<folder>")``.

Kinds with a scalar reward give a ``RewardJudge`` (best-of-N ranks candidates by their rewards; ``rewards`` are
standardised with the training statistics); pairwise kinds (GPM) give a judge whose ``matrix`` embeds each of
the K responses once. Either way P(a ≻ b) is the model's own preference (``Kind.prob``). The model re-tokenizes
the texts with its own tokenizer, so it may differ from the policy's. Kinds whose preference is a user's (PAL)
need ``user=<id>``; MaxMin judges for the worst-off group and needs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from duelist.judges.base import Judge, RewardJudge
from duelist.rewards.model import RewardModel, load_reward_model


class _Scored:
    model: RewardModel
    user: int | str | None

    def _users(self, n: int) -> list[int | str] | None:
        return None if self.user is None else [self.user] * n

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return self.model.prob(prompts, a, b, self._users(len(a)))

    def matrix(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        return self.model.matrix(prompt, responses, self.user)


class ModelRewardJudge(_Scored, RewardJudge):
    """Judge backed by a saved model whose kind has a scalar reward."""

    def __init__(self, model: RewardModel, user: int | str | None = None):
        self.model, self.user = model, user
        super().__init__(self._rewards, name=model.name)

    def _rewards(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self.model.rewards(prompts, responses, self._users(len(responses)))


class ModelPreferenceJudge(_Scored, Judge):
    """Judge backed by a saved pairwise model (no scalar reward)."""

    def __init__(self, model: RewardModel, user: int | str | None = None):
        self.model, self.user = model, user
        self.name = model.name


def model_judge(
    path: str | Path, user: int | str | None = None, device: str | None = None, batch_size: int = 16
) -> Judge:
    """Load the reward-model folder at ``path`` as a judge."""
    model = load_reward_model(path, device=device, batch_size=batch_size)
    cls = ModelRewardJudge if model.kind.has_reward else ModelPreferenceJudge
    return cls(model, user)
