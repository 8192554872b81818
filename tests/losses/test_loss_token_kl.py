"""Per-token KL(π_ref ‖ π_θ) from the chunked engine (TDPO's input) against the naive full-logits computation."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model
from helpers import random_padded_batch as batch

from duelist.data.collate import TokenBatch
from duelist.models.logprobs import ChunkedTokenKL, LogProbModel, response_logprobs


def naive_kl(policy, ref, ids, att, mask):
    """KL_t = Σ_v p_ref(v|y_<t) (log p_ref(v|y_<t) − log p_θ(v|y_<t)) from full [N, T, V] logits, at the
    positions that predict response tokens (logits at t−1 predict token t), zero elsewhere."""
    lp = policy(input_ids=ids, attention_mask=att).logits.double().log_softmax(-1)
    with torch.no_grad():
        lr = ref(input_ids=ids, attention_mask=att).logits.double().log_softmax(-1)
    kl = (lr.exp() * (lr - lp)).sum(-1)[:, :-1] * mask[:, 1:]
    return kl


@pytest.mark.parametrize("chunk", [3, 4096])
def test_token_kl_equals_naive_values_and_gradients(chunk):
    policy, ref = make_model(257, seed=3), make_model(257, seed=4)
    ids, att, mask = batch(257)
    with torch.no_grad():
        r = response_logprobs(ref, TokenBatch.from_padded(ids, att, mask), chunk_size=chunk, keep_hidden=True)
    assert r.hidden is not None and r.head is not None and not r.hidden.requires_grad
    out = response_logprobs(policy, TokenBatch.from_padded(ids, att, mask), chunk, r.hidden, *r.head)
    w = torch.linspace(0.5, 2.0, out.token_kl.shape[1])  # weights per response position
    (out.token_kl * w).sum().backward()
    g_chunked = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy.zero_grad()
    want = torch.zeros(out.mask.shape, dtype=torch.float64)
    want = want.masked_scatter(out.mask, naive_kl(policy, ref, ids, att, mask)[mask[:, 1:]])  # response-aligned
    (want * w).sum().backward()
    kl = out.token_kl.detach()
    assert torch.allclose(kl.double(), want.detach(), atol=1e-5, rtol=0)
    assert float(kl[~out.mask].abs().max()) == 0.0 and bool((kl >= -1e-6).all())
    assert float(want.detach().max()) > 0.01  # different models: the KL is not trivially 0
    for n, p in policy.named_parameters():
        assert torch.allclose(g_chunked[n], p.grad.float(), atol=1e-5, rtol=1e-4), n
    # the policy's own log-probs are unchanged by the extra head
    plain = response_logprobs(policy, TokenBatch.from_padded(ids, att, mask), chunk)
    assert torch.equal(plain.sums, out.sums)


def test_token_kl_float64_gradcheck():
    """∂KL/∂logits_θ = p_θ − p_ref (Σ p_ref = 1), recomputed chunk by chunk in the backward pass."""
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    hr = torch.randn(7, 5, dtype=torch.float64, generator=g)
    wr, br = torch.randn(11, 5, dtype=torch.float64, generator=g), torch.randn(11, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda h, w, b: ChunkedTokenKL.apply(h, w, b, hr, wr, br, 3), (h, w, b))
    kl = ChunkedTokenKL.apply(h, w, b, hr, wr, br, 4)
    p_ref, logp = (hr @ wr.t() + br).softmax(-1), (h @ w.t() + b).log_softmax(-1)
    assert torch.allclose(kl, (p_ref * (p_ref.log() - logp)).sum(-1), atol=1e-14, rtol=0)


def test_token_kl_is_exactly_zero_against_itself():
    model = make_model(101, seed=5)
    ids, att, mask = batch(101, n=4)
    with torch.no_grad():
        r = response_logprobs(model, TokenBatch.from_padded(ids, att, mask), keep_hidden=True)
    out = response_logprobs(model, TokenBatch.from_padded(ids, att, mask), 512, r.hidden, *r.head)
    assert float(out.token_kl.detach().abs().max()) == 0.0


def test_one_policy_forward_serves_log_probs_and_kl():
    policy, ref = make_model(101, seed=1), make_model(101, seed=2)
    calls = []
    policy.model.register_forward_hook(lambda *a: calls.append(1))
    ids, att, mask = batch(101, n=4)
    with torch.no_grad():
        r = response_logprobs(ref, TokenBatch.from_padded(ids, att, mask), keep_hidden=True)
    out = LogProbModel(policy)(TokenBatch.from_padded(ids, att, mask).tensors(), r.hidden, *r.head)
    assert len(calls) == 1 and out.token_kl is not None
    c, rej = out.split()
    assert c.token_kl.shape == rej.token_kl.shape == (2, int(mask.sum(1).max()))


def test_mismatched_reference_positions_are_an_error():
    policy = make_model(101, seed=1)
    ids, att, mask = batch(101, n=4)
    with pytest.raises(ValueError, match="do not match"):
        response_logprobs(
            policy, TokenBatch.from_padded(ids, att, mask), 512, torch.zeros(3, 32), policy.lm_head.weight, None
        )
