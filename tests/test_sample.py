"""Sampling records each sample's log-probability, equal to a fresh forward pass."""

import torch
from conftest import make_model

from duelist.models.logprobs import sequence_logprobs
from duelist.sample.generate import sample


def test_recorded_logprobs_equal_forward_pass(tiny_tokenizer):
    model = make_model(len(tiny_tokenizer), seed=4).eval()
    prompts = [[1, 10, 11, 12], [1, 20], [1, 30, 31]]
    comps = sample(model, tiny_tokenizer, prompts, n=3, max_new_tokens=9, batch_size=4, seed=5)
    assert [c.prompt_index for c in comps] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    want = sequence_logprobs(model, [c.prompt_ids for c in comps], [c.ids for c in comps], 0)
    got = torch.tensor([c.logprob for c in comps], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-4)
    for c in comps:
        assert c.finished == (c.ids[-1] == tiny_tokenizer.eos_token_id)
        assert len(c.ids) <= 9 and tiny_tokenizer.eos_token_id not in c.ids[:-1]
    again = sample(model, tiny_tokenizer, prompts, n=3, max_new_tokens=9, batch_size=4, seed=5)
    assert [c.ids for c in again] == [c.ids for c in comps]  # deterministic for a seed
