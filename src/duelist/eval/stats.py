"""Point estimates with 95% intervals for evaluation.

* ``mean_interval``: Student-t interval on the mean of independent units (prompts).
* ``winrate_interval``: for 0/1 outcomes the Wilson score interval (good coverage near 0 and 1 and
  for small n); for fractional outcomes (ties count ½, or several comparisons averaged per prompt)
  the t-interval on per-prompt means, clipped to [0, 1].
Comparisons are averaged within a prompt first, so samples of the same prompt are not treated as
independent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Estimate:
    mean: float
    se: float
    lo: float
    hi: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def mean_interval(values: np.ndarray, level: float = 0.95) -> Estimate:
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    m = float(x.mean())
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    q = stats.t.ppf(0.5 + level / 2, df=max(n - 1, 1))
    return Estimate(m, se, m - q * se, m + q * se, n)


def wilson_interval(successes: float, n: int, level: float = 0.95) -> Estimate:
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the bounds are in [0, 1] mathematically; clipping removes rounding (e.g. −7e-18 at p = 0)
    lo, hi = max(0.0, float(centre - half)), min(1.0, float(centre + half))
    return Estimate(p, float(np.sqrt(p * (1 - p) / n)), lo, hi, n)


def winrate_interval(per_prompt: np.ndarray, level: float = 0.95) -> Estimate:
    """``per_prompt``: each prompt's win fraction in [0, 1]."""
    x = np.asarray(per_prompt, dtype=np.float64)
    if np.all((x == 0) | (x == 1)):
        return wilson_interval(float(x.sum()), x.size, level)
    e = mean_interval(x, level)
    return Estimate(e.mean, e.se, max(0.0, e.lo), min(1.0, e.hi), e.n)
