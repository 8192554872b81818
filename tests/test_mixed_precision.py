"""bf16 mixed precision (``train.mixed_precision=bf16``): matmuls under autocast, everything else as before.

The head is a custom autograd function, so it cannot rely on autocast for its matmuls; it must compute what
``nn.Linear`` under autocast would (bf16 inputs, bf16 logits, then log-softmax in float32) and keep the
weights' gradients in float32."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model, standard_rows, write_jsonl
from helpers import random_padded_batch as batch
from helpers import tiny_config

from duelist.data.collate import TokenBatch
from duelist.models.logprobs import LogProbModel
from duelist.models.reference import micro_batch_key
from duelist.train.run import Run, train

BF16 = torch.bfloat16


def naive_autocast(model, ids, att, mask):
    """What a full-logits implementation computes under autocast: bf16 logits, float32 log-softmax."""
    with torch.autocast("cpu", dtype=BF16):
        logits = model(input_ids=ids, attention_mask=att).logits
    assert logits.dtype == BF16
    logp = logits.float().log_softmax(-1)
    return (logp[:, :-1].gather(2, ids[:, 1:, None]).squeeze(2) * mask[:, 1:]).sum(1)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("keep_probs", [False, True])
@pytest.mark.parametrize("chunk", [5, 4096])
def test_head_under_autocast_is_what_linear_under_autocast_computes(chunk, keep_probs):
    model = make_model(257, seed=3)
    ids, att, mask = batch(257)
    w = torch.arange(1.0, 7.0)
    out = LogProbModel(model, chunk, keep_probs, autocast=BF16)(TokenBatch.from_padded(ids, att, mask).tensors())
    (out.sums * w).sum().backward()
    ours = _grads(model)
    model.zero_grad()
    sums = naive_autocast(model, ids, att, mask)
    (sums * w).sum().backward()
    theirs = _grads(model)
    model.zero_grad()
    fp32 = LogProbModel(model, chunk, keep_probs)(TokenBatch.from_padded(ids, att, mask).tensors()).sums

    # the same bf16 logits, normalised in float32: equal to float32 rounding, while bf16 moved them visibly
    assert out.sums.dtype == torch.float32
    assert torch.allclose(out.sums, sums, atol=2e-5, rtol=0)
    assert (out.sums - fp32.detach()).abs().max() > 1e-3
    # gradients: float32 tensors, equal up to bf16 rounding of the logits' gradient (2^-8 relative)
    for n, g in ours.items():
        assert g.dtype == torch.float32, n
        assert (g - theirs[n]).norm() <= 1e-2 * theirs[n].norm() + 1e-6, n


def test_cache_key_names_precision_and_graph_and_keeps_old_keys():
    model = make_model(64)
    pairs_args = (model, "m", [], [])
    plain = micro_batch_key(*pairs_args, layout="shared")
    assert micro_batch_key(*pairs_args, layout="shared", autocast=None, training_graph=False) == plain
    keys = {plain, micro_batch_key(*pairs_args, layout="shared", autocast=BF16),
            micro_batch_key(*pairs_args, layout="shared", training_graph=True),
            micro_batch_key(*pairs_args, layout="shared", autocast=BF16, training_graph=True)}
    assert len(keys) == 4


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", standard_rows(16))


def test_first_step_is_log2_and_state_stays_float32(tiny_model_dir, data, tmp_path):
    """The reference is scored under the same autocast, so at θ = θ_ref every log-ratio is exactly 0;
    weights, gradients and AdamW's moments stay float32."""
    t = Run(tiny_config(tiny_model_dir, data, tmp_path / "run", "train.mixed_precision=bf16"))
    m = t.step(0)
    assert m["loss"] == pytest.approx(math.log(2), abs=1e-6) and m["rewards/margin"] == 0.0
    assert {p.dtype for p in t.learner.model.parameters()} == {torch.float32}
    opt = t.learner.optimizer.optimizer
    assert {s.dtype for st in opt.state.values() for s in st.values() if s.dim()} == {torch.float32}


def test_bf16_training_follows_float32_training(tiny_model_dir, data, tmp_path):
    """Four steps of the tiny model in both precisions: the loss curves agree to bf16 accuracy."""
    runs = {mp: train(tiny_config(tiny_model_dir, data, tmp_path / mp, f"train.mixed_precision={mp}"))
            for mp in ("no", "bf16")}
    a, b = ([h["loss"] for h in runs[mp].history] for mp in ("no", "bf16"))
    assert a[0] == b[0] == pytest.approx(math.log(2), abs=1e-6)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 2e-2
    assert a != b  # bf16 did run


def test_training_graph_precompute_scores_with_gradients_enabled_and_leaves_none(tmp_path, monkeypatch):
    """``training_graph``: the reference forward runs with gradients enabled, which is what makes a compiled
    backbone run its training graph (on SmolLM2 in bf16 its inference graph moved sequence sums by up to
    1.09 nats; with this, the speed benchmark's step-1 loss is log 2 to the last bit). Values are those of
    the plain no-grad pass, and no gradient is left behind."""
    from duelist.data.tokenize import TokenizedPair
    from duelist.models.logprobs import split_lm
    from duelist.models.reference import precompute

    monkeypatch.setenv("DUELIST_CACHE", str(tmp_path))
    model = make_model(64)
    seen = []
    split_lm(model)[0].register_forward_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    g = torch.Generator().manual_seed(0)
    pairs = [TokenizedPair(*(torch.randint(4, 64, (n,), generator=g).tolist() for n in (5, 4, 6))) for _ in range(4)]
    out = {tg: precompute(model, pairs, [[0, 1], [2, 3]], 0, 8, f"k{tg}", "shared", BF16, training_graph=tg)
           for tg in (False, True)}
    assert seen == [False, False, True, True]
    assert all(p.grad is None for p in model.parameters())
    for k, v in out[False].items():
        assert torch.equal(v, out[True][k]), k
