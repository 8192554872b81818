"""KL(π ‖ π_ref) from samples of π.

For y ~ π(·|x), log π(y|x) − log π_ref(y|x) is an unbiased estimate of KL(π(·|x) ‖ π_ref(·|x)) (the
"k1" estimator). It is averaged over a prompt's samples, then over prompts, with a t-interval over
prompts. Valid only when the samples were drawn from π itself (temperature 1, no top-k/top-p), which is
how ``duelist.sample.sample`` draws them; sequences are truncated at ``max_new_tokens``, so this is the
KL of the truncated sequence distributions.
"""

from __future__ import annotations

import numpy as np

from duelist.eval.stats import Estimate, mean_interval


def kl_from_samples(policy_logps: np.ndarray, ref_logps: np.ndarray, groups: np.ndarray) -> Estimate:
    """``groups[i]``: the prompt of sample i. Returns the KL estimate with its standard error."""
    diff = np.asarray(policy_logps, dtype=np.float64) - np.asarray(ref_logps, dtype=np.float64)
    groups = np.asarray(groups)
    per_prompt = np.array([diff[groups == g].mean() for g in np.unique(groups)])
    return mean_interval(per_prompt)
