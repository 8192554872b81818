"""``eager_blocks`` attention equals eager attention: the blocks it skips are exactly what the causal mask
zeroes. Checked on the function (grouped heads, a key cache, one-block queries) and through the model in
every batch layout, values and gradients, and in cached generation."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from duelist.config import ModelConfig
from duelist.data.collate import LAYOUTS, _shared_mask, collate_pairs
from duelist.data.tokenize import TokenizedPair
from duelist.models.attention import QUERY_BLOCKS, eager_blocks_attention
from duelist.models.load import load_model
from duelist.models.logprobs import response_logprobs


def dense(query, key, value, mask, scaling):
    """Eager attention as transformers writes it: every query times every key, then the mask."""
    rep = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1)
    probs = (query @ key.transpose(2, 3) * scaling + mask).softmax(-1)
    return (probs @ value).transpose(1, 2)


def additive(allowed: torch.Tensor) -> torch.Tensor:
    return torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)


def shared_layout_mask(lengths: list[tuple[int, int, int]], width: int) -> torch.Tensor:
    """The 4-D mask of the shared layout (prompt, chosen, rejected per row, then padding)."""
    pair = torch.full((len(lengths), width), -1)
    seg = torch.zeros_like(pair)
    pos = torch.zeros_like(pair)
    for i, (p, c, r) in enumerate(lengths):
        pair[i, : p + c + r] = i
        seg[i, p : p + c], seg[i, p + c : p + c + r] = 1, 2
        pos[i, : p + c] = torch.arange(p + c)
        pos[i, p + c : p + c + r] = torch.arange(p, p + r)
    return additive(_shared_mask(pair, seg, pos))


@pytest.mark.parametrize(("t", "s"), [(60, 60), (50, 70), (5, 5), (1, 9)])
def test_equals_dense_eager_values_and_gradients(t, s):
    # grouped heads (6 query heads on 2 key/value heads); s > t: the first s − t keys are a cache that every
    # query may see; t < 48 runs as one block. Mask: causal, plus a random hole pattern below the diagonal.
    g = torch.Generator().manual_seed(t + s)
    q = torch.randn(2, 6, t, 8, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 2, s, 8, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 2, s, 8, generator=g, dtype=torch.float64, requires_grad=True)
    causal = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]
    holes = torch.rand(2, 1, t, s, generator=g) < 0.3
    own = torch.arange(s)[None, :] == torch.arange(s - t, s)[:, None]
    allowed = causal & ~holes | own  # every query keeps its own key
    mask = additive(allowed).double()
    w = torch.randn(2, t, 6, 8, generator=g, dtype=torch.float64)
    module = torch.nn.Module().eval()
    grads = []
    for f in (dense, lambda *a: eager_blocks_attention(module, *a)[0]):
        out = f(q, k, v, mask, 0.35)
        grads.append((out, *torch.autograd.grad((out * w).sum(), (q, k, v))))
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_shared_layout_mask_is_what_blocks_skip_safely():
    # the blocks skip keys past each block's last query; the shared layout never lets a query see such a key
    mask = shared_layout_mask([(20, 25, 15), (10, 30, 12), (5, 5, 5)], 60)
    t = 60
    for i in range(QUERY_BLOCKS):
        a, b = t * i // QUERY_BLOCKS, t * (i + 1) // QUERY_BLOCKS
        assert bool((mask[:, :, a:b, b:] == torch.finfo(torch.float32).min).all())


def _pairs(vocab: int) -> list[TokenizedPair]:
    g = torch.Generator().manual_seed(3)
    ids = lambda n: torch.randint(4, vocab, (n,), generator=g).tolist()  # noqa: E731
    return [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in [(20, 25, 15), (10, 30, 12), (30, 8, 20)]]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_same_log_probs_and_gradients_as_eager_in_every_layout(tiny_model_dir, tiny_tokenizer, layout):
    # rows of 48+ tokens, so the queries really run in 3 blocks
    batch = collate_pairs(_pairs(len(tiny_tokenizer)), [0, 1, 2], tiny_tokenizer.pad_token_id, layout)
    assert batch.input_ids.shape[1] >= 48
    results = []
    for impl in ("eager", "eager_blocks"):
        model, _ = load_model(ModelConfig(name=str(tiny_model_dir), attn_implementation=impl))
        out = response_logprobs(model, batch, chunk_size=7)
        ((out.sums * torch.arange(1.0, 7.0)).sum()).backward()
        results.append((out.token_logps, {n: p.grad for n, p in model.named_parameters()}))
    (a, ga), (b, gb) = results
    assert torch.allclose(a, b, atol=1e-5)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-5, rtol=1e-4), n


def test_cached_generation_matches_eager(tiny_tokenizer):
    # one query per step against a growing key cache: a single block whose keys are all the cache's
    ids = torch.randint(4, len(tiny_tokenizer), (2, 50), generator=torch.Generator().manual_seed(5))
    outs = []
    for impl in ("eager", "eager_blocks"):
        model = make_model(len(tiny_tokenizer), seed=2)
        from duelist.models import attention

        attention.register()
        model.set_attn_implementation(impl)
        outs.append(model.generate(ids, max_new_tokens=8, do_sample=False, use_cache=True, pad_token_id=3))
    assert torch.equal(outs[0], outs[1])
