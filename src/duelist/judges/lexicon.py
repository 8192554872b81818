"""The sentiment oracle of the positive-review task: VADER's compound score of the response text.

VADER (Hutto & Gilbert 2014) is a rule-based lexicon that ships inside its PyPI package, so the oracle
is deterministic and offline. The compound score lies in [−1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from duelist.judges.base import RewardJudge


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(texts: Sequence[str]) -> np.ndarray:
    an = _analyzer()
    return np.array([an.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


class LexiconJudge(RewardJudge):
    """Prefers the more positive response (VADER compound); the prompt is ignored."""

    def __init__(self, temperature: float = 0.0):
        super().__init__(lambda prompts, responses: sentiment(responses), temperature, name="lexicon")
