"""Best-of-N: draw N samples from π_ref, keep the one the judge likes best.

Exact law on a discrete distribution (``bon_distribution``). Sort outcomes by reward and group equal
rewards into classes c_1 < … < c_m with masses q_1 … q_m and CDF F_k = q_1 + … + q_k. The maximum
reward of N i.i.d. draws lies in class k with probability F_k^N − F_{k−1}^N; given that, the kept
sample is uniform among the draws in class k, each of which is distributed within the class in
proportion to π_ref. So π_BoN(y) = (F_k^N − F_{k−1}^N) · π_ref(y) / q_k for y in class k, and with
distinct rewards π_BoN(y_(k)) = F_k^N − F_{k−1}^N.

KL (``bon_kl``): Σ_y π_BoN(y) log(π_BoN(y)/π_ref(y)) = Σ_k w_k log(w_k / q_k), w_k = F_k^N − F_{k−1}^N
(the within-class ratio is constant, so only classes matter).

The folklore value log N − (N−1)/N (``bon_kl_bound``) is the KL of the continuous case: there
π_BoN/π_ref = N F^{N−1} and, with U = F(r(Y)) ~ Beta(N, 1), KL = log N + (N−1)E[log U] =
log N − (N−1)/N. For discrete π_ref it is an upper bound (Beirami et al. 2024): by the log-sum
inequality, merging the continuum inside an atom into one atom can only lower the KL, i.e. the KL of
the discrete law is the KL of the continuous law after a coarse-graining (data processing), hence
≤ the bound, with equality in the limit where every atom's probability → 0.

Sampling (``best_of_n``): for each prompt sample N completions; with a ``RewardJudge`` keep the
highest reward (the first on ties), with any other judge keep the candidate with the highest mean
P(y ≻ y') against the other candidates (Copeland/Borda score from the judge's N×N matrix; for a
judge that is a reward through a monotone link this is the same argmax). Reported next to the bound is
``kl_plugin``: the exact BoN KL on the empirical reference distribution of each prompt's N
candidates (ties in reward grouped), averaged over prompts. It is ≤ the bound by construction and
underestimates the KL of a continuous reference for small N, since N atoms of mass 1/N are far from
the continuum; it is a diagnostic of reward ties (many equal rewards → much less KL than the bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from duelist.judges.base import Judge, RewardJudge


def bon_kl_bound(n: int) -> float:
    """log N − (N−1)/N."""
    return float(np.log(n) - (n - 1) / n)


def _classes(p: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reward classes in increasing order: (class index of each outcome, class masses q_k, class order)."""
    uniq, inv = np.unique(np.asarray(rewards, dtype=np.float64), return_inverse=True)
    q = np.bincount(inv, weights=p, minlength=len(uniq))
    return inv, q, uniq


def bon_distribution(p: np.ndarray, rewards: np.ndarray, n: int) -> np.ndarray:
    """π_BoN over the outcomes of a discrete π_ref = ``p`` with the given rewards (ties grouped)."""
    p = np.asarray(p, dtype=np.float64)
    if n < 1:
        raise ValueError("N must be ≥ 1")
    if np.any(p < 0) or not np.isclose(p.sum(), 1):
        raise ValueError("p must be a probability vector")
    inv, q, _ = _classes(p, rewards)
    big_f = np.cumsum(q)
    big_f[-1] = 1.0
    w = big_f**n - np.concatenate([[0.0], big_f[:-1]]) ** n
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(q[inv] > 0, w[inv] * p / q[inv], 0.0)
    return out


def bon_kl(p: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """Exact KL(π_BoN ‖ π_ref) on a discrete distribution (ties in reward grouped)."""
    p = np.asarray(p, dtype=np.float64)
    _, q, _ = _classes(p, rewards)
    big_f = np.cumsum(q)
    big_f[-1] = 1.0
    w = big_f**n - np.concatenate([[0.0], big_f[:-1]]) ** n
    m = (w > 0) & (q > 0)
    return float(np.sum(w[m] * np.log(w[m] / q[m])))


def bon_winrate(p: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """P(r(Y_BoN) > r(Y_ref)) + ½P(=), exactly; N/(N+1) in the continuous limit."""
    p = np.asarray(p, dtype=np.float64)
    _, q, _ = _classes(p, rewards)
    big_f = np.cumsum(q)
    big_f[-1] = 1.0
    prev = np.concatenate([[0.0], big_f[:-1]])
    w = big_f**n - prev**n
    return float(np.sum(w * (prev + 0.5 * q)))


@dataclass
class BoNResult:
    n: int
    chosen: list[Any]  # the kept Completion of each prompt
    candidates: list[list[Any]]  # each prompt's N Completions
    scores: list[np.ndarray]  # each prompt's candidate scores (rewards, or mean pairwise preference)
    kl_bound: float
    kl_plugin: float
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        return {"n": self.n, "kl_bound": self.kl_bound, "kl_plugin": self.kl_plugin, **self.extra}


def select_best(judge: Judge, prompt: str, texts: Sequence[str]) -> tuple[int, np.ndarray]:
    """(index of the judge's best candidate, the candidate scores)."""
    if isinstance(judge, RewardJudge):
        s = judge.rewards([prompt] * len(texts), list(texts))
    else:
        s = judge.matrix(prompt, list(texts)).mean(axis=1)
    return int(np.argmax(s)), s


def best_of_n(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    judge: Judge,
    n: int,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    prompt_texts: Sequence[str] | None = None,
) -> BoNResult:
    """Sample ``n`` completions per prompt (text or chat messages) and keep the judge's best."""
    from duelist.data.tokenize import PairTokenizer
    from duelist.sample.generate import sample

    enc = PairTokenizer(tokenizer)
    ids = [enc.encode_prompt(p) for p in prompts]
    comps = sample(model, tokenizer, ids, n, max_new_tokens, temperature, batch_size, seed)
    texts = (
        list(prompt_texts)
        if prompt_texts is not None
        else [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
    )
    chosen, cands, scores, kls = [], [], [], []
    for i in range(len(prompts)):
        group = comps[i * n : (i + 1) * n]
        best, s = select_best(judge, texts[i], [c.text for c in group])
        chosen.append(group[best])
        cands.append(group)
        scores.append(s)
        kls.append(bon_kl(np.full(n, 1.0 / n), s, n))
    return BoNResult(
        n=n,
        chosen=chosen,
        candidates=cands,
        scores=scores,
        kl_bound=bon_kl_bound(n),
        kl_plugin=float(np.mean(kls)),
        extra={"win_rate_bound": n / (n + 1)},
    )
