"""Is a sample still doing the task? An on-task check that training never sees.

An oracle can be gamed: a policy trained against a sentiment lexicon may stop continuing the review and
talk like a cheerful assistant, which the lexicon rewards. This check is a second, independent opinion.
For positive-review it is a multinomial naive-Bayes classifier (McCallum & Nigam 1998) of "movie review"
against "other text" over bags of words. Its log-odds that text x is on task is

    s(x) = b + Σ_w n_w(x) · (log θ_{w|on} − log θ_{w|off}),   θ_{w|c} = (N_c(w) + α) / (N_c + α·|V|),

with N_c(w) the count of word w in class c's training text, N_c their sum, α the Laplace smoothing and
b = log P(on) − log P(off) (0: equal priors). A sample is on task when s(x) > 0; words outside the
vocabulary V are ignored, so a sample with none of its words in V (an empty one, say) is on task only if
b > 0. Words are runs of lowercase letters, with apostrophes inside ("don't").

The evaluation reports the share of samples on task, averaged within each prompt first, with a 95%
interval over prompts (``winrate_interval``: Wilson for one sample per prompt, t otherwise), for the
policy and for the reference. What it measures: whether a sample's vocabulary is closer to movie-review
snippets than to assistant dialogue and question answering. What it does not: fluency, coherence, or
whether the text is a good review; a sample that keeps a few film words while rambling still counts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from duelist.eval.stats import Estimate, winrate_interval

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class OnTaskClassifier:
    """Naive Bayes as per-word log-likelihood ratios ``weights`` (w ↦ log θ_{w|on} − log θ_{w|off}) and ``bias`` b."""

    weights: dict[str, float]
    bias: float = 0.0

    @classmethod
    def fit(
        cls, on: Iterable[str], off: Iterable[str], alpha: float = 1.0, min_count: int = 2, bias: float = 0.0
    ) -> OnTaskClassifier:
        """Counts of each class's words; the vocabulary is the words seen ``min_count`` times in all."""
        n_on, n_off = Counter(w for t in on for w in words(t)), Counter(w for t in off for w in words(t))
        vocab = sorted(w for w in n_on.keys() | n_off.keys() if n_on[w] + n_off[w] >= min_count)
        tot_on = sum(n_on[w] for w in vocab) + alpha * len(vocab)
        tot_off = sum(n_off[w] for w in vocab) + alpha * len(vocab)
        weights = {w: float(np.log((n_on[w] + alpha) / tot_on) - np.log((n_off[w] + alpha) / tot_off)) for w in vocab}
        return cls(weights, bias)

    def log_odds(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.bias + sum(self.weights.get(w, 0.0) for w in words(t)) for t in texts])

    def on_task(self, texts: Sequence[str]) -> np.ndarray:
        return self.log_odds(texts) > 0

    def save(self, path: str | Path, about: dict[str, Any]) -> None:
        """JSON: ``about`` (source, licences, held-out accuracy…), ``bias`` and ``weights`` (rounded to 1e-4)."""
        body = {"about": about, "bias": self.bias, "weights": {w: round(v, 4) for w, v in self.weights.items()}}
        Path(path).write_text(json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> OnTaskClassifier:
        body = json.loads(Path(path).read_text())
        return cls(body["weights"], body["bias"])


def on_task_share(flags: np.ndarray, samples_per_prompt: int) -> Estimate:
    """Share of samples on task (``flags`` in prompt order, ``samples_per_prompt`` each), 95% interval over prompts."""
    per_prompt = np.asarray(flags, dtype=np.float64).reshape(-1, samples_per_prompt).mean(1)
    return winrate_interval(per_prompt)
