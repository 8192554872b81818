"""Judges: preference oracles that return P(a ≻ b | prompt) for batches of pairs.

A ``RewardJudge`` turns a scalar reward into preferences through Bradley–Terry,
P(a ≻ b) = σ((r(a) − r(b)) / temperature); temperature 0 gives the hard comparison
(1 if r(a) > r(b), ½ on ties, 0 otherwise).

``NoisyJudge`` flips a judge's label with probability ε: P' = (1 − ε)P + ε(1 − P).

Reward transforms from "Transforming and Combining Rewards" (Wang et al., ICML 2024):
``lsc_transform`` is the log-sigmoid centring u = log σ(r − r_ref); ``lsc_combine`` sums transformed
rewards, Σ_i log σ(r_i − r_i^ref) = log Π_i σ(r_i − r_i^ref), the log-probability that a response is
"good" on every property at once if the properties are independent Bradley–Terry events against the
reference. ``LSCRewardJudge`` wraps that sum as a reward judge.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.special import expit, log_expit

RewardFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]


class Judge(ABC):
    name: str = "judge"

    @abstractmethod
    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """P(a_i ≻ b_i | prompt_i) for each i, shape [n]; P(a ≻ b) + P(b ≻ a) = 1."""

    def labels(
        self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str], rng: np.random.Generator | int = 0
    ) -> np.ndarray:
        """Sampled 0/1 labels, 1 meaning a ≻ b, each drawn from Bernoulli(P(a ≻ b)) (a rater's answer)."""
        rng = np.random.default_rng(rng)
        return (rng.random(len(a)) < self.prob(prompts, a, b)).astype(np.int64)

    def matrix(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """[k, k] matrix of P(y_i ≻ y_j | prompt) over k responses to one prompt (diagonal ½)."""
        return self.judge_groups([prompt], [responses])[0][0]

    def judge_groups(
        self, prompts: Sequence[str], groups: Sequence[Sequence[str]]
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """For each prompt, the [k, k] matrix of P(y_i ≻ y_j) over its responses (diagonal ½), from one
        batched ``prob`` call over every pair i < j of every prompt; and, for judges that have one, each
        response's reward (else None)."""
        ii, jj, owner = [], [], []
        for g, responses in enumerate(groups):
            a, b = np.triu_indices(len(responses), 1)
            ii.append(a)
            jj.append(b)
            owner.append(np.full(len(a), g))
        flat_i, flat_j, flat_g = (np.concatenate(x) if x else np.zeros(0, int) for x in (ii, jj, owner))
        p = self.prob(
            [prompts[g] for g in flat_g],
            [groups[g][i] for g, i in zip(flat_g, flat_i, strict=True)],
            [groups[g][j] for g, j in zip(flat_g, flat_j, strict=True)],
        )
        return _fill(groups, ii, jj, np.asarray(p, dtype=np.float64)), None


class RewardJudge(Judge):
    def __init__(
        self,
        reward: RewardFn,
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

    def judge_groups(
        self, prompts: Sequence[str], groups: Sequence[Sequence[str]]
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Each response is scored once (one ``rewards`` call for all of them); P follows from the rewards."""
        flat_p = [prompts[g] for g, rs in enumerate(groups) for _ in rs]
        r = self.rewards(flat_p, [y for rs in groups for y in rs])
        rewards = np.split(r, np.cumsum([len(rs) for rs in groups])[:-1])
        mats = [self.prob_from_rewards(rg[:, None], rg[None, :]) for rg in rewards]
        return mats, rewards


def _fill(
    groups: Sequence[Sequence[str]], ii: list[np.ndarray], jj: list[np.ndarray], p: np.ndarray
) -> list[np.ndarray]:
    """Per-group [k, k] matrices from the flat upper-triangle answers ``p`` (lower triangle 1 − p)."""
    out, at = [], 0
    for responses, a, b in zip(groups, ii, jj, strict=True):
        m = np.full((len(responses), len(responses)), 0.5)
        m[a, b] = p[at : at + len(a)]
        m[b, a] = 1 - p[at : at + len(a)]
        out.append(m)
        at += len(a)
    return out


class JudgeError(ValueError):
    """A judge failed or answered something that is not a preference probability; names judge and prompt."""


def judge_checked(
    judge: Judge, prompts: Sequence[str], groups: Sequence[Sequence[str]], tol: float = 1e-6
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """``judge.judge_groups`` with every answer checked: finite, in [0, 1], ``P + Pᵀ = 1``. A judge that
    raises is asked again prompt by prompt to name the first prompt it fails on. Never picks a winner for
    a bad answer: raises ``JudgeError`` naming the judge and the prompt."""
    try:
        mats, rewards = judge.judge_groups(prompts, groups)
    except Exception as e:
        for i, (prompt, responses) in enumerate(zip(prompts, groups, strict=True)):
            try:
                judge.judge_groups([prompt], [responses])
            except Exception as e_i:
                raise JudgeError(f"judge {judge.name!r} failed on prompt {i} ({_short(prompt)}): {e_i}") from e_i
        raise JudgeError(f"judge {judge.name!r} failed on a batch of {len(prompts)} prompts: {e}") from e
    for i, m in enumerate(mats):
        k = len(groups[i])
        bad = None
        if m.shape != (k, k):
            bad = f"a {m.shape} matrix for {k} responses"
        elif not np.all(np.isfinite(m)):
            bad = "a non-finite probability"
        elif np.any(m < 0) or np.any(m > 1):
            bad = f"a probability outside [0, 1] ({m.min():.4g}..{m.max():.4g})"
        elif np.abs(m + m.T - 1).max() > tol:
            bad = f"P(a ≻ b) + P(b ≻ a) = {(m + m.T).flat[np.abs(m + m.T - 1).argmax()]:.6g}, not 1"
        if bad:
            raise JudgeError(f"judge {judge.name!r} returned {bad} on prompt {i} ({_short(prompts[i])})")
    return mats, rewards


def _short(prompt: str, n: int = 60) -> str:
    return repr(prompt if len(prompt) <= n else prompt[: n - 1] + "…")


class NoisyJudge(Judge):
    """Label noise: with probability ``epsilon`` the rater reports the opposite of ``base``'s verdict,
    so P'(a ≻ b) = (1 − ε)P(a ≻ b) + ε(1 − P(a ≻ b)). Antisymmetry is kept: P'(a≻b) + P'(b≻a) = 1.
    ε = ½ makes every pair a coin flip; ε > ½ would invert the judge and is refused."""

    def __init__(self, base: Judge | str, epsilon: float = 0.1, **base_params: object):
        if not 0 <= epsilon <= 0.5:
            raise ValueError("epsilon must be in [0, 0.5]")
        if isinstance(base, str):
            from duelist.judges import get_judge

            base = get_judge(base, **base_params)
        self.base = base
        self.epsilon = epsilon
        self.name = f"noisy({base.name}, ε={epsilon:g})"

    def prob(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        p = self.base.prob(prompts, a, b)
        return (1 - self.epsilon) * p + self.epsilon * (1 - p)


def lsc_transform(r: np.ndarray | float, r_ref: np.ndarray | float) -> np.ndarray:
    """u = log σ(r − r_ref), computed stably. Properties (tested): u < 0; u(r_ref) = −log 2; u → 0 as
    r → ∞ (diminishing returns above the reference); u ≈ r − r_ref as r → −∞ (log σ(z) = z − log(1 + e^z))."""
    return log_expit(np.asarray(r, dtype=np.float64) - np.asarray(r_ref, dtype=np.float64))


def lsc_combine(rewards: Sequence[np.ndarray], refs: Sequence[np.ndarray | float]) -> np.ndarray:
    """Σ_i log σ(r_i − r_i^ref): the log of the product of the σ's (a logical AND of the properties)."""
    if len(rewards) != len(refs):
        raise ValueError("one reference reward per reward is needed")
    return np.sum([lsc_transform(r, ref) for r, ref in zip(rewards, refs, strict=True)], axis=0)


def reference_reward(base_rewards: np.ndarray, quantile: float = 0.5) -> float:
    """r_ref(x) from rewards of base-policy samples for one prompt: their ``quantile``. The paper's
    choice of quantile is not confirmed here; the median is the default and a parameter."""
    return float(np.quantile(np.asarray(base_rewards, dtype=np.float64), quantile))


class LSCRewardJudge(RewardJudge):
    """Reward judge on u(x, y) = Σ_i log σ(r_i(x, y) − r_i^ref(x)).

    ``refs`` gives each reward's per-prompt reference: a mapping prompt → tuple of r_i^ref (one per
    reward), or a callable ``prompts → array [n, len(rewards)]``, or one constant tuple for all prompts.
    """

    def __init__(
        self,
        rewards: Sequence[RewardFn],
        refs: Mapping[str, Sequence[float]] | Callable[[Sequence[str]], np.ndarray] | Sequence[float],
        temperature: float = 0.0,
        name: str = "lsc",
    ):
        self.components = list(rewards)
        self.refs = refs
        super().__init__(self._combined, temperature, name)

    def _ref_matrix(self, prompts: Sequence[str]) -> np.ndarray:
        k = len(self.components)
        if callable(self.refs):
            out = np.asarray(self.refs(prompts), dtype=np.float64)
        elif isinstance(self.refs, Mapping):
            out = np.array([self.refs[p] for p in prompts], dtype=np.float64)
        else:
            out = np.tile(np.asarray(self.refs, dtype=np.float64), (len(prompts), 1))
        return out.reshape(len(prompts), k)

    def _combined(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        refs = self._ref_matrix(prompts)
        rs = [np.asarray(f(prompts, responses), dtype=np.float64) for f in self.components]
        return lsc_combine(rs, [refs[:, i] for i in range(len(rs))])
