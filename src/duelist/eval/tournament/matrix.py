"""The head-to-head win-rate matrix of a tournament, from samples and a judge.

``M[i, j]`` is the win-rate of policy i over policy j: on each prompt, the mean of P(a ≻ b | prompt) over
all pairs of i's and j's samples of that prompt (ties ½, as the judge reports them); the estimate is the mean
over prompts and its 95% interval is over prompts (``eval.stats.winrate_interval``: t on per-prompt means,
Wilson when every per-prompt value is 0 or 1), so samples of one prompt are never treated as independent.
Each pair of policies is judged once, i against j, and ``M[j, i] = 1 − M[i, j]`` (judges are antisymmetric,
P(a ≻ b) + P(b ≻ a) = 1, and both interval kinds map to [1 − hi, 1 − lo] under x → 1 − x). The diagonal is ½
by definition: two independent samples of one policy are exchangeable.

From M:

* **worst case** of policy i: ``min_{j ≠ i} M[i, j]`` and the opponent reaching it, a measured stand-in for
  exploitability: ½ minus it is the exploitability within the field (``games.metrics.exploitability`` at
  τ = 0, ``max_y P(y ≻ π) − ½``), so a Nash policy's worst case is at least ½. The minimum of noisy estimates
  is biased low; the interval reported is that entry's;
* **ranking**: by worst case, ties by the mean win-rate against the others, then by entry order;
* **equilibrium**: the von Neumann winner of M (``games.nash_equilibrium``), the mixture of entrants that no
  entrant beats on average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from duelist.eval.stats import winrate_interval
from duelist.judges.base import Judge


@dataclass
class TournamentResult:
    names: list[str]
    matrix: np.ndarray  # [P, P], M[i, j] = win-rate of i over j
    lower: np.ndarray
    upper: np.ndarray
    per_prompt: np.ndarray  # [P, P, prompts], per-prompt win fractions of i over j (diagonal ½)

    def _off(self) -> np.ndarray:
        return ~np.eye(len(self.names), dtype=bool)

    @property
    def worst_opponent(self) -> np.ndarray:
        return np.where(self._off(), self.matrix, np.inf).argmin(axis=1)

    @property
    def worst_case(self) -> np.ndarray:
        return self.matrix[np.arange(len(self.names)), self.worst_opponent]

    @property
    def mean_win_rate(self) -> np.ndarray:
        return np.where(self._off(), self.matrix, 0.0).sum(axis=1) / (len(self.names) - 1)

    @property
    def ranking(self) -> list[str]:
        # rounded so that equal win-rates summed in another order still tie (then entry order decides)
        w, m = np.round(self.worst_case, 12), np.round(self.mean_win_rate, 12)
        order = sorted(range(len(self.names)), key=lambda i: (-w[i], -m[i], i))
        return [self.names[i] for i in order]

    @property
    def equilibrium(self) -> np.ndarray:
        from duelist.games.solvers import nash_equilibrium

        return nash_equilibrium(self.matrix)

    def as_dict(self) -> dict[str, Any]:
        rows = np.arange(len(self.names))
        opp = self.worst_opponent
        return {
            "policies": list(self.names),
            "matrix": self.matrix.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
            "worst_case": {
                name: {"win_rate": float(self.worst_case[i]), "lower": float(self.lower[i, opp[i]]),
                       "upper": float(self.upper[i, opp[i]]), "opponent": self.names[opp[i]]}
                for i, name in zip(rows, self.names, strict=True)
            },
            "mean_win_rate": dict(zip(self.names, self.mean_win_rate.tolist(), strict=True)),
            "ranking": self.ranking,
            "equilibrium": dict(zip(self.names, self.equilibrium.tolist(), strict=True)),
        }


def tournament_matrix(judge: Judge, prompts: Sequence[str], samples: Mapping[str, Sequence[Sequence[str]]]
                      ) -> TournamentResult:
    """``samples[name][i]``: that policy's samples for prompt i. One ``judge.prob`` call over every pair of
    samples of every pair of policies on every prompt."""
    names = list(samples)
    p, n = len(names), len(prompts)
    if p < 2:
        raise ValueError(f"a tournament needs at least 2 policies, got {p}")
    for name in names:
        if len(samples[name]) != n:
            raise ValueError(f"policy {name!r}: samples for {len(samples[name])} prompts, expected {n}")
    xs, a, b, blocks = [], [], [], []  # blocks: (i, j, per-prompt pair counts)
    for i in range(p):
        for j in range(i + 1, p):
            sizes = []
            for x, si, sj in zip(prompts, samples[names[i]], samples[names[j]], strict=True):
                for s in si:
                    for t in sj:
                        xs.append(x)
                        a.append(s)
                        b.append(t)
                sizes.append(len(si) * len(sj))
            blocks.append((i, j, sizes))
    probs = np.asarray(judge.prob(xs, a, b), dtype=np.float64)
    per_prompt = np.full((p, p, n), 0.5)
    matrix, lower, upper = np.full((p, p), 0.5), np.full((p, p), 0.5), np.full((p, p), 0.5)
    start = 0
    for i, j, sizes in blocks:
        chunk = probs[start : start + sum(sizes)]
        start += sum(sizes)
        wins = np.array([c.mean() for c in np.split(chunk, np.cumsum(sizes)[:-1])])
        per_prompt[i, j], per_prompt[j, i] = wins, 1.0 - wins
        for r, c, x in ((i, j, wins), (j, i, 1.0 - wins)):
            est = winrate_interval(x)
            matrix[r, c], lower[r, c], upper[r, c] = est.mean, est.lo, est.hi
    matrix[np.tril_indices(p, -1)] = 1.0 - matrix.T[np.tril_indices(p, -1)]  # exact antisymmetry
    return TournamentResult(names, matrix, lower, upper, per_prompt)
