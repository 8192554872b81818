"""The online sampler: K samples per prompt from one prefill, with the log-probs they were drawn with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_model

from duelist.models.logprobs import sequence_logprobs
from duelist.sample.engine import generate


@pytest.fixture(scope="module")
def models(tiny_tokenizer):
    return make_model(len(tiny_tokenizer), seed=0), make_model(len(tiny_tokenizer), seed=1)


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer):
    texts = ["the movie was", "a terrible film with a boring plot and bad actors", "I"]
    return [tiny_tokenizer(t)["input_ids"] for t in texts]


def _kw(tok, **kw):
    return {"max_new_tokens": 6, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id, **kw}


def test_recorded_logprobs_are_the_models_and_prompts_of_any_length_batch_together(models, prompts, tiny_tokenizer):
    """Left-padded prompts of 1–11 tokens, 3 samples each: Σ log π(y_t|·) recorded while sampling equals the
    training forward's score of the same tokens (float32 sums, ≤ 1e-5)."""
    out = generate(models[0], prompts, 3, **_kw(tiny_tokenizer, seed=5))
    assert [len(g) for g in out] == [3, 3, 3] and all(s.prompt_index == i for i, g in enumerate(out) for s in g)
    flat = [s for g in out for s in g]
    want = sequence_logprobs(models[0], [prompts[s.prompt_index] for s in flat], [s.ids for s in flat],
                             tiny_tokenizer.pad_token_id)
    got = torch.tensor([s.logprob for s in flat], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert len({tuple(s.ids) for s in out[0]}) > 1  # the K samples of a prompt differ


def test_same_seed_same_samples_and_seed_changes_them(models, prompts, tiny_tokenizer):
    a = generate(models[0], prompts, 2, **_kw(tiny_tokenizer, seed=1))
    b = generate(models[0], prompts, 2, **_kw(tiny_tokenizer, seed=1))
    c = generate(models[0], prompts, 2, **_kw(tiny_tokenizer, seed=2))
    assert a == b and a != c


def test_geometric_mixture_is_the_normalised_weighted_log_probs(models, prompts, tiny_tokenizer):
    """One token from ν ∝ π^{1−β} μ^{β}, β = 0.3: its recorded log-prob is log ν(y), computed here by hand
    from both models' next-token distributions; weights (1, 0) give the first model's own samples."""
    pi, mu = models
    beta = 0.3
    out = generate([pi, mu], prompts, 4, **_kw(tiny_tokenizer, max_new_tokens=1, weights=[1 - beta, beta], seed=3))
    for i, g in enumerate(out):
        ids = torch.tensor([prompts[i]])
        with torch.no_grad():
            lp, lm = (torch.log_softmax(m(ids).logits[0, -1].float(), -1) for m in (pi, mu))
        log_nu = torch.log_softmax((1 - beta) * lp + beta * lm, -1)
        for s in g:
            assert s.logprob == pytest.approx(float(log_nu[s.ids[0]]), abs=1e-5)
    solo = generate(pi, prompts, 4, **_kw(tiny_tokenizer, max_new_tokens=1, seed=3))
    ones = generate([pi, mu], prompts, 4, **_kw(tiny_tokenizer, max_new_tokens=1, weights=[1.0, 0.0], seed=3))
    assert [[s.ids for s in g] for g in solo] == [[s.ids for s in g] for g in ones]


def test_a_sample_stops_at_eos_and_is_marked_finished(models, prompts, tiny_tokenizer):
    """Make the most likely first token the EOS id: at a low temperature every sample is [eos]."""
    with torch.no_grad():
        first = int(models[0](torch.tensor([prompts[0]])).logits[0, -1].argmax())
    out = generate(models[0], prompts[:1], 3, max_new_tokens=6, eos_id=first, pad_id=tiny_tokenizer.pad_token_id,
                   temperature=1e-3)
    assert all(s.ids == [first] and s.finished for s in out[0])
    unfinished = generate(models[0], prompts[:1], 2, **_kw(tiny_tokenizer, eos_id=None))
    assert all(len(s.ids) == 6 and not s.finished for s in unfinished[0])


def test_bad_arguments_are_refused(models, prompts, tiny_tokenizer):
    with pytest.raises(ValueError, match="mixture weights"):
        generate(list(models), prompts, 1, **_kw(tiny_tokenizer, weights=[0.5, 0.6]))
    with pytest.raises(ValueError, match="temperature"):
        generate(models[0], prompts, 1, **_kw(tiny_tokenizer, temperature=0))
    assert np.isfinite([s.logprob for g in generate(models[0], prompts, 1, **_kw(tiny_tokenizer)) for s in g]).all()
