"""The chunked log-prob engine equals the naive full-logits computation, values and gradients."""

import pytest
import torch
from conftest import make_model
from helpers import random_padded_batch as batch

from duelist.data.collate import TokenBatch
from duelist.models.logprobs import LogProbModel, response_logprobs


def naive(model, ids, att, mask):
    """log softmax over the full [N, T, V] logits, gathered at the next token, masked to responses."""
    logp = model(input_ids=ids, attention_mask=att).logits.float().log_softmax(-1)
    tok = logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2) * mask[:, 1:]
    return tok.sum(1), tok


@pytest.mark.parametrize("keep_probs", [False, True])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_chunked_equals_naive_fp32(chunk, keep_probs):
    """Recomputing logits in the backward pass and keeping the forward's softmax give the same gradients."""
    model = make_model(257, seed=3)
    ids, att, mask = batch(257)
    out = response_logprobs(model, TokenBatch.from_padded(ids, att, mask), chunk_size=chunk, keep_probs=keep_probs)
    w = torch.arange(1.0, 7.0)
    (out.sums * w).sum().backward()
    g_chunked = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    sums, tok = naive(model, ids, att, mask)
    (sums * w).sum().backward()
    assert torch.allclose(out.sums, sums, atol=1e-5, rtol=0)
    assert torch.allclose(out.token_logps[out.mask], tok[mask[:, 1:]], atol=1e-5, rtol=0)  # response-aligned
    assert torch.equal(out.counts, mask.sum(1).float())
    for n, p in model.named_parameters():
        assert torch.allclose(g_chunked[n], p.grad, atol=1e-5, rtol=1e-4), n


def _head_inputs():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    return h, w, b, torch.randint(0, 11, (7,), generator=g)


def test_float64_gradcheck_of_the_head():
    from duelist.models.logprobs import ChunkedTargetLogProb

    h, w, b, y = _head_inputs()
    assert torch.autograd.gradcheck(lambda h, w, b: ChunkedTargetLogProb.apply(h, w, b, y, 3), (h, w, b))


def test_kept_softmax_gives_the_recomputed_gradients_once():
    """keep=True backpropagates through the forward's softmax (consumed in place), so it is checked against
    the gradchecked recompute path rather than by gradcheck, which needs repeated backward passes."""
    from duelist.models.logprobs import ChunkedTargetLogProb

    h, w, b, y = _head_inputs()
    g_out = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = {}
    for keep in (False, True):
        out = ChunkedTargetLogProb.apply(h, w, b, y, 3, keep)
        grads[keep] = torch.autograd.grad(out, (h, w, b), g_out, retain_graph=True)
    for a, k in zip(grads[False], grads[True], strict=True):
        assert torch.allclose(a, k, atol=1e-12, rtol=0)
    with pytest.raises(RuntimeError, match="consumed"):
        torch.autograd.grad(out, (h, w, b), g_out)


def test_one_forward_pass_for_chosen_and_rejected():
    model = make_model(101)
    calls = []
    model.model.register_forward_hook(lambda *a: calls.append(1))
    ids, att, mask = batch(101, n=4)
    LogProbModel(model)(TokenBatch.from_padded(ids, att, mask).tensors())
    assert len(calls) == 1


def test_never_materialises_full_logits():
    """The head only sees hidden states of response positions, at most `chunk` rows at a time."""
    model = make_model(257)
    rows = []
    orig = torch.Tensor.__matmul__

    def spy(a, b):
        out = orig(a, b)
        if out.shape[-1] == 257:
            rows.append(out.shape[0])
        return out

    ids, att, mask = batch(257)
    torch.Tensor.__matmul__ = spy
    try:
        response_logprobs(model, TokenBatch.from_padded(ids, att, mask), chunk_size=8).sums.sum().backward()
    finally:
        torch.Tensor.__matmul__ = orig
    assert rows and max(rows) <= 8
    assert sum(rows) == 2 * int(mask.sum())  # forward + recompute in backward, response tokens only


@pytest.mark.parametrize("layout", ["packed", "shared", "shared_packed"])
def test_layouts_give_the_padded_log_probs_and_gradients(tiny_tokenizer, layout):
    """Packing, and computing each prompt once for its chosen and rejected response, change only how the
    forward pass is laid out: log-probs and gradients equal the padded layout's (float32 tolerance)."""
    from duelist.data.collate import collate_pairs
    from duelist.data.formats import PreferenceExample
    from duelist.data.tokenize import PairTokenizer

    enc = PairTokenizer(tiny_tokenizer)
    exs = [("the movie was", " great and wonderful", " bad"), ("I loved", " every minute", " a boring plot"),
           ("a terrible film", " indeed", " not at all, the acting was great")]
    pairs = [enc(PreferenceExample(*e)) for e in exs]
    model = make_model(len(tiny_tokenizer), seed=7)
    results = []
    for lay in ("padded", layout):
        b = collate_pairs(pairs, [0, 1, 2], tiny_tokenizer.pad_token_id, lay)
        out = response_logprobs(model, b, chunk_size=5)
        w = torch.arange(1.0, 7.0)
        ((out.sums * w).sum() + (out.token_logps**2).sum()).backward()
        results.append((out, {n: p.grad.clone() for n, p in model.named_parameters()}))
        model.zero_grad()
    (a, ga), (c, gc) = results
    assert torch.allclose(a.sums, c.sums, atol=2e-5) and torch.equal(a.mask, c.mask)
    assert torch.allclose(a.token_logps, c.token_logps, atol=2e-5)
    for n in ga:
        assert torch.allclose(ga[n], gc[n], atol=2e-5, rtol=1e-4), n


@pytest.mark.parametrize(("spare", "kept"), [(0, True), (-1, False)])
def test_default_keeps_the_softmax_up_to_its_budget(monkeypatch, spare, kept):
    """``keep_probs=None`` (``train.logprob_recompute``'s default) keeps the softmax of a micro-batch whose
    [response tokens, vocabulary] float32 buffer fits ``KEEP_PROBS_BYTES`` (here 33 response tokens × 257
    × 4 bytes, and a byte less), recomputes otherwise; the gradients are the recomputed ones either way."""
    import duelist.models.logprobs as lp

    model = make_model(257, seed=3)
    ids, att, mask = batch(257)
    tb = TokenBatch.from_padded(ids, att, mask)
    assert tb.target.shape[0] == 33
    budget = 33 * 257 * 4 + spare
    seen = []
    apply = lp.ChunkedTargetLogProb.apply
    monkeypatch.setattr(lp, "KEEP_PROBS_BYTES", budget)
    monkeypatch.setattr(lp.ChunkedTargetLogProb, "apply", lambda *a: seen.append(a[5]) or apply(*a))
    lp.response_logprobs(model, tb, chunk_size=5, keep_probs=None).sums.sum().backward()
    g_default = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    lp.response_logprobs(model, tb, chunk_size=5, keep_probs=False).sums.sum().backward()
    assert seen == [kept, False]
    for n, p in model.named_parameters():
        assert torch.allclose(g_default[n], p.grad, atol=1e-6, rtol=1e-5), n
