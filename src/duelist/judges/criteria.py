"""Scalar criteria of a response text, the building blocks of the intransitive and population judges.

Each criterion maps texts to one number, larger = better under that criterion, and carries a
``scale`` (a typical spread between two model samples) so that weighted sums of criteria are in
comparable units. All are deterministic and offline.

* ``sentiment``: VADER compound score in [−1, 1] (the positive-review oracle); scale 0.5.
* ``brevity``: minus the number of characters of the stripped text; scale 25 characters.
* ``variety``: type-token ratio, distinct lower-cased words / words (0 for an empty text); scale 0.07.
* ``detail``: number of distinct lower-cased words; scale 4.
(Scales ≈ the standard deviation over default-model samples of positive-review prompts.)

Trade-off criteria, each a rater with a pet property and a pet peeve (``tradeoff``: the first property
in its units minus the second in its units):

* ``fan`` = sentiment − brevity: likes praise, dislikes terse replies (positive *and* elaborate);
* ``editor`` = brevity − variety: likes short replies, dislikes showy vocabulary;
* ``critic`` = variety − sentiment: likes rich vocabulary, distrusts praise.

Each property is liked by one rater and disliked by the next, so the three scores sum to zero for any
response and, for any pair, the three votes can never be unanimous: this rock–paper–scissors structure
is what makes their majority cycle often (see ``duelist.judges.intransitive``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from duelist.judges.lexicon import sentiment

_WORD = re.compile(r"[A-Za-z0-9']+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def brevity(texts: Sequence[str]) -> np.ndarray:
    return -np.array([len(t.strip()) for t in texts], dtype=np.float64)


def variety(texts: Sequence[str]) -> np.ndarray:
    out = []
    for t in texts:
        w = _words(t)
        out.append(len(set(w)) / len(w) if w else 0.0)
    return np.array(out, dtype=np.float64)


def detail(texts: Sequence[str]) -> np.ndarray:
    return np.array([len(set(_words(t))) for t in texts], dtype=np.float64)


@dataclass(frozen=True)
class Criterion:
    name: str
    fn: Callable[[Sequence[str]], np.ndarray]
    scale: float
    description: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.fn(list(texts)), dtype=np.float64)


CRITERIA: dict[str, Criterion] = {
    c.name: c
    for c in [
        Criterion("sentiment", sentiment, 0.5, "VADER compound score (more positive is better)"),
        Criterion("brevity", brevity, 25.0, "fewer characters is better"),
        Criterion("variety", variety, 0.07, "type-token ratio (less repetition is better)"),
        Criterion("detail", detail, 4.0, "more distinct words is better"),
    ]
}


def tradeoff(name: str, like: str, dislike: str, description: str = "") -> Criterion:
    """A criterion scoring c_like/scale_like − c_dislike/scale_dislike (unit scale)."""
    a, b = CRITERIA[like], CRITERIA[dislike]

    def fn(texts: Sequence[str]) -> np.ndarray:
        return a(texts) / a.scale - b(texts) / b.scale

    return Criterion(name, fn, 1.0, description or f"{like} over {dislike}")


for _c in (
    tradeoff("fan", "sentiment", "brevity", "likes praise, dislikes terse replies"),
    tradeoff("editor", "brevity", "variety", "likes short replies, dislikes showy vocabulary"),
    tradeoff("critic", "variety", "sentiment", "likes rich vocabulary, distrusts praise"),
):
    CRITERIA[_c.name] = _c


def get_criterion(c: str | Criterion) -> Criterion:
    if isinstance(c, Criterion):
        return c
    if c not in CRITERIA:
        raise ValueError(f"unknown criterion {c!r}; valid: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[c]
