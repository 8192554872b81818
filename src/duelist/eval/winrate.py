"""Win-rate of policy A over policy B under any judge, with a 95% interval.

Each prompt's K samples of A are compared with its K samples of B (all K×K pairs, P(a ≻ b) from the
judge, ties ½); the per-prompt mean is the unit, so samples of one prompt are not treated as
independent; the interval is ``winrate_interval`` (Wilson for 0/1 outcomes, t on per-prompt means
otherwise). ``tests/test_eval_stats.py`` checks its coverage by simulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from duelist.eval.stats import Estimate, winrate_interval
from duelist.judges.base import Judge


def win_rate(
    judge: Judge, prompts: Sequence[str], a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]
) -> tuple[Estimate, np.ndarray]:
    """``a[i]`` / ``b[i]``: the samples of A / B for prompt i. Returns (estimate, per-prompt win fractions)."""
    pa, pb, pp, sizes = [], [], [], []
    for x, ai, bi in zip(prompts, a, b, strict=True):
        for s in ai:
            for t in bi:
                pa.append(s)
                pb.append(t)
                pp.append(x)
        sizes.append(len(ai) * len(bi))
    p = judge.prob(pp, pa, pb)
    per_prompt = np.array([c.mean() for c in np.split(p, np.cumsum(sizes)[:-1])])
    return winrate_interval(per_prompt), per_prompt


def compare_policies(
    policy_a: str,
    policy_b: str,
    judge: str = "lexicon",
    prompts: str = "positive-review:test",
    num_prompts: int = 64,
    samples_per_prompt: int = 2,
    max_new_tokens: int = 32,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample both policies (model directories or ``default``) on the same prompts and compare."""
    from duelist.config import ModelConfig
    from duelist.data.tokenize import PairTokenizer
    from duelist.eval.run import _text, load_prompts
    from duelist.judges import get_judge
    from duelist.models.load import load_model
    from duelist.sample.generate import sample

    j = get_judge(judge)
    ps = load_prompts(prompts, num_prompts)
    k = samples_per_prompt
    texts = [_text(p) for p in ps]
    outs = []
    for name in (policy_a, policy_b):
        model, tok = load_model(ModelConfig(name=name, dtype="float32"))
        ids = [PairTokenizer(tok).encode_prompt(p) for p in ps]
        comps = sample(model, tok, ids, k, max_new_tokens, 1.0, batch_size, seed)
        outs.append([[c.text for c in comps[i * k : (i + 1) * k]] for i in range(len(ps))])
        del model
    est, _ = win_rate(j, texts, outs[0], outs[1])
    return {
        "policy_a": policy_a,
        "policy_b": policy_b,
        "judge": judge,
        "prompts": prompts,
        "num_prompts": len(ps),
        "samples_per_prompt": k,
        "win_rate": est.as_dict(),
    }
