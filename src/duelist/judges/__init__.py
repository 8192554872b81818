"""Preference oracles. ``get_judge(name)`` builds one by name; ``judge_names()`` lists them.

Every judge answers P(a ≻ b | prompt) for batches of pairs (``Judge.prob``):

* ``lexicon``: VADER sentiment through Bradley–Terry (the positive-review oracle);
* ``intransitive``: a majority vote over ≥ 3 criteria (sentiment, brevity, lexical variety), which
  produces Condorcet cycles;
* ``population``: groups of raters with their own criteria weights; the aggregate, and per group;
* ``noisy``: any named judge with its labels flipped with probability ε
  (``get_judge("noisy", base="lexicon", epsilon=0.1)``).

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
from duelist.judges.intransitive import MajorityJudge
from duelist.judges.lexicon import LexiconJudge
from duelist.judges.population import Group, PopulationJudge

JUDGES: dict[str, Callable[..., Judge]] = {
    "lexicon": LexiconJudge,
    "intransitive": MajorityJudge,
    "population": PopulationJudge,
    "noisy": NoisyJudge,
}


def judge_names() -> list[str]:
    return sorted(JUDGES)


def get_judge(name: str, **params: Any) -> Judge:
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; valid judges: {', '.join(judge_names())}")
    return JUDGES[name](**params)


__all__ = [
    "JUDGES",
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
