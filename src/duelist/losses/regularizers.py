"""Likelihood regularisers, registered as ordinary losses so that they can be terms of a weighted sum.

The "3D-properties" paper (Yan et al. 2025) finds that DPO drives the rejected likelihood down
drastically, degrades into suppressing responses, and disperses probability onto unseen responses. It
proposes two remedies: Flex-DPO (separate β for chosen and rejected; ``flex_dpo`` in ``pairwise.py``)
and adding an SFT loss on the chosen responses (``sft`` here, e.g. ``{name: sum, terms: [{name: dpo},
{name: sft, weight: 0.005}]}``).
"""

from __future__ import annotations

from duelist.losses.registry import register_loss
from duelist.losses.stats import LossOutput, PreferenceStats


@register_loss(
    "sft",
    paper="SFT term of Yan et al. 2025 (3D-Properties, SFT-regularised DPO) and Liu et al. 2024 (RPO)",
    formula="−log π_θ(y_w|x) / |y_w|",
    needs_reference=False,
    length_normalized=True,
)
def sft(s: PreferenceStats) -> LossOutput:
    """Negative log-likelihood of the chosen response, averaged over its own tokens.

    A per-sequence mean (not a token mean pooled over the batch), so splitting a batch cannot change
    the batch mean. Its gradient is −∇ mean_t log π_θ(y_w,t | x, y_w,<t).
    """
    nll = -s.mean_logps()[0]
    return LossOutput(nll, {"sft/nll": nll.detach()})
