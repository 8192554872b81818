"""Preference oracles. ``get_judge(name)`` builds one by name; ``judge_names()`` lists them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from duelist.judges.base import Judge, RewardJudge
from duelist.judges.lexicon import LexiconJudge

JUDGES: dict[str, Callable[..., Judge]] = {"lexicon": LexiconJudge}


def judge_names() -> list[str]:
    return sorted(JUDGES)


def get_judge(name: str, **params: Any) -> Judge:
    if name not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; valid judges: {', '.join(judge_names())}")
    return JUDGES[name](**params)


__all__ = ["JUDGES", "Judge", "LexiconJudge", "RewardJudge", "get_judge", "judge_names"]
