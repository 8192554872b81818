"""Preference oracles. ``get_judge(name)`` builds one by name; ``judge_names()`` lists them.

Every judge answers P(a ≻ b | prompt) for batches of pairs (``Judge.prob``):

* ``lexicon``: VADER sentiment through Bradley–Terry (the positive-review oracle);
* ``intransitive``: a majority vote over ≥ 3 criteria (sentiment, brevity, lexical variety), which
  produces Condorcet cycles;
* ``population``: groups of raters with their own criteria weights; the aggregate, and per group;
* ``noisy``: any named judge with its labels flipped with probability ε
  (``get_judge("noisy", base="lexicon", epsilon=0.1)``);
* ``egalitarian``: the worst-off group's reward (MaxMin-RLHF's objective), over the population's groups;
* ``rm:<folder>``: a trained reward or preference model (``duelist.rewards.model``;
  ``get_judge("rm:runs/rm/final", user=3)`` for per-user kinds).

Not registered by name because they need a function: ``RewardJudge`` (any reward through
Bradley–Terry with a temperature) and ``LSCRewardJudge`` (log-sigmoid-centred, summed rewards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duelist.judges.base import (
    Judge,
    LSCRewardJudge,
    NoisyJudge,
    RewardJudge,
    lsc_combine,
    lsc_transform,
    reference_reward,
)
from duelist.judges.egalitarian import EgalitarianJudge
from duelist.judges.intransitive import MajorityJudge
from duelist.judges.lexicon import LexiconJudge
from duelist.judges.population import Group, PopulationJudge

JUDGES: dict[str, Callable[..., Judge]] = {
    "lexicon": LexiconJudge,
    "intransitive": MajorityJudge,
    "population": PopulationJudge,
    "noisy": NoisyJudge,
    "egalitarian": EgalitarianJudge,
}
MODEL_PREFIX = "rm:"


def judge_names() -> list[str]:
    return [*sorted(JUDGES), f"{MODEL_PREFIX}<folder>"]


def get_judge(name: str, **params: Any) -> Judge:
    if name.startswith(MODEL_PREFIX):
        from duelist.judges.model import model_judge

        return model_judge(name[len(MODEL_PREFIX) :], **params)
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; valid judges: {', '.join(judge_names())}")
    return JUDGES[name](**params)


__all__ = [
    "JUDGES",
    "MODEL_PREFIX",
    "EgalitarianJudge",
    "Group",
    "Judge",
    "LSCRewardJudge",
    "LexiconJudge",
    "MajorityJudge",
    "NoisyJudge",
    "PopulationJudge",
    "RewardJudge",
    "get_judge",
    "judge_names",
    "lsc_combine",
    "lsc_transform",
    "reference_reward",
]
