"""Synthetic loss inputs shared by the loss tests: every field any registered loss can read."""

from __future__ import annotations

import torch
from torch import Tensor

from duelist.losses import PreferenceStats, model_fields
from duelist.losses.stats import SampleStats

# every registered loss with the parameters the generic tests use (defaults unless a case needs otherwise),
# plus the variants that switch code paths
VARIANTS: list[tuple[str, dict]] = [
    ("dpo", {}),
    ("dpo", {"labels": "soft"}),
    ("ipo", {}),
    ("ipo", {"labels": "soft"}),
    ("ipo", {"length_normalize": True}),
    ("cdpo", {}),
    ("rdpo", {}),
    ("fdpo", {}),
    ("fdpo", {"divergence": "forward_kl"}),
    ("fdpo", {"divergence": "js"}),
    ("fdpo", {"divergence": "alpha", "alpha": 0.3}),
    ("simpo", {}),
    ("rpo", {}),
    ("rpo", {"sft": "mean", "eta": 0.5}),
    ("hinge", {}),
    ("sppo", {}),
    ("sppo", {"win_rates": "from_scores", "score_scale": 0.5}),
    ("sppo_hard", {}),
    ("tdpo1", {}),
    ("tdpo2", {}),
    ("tgdpo", {}),
    ("sft", {}),
    ("flex_dpo", {}),
    ("inpo", {}),
    ("inpo", {"labels": "soft"}),
    ("optimism", {}),
]
# pointwise losses (one response per example, ``SampleStats``)
SAMPLE_VARIANTS: list[tuple[str, dict]] = [
    ("sppo_sample", {}),
    ("pg", {}),
    ("pg", {"anchor": "field"}),
]
PAIR_FIELDS = ("p_win", "p_lose", "score_chosen", "score_rejected", "label", "prev_chosen_logps", "prev_rejected_logps")


def variant_id(v: tuple[str, dict]) -> str:
    name, params = v
    return name + "".join(f"-{k}={p}" for k, p in params.items())


def leaves(b: int = 4, t: int = 7, seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
    """Random inputs: per-token log-probs (negative) and KL (≥ 0), zero outside ragged response masks."""
    g = torch.Generator().manual_seed(seed)

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=dtype)

    lc = torch.tensor([t, t - 2, 3, 1, t - 1, 2, 5, 4][:b])
    lr = torch.tensor([t - 1, t, 1, 4, 2, t - 3, 3, 6][:b])
    mc, mr = torch.arange(t) < lc[:, None], torch.arange(t) < lr[:, None]
    out = {
        "policy_chosen_token_logps": -u(0.05, 2.5, b, t) * mc,
        "policy_rejected_token_logps": -u(0.05, 2.5, b, t) * mr,
        "ref_chosen_token_logps": -u(0.05, 2.5, b, t) * mc,
        "ref_rejected_token_logps": -u(0.05, 2.5, b, t) * mr,
        "chosen_token_kl": u(0.0, 0.3, b, t) * mc,
        "rejected_token_kl": u(0.0, 0.3, b, t) * mr,
        "chosen_mask": mc,
        "rejected_mask": mr,
        "p_win": u(0.5, 0.95, b),
        "p_lose": u(0.05, 0.5, b),
        "score_chosen": u(0.0, 1.0, b),
        "score_rejected": u(-1.0, 0.0, b),
        "label": u(0.0, 1.0, b),
        "prev_chosen_logps": -u(1.0, 6.0, b),
        "prev_rejected_logps": -u(1.0, 6.0, b),
    }
    rm_c, rm_r = model_fields("rm")
    out[rm_c] = -u(0.05, 2.5, b, t) * mc
    out[rm_r] = -u(0.05, 2.5, b, t) * mr
    return out


DIFFERENTIABLE = ("policy_chosen_token_logps", "policy_rejected_token_logps", "chosen_token_kl", "rejected_token_kl")


def stats_from(x: dict[str, Tensor]) -> PreferenceStats:
    """A consistent ``PreferenceStats``: sequence sums and lengths derived from the per-token leaves."""
    mc, mr = x["chosen_mask"], x["rejected_mask"]
    extra = {k: v for k, v in x.items() if k in PAIR_FIELDS}
    extra.update({k: x[k] for k in model_fields("rm")})
    return PreferenceStats(
        policy_chosen_logps=(x["policy_chosen_token_logps"] * mc).sum(1),
        policy_rejected_logps=(x["policy_rejected_token_logps"] * mr).sum(1),
        ref_chosen_logps=(x["ref_chosen_token_logps"] * mc).sum(1),
        ref_rejected_logps=(x["ref_rejected_token_logps"] * mr).sum(1),
        chosen_lengths=mc.sum(1).to(x["policy_chosen_token_logps"].dtype),
        rejected_lengths=mr.sum(1).to(x["policy_chosen_token_logps"].dtype),
        policy_chosen_token_logps=x["policy_chosen_token_logps"],
        policy_rejected_token_logps=x["policy_rejected_token_logps"],
        ref_chosen_token_logps=x["ref_chosen_token_logps"],
        ref_rejected_token_logps=x["ref_rejected_token_logps"],
        chosen_mask=mc,
        rejected_mask=mr,
        chosen_token_kl=x["chosen_token_kl"],
        rejected_token_kl=x["rejected_token_kl"],
        extra=extra,
    )


def seq_stats(pc, pr, rc=None, rr=None, lc=None, lr=None, **extra) -> PreferenceStats:
    """Sequence-level inputs from plain lists (float64)."""

    def t(v):
        return None if v is None else torch.tensor(v, dtype=torch.float64)

    return PreferenceStats(
        t(pc), t(pr), t(rc), t(rr), t(lc), t(lr), extra={k: t(v) for k, v in extra.items() if v is not None}
    )


def sample_stats(b: int = 5, t: int = 6, seed: int = 0, dtype: torch.dtype = torch.float64, grad: bool = False):
    """Random single-response inputs for pointwise losses: (per-token policy log-probs leaf, SampleStats)."""
    x = leaves(b, t, seed, dtype)
    g = torch.Generator().manual_seed(seed + 100)
    tok = x["policy_chosen_token_logps"].clone().requires_grad_(grad)
    m = x["chosen_mask"]
    extra = {
        "win_rate": torch.rand(b, generator=g, dtype=dtype),
        "advantage": torch.rand(b, generator=g, dtype=dtype) - 0.5,
        "anchor_shift": torch.randn(b, generator=g, dtype=dtype) * 0.3,
    }
    # policy within ±0.6 nats of the reference, so e^ρ stays moderate
    ref = (tok.detach() * m).sum(1) + 0.6 * (2 * torch.rand(b, generator=g, dtype=dtype) - 1)
    return tok, SampleStats(policy_logps=(tok * m).sum(1), ref_logps=ref, lengths=m.sum(1).to(dtype), extra=extra)
