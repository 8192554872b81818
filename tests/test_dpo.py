"""DPO, end to end against an independent hand computation from a tiny model's per-token log-probs."""

from __future__ import annotations

import math

import torch
from conftest import make_model

from duelist.data.collate import collate_pairs
from duelist.data.formats import PreferenceExample
from duelist.data.tokenize import PairTokenizer
from duelist.losses import get_loss
from duelist.models.logprobs import response_logprobs
from duelist.train.learner import make_stats


def hand_sequence_logp(model, prompt: list[int], response: list[int]) -> float:
    """Σ_t log p(response_t | prompt, response_<t), one token at a time, unbatched, float64."""
    total = 0.0
    ids = list(prompt)
    with torch.no_grad():
        for tok in response:
            logits = model(torch.tensor([ids])).logits[0, -1].double()
            total += float(logits.log_softmax(-1)[tok])
            ids.append(tok)
    return total


def test_dpo_per_example_matches_hand_computation(tiny_tokenizer):
    """L_i = softplus(−β[(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])."""
    policy, ref = make_model(len(tiny_tokenizer), seed=1), make_model(len(tiny_tokenizer), seed=2)
    enc = PairTokenizer(tiny_tokenizer)
    exs = [
        PreferenceExample("the movie was", " great", " a terrible film"),
        PreferenceExample("I loved", " every minute", " bad actors and a boring plot"),
    ]
    pairs = [enc(e) for e in exs]
    b = collate_pairs(pairs, [0, 1], tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        pol = response_logprobs(policy, b)
        rf = response_logprobs(ref, b)
    beta = 0.3
    out = get_loss("dpo", beta=beta)(make_stats(pol, rf))
    for i, p in enumerate(pairs):
        rho_w = hand_sequence_logp(policy, p.prompt, p.chosen) - hand_sequence_logp(ref, p.prompt, p.chosen)
        rho_l = hand_sequence_logp(policy, p.prompt, p.rejected) - hand_sequence_logp(ref, p.prompt, p.rejected)
        expected = math.log1p(math.exp(-beta * (rho_w - rho_l)))
        assert abs(float(out.losses[i]) - expected) < 1e-5
        assert abs(float(out.metrics["rewards/margin"][i]) - beta * (rho_w - rho_l)) < 1e-5
